/**
 * `webgpu`: the whole Backend interface as WGSL compute shaders. Results stay in GPU buffers
 * (tensors with `storage`) and flow from op to op without copies; host tensors passed in are
 * uploaded, weights once (cached by their data array, which the Backend contract keeps
 * unchanged), everything else per call into a pooled buffer.
 */
import { convWork, fcWork } from '../conv-work.js';
import { PasticheError } from '../../errors.js';
import { Tensor, expectRank, sizeOf, type Shape } from '../../tensor/tensor.js';
import type { Backend, NormGradients, Conv2dParams, GradientEpilogue, LinearGradients, ParamGradients, Pool2dParams } from '../backend.js';
import { conv2dInSteps, conv2dThenMaxPool, convNeedsSteps, linearBackwardByMatmul, matmulChannelOps } from '../common-ops.js';
import { hostVectorOps } from '../host-vectors.js';
import {
  checkBias,
  checkChannelParams,
  checkEpilogue,
  checkGradShape,
  checkLabels,
  checkReflectionPad,
  convGeometry,
  linearGeometry,
  matmulGeometry,
  poolGeometry,
} from '../shapes.js';
import { BufferPool, GpuStorage } from './buffer-pool.js';
import type { GpuContext } from './gpu-device.js';
import { KernelRunner, f32Bits, linearGroups, type Dispatch } from './kernel-runner.js';
import type { Binding, Precision } from './wgsl/common.js';
import { gemmShader, splitReduceShader, tileFor, type GemmSpec } from './wgsl/gemm.js';
import { KERNELS } from './wgsl/kernels.js';

export interface WebGpuBackend extends Backend {
  readonly adapterName: string;
  /** A CPU implementation of WebGPU (SwiftShader): right answers, no speed. */
  readonly isSoftware: boolean;
  readonly precision: Precision;
  readonly pool: BufferPool;
}

const MAP_READ = 0x1 | 0x8; // GPUBufferUsage.MAP_READ | COPY_DST

const r = (name: string): Binding => ({ name, write: false });
const w = (name: string): Binding => ({ name, write: true });

/**
 * Element (row, col) of the implicit im2col matrix of x: row = (ci, kh, kw), col = (n, oh, ow);
 * zero in the padding. The convolution's B operand and the weight gradient's A operand.
 */
const IM2COL = `
fn im2col(row: u32, col: u32) -> f32 {
  let ci = row / (P.KS * P.KS);
  let kh = (row / P.KS) % P.KS;
  let kw = row % P.KS;
  let b = col / (P.Ho * P.Wo);
  let oh = (col / P.Wo) % P.Ho;
  let ow = col % P.Wo;
  let ih = i32(oh * P.stride + kh) - i32(P.pad);
  let iw = i32(ow * P.stride + kw) - i32(P.pad);
  if (ih < 0 || iw < 0 || ih >= i32(P.H) || iw >= i32(P.W)) { return 0.0; }
  return x[((b * P.Cin + ci) * P.H + u32(ih)) * P.W + u32(iw)];
}`;

/** The GEMM ops, as the snippets of the shared tiled kernel (see wgsl/gemm.ts). */
const GEMMS = {
  // Seed eq. 22 as C[co, (n,oh,ow)] = sum_{(ci,kh,kw)} W[(ci,kh,kw), co] * Xpad[...].
  conv: {
    params: ['Cin', 'H', 'W', 'Cout', 'Ho', 'Wo', 'KS', 'stride', 'pad', 'relu'],
    bindings: [r('x'), r('w'), r('bias'), w('y')],
    helpers: IM2COL,
    loadA: '  return w[k * P.Cout + m];',
    loadB: '  return im2col(k, n);',
    store: `  let hw = P.Ho * P.Wo;
  var v2 = v + bias[m];
  if (P.relu != 0u) { v2 = select(0.0, v2, v2 > 0.0); }
  y[((n / hw) * P.Cout + m) * hw + n % hw] = v2;`,
  },
  // dX[ci, (n,h,w)] = sum_{(kh,kw,co)} W[ci,kh,kw,co] * dY[n, co, (h+pad-kh)/s, (w+pad-kw)/s].
  convBackwardData: {
    params: ['Cin', 'H', 'W', 'Cout', 'Ho', 'Wo', 'KS', 'stride', 'pad', 'hasAdd', 'hasMask'],
    bindings: [r('dy'), r('w'), r('addend'), r('mask'), w('dx')],
    aAlongK: true,
    loadA: '  return w[m * P.KS * P.KS * P.Cout + k];',
    loadB: `  let co = k % P.Cout;
  let kh = (k / P.Cout) / P.KS;
  let kw = (k / P.Cout) % P.KS;
  let b = n / (P.H * P.W);
  let th = i32((n / P.W) % P.H + P.pad) - i32(kh);
  let tw = i32(n % P.W + P.pad) - i32(kw);
  if (th < 0 || tw < 0) { return 0.0; }
  if (u32(th) % P.stride != 0u || u32(tw) % P.stride != 0u) { return 0.0; }
  let oh = u32(th) / P.stride;
  let ow = u32(tw) / P.stride;
  if (oh >= P.Ho || ow >= P.Wo) { return 0.0; }
  return dy[((b * P.Cout + co) * P.Ho + oh) * P.Wo + ow];`,
    store: `  let hw = P.H * P.W;
  let i = ((n / hw) * P.Cin + m) * hw + n % hw;
  var g = v;
  if (P.hasAdd != 0u) { g += addend[i]; }
  if (P.hasMask != 0u) { g = select(0.0, g, mask[i] > 0.0); }
  dx[i] = g;`,
  },
  // dW[(ci,kh,kw), co] = sum_{(n,oh,ow)} Xpad[n, ci, oh*s+kh, ow*s+kw] * dY[n, co, oh, ow].
  convBackwardWeights: {
    params: ['Cin', 'H', 'W', 'Cout', 'Ho', 'Wo', 'KS', 'stride', 'pad'],
    bindings: [r('x'), r('dy'), w('dw')],
    helpers: IM2COL,
    aAlongK: true,
    bAlongK: true,
    loadA: '  return im2col(m, k);',
    loadB: `  let hw = P.Ho * P.Wo;
  return dy[((k / hw) * P.Cout + n) * hw + k % hw];`,
    store: '  dw[m * P.Cout + n] = v;',
  },
  linear: {
    params: [],
    bindings: [r('x'), r('w'), r('bias'), w('y')],
    aAlongK: true,
    loadA: '  return x[m * P.K + k];',
    loadB: '  return w[k * P.N + n];',
    store: '  y[m * P.N + n] = v + bias[n];',
  },
} satisfies Record<string, GemmSpec>;

function matmulSpec(transA: boolean, transB: boolean): GemmSpec {
  return {
    params: [],
    bindings: [r('a'), r('b'), w('c')],
    aAlongK: !transA,
    bAlongK: transB,
    loadA: transA ? '  return a[k * P.M + m];' : '  return a[m * P.K + k];',
    loadB: transB ? '  return b[n * P.K + k];' : '  return b[k * P.N + n];',
    store: '  c[m * P.N + n] = v;',
  };
}

/** Buffers an op borrows from the pool (uploads, partial sums) and gives back once it is queued. */
type Uploads = GPUBuffer[];

export function createWebGpuBackend(ctx: GpuContext, precision: 'fp32' | 'fp16' = 'fp32'): WebGpuBackend {
  const device = ctx.device;
  const pool = new BufferPool(ctx);
  const runner = new KernelRunner(ctx);
  const mode: Precision = precision === 'fp32' ? 'fp32' : ctx.hasF16 ? 'fp16-native' : 'fp16';
  /** Weights and biases, uploaded once per data array (never changed in place: Backend contract). */
  const weightBuffers = new WeakMap<Float32Array, GPUBuffer>();
  /** Bound where an op has no such input; never written. */
  const dummy = device.createBuffer({ size: 256, usage: 0x80 });

  const alive = () => {
    if (ctx.lostReason) throw new PasticheError(ctx.lostReason);
  };

  async function read(buffer: GPUBuffer, bytes: number): Promise<Float32Array> {
    alive();
    if (bytes === 0) return new Float32Array(0);
    const staging = device.createBuffer({ size: bytes, usage: MAP_READ });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
    device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(0x1);
      // An error in the work before (out of memory, say) arrives as an event, not as a rejection.
      alive();
      return new Float32Array(staging.getMappedRange().slice(0));
    } catch (e) {
      if (e instanceof PasticheError) throw e;
      throw new PasticheError(ctx.lostReason ?? `reading a webgpu tensor failed: ${(e as Error).message}`);
    } finally {
      if (staging.mapState === 'mapped') staging.unmap();
      staging.destroy();
    }
  }

  function output(shape: Shape): Tensor {
    return new Tensor(shape, pool.storage(sizeOf(shape), read));
  }

  function upload(data: Float32Array | Int32Array, up: Uploads): GPUBuffer {
    const b = pool.take(data.byteLength);
    device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    up.push(b);
    return b;
  }

  /** The GPU buffer of `t`: its own if it lives here, else an upload (cached for weights). */
  function buf(t: Tensor, up: Uploads, isWeight = false): GPUBuffer {
    if (t.storage) {
      if (!(t.storage instanceof GpuStorage)) throw new PasticheError(`a tensor on ${t.storage.owner} was given to the webgpu backend`);
      return t.storage.buffer;
    }
    if (!isWeight) return upload(t.data, up);
    let b = weightBuffers.get(t.data);
    if (!b) {
      if (t.data.byteLength > device.limits.maxStorageBufferBindingSize) {
        throw new PasticheError(`a ${(t.data.byteLength / 2 ** 20).toFixed(0)} MiB weight tensor exceeds this GPU's buffer limit`);
      }
      b = device.createBuffer({ size: Math.max(256, Math.ceil(t.data.byteLength / 4) * 4), usage: 0x80 | 0x08 });
      device.queue.writeBuffer(b, 0, t.data.buffer, t.data.byteOffset, t.data.byteLength);
      weightBuffers.set(t.data, b);
    }
    return b;
  }

  function run(up: Uploads, ...dispatches: Dispatch[]): void {
    alive();
    runner.run(...dispatches);
    for (const b of up) pool.put(b);
  }

  function outBuf(t: Tensor): GPUBuffer {
    return (t.storage as GpuStorage).buffer;
  }

  function elementwise(
    name: keyof typeof KERNELS,
    total: number,
    params: readonly number[],
    buffers: GPUBuffer[],
  ): Dispatch {
    const k = KERNELS[name];
    return { key: name, code: k.code, bindings: k.bindings, params: [total, ...params], buffers, groups: linearGroups(total) };
  }

  /**
   * Dispatches of one GEMM op: the tiled kernel, and for few output tiles over a long K a split
   * into partial sums plus their reduction (more workgroups to keep a GPU busy).
   */
  /**
   * Instance or batch normalisation (KERNELS.instanceNorm): `groups` workgroups, each over `segments`
   * runs of H x W cells (a plane per group; or a channel per group, a run per image), the groups'
   * means and variances too for batch norm.
   */
  function normalize(x: Tensor, weight: Tensor, bias: Tensor, eps: number, relu: boolean, g: { groups: number; segments: number; stats: boolean }): { y: Tensor; mean?: Tensor; variance?: Tensor } {
    const [, c, h, wd] = x.shape as [number, number, number, number];
    const up: Uploads = [];
    const y = output(x.shape);
    const stats = g.stats ? [output([c]), output([c])] : undefined;
    // Two writable bindings may not share a buffer: without statistics, two scratch ones.
    const scratch = () => {
      const b = pool.take(4);
      up.push(b);
      return b;
    };
    const k = KERNELS.instanceNorm;
    run(up, {
      key: 'instanceNorm', code: k.code, bindings: k.bindings, params: [h * wd, c, f32Bits(eps), relu ? 1 : 0, g.segments, g.groups, stats ? 1 : 0],
      buffers: [buf(x, up), buf(weight, up, true), buf(bias, up, true), outBuf(y), stats ? outBuf(stats[0]!) : scratch(), stats ? outBuf(stats[1]!) : scratch()], groups: [g.groups, 1, 1],
    });
    return { y, mean: stats?.[0], variance: stats?.[1] };
  }

  /** The gradients of normalize: dx, and the weight and bias gradients added over the groups of each channel. */
  function normalizeBackward(what: string, dy: Tensor, x: Tensor, weight: Tensor, eps: number, reluOutput: Tensor | undefined, g: { groups: number; segments: number }): NormGradients {
    const [, c, h, wd] = x.shape as [number, number, number, number];
    checkGradShape(dy, x.shape, what);
    if (reluOutput) checkGradShape(reluOutput, x.shape, `${what} (the ReLU output)`);
    if (weight.size !== c) throw new PasticheError(`${what}: ${c} channels but ${weight.size} weights`);
    const up: Uploads = [];
    const dx = output(x.shape);
    const [dw, db] = [output([c]), output([c])];
    const sums = pool.take(2 * g.groups * 4);
    up.push(sums);
    const k = KERNELS.instanceNormBackward;
    const xb = buf(x, up);
    run(
      up,
      { key: 'instanceNormBackward', code: k.code, bindings: k.bindings, params: [h * wd, c, f32Bits(eps), reluOutput ? 1 : 0, g.segments, g.groups], buffers: [xb, buf(dy, up), buf(weight, up), reluOutput ? buf(reluOutput, up) : xb, outBuf(dx), sums], groups: [g.groups, 1, 1] },
      elementwise('instanceNormParamGrads', c, [g.groups / c], [sums, outBuf(dw), outBuf(db)]),
    );
    return { dx, dw, db };
  }

  function gemm(name: string, spec: GemmSpec, m: number, n: number, k: number, extra: readonly number[], buffers: GPUBuffer[], up: Uploads): Dispatch[] {
    const tile = tileFor(m);
    const [tm, tn] = [16 * tile.rm, 16 * tile.rn];
    const tiles = Math.ceil(m / tm) * Math.ceil(n / tn);
    let splits = tiles < 64 && k >= 2048 ? Math.min(Math.floor(k / 1024), Math.ceil(128 / tiles)) : 1;
    const kChunk = Math.ceil(k / splits / 16) * 16;
    splits = Math.max(1, Math.ceil(k / kChunk));
    const params = [m, n, k, kChunk, splits, ...extra];
    const groups: [number, number, number] = [Math.ceil(n / tn), Math.ceil(m / tm), splits];
    const variant = `${name}:${mode}:${tile.rm}x${tile.rn}`;
    if (groups[0] > 65535 || groups[1] > 65535) throw new PasticheError(`${name}: a ${m}x${n} output is too large for one dispatch`);
    if (splits === 1) {
      return [{ key: variant, code: () => gemmShader(spec, mode, false, tile), bindings: spec.bindings, params, buffers, groups }];
    }
    const partial = pool.take(splits * m * n * 4);
    up.push(partial);
    return [
      {
        key: `${variant}:split`,
        code: () => gemmShader(spec, mode, true, tile),
        bindings: [...spec.bindings, w('partial')],
        params,
        buffers: [...buffers, partial],
        groups,
      },
      {
        key: `${name}:reduce`,
        code: () => splitReduceShader(spec),
        bindings: [...spec.bindings, r('partial')],
        params,
        buffers: [...buffers, partial],
        groups: linearGroups(m * n),
      },
    ];
  }

  function channelSum(t: GPUBuffer, o: number, c: number, i: number): { out: Tensor; dispatch: Dispatch } {
    const out = output([c]);
    const k = KERNELS.channelSum;
    const groups: [number, number, number] = [Math.min(c, 65535), Math.ceil(c / 65535), 1];
    return { out, dispatch: { key: 'channelSum', code: k.code, bindings: k.bindings, params: [o, c, i], buffers: [t, outBuf(out)], groups } };
  }

  const convParams = (g: ReturnType<typeof convGeometry>, p: Conv2dParams) => [g.cin, g.h, g.w, g.cout, g.ho, g.wo, g.k, p.stride, p.pad];
  const poolParams = (g: ReturnType<typeof poolGeometry>, p: Pool2dParams) => [g.h, g.w, g.ho, g.wo, p.kernel, p.stride, p.pad];

  function pool2d(kernel: 'maxPool' | 'avgPool', x: Tensor, p: Pool2dParams): Tensor {
    const g = poolGeometry(x.shape, p);
    const up: Uploads = [];
    const y = output([g.n, g.c, g.ho, g.wo]);
    run(up, elementwise(kernel, y.size, poolParams(g, p), [buf(x, up), outBuf(y)]));
    return y;
  }

  const be: WebGpuBackend = {
    name: 'webgpu',
    description: `WGSL kernels on ${ctx.adapterName}${ctx.isSoftware ? ' (a CPU implementation: correct, slow)' : ''}${mode === 'fp32' ? '' : `, ${mode}`}`,
    // The pool rounds a tensor up to its size class (at most 1/8 more) before the binding limit applies.
    maxTensorBytes: Math.floor(ctx.device.limits.maxStorageBufferBindingSize / 1.125),
    adapterName: ctx.adapterName,
    isSoftware: ctx.isSoftware,
    precision: mode,
    pool,

    conv2dWork: (xShape, wShape, p, pass) => convWork(xShape, wShape, p, { kind: 'implicit GEMM' }, pass),
    // Every weight row, zero input or not.
    linearWork: (xShape, wShape) => fcWork(xShape, wShape, wShape[0]!),

    conv2d(x, wt, b, p, relu = false) {
      const g = convGeometry(x.shape, wt.shape, p);
      checkBias(b, g.cout, 'conv2d');
      if (convNeedsSteps(p)) return conv2dInSteps(be, x, wt, b, p, relu);
      const up: Uploads = [];
      const y = output([g.n, g.cout, g.ho, g.wo]);
      const buffers = [buf(x, up), buf(wt, up, true), buf(b, up, true), outBuf(y)];
      const k = g.cin * g.k * g.k;
      run(up, ...gemm('conv', GEMMS.conv, g.cout, g.n * g.ho * g.wo, k, [...convParams(g, p), relu ? 1 : 0], buffers, up));
      return y;
    },

    conv2dBackwardData(dy, wt, xShape, p, epilogue?: GradientEpilogue) {
      const g = convGeometry(xShape, wt.shape, p);
      checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardData');
      checkEpilogue(xShape, epilogue);
      const up: Uploads = [];
      const dx = output(xShape);
      const add = epilogue?.add ? buf(epilogue.add, up) : dummy;
      const mask = epilogue?.reluMask ? buf(epilogue.reluMask, up) : dummy;
      const buffers = [buf(dy, up), buf(wt, up, true), add, mask, outBuf(dx)];
      const extra = [...convParams(g, p), epilogue?.add ? 1 : 0, epilogue?.reluMask ? 1 : 0];
      run(up, ...gemm('convBackwardData', GEMMS.convBackwardData, g.cin, g.n * g.h * g.w, g.cout * g.k * g.k, extra, buffers, up));
      return dx;
    },

    conv2dBackwardParams(dy, x, kernel, p): ParamGradients {
      const g = convGeometry(x.shape, [x.shape[1] ?? 0, kernel, kernel, dy.shape[1] ?? 0], p);
      checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardParams');
      const up: Uploads = [];
      const dw = output([g.cin, g.k, g.k, g.cout]);
      const dyBuf = buf(dy, up);
      const buffers = [buf(x, up), dyBuf, outBuf(dw)];
      const db = channelSum(dyBuf, g.n, g.cout, g.ho * g.wo);
      run(up, ...gemm('convBackwardWeights', GEMMS.convBackwardWeights, g.cin * g.k * g.k, g.cout, g.n * g.ho * g.wo, convParams(g, p), buffers, up), db.dispatch);
      return { dw, db: db.out };
    },

    // The two steps: the GPU runs them back to back without a trip to the host.
    conv2dMaxPool(x, wt, b, p, relu, pool) {
      return conv2dThenMaxPool(be, x, wt, b, p, relu, pool);
    },

    maxPool2d(x, p) {
      return pool2d('maxPool', x, p);
    },

    maxPool2dBackward(dy, x, p, reluMask = false) {
      const g = poolGeometry(x.shape, p);
      checkGradShape(dy, [g.n, g.c, g.ho, g.wo], 'maxPool2dBackward');
      const up: Uploads = [];
      const dx = output(x.shape);
      run(up, elementwise('maxPoolBackward', dx.size, [...poolParams(g, p), reluMask ? 1 : 0], [buf(x, up), buf(dy, up), outBuf(dx)]));
      return dx;
    },

    avgPool2d(x, p) {
      return pool2d('avgPool', x, p);
    },

    avgPool2dBackward(dy, xShape, p) {
      const g = poolGeometry(xShape, p);
      checkGradShape(dy, [g.n, g.c, g.ho, g.wo], 'avgPool2dBackward');
      const up: Uploads = [];
      const dx = output(xShape);
      run(up, elementwise('avgPoolBackward', dx.size, poolParams(g, p), [buf(dy, up), outBuf(dx)]));
      return dx;
    },

    matmul(a, b, transA = false, transB = false) {
      const g = matmulGeometry(a, b, transA, transB);
      const up: Uploads = [];
      const c = output([g.m, g.n]);
      run(up, ...gemm(`matmul${+transA}${+transB}`, matmulSpec(transA, transB), g.m, g.n, g.k, [], [buf(a, up), buf(b, up), outBuf(c)], up));
      return c;
    },

    linear(x, wt, b) {
      const g = linearGeometry(x, wt, b);
      const up: Uploads = [];
      const y = output([g.m, g.n]);
      run(up, ...gemm('linear', GEMMS.linear, g.m, g.n, g.k, [], [buf(x, up), buf(wt, up, true), buf(b, up, true), outBuf(y)], up));
      return y;
    },

    linearBackward(dy, x, wt): LinearGradients {
      // The bias gradient sums dy's rows on the GPU (channelSum with one value per row and column).
      return linearBackwardByMatmul(be, dy, x, wt, (t, rows, cols) => {
        const up: Uploads = [];
        const db = channelSum(buf(t, up), rows, cols, 1);
        run(up, db.dispatch);
        return db.out;
      });
    },

    reflectionPad2d(x, pad) {
      const [n, c, h, wd] = expectRank(x, 4, 'reflectionPad2d') as [number, number, number, number];
      checkReflectionPad(h, wd, pad);
      const up: Uploads = [];
      const y = output([n, c, h + 2 * pad, wd + 2 * pad]);
      run(up, elementwise('reflectionPad', y.size, [h, wd, pad], [buf(x, up), outBuf(y)]));
      return y;
    },

    instanceNorm2d(x, weight, bias, eps, relu = false) {
      const [n, c] = expectRank(x, 4, 'instanceNorm2d') as [number, number, number, number];
      checkChannelParams(weight, bias, c, 'instanceNorm2d');
      if (n * c > 65535) throw new PasticheError(`instanceNorm2d: ${n * c} planes are more than one dispatch takes (65535)`);
      return normalize(x, weight, bias, eps, relu, { groups: n * c, segments: 1, stats: false }).y;
    },

    batchNorm2d(x, weight, bias, eps, relu = false) {
      const [n, c] = expectRank(x, 4, 'batchNorm2d') as [number, number, number, number];
      checkChannelParams(weight, bias, c, 'batchNorm2d');
      const r = normalize(x, weight, bias, eps, relu, { groups: c, segments: n, stats: true });
      return { y: r.y, mean: r.mean!, variance: r.variance! };
    },

    channelAffine2d(x, scale, shift, relu = false) {
      const [, c, h, wd] = expectRank(x, 4, 'channelAffine2d') as [number, number, number, number];
      checkChannelParams(scale, shift, c, 'channelAffine2d');
      const up: Uploads = [];
      const y = output(x.shape);
      run(up, elementwise('channelAffine', x.size, [h * wd, c, relu ? 1 : 0], [buf(x, up), buf(scale, up), buf(shift, up), outBuf(y)]));
      return y;
    },

    instanceNorm2dBackward(dy, x, weight, eps, reluOutput) {
      const [n, c] = expectRank(x, 4, 'instanceNorm2dBackward') as [number, number, number, number];
      if (n * c > 65535) throw new PasticheError(`instanceNorm2dBackward: ${n * c} planes are more than one dispatch takes (65535)`);
      return normalizeBackward('instanceNorm2dBackward', dy, x, weight, eps, reluOutput, { groups: n * c, segments: 1 });
    },

    batchNorm2dBackward(dy, x, weight, eps, reluOutput) {
      const [n, c] = expectRank(x, 4, 'batchNorm2dBackward') as [number, number, number, number];
      return normalizeBackward('batchNorm2dBackward', dy, x, weight, eps, reluOutput, { groups: c, segments: n });
    },

    reflectionPad2dBackward(dy, xShape, pad) {
      const [n, c, h, wd] = xShape as [number, number, number, number];
      checkReflectionPad(h, wd, pad);
      checkGradShape(dy, [n, c, h + 2 * pad, wd + 2 * pad], 'reflectionPad2dBackward');
      const up: Uploads = [];
      const dx = output(xShape);
      run(up, elementwise('reflectionPadBackward', dx.size, [h, wd, pad], [buf(dy, up), outBuf(dx)]));
      return dx;
    },

    upsampleNearest2dBackward(dy, factor) {
      const [n, c, ho, wo] = expectRank(dy, 4, 'upsampleNearest2dBackward') as [number, number, number, number];
      if (!Number.isInteger(factor) || factor < 1 || ho % factor !== 0 || wo % factor !== 0) {
        throw new PasticheError(`upsampleNearest2dBackward: a ${ho}x${wo} gradient is not a whole factor ${factor} of an input`);
      }
      const up: Uploads = [];
      const dx = output([n, c, ho / factor, wo / factor]);
      run(up, elementwise('upsampleNearestBackward', dx.size, [ho / factor, wo / factor, factor], [buf(dy, up), outBuf(dx)]));
      return dx;
    },

    upsampleNearest2d(x, factor) {
      const [n, c, h, wd] = expectRank(x, 4, 'upsampleNearest2d') as [number, number, number, number];
      if (!Number.isInteger(factor) || factor < 1) throw new PasticheError(`upsampleNearest2d: the factor must be a whole number of at least 1 (got ${factor})`);
      const up: Uploads = [];
      const y = output([n, c, h * factor, wd * factor]);
      run(up, elementwise('upsampleNearest', y.size, [h, wd, factor], [buf(x, up), outBuf(y)]));
      return y;
    },

    relu(x) {
      const up: Uploads = [];
      const y = output(x.shape);
      run(up, elementwise('relu', x.size, [], [buf(x, up), outBuf(y)]));
      return y;
    },

    reluBackward(dy, x, inPlace = false) {
      checkGradShape(dy, x.shape, 'reluBackward');
      const up: Uploads = [];
      if (inPlace && dy.storage instanceof GpuStorage) {
        run(up, elementwise('reluBackwardInPlace', x.size, [], [dy.storage.buffer, buf(x, up)]));
        return dy;
      }
      const dx = output(x.shape);
      run(up, elementwise('reluBackward', x.size, [], [buf(dy, up), buf(x, up), outBuf(dx)]));
      return dx;
    },

    addScaled(a, b, alpha) {
      checkGradShape(b, a.shape, 'addScaled');
      const up: Uploads = [];
      const y = output(a.shape);
      run(up, elementwise('addScaled', a.size, [f32Bits(alpha)], [buf(a, up), buf(b, up), outBuf(y)]));
      return y;
    },

    scale(x, alpha) {
      const up: Uploads = [];
      const y = output(x.shape);
      run(up, elementwise('scale', x.size, [f32Bits(alpha)], [buf(x, up), outBuf(y)]));
      return y;
    },

    sumOfSquares(x) {
      const up: Uploads = [];
      const out = output([1]);
      const groups = Math.max(1, Math.min(1024, Math.ceil(x.size / 4096)));
      const partial = pool.take(groups * 4);
      up.push(partial);
      const k = KERNELS.sumPartials;
      const stage = (params: number[], buffers: GPUBuffer[], g: number): Dispatch => ({ key: 'sumPartials', code: k.code, bindings: k.bindings, params, buffers, groups: [g, 1, 1] });
      run(up, stage([x.size, 1], [buf(x, up), partial], groups), stage([groups, 0], [partial, outBuf(out)], 1));
      return out;
    },

    // The optimiser's vectors are on the host.
    ...hostVectorOps,
    ...matmulChannelOps,

    flattenNhwc(x) {
      const [n, c, h, wd] = expectRank(x, 4, 'flatten') as [number, number, number, number];
      const up: Uploads = [];
      const y = output([n, c * h * wd]);
      run(up, elementwise('flattenNhwc', y.size, [c, h * wd], [buf(x, up), outBuf(y)]));
      return y;
    },

    flattenNhwcBackward(dy, xShape) {
      const [n, c, h, wd] = xShape as [number, number, number, number];
      checkGradShape(dy, [n, c * h * wd], 'flattenNhwcBackward');
      const up: Uploads = [];
      const dx = output(xShape);
      run(up, elementwise('flattenNhwcBackward', dx.size, [c, h * wd], [buf(dy, up), outBuf(dx)]));
      return dx;
    },

    softmax(logits) {
      const [n, k] = expectRank(logits, 2, 'softmax') as [number, number];
      const up: Uploads = [];
      const y = output(logits.shape);
      const kk = KERNELS.softmax;
      run(up, { key: 'softmax', code: kk.code, bindings: kk.bindings, params: [k], buffers: [buf(logits, up), outBuf(y)], groups: [n, 1, 1] });
      return y;
    },

    crossEntropy(prob, labels) {
      const [n, k] = checkLabels(prob, labels);
      const up: Uploads = [];
      const loss = output([1]);
      const kk = KERNELS.crossEntropy;
      run(up, { key: 'crossEntropy', code: kk.code, bindings: kk.bindings, params: [n, k], buffers: [buf(prob, up), upload(labels, up), outBuf(loss)], groups: [1, 1, 1] });
      return loss;
    },

    softmaxCrossEntropyBackward(prob, labels) {
      const [n, k] = checkLabels(prob, labels);
      const up: Uploads = [];
      const d = output(prob.shape);
      run(up, elementwise('softmaxCrossEntropyBackward', prob.size, [n, k], [buf(prob, up), upload(labels, up), outBuf(d)]));
      return d;
    },
  };
  return be;
}
