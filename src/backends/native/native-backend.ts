/**
 * `native`: the Node-API C++ addon (native/src): packed SGEMM with AVX2/FMA 6x16 and AVX-512 6x32
 * micro-kernels on a persistent thread pool, Winograd F(4x4,3x3) and F(6x6,3x3) for 3x3 stride-1
 * convolutions (forward and backward-to-data, with bias + ReLU or the ReLU backward fused in), a
 * direct kernel for 3-channel inputs, im2col + GEMM for other shapes and the weight gradient.
 * TypeScript validates shapes, allocates outputs and decides the algorithm; the addon computes into
 * the outputs, which come uninitialised from the host pool (every kernel here writes all of its
 * output; the tests poison the pool with NaN to hold them to it).
 */
import { convWork, fcWork } from '../conv-work.js';
import { PasticheError } from '../../errors.js';
import { newHostArray } from '../../tensor/host-pool.js';
import { NCHW16C } from '../../tensor/channel-blocked.js';
import { Tensor, expectRank, type Shape } from '../../tensor/tensor.js';
import type { Backend, Conv2dForwardParams, Conv2dParams, ConvPass, ConvWork, GradientEpilogue, LinearGradients, NormGradients, ParamGradients, Pool2dParams } from '../backend.js';
import { checkSweep } from '../host-vectors.js';
import { channelMatrix, commonOps, conv2dInSteps, conv2dThenMaxPool, linearBackwardByMatmul, matmulChannelOps } from '../common-ops.js';
import {
  applyEpilogue,
  checkBias,
  checkChannelParams,
  checkReflectionPad,
  checkEpilogue,
  checkGradShape,
  convGeometry,
  linearGeometry,
  matmulGeometry,
  poolGeometry,
  type ConvGeometry,
} from '../shapes.js';
import { X_BLOCKED, Y_BLOCKED, type NativeAddon, type NativePrecision, type WinogradTile } from './native-addon.js';
import { backwardDataWinogradTile, winogradTile, type ConvAlgorithm } from './winograd-tile.js';

export { winogradTile, type ConvAlgorithm };

/**
 * The direct kernels for few input channels (3x3, stride 1, pad 1, cin <= 4: VGG19's conv1_1 on the
 * image), forward and gradient to the data, where im2col + GEMM would spend its time on a 27-row
 * column matrix.
 */
function useDirect(algo: ConvAlgorithm, k: number, stride: number, pad: number, channelsIn: number): boolean {
  return (algo === 'auto' || algo === 'direct') && k === 3 && stride === 1 && pad === 1 && channelsIn <= 4;
}

/**
 * The direct kernel for larger kernels (k >= 5, stride 1) with few input or output channels: the
 * style network's 9x9 layers, 3 -> 32 and 32 -> 3, where im2col builds a column matrix of Cin*K*K
 * rows for a GEMM with 3 rows or a K of 243. Measured at 512x512 (`node` on the layers alone): the
 * 32 -> 3 layer 627 ms through im2col (7 GFLOP/s).
 */
function useDirectLarge(algo: ConvAlgorithm, k: number, stride: number, channelsIn: number, channelsOut: number): boolean {
  return (algo === 'auto' || algo === 'direct') && k >= 5 && stride === 1 && Math.min(channelsIn, channelsOut) <= 8;
}

export interface NativeBackend extends Backend {
  readonly addon: NativeAddon;
  /** 'bf16': the GEMMs' operands rounded to bfloat16, sums in fp32 (NativeAddon.precision). */
  readonly precision: NativePrecision;
  /** Forces a convolution algorithm (for tests and benchmarks). */
  convAlgorithm: ConvAlgorithm;
}

/** The precision this JavaScript thread last gave the addon (each worker thread has its own, as the addon does). */
let addonPrecision: NativePrecision = 'fp32';

/**
 * The addon as a backend of one precision sees it: every call first makes sure the addon runs this
 * thread's calls at that precision (one cheap call when it changes: an fp32 and a bf16 backend may
 * take turns, as `check --precision bf16` does).
 */
function atPrecision(raw: NativeAddon, precision: NativePrecision): NativeAddon {
  if (!raw.cpuHasBf16 && precision === 'bf16') throw new PasticheError('--precision bf16 needs a CPU with AVX512-BF16 (vdpbf16ps); this one has none: use fp32');
  return new Proxy(raw, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver) as unknown;
      if (typeof v !== 'function' || key === 'precision') return v;
      return (...args: unknown[]) => {
        if (addonPrecision !== precision) {
          target.precision(precision);
          addonPrecision = precision;
        }
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/**
 * `make(w)` computed once per weight array and kept while the array lives: the Backend contract
 * says weights are not modified in place, so a derived copy (rounded, transformed, rotated) stays
 * valid. Keyed by the array: a reshaped view of the same data shares its copy.
 */
function perWeights<T>(make: (w: Tensor) => T): (w: Tensor) => T {
  const cache = new WeakMap<Float32Array, T>();
  return (w) => {
    let r = cache.get(w.data);
    if (r === undefined) cache.set(w.data, (r = make(w)));
    return r;
  };
}

/**
 * perWeights kept from a weight array's second use on: its first use gets `once(w)` (a copy that
 * is not kept), its second `keep(w)`, kept as perWeights keeps it. A single pass over a network
 * then keeps no copies, and a run of many passes makes each once more, in its second.
 */
function fromSecondUse<T extends object>(once: (w: Tensor) => T, keep: (w: Tensor) => T): (w: Tensor) => T {
  const cache = new WeakMap<Float32Array, T | null>(); // null: used once
  return (w) => {
    const known = cache.get(w.data);
    if (known) return known;
    if (known === undefined) {
      cache.set(w.data, null);
      return once(w);
    }
    const kept = keep(w);
    cache.set(w.data, kept);
    return kept;
  };
}

const isPool2x2 = (p: Pool2dParams): boolean => p.kernel === 2 && p.stride === 2 && p.pad === 0;

export function createNativeBackend(rawAddon: NativeAddon, precision: NativePrecision = 'fp32'): NativeBackend {
  const addon = atPrecision(rawAddon, precision);
  // --precision bf16: the operands of every product (convolutions, fully connected layers, matmul)
  // are bfloat16, the sums fp32. The addon rounds the activations where its kernels copy them anyway
  // (the GEMMs' packing for vdpbf16ps, the padded rows of Winograd and the direct kernels), and the
  // weights are rounded here, once per array. Winograd and the direct kernels multiply in fp32:
  // Winograd's transformed tiles in bf16 were 7-9% of the output's range off (F(4x4) and F(6x6)).
  // A convolution that reads an image (at most 4 channels) keeps fp32 operands, as quantised
  // networks keep their first layer: bf16's spacing at a pixel value of 128 is 0.5, and the small
  // steps of an optimisation on the image vanished (the first L-BFGS iterations of a style transfer
  // left the loss unchanged). Those layers run the fp32 direct kernel in either precision.
  const bf16 = precision === 'bf16';
  const roundsConv = (cin: number) => bf16 && cin > 4;
  const fp32Addon = bf16 ? atPrecision(rawAddon, 'fp32') : addon;
  const convAddon = (cin: number) => (roundsConv(cin) ? addon : fp32Addon);
  // The fully connected layers' weights under bf16: a weight array's first pass rounds its fp32 rows
  // as it reads them; from its second the array is kept as bf16 bits, half the bytes a pass.
  // Converting VGG19's 495 MB up front took ~400 ms (the file's pages first touched, 247 MB of fresh
  // memory): `classify --precision bf16` of one image 1.17-1.19 -> 0.68-0.75 s (fp32 0.67-0.82), 1053
  // -> 749 MiB peak.
  const linearWeights = fromSecondUse<Uint16Array | Float32Array>(
    (w) => w.data,
    (w) => {
      const bits = new Uint16Array(w.size);
      addon.toBf16Bits(w.data, bits);
      return bits;
    },
  );
  // Rounded copies of the weights for the kernels that multiply them as they are given (im2col,
  // the direct ones); Winograd's transforms round them on the way instead (winogradWeights).
  const roundedOf = perWeights((w) => {
    const r = new Float32Array(w.size);
    addon.roundBf16(w.data, r);
    return r;
  });
  const weightsOf = (w: Tensor, on = bf16): Tensor => (on ? new Tensor(w.shape, roundedOf(w)) : w);
  // Transformed weights for the forward pass and for the gradient to the data, per direction and
  // tile. A weight array's first transform goes into one scratch buffer that every layer shares,
  // its second into a buffer of its own, kept. A single pass then maps one layer's transform
  // instead of all of them (VGG19's are 352 MB, and on this project's VMs first touches of fresh
  // memory are slow): `classify` of one image with the full-size file 1057-1062 -> 738-741 MiB peak,
  // 0.91-0.96 -> 0.74-0.76 s; a training step, whose style network's weights are new arrays every
  // step, reuses the scratch instead of mapping fresh buffers: `train-style --preset quick` 30 steps
  // 8.7 -> 7.8 s, 1780-1783 -> 1415-1446 MiB (the two builds alternating, the same model bits).
  // A run of many passes transforms each array once more, in its second pass. The scratch is given
  // back before the first kept transform is made, so the two never add up: the memory plan's count
  // of kept transforms still bounds them.
  // One per direction, tile and rounding of the weights.
  const transforms = new Map<string, (w: Tensor) => Float32Array>();
  let scratch: { buffer: ArrayBuffer | null; array: Float32Array } | undefined;
  const hugeArray = (size: number) => {
    const buffer = addon.hugeBuffer(size);
    return { buffer, array: buffer ? new Float32Array(buffer) : newHostArray(size) };
  };
  const releaseScratch = () => {
    if (scratch?.buffer) addon.releaseHugeBuffer(scratch.buffer);
    scratch = undefined;
  };
  const winogradWeights = (w: Tensor, rotate: boolean, tile: WinogradTile, c16: boolean, round: boolean): Float32Array => {
    const key = `${rotate}-${tile}-${c16}-${round}`;
    let of = transforms.get(key);
    if (!of) {
      // The transform into the buffer `into` gives for its size.
      const transform = (wt: Tensor, into: (size: number) => Float32Array) => {
        const [cin, , , cout] = wt.shape as [number, number, number, number];
        const u = into(rotate ? addon.winogradWeightsSize(cout, cin, tile) : addon.winogradWeightsSize(cin, cout, tile));
        addon.winogradWeights(wt.data, cin, cout, rotate, tile, u, c16, round);
        return u;
      };
      of = fromSecondUse(
        // Valid until the next transform: the callers hand it to the addon at once.
        (wt) =>
          transform(wt, (size) => {
            if (!scratch || scratch.array.length < size) {
              releaseScratch();
              scratch = hugeArray(size);
            }
            return scratch.array.subarray(0, size);
          }),
        (wt) =>
          transform(wt, (size) => {
            releaseScratch();
            return hugeArray(size).array;
          }),
      );
      transforms.set(key, of);
    }
    return of(w);
  };
  const backwardDataTile = (g: ConvGeometry, p: Conv2dParams): WinogradTile | 0 =>
    backwardDataWinogradTile(be.convAlgorithm, g.k, p.stride, p.pad, g.cin, g.cout, g.h, g.w, p.leanWeights);
  // The gradient to the data as a direct convolution: dy correlated with the kernel turned by 180
  // degrees, Cin and Cout swapped ([Cout, K, K, Cin]), padding K - 1 - pad; cached per weight array.
  const rotatedWeights = perWeights((w) => {
    const [cin, k, , cout] = w.shape as [number, number, number, number];
    const r = new Float32Array(w.size);
    for (let ci = 0; ci < cin; ci++)
      for (let kh = 0; kh < k; kh++)
        for (let kw = 0; kw < k; kw++)
          for (let co = 0; co < cout; co++) r[((co * k + (k - 1 - kh)) * k + (k - 1 - kw)) * cin + ci] = w.data[((ci * k + kh) * k + kw) * cout + co]!;
    return r;
  });

  // Whether the addon runs a forward Winograd tile on these channels channel-blocked.
  const channelBlocked = (g: ConvGeometry) => (m: WinogradTile) => addon.winogradC16(g.cin, g.cout, m);
  // The Winograd tile conv2d runs these shapes with, 0 where it takes another kernel.
  const forwardTile = (g: ConvGeometry, p: Conv2dForwardParams): WinogradTile | 0 => {
    if (useDirectLarge(be.convAlgorithm, g.k, p.stride, g.cin, g.cout)) return 0;
    if (useDirect(be.convAlgorithm, g.k, p.stride, p.pad, g.cin) && p.padding !== 'reflect' && (p.upsample ?? 1) === 1) return 0;
    return winogradTile(be.convAlgorithm, g.k, p.stride, p.pad, g.cin, g.cout, g.ho, g.wo, channelBlocked(g), p.leanWeights);
  };

  // The arrays of a forward Winograd call: on the channel-blocked path, x's nChw16c array where it
  // holds one (not with a mirrored border or upsampling, which only the NCHW rows are read with),
  // and the output made nChw16c where the caller leaves its layout to us (p.ownLayout).
  const blockedOperands = (x: Tensor, yShape: Shape, g: ConvGeometry, p: Conv2dForwardParams, tile: WinogradTile | 0) => {
    const c16 = tile !== 0 && channelBlocked(g)(tile);
    const xb = c16 && p.padding !== 'reflect' && (p.upsample ?? 1) === 1 ? x.arrayIn(NCHW16C) : undefined;
    const output = c16 && p.ownLayout ? Tensor.uninitializedIn(NCHW16C, yShape) : Tensor.uninitialized(yShape);
    const yb = output.arrayIn(NCHW16C);
    return { x: xb ?? x.data, output, y: yb ?? output.data, blocked: (xb ? X_BLOCKED : 0) | (yb ? Y_BLOCKED : 0) };
  };

  const be: NativeBackend = {
    ...commonOps,
    name: 'native',
    description: `C++ addon: AVX2/FMA GEMM, Winograd F(4x4,3x3) and F(6x6,3x3) (channel-blocked with AVX-512), thread pool${precision === 'bf16' ? '; bf16 products (AVX512-BF16), fp32 sums' : ''}`,
    maxTensorBytes: Infinity,
    addon,
    precision,
    convAlgorithm: 'auto',

    conv2dWork(xShape: Shape, wShape: Shape, p: Conv2dParams, pass: ConvPass = 'forward', ownLayout = false): ConvWork {
      const g = convGeometry(xShape, wShape, p);
      if (useDirect(be.convAlgorithm, g.k, p.stride, p.pad, g.cin)) return convWork(xShape, wShape, p, { kind: 'direct' }, pass);
      if (useDirectLarge(be.convAlgorithm, g.k, p.stride, g.cin, g.cout) && (pass === 'forward' || p.pad <= g.k - 1)) return convWork(xShape, wShape, p, { kind: 'direct' }, pass);
      const tile = pass === 'forward' ? winogradTile(be.convAlgorithm, g.k, p.stride, p.pad, g.cin, g.cout, g.ho, g.wo, channelBlocked(g), p.leanWeights) : backwardDataTile(g, p);
      const c16 = tile !== 0 && (pass === 'forward' ? channelBlocked(g)(tile) : ownLayout && addon.winogradC16(g.cout, g.cin, tile));
      return convWork(xShape, wShape, p, tile ? { kind: 'winograd', m: tile, c16 } : { kind: 'im2col' }, pass);
    },

    // A few rows of x (and every bf16 call) go to linear_streamed, which skips the weight rows of
    // zero inputs; more rows to sgemm, which reads them all. bf16 weights are 2 bytes.
    linearWork(xShape: Shape, wShape: Shape, zeroInputs: number): ConvWork {
      const streamed = bf16 || xShape[0]! <= 4;
      return fcWork(xShape, wShape, streamed ? wShape[0]! - zeroInputs : wShape[0]!, bf16 ? 2 : 4);
    },

    // A mirrored border is filled where the direct and Winograd kernels copy their input planes
    // anyway (the style network's separate padding pass cost ~5% of its 512x512 forward, `perf`),
    // and Winograd reads a nearest upsampling there too; otherwise the steps run one by one.
    conv2d(x: Tensor, w0: Tensor, b: Tensor, p: Conv2dForwardParams, relu = false): Tensor {
      const g = convGeometry(x.shape, w0.shape, p);
      checkBias(b, g.cout, 'conv2d');
      const [rounds, ad] = [roundsConv(g.cin), convAddon(g.cin)];
      const reflect = p.padding === 'reflect';
      const up = p.upsample ?? 1;
      const large = useDirectLarge(be.convAlgorithm, g.k, p.stride, g.cin, g.cout);
      const tile = forwardTile(g, p);
      if ((reflect && !large && !tile) || (up > 1 && !tile)) return conv2dInSteps(be, x, w0, b, p, relu);
      const yShape = [g.n, g.cout, g.ho, g.wo];
      if (useDirect(be.convAlgorithm, g.k, p.stride, p.pad, g.cin) && !reflect && up === 1) {
        // nChw16c where a channel-blocked convolution could read it next (VGG19's conv1_2).
        const blocked = p.ownLayout === true && addon.winogradC16(g.cout, 16, 4);
        const y = blocked ? Tensor.uninitializedIn(NCHW16C, yShape) : Tensor.uninitialized(yShape);
        ad.conv2dSmallCin(x.data, g.n, g.cin, g.h, g.w, weightsOf(w0, rounds).data, g.cout, b.data, relu, y.arrayIn(NCHW16C) ?? y.data, blocked);
        return y;
      }
      if (large) {
        const y = Tensor.uninitialized(yShape);
        ad.conv2dDirect(x.data, g.n, g.cin, g.h, g.w, weightsOf(w0, rounds).data, g.cout, g.k, p.pad, reflect, b.data, relu, y.data);
        return y;
      }
      // With Winograd's transform the kernel reads no other weights.
      const wino = tile ? winogradWeights(w0, false, tile, false, rounds) : null;
      const o = blockedOperands(x, yShape, g, p, tile);
      ad.conv2d(o.x, g.n, g.cin, g.h, g.w, wino ? w0.data : weightsOf(w0, rounds).data, g.cout, g.k, p.pad, p.stride, b.data, relu, o.y, wino, tile || 4, reflect, up, false, o.blocked);
      return o.output;
    },

    // A 2x2 stride-2 max-pool is taken in Winograd's output stage, from the 8 tiles it has just
    // transformed, so the convolution's whole output is never written nor read back.
    conv2dMaxPool(x: Tensor, w0: Tensor, b: Tensor, p: Conv2dForwardParams, relu: boolean, pool: Pool2dParams): Tensor {
      const g = convGeometry(x.shape, w0.shape, p);
      checkBias(b, g.cout, 'conv2dMaxPool');
      const q = poolGeometry([g.n, g.cout, g.ho, g.wo], pool);
      const tile = forwardTile(g, p);
      if (!tile || !isPool2x2(pool)) return conv2dThenMaxPool(be, x, w0, b, p, relu, pool);
      const o = blockedOperands(x, [q.n, q.c, q.ho, q.wo], g, p, tile);
      const wino = winogradWeights(w0, false, tile, false, roundsConv(g.cin));
      convAddon(g.cin).conv2d(o.x, g.n, g.cin, g.h, g.w, w0.data, g.cout, g.k, p.pad, p.stride, b.data, relu, o.y, wino, tile,
        p.padding === 'reflect', p.upsample ?? 1, true, o.blocked);
      return o.output;
    },

    conv2dBackwardData(dy: Tensor, w0: Tensor, xShape: Shape, p: Conv2dParams, epilogue?: GradientEpilogue, ownLayout = false): Tensor {
      const g = convGeometry(xShape, w0.shape, p);
      checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardData');
      checkEpilogue(xShape, epilogue);
      const [rounds, ad] = [roundsConv(g.cin), convAddon(g.cin)];
      if (useDirect(be.convAlgorithm, g.k, p.stride, p.pad, g.cin)) {
        // An nChw16c dy (VGG19's gradient to relu1_1) read as it is.
        const dyb = dy.arrayIn(NCHW16C);
        const dx = Tensor.uninitialized(xShape);
        ad.conv2dBackwardDataSmallCin(dyb ?? dy.data, g.n, g.cin, g.h, g.w, rotatedWeights(weightsOf(w0, rounds)), g.cout, dx.data, dyb !== undefined);
        if (epilogue) applyEpilogue(dx, epilogue);
        return dx;
      }
      if (useDirectLarge(be.convAlgorithm, g.k, p.stride, g.cin, g.cout) && p.pad <= g.k - 1) {
        const dx = Tensor.uninitialized(xShape);
        ad.conv2dDirect(dy.data, g.n, g.cout, g.ho, g.wo, rotatedWeights(weightsOf(w0, rounds)), g.cin, g.k, g.k - 1 - p.pad, false, new Float32Array(g.cin), false, dx.data);
        if (epilogue) applyEpilogue(dx, epilogue);
        return dx;
      }
      const tile = backwardDataTile(g, p);
      // The channel-blocked path (where the forward from cout to cin channels would take it) where
      // dy is nChw16c, read as it is, or dx may be made so (with an epilogue, where its operands
      // are nChw16c too). Between NCHW tensors the 8-lane path stays: with the epilogue it was the
      // faster at 64 channels 512 px (29.0-30.1 against 31.2-33.7 ms), within 5% elsewhere.
      // Measured per layer of a 512 px style iteration's gradient (`node` on this op, two builds
      // alternating): nChw16c dy 64 ch 28.4-28.9 against 30.0-30.1 ms, 128 ch 19.2-19.3 against
      // 20.8-20.9, 256 ch 14.2-15.3 against 15.3-15.7; an nChw16c dx 128 -> 64 ch 10.2-10.4
      // against 10.8-11.0, 256 -> 128 8.3 against 8.8-9.0, 512 -> 256 7.3-7.7 against 7.9-8.4.
      const blockedDy = dy.arrayIn(NCHW16C);
      // The epilogue's operands all nChw16c (or none): then dx may be so too.
      const blockedEpilogue = [epilogue?.add, epilogue?.reluMask].every((t) => !t || t.arrayIn(NCHW16C));
      const blockedDx = ownLayout && blockedEpilogue;
      const c16 = tile !== 0 && addon.winogradC16(g.cout, g.cin, tile) && (blockedDy !== undefined || blockedDx);
      const wino = tile ? winogradWeights(w0, true, tile, c16, rounds) : null;
      const dyb = c16 ? blockedDy : undefined;
      const dx = c16 && blockedDx ? Tensor.uninitializedIn(NCHW16C, xShape) : Tensor.uninitialized(xShape);
      const dxb = dx.arrayIn(NCHW16C);
      const operand = (t?: Tensor) => (t ? (dxb ? t.arrayIn(NCHW16C)! : t.data) : null);
      ad.conv2dBackwardData(dyb ?? dy.data, g.n, g.cin, g.h, g.w, wino ? w0.data : weightsOf(w0, rounds).data, g.cout, g.k, p.pad, p.stride, dxb ?? dx.data, wino, tile || 4,
        operand(epilogue?.add), operand(epilogue?.reluMask), c16, (dyb ? X_BLOCKED : 0) | (dxb ? Y_BLOCKED : 0));
      return dx;
    },

    conv2dBackwardParams(dy: Tensor, x: Tensor, kernel: number, p: Conv2dParams): ParamGradients {
      const cout = dy.shape[1] ?? 0;
      const g = convGeometry(x.shape, [x.shape[1] ?? 0, kernel, kernel, cout], p);
      checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardParams');
      const ad = convAddon(g.cin);
      const dw = Tensor.uninitialized([g.cin, g.k, g.k, g.cout]);
      const db = Tensor.uninitialized([g.cout]);
      ad.conv2dBackwardParams(dy.data, x.data, g.n, g.cin, g.h, g.w, g.cout, g.k, p.pad, p.stride, dw.data, db.data);
      return { dw, db };
    },

    // Vectorised and over threads: the residual sums of the style network, the losses' differences.
    // The element-wise ops read tensors this backend left channel-blocked as they are, and write
    // theirs so: the content loss of features captured that way (stylize.ts) never converts them.
    addScaled(a: Tensor, b: Tensor, alpha: number): Tensor {
      checkGradShape(b, a.shape, 'addScaled');
      const [ab, bb] = [a.arrayIn(NCHW16C), b.arrayIn(NCHW16C)];
      const y = ab && bb ? Tensor.uninitializedIn(NCHW16C, a.shape) : Tensor.uninitialized(a.shape);
      addon.addScaled(ab && bb ? ab : a.data, ab && bb ? bb : b.data, alpha, y.arrayIn(NCHW16C) ?? y.data);
      return y;
    },

    // The style losses' gradients and sums: in the shared TypeScript (fresh arrays, scalar loops)
    // scaling relu1_1's 16.7M-float gradient at 512 px took 85 ms against 2.7 here, and the losses
    // of a 512 px step 142-147 ms against 83-86 with the Gram matrices below (`node` on the ops).
    scale(x: Tensor, alpha: number): Tensor {
      const xb = x.arrayIn(NCHW16C);
      const y = xb ? Tensor.uninitializedIn(NCHW16C, x.shape) : Tensor.uninitialized(x.shape);
      addon.scale(xb ?? x.data, alpha, y.arrayIn(NCHW16C) ?? y.data);
      return y;
    },

    sumOfSquares(x: Tensor): Tensor {
      return Tensor.from([1], [addon.sumOfSquares(x.arrayIn(NCHW16C) ?? x.data)]);
    },

    // The style losses' products from features the forward pass left channel-blocked, read as they
    // are (the others through matmul, which converts them to NCHW first); under bf16 the addon
    // rounds their operands as it reads them.
    gram(f: Tensor): Tensor {
      const fb = f.arrayIn(NCHW16C);
      if (!fb) return matmulChannelOps.gram.call(be, f);
      const [c, hw] = channelMatrix(f, 'gram');
      const g = Tensor.uninitialized([c, c]);
      addon.gramC16(fb, c, hw, g.data);
      return g;
    },

    mixChannels(d: Tensor, f: Tensor): Tensor {
      const fb = f.arrayIn(NCHW16C);
      if (!fb) return matmulChannelOps.mixChannels.call(be, d, f);
      const [c, hw] = channelMatrix(f, 'mixChannels');
      checkGradShape(d, [c, c], 'mixChannels');
      const y = Tensor.uninitializedIn(NCHW16C, f.shape);
      addon.mixChannelsC16(d.data, c, fb, hw, y.arrayIn(NCHW16C)!);
      return y;
    },

    // L-BFGS's sweeps over its history: a step of 100 pairs at 512x512 reads it all twice (0.63 GB of
    // floats; in doubles, 1.3 GB took the TypeScript's loops on one thread 170-600 ms).
    sweepF32F64(q: Float64Array, c: readonly number[], v: readonly Float32Array[], scale: number, u: readonly Float32Array[]): number[] {
      checkSweep(q, c, v, u);
      return addon.sweepF32F64(q, c, v, scale, u);
    },

    // Padding and upsampling copy rows in C++, planes over threads (64 and 20 ms of a 512x512 pass
    // of the style network in the shared TypeScript).
    reflectionPad2d(x: Tensor, pad: number): Tensor {
      const [n, c, h, w] = expectRank(x, 4, 'reflectionPad2d') as [number, number, number, number];
      checkReflectionPad(h, w, pad);
      const y = Tensor.uninitialized([n, c, h + 2 * pad, w + 2 * pad]);
      addon.reflectionPad(x.data, n * c, h, w, pad, y.data);
      return y;
    },

    upsampleNearest2d(x: Tensor, factor: number): Tensor {
      const [n, c, h, w] = expectRank(x, 4, 'upsampleNearest2d') as [number, number, number, number];
      if (!Number.isInteger(factor) || factor < 1) throw new PasticheError(`upsampleNearest2d: the factor must be a whole number of at least 1 (got ${factor})`);
      const y = Tensor.uninitialized([n, c, h * factor, w * factor]);
      addon.upsampleNearest(x.data, n * c, h, w, factor, y.data);
      return y;
    },

    // Instance norm in C++, planes over threads: the shared TypeScript version took 384 of the
    // 765 ms of a 512x512 pass of the style network (measured per op).
    instanceNorm2d(x: Tensor, weight: Tensor, bias: Tensor, eps: number, relu = false): Tensor {
      const [n, c, h, w] = expectRank(x, 4, 'instanceNorm2d') as [number, number, number, number];
      checkChannelParams(weight, bias, c, 'instanceNorm2d');
      const y = Tensor.uninitialized(x.shape);
      addon.instanceNorm(x.data, n, c, h * w, weight.data, bias.data, eps, relu, y.data);
      return y;
    },

    instanceNorm2dBackward(dy: Tensor, x: Tensor, weight: Tensor, eps: number, reluOutput?: Tensor): NormGradients {
      const [n, c, h, w] = expectRank(x, 4, 'instanceNorm2dBackward') as [number, number, number, number];
      checkGradShape(dy, x.shape, 'instanceNorm2dBackward');
      if (reluOutput) checkGradShape(reluOutput, x.shape, 'instanceNorm2dBackward (the ReLU output)');
      if (weight.size !== c) throw new PasticheError(`instanceNorm2dBackward: ${c} channels but ${weight.size} weights`);
      const [dx, dw, db] = [Tensor.uninitialized(x.shape), Tensor.uninitialized([c]), Tensor.uninitialized([c])];
      addon.instanceNormBackward(dy.data, x.data, reluOutput?.data ?? null, n, c, h * w, weight.data, eps, dx.data, dw.data, db.data);
      return { dx, dw, db };
    },

    // An nChw16c x (a convolution's output kept so in a training pass) is pooled as it is, 2x2
    // windows of stride 2, into nChw16c for the next convolution where the caller leaves the
    // layout to us; likewise its backward, from an nChw16c dy (the gradient to that convolution's
    // input, kept so) to an nChw16c dx for the gradient of the convolution before the pool.
    maxPool2d(x: Tensor, p: Pool2dParams, ownLayout = false): Tensor {
      const g = poolGeometry(x.shape, p);
      const xb = isPool2x2(p) ? x.arrayIn(NCHW16C) : undefined;
      if (xb && ownLayout) {
        const y = Tensor.uninitializedIn(NCHW16C, [g.n, g.c, g.ho, g.wo]);
        addon.maxPool2dC16(xb, g.n, g.c, g.h, g.w, y.arrayIn(NCHW16C)!);
        return y;
      }
      const y = Tensor.uninitialized([g.n, g.c, g.ho, g.wo]);
      addon.maxPool2d(x.data, g.n * g.c, g.h, g.w, p.kernel, p.stride, p.pad, y.data, g.ho, g.wo);
      return y;
    },

    maxPool2dBackward(dy: Tensor, x: Tensor, p: Pool2dParams, reluMask = false, ownLayout = false): Tensor {
      const g = poolGeometry(x.shape, p);
      checkGradShape(dy, [g.n, g.c, g.ho, g.wo], 'maxPool2dBackward');
      const xb = isPool2x2(p) ? x.arrayIn(NCHW16C) : undefined;
      const dyb = dy.arrayIn(NCHW16C);
      if (xb && dyb && ownLayout) {
        const dx = Tensor.uninitializedIn(NCHW16C, x.shape);
        addon.maxPool2dC16Backward(dyb, xb, g.n, g.c, g.h, g.w, dx.arrayIn(NCHW16C)!, reluMask);
        return dx;
      }
      const dx = Tensor.uninitialized(x.shape);
      addon.maxPool2dBackward(dy.data, x.data, g.n * g.c, g.h, g.w, p.kernel, p.stride, p.pad, dx.data, g.ho, g.wo, reluMask);
      return dx;
    },

    matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
      const { m, n, k } = matmulGeometry(a, b, transA, transB);
      const c = Tensor.uninitialized([m, n]);
      // A times its own transpose (the style losses' Gram matrices) is symmetric.
      if (a === b && !transA && transB) {
        addon.gram(a.data, m, k, c.data);
        return c;
      }
      addon.sgemm(m, n, k, a.data, 0, a.shape[1]!, transA, b.data, 0, b.shape[1]!, transB, c.data, 0, n, false);
      return c;
    },

    // bf16: the weights kept as bf16 bits, the only copy this backend makes of them: these layers
    // stream their weights from memory, and half the bytes is where bf16 pays on a CPU.
    linear(x: Tensor, w: Tensor, b: Tensor): Tensor {
      const { m, n, k } = linearGeometry(x, w, b);
      const y = Tensor.uninitialized([m, n]);
      if (bf16) addon.linearBf16(x.data, m, k, linearWeights(w), n, b.data, y.data);
      else addon.linear(x.data, m, k, w.data, n, b.data, y.data);
      return y;
    },

    linearBackward(dy: Tensor, x: Tensor, w: Tensor): LinearGradients {
      return linearBackwardByMatmul(be, dy, x, w);
    },

    flattenNhwc(x: Tensor): Tensor {
      const [n, c, h, w] = expectRank(x, 4, 'flatten') as [number, number, number, number];
      const y = Tensor.uninitialized([n, h * w * c]);
      addon.channelsLast(x.data, n, c, h * w, y.data);
      return y;
    },

    relu(x: Tensor): Tensor {
      const y = Tensor.uninitialized(x.shape);
      addon.relu(x.data, y.data);
      return y;
    },

    reluBackward(dy: Tensor, x: Tensor, inPlace = false): Tensor {
      checkGradShape(dy, x.shape, 'reluBackward');
      const dx = inPlace ? dy : Tensor.uninitialized(x.shape);
      addon.reluBackward(dy.data, x.data, dx.data);
      return dx;
    },
  };
  return be;
}
