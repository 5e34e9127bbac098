/**
 * One tiled GEMM shader, C[M,N] = sum_k A(m,k) B(k,n), specialised per op by three WGSL snippets:
 * how to load A and B (an implicit im2col for the convolutions, so the column matrix never exists
 * in memory) and how to store a result (bias, ReLU, the gradient epilogue). Convolution forward,
 * both convolution gradients, matmul and the fully connected layer are all this kernel.
 *
 * Tiles: 64x64 outputs per workgroup of 16x16 threads, 4x4 per thread, K in steps of 16 through
 * workgroup memory (the classic shared-memory SGEMM; see e.g. the CUDA SGEMM tiling literature).
 * A split-K variant writes partial sums that a second kernel adds up and stores, for the shapes
 * with few output tiles and a long K (fc6 at batch 1, the weight gradients).
 */
import { Q_FN, paramsStruct, type Binding, bindingDecls, type Precision } from './common.js';

export const TILE = 64;
const TK = 16;

export interface GemmSpec {
  /** Extra u32 parameters the snippets read as P.<name> (M, N, K, kChunk, splits always exist). */
  readonly params: readonly string[];
  readonly bindings: readonly Binding[];
  /** Body of fn loadA(m: u32, k: u32) -> f32, called only with m < M and k < K. */
  readonly loadA: string;
  /** Body of fn loadB(k: u32, n: u32) -> f32, called only with k < K and n < N. */
  readonly loadB: string;
  /** Body of fn store(m: u32, n: u32, v: f32). */
  readonly store: string;
  /** Neighbouring k are neighbouring addresses in A (or B): the tile loads then walk along k. */
  readonly aAlongK?: boolean;
  readonly bAlongK?: boolean;
}

export const GEMM_PARAMS = ['M', 'N', 'K', 'kChunk', 'splits'] as const;

function snippets(spec: GemmSpec): string {
  return `
fn loadA(m: u32, k: u32) -> f32 {
${spec.loadA}
}
fn loadB(k: u32, n: u32) -> f32 {
${spec.loadB}
}
fn store(m: u32, n: u32, v: f32) {
${spec.store}
}`;
}

/** The tiled kernel; with `split`, results go to `partial` ([splits, M, N]) instead of store(). */
export function gemmShader(spec: GemmSpec, precision: Precision, split: boolean): string {
  const native = precision === 'fp16-native';
  const el = native ? 'f16' : 'f32';
  const q = precision === 'fp32' ? '' : 'q';
  const bindings = split ? [...spec.bindings, { name: 'partial', write: true }] : spec.bindings;
  // Thread t of 256 fills 4 cells of each 64x16 tile; along k or along m/n, whichever is contiguous.
  const tileIndex = (alongK: boolean, row: string) =>
    alongK ? `let kk = t % ${TK}u; let ${row} = t / ${TK}u;` : `let ${row} = t % ${TILE}u; let kk = t / ${TILE}u;`;
  return `${native ? 'enable f16;\n' : ''}${paramsStruct([...GEMM_PARAMS, ...spec.params])}
${bindingDecls(bindings)}
${precision === 'fp32' ? '' : Q_FN}
${snippets(spec)}

var<workgroup> As: array<${el}, ${TILE * TK}>;
var<workgroup> Bs: array<${el}, ${TILE * TK}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.y * 16u + lid.x;
  let m0 = wg.y * ${TILE}u;
  let n0 = wg.x * ${TILE}u;
  let kBegin = wg.z * P.kChunk;
  let kEnd = min(P.K, kBegin + P.kChunk);
  var acc: array<f32, 16>;
  for (var k0 = kBegin; k0 < kEnd; k0 += ${TK}u) {
    for (var e = 0u; e < 4u; e++) {
      let t = tid + e * 256u;
      {
        ${tileIndex(spec.aAlongK ?? false, 'mm')}
        let m = m0 + mm;
        let k = k0 + kk;
        var a = 0.0;
        if (m < P.M && k < kEnd) { a = loadA(m, k); }
        As[kk * ${TILE}u + mm] = ${el}(${q}(a));
      }
      {
        ${tileIndex(spec.bAlongK ?? false, 'nn')}
        let n = n0 + nn;
        let k = k0 + kk;
        var b = 0.0;
        if (n < P.N && k < kEnd) { b = loadB(k, n); }
        Bs[kk * ${TILE}u + nn] = ${el}(${q}(b));
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = f32(As[kk * ${TILE}u + lid.y + 16u * i]);
        bv[i] = f32(Bs[kk * ${TILE}u + lid.x + 16u * i]);
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      let m = m0 + lid.y + 16u * i;
      let n = n0 + lid.x + 16u * j;
      if (m < P.M && n < P.N) {
        ${split ? 'partial[(wg.z * P.M + m) * P.N + n] = acc[i * 4u + j];' : 'store(m, n, acc[i * 4u + j]);'}
      }
    }
  }
}
`;
}

/** Adds the split-K partial sums and stores them through the op's own store(). */
export function splitReduceShader(spec: GemmSpec): string {
  return `${paramsStruct([...GEMM_PARAMS, ...spec.params])}
${bindingDecls([...spec.bindings, { name: 'partial', write: false }])}
${snippets(spec)}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  let total = P.M * P.N;
  if (i >= total) { return; }
  var s = 0.0;
  for (var z = 0u; z < P.splits; z++) { s += partial[z * total + i]; }
  store(i / P.N, i % P.N, s);
}
`;
}
