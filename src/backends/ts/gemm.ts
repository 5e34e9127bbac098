/**
 * A cache-blocked single-precision GEMM in plain TypeScript, in the layout of the classic
 * Goto/BLIS design: C (M x N) += op(A) (M x K) * op(B) (K x N).
 *
 * The loops, outermost first: N in panels of NC, K in slices of KC, M in blocks of MC. Each K-slice
 * of B and each MC x KC block of A is packed into contiguous strips (NR columns / MR rows wide,
 * zero-padded at the edges) so that the micro-kernel walks memory strictly sequentially; the
 * micro-kernel keeps an MR x NR tile of C in local variables, which V8 keeps in registers.
 */

const MR = 4;
const NR = 4;
const KC = 256;
const MC = 64;
const NC = 2048;

export interface GemmOperand {
  data: Float32Array;
  /** Offset of element (0,0) in data. */
  offset: number;
  /** Row stride of the stored (untransposed) matrix. */
  ld: number;
  /** Use the stored matrix transposed. */
  trans: boolean;
}

export function operand(data: Float32Array, ld: number, trans = false, offset = 0): GemmOperand {
  return { data, ld, trans, offset };
}

// Packing buffers are reused across calls: no allocation in the hot loop.
let packA = new Float32Array(MC * KC);
let packB = new Float32Array(KC * NC);

/**
 * C[i*ldc + j] (+)= sum_l op(A)[i,l] op(B)[l,j] for i < m, j < n.
 * With `accumulate` false, C is overwritten.
 */
export function gemm(
  m: number,
  n: number,
  k: number,
  a: GemmOperand,
  b: GemmOperand,
  c: Float32Array,
  ldc: number,
  accumulate: boolean,
  cOffset = 0,
): void {
  if (!accumulate) {
    for (let i = 0; i < m; i++) c.fill(0, cOffset + i * ldc, cOffset + i * ldc + n);
  }
  if (k === 0) return;
  const tile = new Float32Array(MR * NR);
  for (let jc = 0; jc < n; jc += NC) {
    const nc = Math.min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = Math.min(KC, k - pc);
      const npanels = Math.ceil(nc / NR);
      if (packB.length < npanels * NR * kc) packB = new Float32Array(npanels * NR * kc);
      packPanelB(b, pc, jc, kc, nc, packB);
      for (let ic = 0; ic < m; ic += MC) {
        const mc = Math.min(MC, m - ic);
        const mstrips = Math.ceil(mc / MR);
        if (packA.length < mstrips * MR * kc) packA = new Float32Array(mstrips * MR * kc);
        packBlockA(a, ic, pc, mc, kc, packA);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = Math.min(NR, nc - jr);
          const bOff = (jr / NR) * NR * kc;
          for (let ir = 0; ir < mc; ir += MR) {
            const mr = Math.min(MR, mc - ir);
            microKernel(kc, packA, (ir / MR) * MR * kc, packB, bOff, tile);
            const cBase = cOffset + (ic + ir) * ldc + jc + jr;
            for (let i = 0; i < mr; i++) {
              for (let j = 0; j < nr; j++) c[cBase + i * ldc + j] += tile[i * NR + j]!;
            }
          }
        }
      }
    }
  }
}

/** Packs rows [i0, i0+mc) x columns [p0, p0+kc) of op(A) into MR-row strips, k-major. */
function packBlockA(a: GemmOperand, i0: number, p0: number, mc: number, kc: number, out: Float32Array): void {
  const { data, ld, trans, offset } = a;
  let o = 0;
  for (let ir = 0; ir < mc; ir += MR) {
    const mr = Math.min(MR, mc - ir);
    for (let p = 0; p < kc; p++) {
      for (let i = 0; i < MR; i++) {
        const row = i0 + ir + i;
        const col = p0 + p;
        out[o++] = i < mr ? data[offset + (trans ? col * ld + row : row * ld + col)]! : 0;
      }
    }
  }
}

/** Packs rows [p0, p0+kc) x columns [j0, j0+nc) of op(B) into NR-column strips, k-major. */
function packPanelB(b: GemmOperand, p0: number, j0: number, kc: number, nc: number, out: Float32Array): void {
  const { data, ld, trans, offset } = b;
  let o = 0;
  for (let jr = 0; jr < nc; jr += NR) {
    const nr = Math.min(NR, nc - jr);
    for (let p = 0; p < kc; p++) {
      for (let j = 0; j < NR; j++) {
        const row = p0 + p;
        const col = j0 + jr + j;
        out[o++] = j < nr ? data[offset + (trans ? col * ld + row : row * ld + col)]! : 0;
      }
    }
  }
}

/** tile (MR x NR) = sum over kc of one packed A strip (outer product) one packed B strip. */
function microKernel(kc: number, a: Float32Array, ao: number, b: Float32Array, bo: number, tile: Float32Array): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let p = 0; p < kc; p++) {
    const a0 = a[ao]!, a1 = a[ao + 1]!, a2 = a[ao + 2]!, a3 = a[ao + 3]!;
    const b0 = b[bo]!, b1 = b[bo + 1]!, b2 = b[bo + 2]!, b3 = b[bo + 3]!;
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
    ao += MR;
    bo += NR;
  }
  tile[0] = c00; tile[1] = c01; tile[2] = c02; tile[3] = c03;
  tile[4] = c10; tile[5] = c11; tile[6] = c12; tile[7] = c13;
  tile[8] = c20; tile[9] = c21; tile[10] = c22; tile[11] = c23;
  tile[12] = c30; tile[13] = c31; tile[14] = c32; tile[15] = c33;
}
