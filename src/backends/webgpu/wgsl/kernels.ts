/**
 * The WGSL for every op that is not a GEMM: pooling, ReLU, flatten, softmax and its loss, and the
 * small reductions. Each one mirrors the `loops` reference (seed eqs. 16-23) one output per thread.
 */
import { elementwiseShader, paramsStruct, bindingDecls, type Binding } from './common.js';

/** A kernel: its buffers (binding 1 on, after the parameter block) and its generated WGSL. */
export interface Kernel {
  readonly bindings: readonly Binding[];
  readonly code: () => string;
}

// Nearly the lowest finite f32 (WGSL's constant evaluation rejects -inf); argmax starts from the first cell anyway.
const NEG_INF = '-3.4e38';
const POOL_PARAMS = ['H', 'W', 'Ho', 'Wo', 'KS', 'stride', 'pad'] as const;

const r = (name: string): Binding => ({ name, write: false });
const w = (name: string): Binding => ({ name, write: true });
const LABELS: Binding = { name: 'labels', write: false, type: 'i32' };

/** One output per thread (see elementwiseShader); `helpers` are WGSL functions the body calls. */
function elementwise(params: readonly string[], bindings: readonly Binding[], body: string, helpers = ''): Kernel {
  return { bindings, code: () => elementwiseShader(params, bindings, body, helpers) };
}

/** A kernel with its own entry point, after the parameter block and the buffer declarations. */
function custom(params: readonly string[], bindings: readonly Binding[], rest: string): Kernel {
  return { bindings, code: () => `${paramsStruct(params)}\n${bindingDecls(bindings)}\n${rest}` };
}

/** red[0] = op over red[0..256), the 256 threads of the workgroup together (each has stored its red[lid.x]). */
const treeReduce = (op: (a: string, b: string) => string) => `  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid.x < s) { red[lid.x] = ${op('red[lid.x]', 'red[lid.x + s]')}; }
    workgroupBarrier();
  }`;
const sum = (a: string, b: string) => `${a} + ${b}`;

/**
 * The head of a kernel with one workgroup per normalisation group of x: P.S runs of P.M cells, run
 * k of group g at ((k * P.G + g) * P.M) (instance norm: a group per (n, c) plane, one run; batch
 * norm: a group per channel, one run per image). `mean` and the group's sum of squared deviations
 * in red[0] (the variance times its P.S * P.M cells), every thread having both.
 */
const PLANE_MOMENTS = `var<workgroup> red: array<f32, 256>;

fn cell(g: u32, t: u32) -> u32 { return ((t / P.M) * P.G + g) * P.M + t % P.M; }

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let plane = wg.x;
  let count = P.S * P.M;
  var s = 0.0;
  for (var j = lid.x; j < count; j += 256u) { s += x[cell(plane, j)]; }
  red[lid.x] = s;
${treeReduce(sum)}
  let mean = red[0] / f32(count);
  workgroupBarrier();
  var q = 0.0;
  for (var j = lid.x; j < count; j += 256u) { let d = x[cell(plane, j)] - mean; q += d * d; }
  red[lid.x] = q;
${treeReduce(sum)}`;

/** The first maximum of window (oh, ow) in plane `plane`, as in loops' argmaxOfWindow: index h*W+w, or -1. */
const ARGMAX_FN = `
fn argmaxOfWindow(plane: u32, oh: u32, ow: u32) -> i32 {
  var best = ${NEG_INF};
  var arg = -1;
  for (var kh = 0u; kh < P.KS; kh++) {
    for (var kw = 0u; kw < P.KS; kw++) {
      let ih = i32(oh * P.stride + kh) - i32(P.pad);
      let iw = i32(ow * P.stride + kw) - i32(P.pad);
      if (ih < 0 || iw < 0 || ih >= i32(P.H) || iw >= i32(P.W)) { continue; }
      let v = x[(plane * P.H + u32(ih)) * P.W + u32(iw)];
      let isNan = v != v;
      if (arg < 0 || v > best || isNan) {
        best = v;
        arg = ih * i32(P.W) + iw;
        if (isNan) { return arg; }
      }
    }
  }
  return arg;
}`;

/** Number of window cells inside the input (average pooling divides by it). */
const WINDOW_COUNT_FN = `
fn windowCount(oh: u32, ow: u32) -> f32 {
  let h0 = max(i32(oh * P.stride) - i32(P.pad), 0);
  let h1 = min(i32(oh * P.stride + P.KS) - i32(P.pad), i32(P.H));
  let w0 = max(i32(ow * P.stride) - i32(P.pad), 0);
  let w1 = min(i32(ow * P.stride + P.KS) - i32(P.pad), i32(P.W));
  return f32((h1 - h0) * (w1 - w0));
}`;

/** Decomposes output index i of a pooling op into plane, oh, ow. */
const OUT_POS = `  let plane = i / (P.Ho * P.Wo);
  let oh = (i / P.Wo) % P.Ho;
  let ow = i % P.Wo;`;

/** For input cell i: its plane and the range of windows that contain it. */
const WINDOWS_OF_CELL = `  let plane = i / (P.H * P.W);
  let h = (i / P.W) % P.H;
  let wc = i % P.W;
  let hp = h + P.pad;
  let wp = wc + P.pad;
  let ohLo = select(0u, (hp - P.KS) / P.stride + 1u, hp >= P.KS);
  let owLo = select(0u, (wp - P.KS) / P.stride + 1u, wp >= P.KS);
  let ohHi = min(hp / P.stride, P.Ho - 1u);
  let owHi = min(wp / P.stride, P.Wo - 1u);`;

export const KERNELS = {
  maxPool: elementwise(POOL_PARAMS, [r('x'), w('y')], `${OUT_POS}
  let a = argmaxOfWindow(plane, oh, ow);
  y[i] = x[plane * P.H * P.W + u32(a)];`, ARGMAX_FN),
  maxPoolBackward: elementwise([...POOL_PARAMS, 'reluMask'], [r('x'), r('dy'), w('dx')], `${WINDOWS_OF_CELL}
  let me = i32(h * P.W + wc);
  var g = 0.0;
  for (var oh = ohLo; oh <= ohHi; oh++) {
    for (var ow = owLo; ow <= owHi; ow++) {
      if (argmaxOfWindow(plane, oh, ow) == me) { g += dy[(plane * P.Ho + oh) * P.Wo + ow]; }
    }
  }
  if (P.reluMask != 0u && !(x[i] > 0.0)) { g = 0.0; }
  dx[i] = g;`, ARGMAX_FN),
  avgPool: elementwise(POOL_PARAMS, [r('x'), w('y')], `${OUT_POS}
  var s = 0.0;
  for (var kh = 0u; kh < P.KS; kh++) {
    for (var kw = 0u; kw < P.KS; kw++) {
      let ih = i32(oh * P.stride + kh) - i32(P.pad);
      let iw = i32(ow * P.stride + kw) - i32(P.pad);
      if (ih < 0 || iw < 0 || ih >= i32(P.H) || iw >= i32(P.W)) { continue; }
      s += x[(plane * P.H + u32(ih)) * P.W + u32(iw)];
    }
  }
  y[i] = s / windowCount(oh, ow);`, WINDOW_COUNT_FN),
  avgPoolBackward: elementwise(POOL_PARAMS, [r('dy'), w('dx')], `${WINDOWS_OF_CELL}
  var g = 0.0;
  for (var oh = ohLo; oh <= ohHi; oh++) {
    for (var ow = owLo; ow <= owHi; ow++) {
      g += dy[(plane * P.Ho + oh) * P.Wo + ow] / windowCount(oh, ow);
    }
  }
  dx[i] = g;`, WINDOW_COUNT_FN),
  relu: elementwise([], [r('x'), w('y')], '  y[i] = select(0.0, x[i], x[i] > 0.0);'),
  /** As loops' reflectionPad2d: each output cell reads its mirrored input cell. */
  reflectionPad: elementwise(['H', 'W', 'pad'], [r('x'), w('y')], `  let hp = P.H + 2u * P.pad;
  let wp = P.W + 2u * P.pad;
  let plane = i / (hp * wp);
  let cell = i % (hp * wp);
  let ih = reflectIndex(i32(cell / wp) - i32(P.pad), i32(P.H));
  let iw = reflectIndex(i32(cell % wp) - i32(P.pad), i32(P.W));
  y[i] = x[(plane * P.H + u32(ih)) * P.W + u32(iw)];`, `
fn reflectIndex(i: i32, n: i32) -> i32 {
  if (i < 0) { return -i; }
  if (i >= n) { return 2 * (n - 1) - i; }
  return i;
}`),
  channelAffine: elementwise(['M', 'C', 'relu'], [r('x'), r('scale'), r('shift'), w('y')], `  let ch = (i / P.M) % P.C;
  let v = x[i] * scale[ch] + shift[ch];
  y[i] = select(v, 0.0, P.relu != 0u && !(v > 0.0));`),
  /** Each input cell gathers the dy of the (up to 3 x 3) padded cells that mirror it. */
  reflectionPadBackward: elementwise(['H', 'W', 'pad'], [r('dy'), w('dx')], `  let plane = i / (P.H * P.W);
  let cell = i % (P.H * P.W);
  var rows = mirrorsOf(i32(cell / P.W), i32(P.H), i32(P.pad));
  var cols = mirrorsOf(i32(cell % P.W), i32(P.W), i32(P.pad));
  let hp = P.H + 2u * P.pad;
  let wp = P.W + 2u * P.pad;
  var s = 0.0;
  for (var a = 0; a < 3; a++) {
    if (rows[a] < 0) { continue; }
    for (var b = 0; b < 3; b++) {
      if (cols[b] < 0) { continue; }
      s += dy[(plane * hp + u32(rows[a])) * wp + u32(cols[b])];
    }
  }
  dx[i] = s;`, `
// The padded positions that read input index i of a line of n: itself, its top/left mirror, its bottom/right mirror (-1: none).
fn mirrorsOf(i: i32, n: i32, pad: i32) -> vec3<i32> {
  var r = vec3<i32>(i + pad, -1, -1);
  if (i >= 1 && i <= pad) { r.y = pad - i; }
  if (i <= n - 2 && i >= n - 1 - pad) { r.z = pad + 2 * (n - 1) - i; }
  return r;
}`),
  upsampleNearestBackward: elementwise(['H', 'W', 'F'], [r('dy'), w('dx')], `  let plane = i / (P.H * P.W);
  let cell = i % (P.H * P.W);
  let ho = P.H * P.F;
  let wo = P.W * P.F;
  var s = 0.0;
  for (var a = 0u; a < P.F; a++) {
    for (var b = 0u; b < P.F; b++) { s += dy[(plane * ho + (cell / P.W) * P.F + a) * wo + (cell % P.W) * P.F + b]; }
  }
  dx[i] = s;`),
  /**
   * As loops' instanceNorm2dBackward (and batchNorm2dBackward: a group per channel), one workgroup
   * per group: mean and variance again, then the sums of g and g x^ (g: dy, zero where the fused
   * ReLU's output was not positive), dx, and the group's two sums for the weight and bias gradients
   * (added over the batch's planes by instanceNormParamGrads).
   */
  instanceNormBackward: custom(['M', 'C', 'eps', 'relu', 'S', 'G'], [r('x'), r('dy'), r('weight'), r('mask'), w('dx'), w('sums')], `${PLANE_MOMENTS}
  let r = 1.0 / sqrt(red[0] / f32(count) + bitcast<f32>(P.eps));
  workgroupBarrier();
  var sg = 0.0;
  for (var j = lid.x; j < count; j += 256u) { let at = cell(plane, j); sg += select(dy[at], 0.0, P.relu != 0u && !(mask[at] > 0.0)); }
  red[lid.x] = sg;
${treeReduce(sum)}
  let sumG = red[0];
  workgroupBarrier();
  var sgx = 0.0;
  for (var j = lid.x; j < count; j += 256u) { let at = cell(plane, j); sgx += select(dy[at], 0.0, P.relu != 0u && !(mask[at] > 0.0)) * (x[at] - mean) * r; }
  red[lid.x] = sgx;
${treeReduce(sum)}
  let sumGX = red[0];
  let k = weight[plane % P.C] * r;
  for (var j = lid.x; j < count; j += 256u) {
    let at = cell(plane, j);
    let g = select(dy[at], 0.0, P.relu != 0u && !(mask[at] > 0.0));
    dx[at] = k * (g - sumG / f32(count) - (x[at] - mean) * r * sumGX / f32(count));
  }
  if (lid.x == 0u) {
    sums[2u * plane] = sumG;
    sums[2u * plane + 1u] = sumGX;
  }
}
`),
  /** The weight and bias gradients: each group's two sums added over the N groups of a channel. */
  instanceNormParamGrads: elementwise(['N'], [r('sums'), w('dw'), w('db')], `  var a = 0.0;
  var b = 0.0;
  for (var n = 0u; n < P.N; n++) {
    b += sums[2u * (n * P.total + i)];
    a += sums[2u * (n * P.total + i) + 1u];
  }
  dw[i] = a;
  db[i] = b;`),
  upsampleNearest: elementwise(['H', 'W', 'F'], [r('x'), w('y')], `  let ho = P.H * P.F;
  let wo = P.W * P.F;
  let plane = i / (ho * wo);
  let cell = i % (ho * wo);
  y[i] = x[(plane * P.H + cell / wo / P.F) * P.W + (cell % wo) / P.F];`),
  /**
   * One workgroup per group (PLANE_MOMENTS), as loops' instanceNorm2d and batchNorm2d: the mean,
   * then the mean of the squared deviations (two reductions), then y = x * scale + shift (and the
   * ReLU); with P.stats, the group's mean and variance too (batch norm's running statistics).
   */
  instanceNorm: custom(['M', 'C', 'eps', 'relu', 'S', 'G', 'stats'], [r('x'), r('weight'), r('bias'), w('y'), w('means'), w('variances')], `${PLANE_MOMENTS}
  let ch = plane % P.C;
  let variance = red[0] / f32(count);
  let scale = weight[ch] / sqrt(variance + bitcast<f32>(P.eps));
  let shift = bias[ch] - mean * scale;
  for (var j = lid.x; j < count; j += 256u) {
    let at = cell(plane, j);
    let v = x[at] * scale + shift;
    y[at] = select(v, 0.0, P.relu != 0u && !(v > 0.0));
  }
  if (P.stats != 0u && lid.x == 0u) {
    means[plane] = mean;
    variances[plane] = variance;
  }
}
`),
  reluBackward: elementwise([], [r('dy'), r('x'), w('dx')], '  dx[i] = select(0.0, dy[i], x[i] > 0.0);'),
  reluBackwardInPlace: elementwise([], [w('dy'), r('x')], '  dy[i] = select(0.0, dy[i], x[i] > 0.0);'),
  addScaled: elementwise(['alpha'], [r('a'), r('b'), w('y')], '  y[i] = a[i] + bitcast<f32>(P.alpha) * b[i];'),
  scale: elementwise(['alpha'], [r('x'), w('y')], '  y[i] = bitcast<f32>(P.alpha) * x[i];'),
  /**
   * Stage one of a sum: workgroup g adds (the squares of, with P.square) the elements
   * g*256 + t, + G*256, ... into partial[g]; run again on the partials with G = 1 for the total.
   */
  sumPartials: custom(['total', 'square'], [r('x'), w('partial')], `var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var acc = 0.0;
  for (var i = wg.x * 256u + lid.x; i < P.total; i += nwg.x * 256u) {
    let v = x[i];
    acc += select(v, v * v, P.square != 0u);
  }
  red[lid.x] = acc;
${treeReduce(sum)}
  if (lid.x == 0u) { partial[wg.x] = red[0]; }
}
`),
  /** [N,C,H,W] -> [N, H*W*C]; params C and HW. */
  flattenNhwc: elementwise(['C', 'HW'], [r('x'), w('y')], `  let per = P.C * P.HW;
  let n = i / per;
  let hw = (i % per) / P.C;
  let c = i % P.C;
  y[i] = x[(n * P.C + c) * P.HW + hw];`),
  flattenNhwcBackward: elementwise(['C', 'HW'], [r('dy'), w('dx')], `  let per = P.C * P.HW;
  let n = i / per;
  let c = (i % per) / P.HW;
  let hw = i % P.HW;
  dx[i] = dy[n * per + hw * P.C + c];`),
  softmaxCrossEntropyBackward: elementwise(['N', 'K'], [r('p'), LABELS, w('d')], `  let row = i / P.K;
  let hit = select(0.0, 1.0, i32(i % P.K) == labels[row]);
  d[i] = (p[i] - hit) / f32(P.N);`),
  /** Row-wise softmax, one workgroup per row: max, then the sum of exponentials, then divide. */
  softmax: custom(['K'], [r('x'), w('y')], `var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = wg.x * P.K;
  var m = ${NEG_INF};
  for (var j = lid.x; j < P.K; j += 256u) { m = max(m, x[base + j]); }
  red[lid.x] = m;
${treeReduce((a, b) => `max(${a}, ${b})`)}
  let rowMax = red[0];
  workgroupBarrier();
  var total = 0.0;
  for (var j = lid.x; j < P.K; j += 256u) { total += exp(x[base + j] - rowMax); }
  red[lid.x] = total;
${treeReduce(sum)}
  let denominator = red[0];
  for (var j = lid.x; j < P.K; j += 256u) { y[base + j] = exp(x[base + j] - rowMax) / denominator; }
}
`),
  /** Mean of -log p[label] over the rows, clamped like the CPU's (one thread: N is the batch). */
  crossEntropy: custom(['N', 'K'], [r('p'), LABELS, w('loss')], `
@compute @workgroup_size(1)
fn main() {
  var l = 0.0;
  for (var row = 0u; row < P.N; row++) { l -= log(max(p[row * P.K + u32(labels[row])], 1e-30)); }
  loss[0] = l / f32(P.N);
}
`),
  /** out[c] = sum over o < O, i < I of t[(o*C + c)*I + i]: bias gradients. One workgroup per c. */
  channelSum: custom(['O', 'C', 'I'], [r('t'), w('out')], `var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wg.x + wg.y * 65535u;
  let total = P.O * P.I;
  var acc = 0.0;
  if (c < P.C) {
    for (var j = lid.x; j < total; j += 256u) { acc += t[((j / P.I) * P.C + c) * P.I + j % P.I]; }
  }
  red[lid.x] = acc;
${treeReduce(sum)}
  if (lid.x == 0u && c < P.C) { out[c] = red[0]; }
}
`),
} as const satisfies Record<string, Kernel>;
