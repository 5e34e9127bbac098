/**
 * One tiled GEMM shader, C[M,N] = sum_k A(m,k) B(k,n), specialised per op by three WGSL snippets:
 * how to load A and B (an implicit im2col for the convolutions, so the column matrix never exists
 * in memory) and how to store a result (bias, ReLU, the gradient epilogue). Convolution forward,
 * both convolution gradients, matmul and the fully connected layer are all this kernel.
 *
 * Tiles: 16x16 threads, each computing RM x RN outputs (strided by 16, so that neighbouring threads
 * touch neighbouring addresses), K in steps of 16 through workgroup memory (the classic
 * shared-memory SGEMM). Two shapes: 64x64 (4x4 per thread) in general, and 16x256 (1x16) when M is
 * at most 16 (a 3-channel image's gradient, a batch-1 fully connected layer), which would leave
 * three quarters of a 64-row tile idle.
 * A split-K variant writes partial sums that a second kernel adds up and stores, for the shapes
 * with few output tiles and a long K (fc6 at batch 1, the weight gradients).
 */
import { Q_FN, paramsStruct, type Binding, bindingDecls, type Precision } from './common.js';

const TK = 16;

/** Outputs per thread along M and N; the tile is 16*rm x 16*rn. */
export interface TileShape {
  readonly rm: number;
  readonly rn: number;
}

export const SQUARE_TILE: TileShape = { rm: 4, rn: 4 };
export const WIDE_TILE: TileShape = { rm: 1, rn: 16 };

export function tileFor(m: number): TileShape {
  return m <= 16 ? WIDE_TILE : SQUARE_TILE;
}

export interface GemmSpec {
  /** Extra u32 parameters the snippets read as P.<name> (M, N, K, kChunk, splits always exist). */
  readonly params: readonly string[];
  readonly bindings: readonly Binding[];
  /** WGSL functions the snippets call. */
  readonly helpers?: string;
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
  return `${spec.helpers ?? ''}
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
export function gemmShader(spec: GemmSpec, precision: Precision, split: boolean, tile: TileShape): string {
  const { rm, rn } = tile;
  const tm = 16 * rm;
  const tn = 16 * rn;
  const native = precision === 'fp16-native';
  const el = native ? 'f16' : 'f32';
  const q = precision === 'fp32' ? '' : 'q';
  const bindings = split ? [...spec.bindings, { name: 'partial', write: true }] : spec.bindings;
  // The 256 threads fill a width x 16 tile of A (or B), `per` cells each, walking along k or along
  // m (n), whichever is contiguous in memory.
  const tileLoad = (tile: 'As' | 'Bs', width: number, per: number, alongK: boolean, idx: 'm' | 'n', bound: string, load: string) => `
    for (var e = 0u; e < ${per}u; e++) {
      let t = tid + e * 256u;
      ${alongK ? `let kk = t % ${TK}u; let r = t / ${TK}u;` : `let r = t % ${width}u; let kk = t / ${width}u;`}
      let ${idx} = ${idx}0 + r;
      let k = k0 + kk;
      var v = 0.0;
      if (${idx} < ${bound} && k < kEnd) { v = ${load}; }
      ${tile}[kk * ${width}u + r] = ${el}(${q}(v));
    }`;
  return `${native ? 'enable f16;\n' : ''}${paramsStruct([...GEMM_PARAMS, ...spec.params])}
${bindingDecls(bindings)}
${precision === 'fp32' ? '' : Q_FN}
${snippets(spec)}

var<workgroup> As: array<${el}, ${tm * TK}>;
var<workgroup> Bs: array<${el}, ${tn * TK}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.y * 16u + lid.x;
  let m0 = wg.y * ${tm}u;
  let n0 = wg.x * ${tn}u;
  let kBegin = wg.z * P.kChunk;
  let kEnd = min(P.K, kBegin + P.kChunk);
  var acc: array<f32, ${rm * rn}>;
  for (var k0 = kBegin; k0 < kEnd; k0 += ${TK}u) {
${tileLoad('As', tm, rm, spec.aAlongK ?? false, 'm', 'P.M', 'loadA(m, k)')}
${tileLoad('Bs', tn, rn, spec.bAlongK ?? false, 'n', 'P.N', 'loadB(k, n)')}
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      var av: array<f32, ${rm}>;
      var bv: array<f32, ${rn}>;
      for (var i = 0u; i < ${rm}u; i++) { av[i] = f32(As[kk * ${tm}u + lid.y + 16u * i]); }
      for (var j = 0u; j < ${rn}u; j++) { bv[j] = f32(Bs[kk * ${tn}u + lid.x + 16u * j]); }
      for (var i = 0u; i < ${rm}u; i++) {
        for (var j = 0u; j < ${rn}u; j++) {
          acc[i * ${rn}u + j] = fma(av[i], bv[j], acc[i * ${rn}u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${rm}u; i++) {
    for (var j = 0u; j < ${rn}u; j++) {
      let m = m0 + lid.y + 16u * i;
      let n = n0 + lid.x + 16u * j;
      if (m < P.M && n < P.N) {
        ${split ? `partial[(wg.z * P.M + m) * P.N + n] = acc[i * ${rn}u + j];` : `store(m, n, acc[i * ${rn}u + j]);`}
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
