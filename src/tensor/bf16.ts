/**
 * bfloat16: fp32's sign and 8-bit exponent with 7 stored mantissa bits (8 significant), so a value
 * keeps fp32's range and about 2-3 decimal digits. Rounding is to the nearest, ties to even, the
 * rule of AVX512-BF16's vcvtneps2bf16 and of PyTorch's `.to(torch.bfloat16)`.
 */

/** float32 bits -> bfloat16 bits (a NaN stays a quiet NaN). */
export function bf16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Each value rounded to bfloat16 and widened back, as the arithmetic of `--precision bf16` sees its
 * operands: the readable twin of native's roundBf16. fp32's subnormals (below 1.2e-38) become a
 * zero of their sign, as AVX512-BF16's instructions treat them (a file's bf16Bits keeps them).
 */
export function roundToBf16(x: Float32Array): Float32Array {
  const y = new Float32Array(x.length);
  const from = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const to = new Uint32Array(y.buffer);
  for (let i = 0; i < x.length; i++) {
    const bits = from[i]!;
    to[i] = (bits & 0x7f800000) === 0 ? bits & 0x80000000 : bf16Bits(bits) << 16;
  }
  return y;
}
