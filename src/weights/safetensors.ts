/**
 * safetensors (huggingface/safetensors' format): an 8-byte little-endian header length N, N bytes of
 * JSON ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {text: text}}), then the
 * tensors' bytes, little-endian, back to back. No code, no pickle; the header is padded with spaces
 * so that the data starts 8-byte aligned and float32 tensors are views of the file's bytes.
 *
 * Pastiche's converted VGG19 is one: its tensors in the layouts Pastiche computes in (after the
 * transpositions and the conv1_1 fold), and what the model needs besides in the metadata.
 */
import { PasticheError } from '../errors.js';
import { halfToFloat } from './torch/pth.js';
import { bf16Bits } from '../tensor/bf16.js';

export type SafeDtype = 'F32' | 'F16' | 'BF16';
export const DTYPE_BYTES: Record<SafeDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export interface SafeTensor {
  readonly shape: readonly number[];
  /** float32 values (F16 and BF16 are widened exactly on reading). */
  readonly data: Float32Array;
}

export interface SafetensorsFile {
  readonly tensors: Map<string, SafeTensor>;
  readonly metadata: Record<string, string>;
  /** The dtype the file stores its tensors in (the first tensor's). */
  readonly dtype: SafeDtype;
}

/** The header must be JSON of a sane size: a file claiming more is refused before reading it. */
const MAX_HEADER = 100 * 2 ** 20;

export function parseSafetensors(bytes: Uint8Array, file: string): SafetensorsFile {
  const bad = (problem: string): never => {
    throw new PasticheError(`${file}: ${problem}`);
  };
  if (bytes.length < 8) bad('too short for a safetensors file');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(v.getBigUint64(0, true));
  if (n > MAX_HEADER || 8 + n > bytes.length) bad(`a safetensors header of ${n} bytes in a file of ${bytes.length}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  } catch (e) {
    return bad(`the safetensors header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('the safetensors header is not an object');
  const data = bytes.subarray(8 + n);
  const tensors = new Map<string, SafeTensor>();
  let dtype: SafeDtype | undefined;
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const shape = e.shape;
    const offsets = e.data_offsets;
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES)) bad(`${name} has dtype ${String(e.dtype)} (F32, F16 and BF16 are read)`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`${name} has no valid shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`${name} has no valid data_offsets`);
    const t = e.dtype as SafeDtype;
    dtype ??= t;
    const [begin, end] = offsets as [number, number];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end < begin || end > data.length || end - begin !== count * DTYPE_BYTES[t]) bad(`${name}'s bytes [${begin}, ${end}) do not hold its shape [${(shape as number[]).join(', ')}] in the file`);
    tensors.set(name, { shape: shape as number[], data: toFloat32(data.subarray(begin, end), t) });
  }
  const metadata = (header['__metadata__'] ?? {}) as Record<string, unknown>;
  if (typeof metadata !== 'object' || Object.values(metadata).some((x) => typeof x !== 'string')) bad('the __metadata__ is not text to text');
  return { tensors, metadata: metadata as Record<string, string>, dtype: dtype ?? 'F32' };
}

function toFloat32(raw: Uint8Array, dtype: SafeDtype): Float32Array {
  if (dtype === 'F32') {
    if (raw.byteOffset % 4 === 0) return new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
    const out = new Float32Array(raw.length / 4);
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Float32Array(raw.length / 2);
  if (dtype === 'F16') for (let i = 0; i < out.length; i++) out[i] = halfToFloat(v.getUint16(2 * i, true));
  else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < out.length; i++) bits[i] = v.getUint16(2 * i, true) << 16;
  }
  return out;
}

/** float32 bits -> IEEE binary16 bits, round to nearest even (beyond 65504: infinite). */
export function halfBits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

/** A tensor's bytes as `dtype` stores them (little-endian). */
export function encodeTensor(t: SafeTensor, dtype: SafeDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint16Array(t.data.length);
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
  const round = dtype === 'F16' ? halfBits : bf16Bits;
  for (let i = 0; i < out.length; i++) out[i] = round(bits[i]!);
  return new Uint8Array(out.buffer);
}
