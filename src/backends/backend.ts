/**
 * The one interface every compute backend implements completely. Layers call only these methods, so
 * a layer never knows which backend runs it. The op set is closed (the layers of a VGG-style CNN and
 * what style transfer needs), so a typed interface, checked by the compiler, replaces a string-keyed
 * kernel registry.
 *
 * Conventions (the course's, see ../../README.md#conventions):
 * - activations are NCHW float32;
 * - convolution weights are [Cin, kH, kW, Cout] (the course's ConvolutionalLayer layout), biases [Cout];
 * - fully connected weights are [Din, Dout], biases [Dout];
 * - every backward method returns gradients of a scalar loss L given dL/d(output).
 *
 * Every method is synchronous: a CPU backend computes at once; a device backend (webgpu) queues the
 * work and returns tensors that live on the device (`Tensor.storage`), which the next op consumes
 * where they are. Only `await tensor.toHost()` waits. Host tensors passed to a device backend are
 * uploaded; weights are uploaded once and cached (see conv2d).
 */
import type { Shape, Tensor } from '../tensor/tensor.js';

export interface Conv2dParams {
  /** Zero padding added on every side. */
  readonly pad: number;
  readonly stride: number;
  /**
   * Keep what the backend caches of the weights small where it has a choice, at some cost in
   * speed (native: F(4x4) rather than F(6x6) transforms for the 512-channel layers, 4x their
   * weights instead of 7.1x). The memory plan asks for it where the larger ones would cost a run
   * a smaller tile (memory-plan.ts).
   */
  readonly leanWeights?: boolean;
}

/** How a convolution's border is filled: zeros, or the input mirrored at its edges. */
export type ConvPadding = 'zeros' | 'reflect';

/**
 * conv2d's parameters. `padding: 'reflect'` mirrors the input into the border without repeating
 * the edge (PyTorch's ReflectionPad2d in front of an unpadded convolution; pad < H and W);
 * `upsample: f` first repeats every cell f x f times (nearest upsampling; the padding then counts
 * in the upsampled image). The style network pads every convolution so and upsamples before two,
 * and a backend may do it while reading its input instead of as separate passes (native does).
 */
export interface Conv2dForwardParams extends Conv2dParams {
  readonly padding?: ConvPadding;
  readonly upsample?: number;
  /**
   * The output goes on only to this backend's ops that read its own memory layout, so the backend
   * may keep it so (Tensor.layout; native: nChw16c, read by its channel-blocked convolutions, and
   * by its 2x2 max-pool and that pool's backward). Reading its `data` converts it, so this only
   * saves time.
   */
  readonly ownLayout?: boolean;
}

export interface Pool2dParams {
  /** Square window size. */
  readonly kernel: number;
  readonly stride: number;
  /** Padding on every side; padded cells never win the max. */
  readonly pad: number;
}

export interface ParamGradients {
  readonly dw: Tensor;
  readonly db: Tensor;
}

export interface LinearGradients extends ParamGradients {
  readonly dx: Tensor;
}

/** dL/dx, dL/dweight and dL/dbias of a normalisation layer (weights and biases per channel). */
export interface NormGradients extends ParamGradients {
  readonly dx: Tensor;
}

/**
 * Work fused onto a gradient to the data: dx = (dx + add) * (reluMask > 0). It is the backward pass
 * of the ReLU before a convolution (reluMask = that ReLU's output) and of a gradient injected at
 * that ReLU's output (add), done while dx is written instead of in two more passes.
 */
export interface GradientEpilogue {
  readonly add?: Tensor;
  readonly reluMask?: Tensor;
}

export type BackendName = 'loops' | 'ts' | 'native' | 'webgpu';

/** What a convolution costs as a backend runs it (conv2dWork; the model is in conv-work.ts). */
export interface ConvWork {
  /** 'direct', 'implicit GEMM', 'im2col', 'winograd F(4x4)', 'winograd F(6x6)' (' 16c': channel-blocked). */
  readonly algorithm: string;
  /** Floating-point operations executed (2 per multiply-add). */
  readonly flops: number;
  /** Bytes moved to and from memory, estimated. */
  readonly bytes: number;
}

/** The forward convolution, or the gradient to its input (a convolution from Cout back to Cin channels). */
export type ConvPass = 'forward' | 'backward-data';

export interface Backend {
  readonly name: BackendName;
  /** One line for help texts and reports. */
  readonly description: string;
  /**
   * The largest tensor, in bytes, this backend can hold (a GPU's buffer limit; Infinity on the
   * CPU): a tiled style transfer keeps its tiles' activations below it.
   */
  readonly maxTensorBytes: number;

  /**
   * y = conv(x, w) + b, seed eq. 22: x [N,Cin,H,W], w [Cin,K,K,Cout], b [Cout] -> [N,Cout,Ho,Wo];
   * with `relu`, ReLU(y) in the same pass. A backend may cache forms of `w` derived from its data
   * array, so weight arrays must not be modified in place once used (the layers replace them).
   */
  conv2d(x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu?: boolean): Tensor;
  /**
   * The algorithm conv2d (or conv2dBackwardData) uses for these shapes, the operations it executes
   * and the bytes it moves (conv-work.ts); `ownLayout`: the gradient's dy or dx in the backend's
   * own layout (see conv2dBackwardData).
   */
  conv2dWork(xShape: Shape, wShape: Shape, p: Conv2dParams, pass?: ConvPass, ownLayout?: boolean): ConvWork;
  /**
   * What linear(x, w, b) executes for an x of `xShape` whose `zeroInputs` features are zero in
   * every row (after a ReLU, about half of VGG19's fc6 and fc7): a backend may skip their weight rows.
   */
  linearWork(xShape: Shape, wShape: Shape, zeroInputs: number): ConvWork;
  /**
   * dL/dx of conv2d, shaped like the forward input `xShape`, with an optional fused epilogue.
   * `ownLayout`: dx goes on only to ops that read this backend's own layout (see
   * Conv2dForwardParams.ownLayout).
   */
  conv2dBackwardData(dy: Tensor, w: Tensor, xShape: Shape, p: Conv2dParams, epilogue?: GradientEpilogue, ownLayout?: boolean): Tensor;
  /** dL/dw and dL/db of conv2d, summed over the batch. */
  conv2dBackwardParams(dy: Tensor, x: Tensor, kernel: number, p: Conv2dParams): ParamGradients;

  /**
   * maxPool2d(conv2d(x, w, b, p, relu), pool), for a pass that no backward follows (a
   * classification): a backend may pool each output tile while it is in registers and never write
   * the whole convolution output (native's Winograd does for 2x2 stride-2 windows; the others run
   * the two steps, conv2dThenMaxPool, which is also the reference).
   */
  conv2dMaxPool(x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu: boolean, pool: Pool2dParams): Tensor;

  /**
   * Max pooling, seed eq. 23: [N,C,H,W] -> [N,C,Ho,Wo], floor output size. `ownLayout`: the
   * output goes on to this backend's next convolution (see Conv2dForwardParams.ownLayout).
   */
  maxPool2d(x: Tensor, p: Pool2dParams, ownLayout?: boolean): Tensor;
  /**
   * Routes each dy to the first maximum of its window (ties: first in row-major order). With
   * `reluMask`, also the backward of the ReLU whose output x is (VGG's ReLU before each pool):
   * gradients that reach a cell with x <= 0 are dropped, in the same pass. `ownLayout`: dx goes on
   * only to ops that read this backend's own layout (see Conv2dForwardParams.ownLayout).
   */
  maxPool2dBackward(dy: Tensor, x: Tensor, p: Pool2dParams, reluMask?: boolean, ownLayout?: boolean): Tensor;

  /** Average pooling over the cells of each window that lie inside the input (style transfer's option). */
  avgPool2d(x: Tensor, p: Pool2dParams): Tensor;
  /** Spreads each dy evenly over its window's cells. */
  avgPool2dBackward(dy: Tensor, xShape: Shape, p: Pool2dParams): Tensor;

  /** C = op(A) op(B), op = transpose when asked: rank-2 tensors only. */
  matmul(a: Tensor, b: Tensor, transA?: boolean, transB?: boolean): Tensor;
  /**
   * The style losses' products over the channels of one image's features f [1, C, H, W], F its
   * [C, H*W] matrix: the Gram matrix F F^T [C, C] (seed eq. 26), and d^T F for d [C, C], shaped
   * and laid out as f. Both are matmul's; native reads a channel-blocked f as it is (no NCHW copy).
   */
  gram(f: Tensor): Tensor;
  mixChannels(d: Tensor, f: Tensor): Tensor;
  /** Fully connected, seed eq. 5: v = x W + b, x [N,Din], W [Din,Dout]. */
  linear(x: Tensor, w: Tensor, b: Tensor): Tensor;
  /** Seed eqs. 8, 9, 12: dW = x^T dy, db = sum_n dy, dx = dy W^T. */
  linearBackward(dy: Tensor, x: Tensor, w: Tensor): LinearGradients;

  /** Seed eq. 16. */
  relu(x: Tensor): Tensor;
  /**
   * Seed eq. 18: dy where x > 0, else 0 (x may be the ReLU's input or its output). With `inPlace`
   * the result is written over dy, which the caller hands over (large gradients then cost no new
   * memory).
   */
  reluBackward(dy: Tensor, x: Tensor, inPlace?: boolean): Tensor;

  /** [N,C,H,W] -> [N, H*W*C] in NHWC order, so that MatConvNet's fc6 weights line up. */
  flattenNhwc(x: Tensor): Tensor;
  /** The inverse permutation of flattenNhwc, back to `xShape` = [N,C,H,W]. */
  flattenNhwcBackward(dy: Tensor, xShape: Shape): Tensor;

  /**
   * Reflection padding (PyTorch's ReflectionPad2d) by `pad` on every side: [N,C,H,W] ->
   * [N,C,H+2p,W+2p], the border mirrored without repeating the edge: x[-i] = x[i], x[H-1+i] = x[H-1-i];
   * pad < H and pad < W. The real-time style network pads before each convolution with it.
   */
  reflectionPad2d(x: Tensor, pad: number): Tensor;
  /**
   * Instance normalisation (Ulyanov et al. 2016) of every (n, c) plane over its H x W cells:
   * y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c], the variance biased (divided by H W) as
   * PyTorch's InstanceNorm2d computes it; with `relu`, ReLU(y) in the same pass.
   */
  instanceNorm2d(x: Tensor, weight: Tensor, bias: Tensor, eps: number, relu?: boolean): Tensor;
  /**
   * The gradients of instanceNorm2d given dL/dy; `reluOutput` is the forward's output when its ReLU
   * was fused (dy is dropped where it is <= 0). With x^ = (x - mean) r, r = 1 / sqrt(var + eps), per
   * plane: dbias = sum dy, dweight = sum dy x^ (over n, h, w), and
   * dx = weight r (dy - mean(dy) - x^ mean(dy x^)) (means over the plane's H x W cells).
   */
  instanceNorm2dBackward(dy: Tensor, x: Tensor, weight: Tensor, eps: number, reluOutput?: Tensor): NormGradients;
  /**
   * Batch normalisation (Ioffe & Szegedy 2015) with the batch's own statistics, as PyTorch's
   * BatchNorm2d trains: per channel over all N x H x W cells, y = (x - mean) / sqrt(var + eps) *
   * weight[c] + bias[c], the variance biased; with `relu`, ReLU(y). Also returns each channel's mean
   * and biased variance, from which the caller keeps the running statistics (inference then uses
   * channelAffine2d).
   */
  batchNorm2d(x: Tensor, weight: Tensor, bias: Tensor, eps: number, relu?: boolean): { y: Tensor; mean: Tensor; variance: Tensor };
  /** Its gradients: instanceNorm2dBackward's formulas with the sums and means over N x H x W per channel. */
  batchNorm2dBackward(dy: Tensor, x: Tensor, weight: Tensor, eps: number, reluOutput?: Tensor): NormGradients;
  /** The gradient of reflectionPad2d: each padded cell's dy added to the input cell it mirrors. */
  reflectionPad2dBackward(dy: Tensor, xShape: Shape, pad: number): Tensor;
  /**
   * y = x * scale[c] + shift[c] per channel (ReLU(y) with `relu`): a normalisation whose statistics
   * are already known (batch norm's running ones; a tiled instance norm's from the whole image).
   */
  channelAffine2d(x: Tensor, scale: Tensor, shift: Tensor, relu?: boolean): Tensor;
  /** Nearest-neighbour upsampling by a whole factor f: y[n,c,h,w] = x[n,c,floor(h/f),floor(w/f)]. */
  upsampleNearest2d(x: Tensor, factor: number): Tensor;
  /** Its gradient: each input cell gets the sum of dy over its factor x factor copies. */
  upsampleNearest2dBackward(dy: Tensor, factor: number): Tensor;

  /** a + alpha * b as a new tensor of a's shape: SGD steps and gradients that meet. */
  addScaled(a: Tensor, b: Tensor, alpha: number): Tensor;
  /** alpha * x as a new tensor. */
  scale(x: Tensor, alpha: number): Tensor;
  /** The sum of the squares of all elements, as a one-element tensor (the style losses' sums). */
  sumOfSquares(x: Tensor): Tensor;
  /**
   * L-BFGS's sweep over host vectors (style/optimizers.ts; the optimiser's state lives on the host on
   * every backend), the history's float vectors against the direction q in doubles: q = (q + c[0]
   * v[0] + c[1] v[1]) * scale in place, then [u[0].q, u[1].q] summed in doubles, in one pass over q.
   * At most 2 v (as many c) and 2 u, each of q's length; no v and scale 1 leave q as it is.
   */
  sweepF32F64(q: Float64Array, c: readonly number[], v: readonly Float32Array[], scale: number, u: readonly Float32Array[]): number[];

  /** Row-wise softmax of [N,K] logits, seed eq. 19 (max-shifted for stability). */
  softmax(logits: Tensor): Tensor;
  /**
   * Mean cross-entropy over the batch of softmax probabilities `prob` [N,K], seed eq. 20, as a
   * one-element tensor (a device backend computes it where `prob` lives).
   */
  crossEntropy(prob: Tensor, labels: Int32Array): Tensor;
  /** dL/dlogits of the mean softmax cross-entropy: (p - onehot) / N, seed eq. 21. */
  softmaxCrossEntropyBackward(prob: Tensor, labels: Int32Array): Tensor;
}
