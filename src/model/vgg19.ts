/**
 * VGG19 built from the declarative table and a set of weights: run forward to any named layer,
 * capture any activations, and back-propagate gradients injected at any layers down to the input.
 */
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { ConvolutionalLayer } from '../layers/convolutional-layer.js';
import { FullyConnectedLayer } from '../layers/fully-connected-layer.js';
import type { BackwardOptions, Layer } from '../layers/layer.js';
import { AvgPoolingLayer, FlattenLayer, MaxPoolingLayer, ReLULayer } from '../layers/simple-layers.js';
import { SoftmaxLossLayer } from '../layers/softmax-loss-layer.js';
import { Tensor, sameShape, shapeToString } from '../tensor/tensor.js';
import type { LayerWeights, Vgg19Weights } from './vgg19-params.js';
import { VGG19_LAYERS, layerNames, resolveLayerName } from './vgg19-table.js';

export interface ForwardOptions {
  /** Stop after this layer (default: the last, 'prob'). */
  readonly until?: string;
  /** Layer names whose outputs to return ('input' for the input itself). */
  readonly capture?: readonly string[];
  /** Called after each layer, e.g. for a progress bar. */
  readonly onLayer?: (done: number, total: number, name: string) => void;
  /**
   * No backward follows (a classification, a style's targets): a convolution, its ReLU and the
   * max-pool after them run as one op (Backend.conv2dMaxPool) where none of their outputs but the
   * pool's is captured, and backward is refused until a forward without this option.
   */
  readonly inference?: boolean;
  /**
   * Captured outputs may stay in the backend's own layout too (Tensor.layout: native's nChw16c),
   * for a caller that hands them to backend ops (the style losses: Backend.gram, mixChannels and
   * the element-wise ops read them as they are); reading `data` still gives NCHW, converted once.
   */
  readonly captureOwnLayout?: boolean;
}

export interface ForwardResult {
  /** The output of the last layer run. */
  readonly output: Tensor;
  readonly activations: Map<string, Tensor>;
}

export interface ModelBackwardOptions extends BackwardOptions {
  /** Called after each step with its layer's name (a convolution and the ReLU fused into it: the convolution's). */
  readonly onLayer?: (name: string) => void;
}

export interface Vgg19Options {
  /** 'avg' replaces every max-pool by average pooling (a style-transfer option). */
  readonly pooling?: 'max' | 'avg';
  /** Conv2dParams.leanWeights for every convolution: what the memory plan chose (MemoryPlan.leanWeights). */
  readonly leanWeights?: boolean;
}

export class Vgg19 {
  readonly layers: readonly Layer[];
  private readonly index = new Map<string, number>();
  /**
   * Tensors made by the last forward that were not handed to the caller. They are recycled when the
   * next pass replaces them, so repeated passes reuse the same memory: GPU buffers, or pooled host
   * arrays (no page faults and zeroing of fresh memory on every pass).
   */
  private forwardOwned: Tensor[] = [];
  /** The last forward's ReLU outputs that it left in the backend's own layout (the gradient through such a mask may stay so). */
  private forwardKept = new Set<number>();
  /** Index of the last layer the last forward ran. */
  private forwardStop = -2;
  /** The last forward ran with `inference` (some layers' inputs were never made). */
  private forwardForInference = false;

  constructor(
    readonly weights: Vgg19Weights,
    readonly backend: Backend,
    options: Vgg19Options = {},
  ) {
    const layers: Layer[] = [];
    // A features-only file (Keras' notop) ends the network at pool5.
    const specs = weights.hasClassifier ? VGG19_LAYERS : VGG19_LAYERS.slice(0, VGG19_LAYERS.findIndex((l) => l.name === 'pool5') + 1);
    for (const spec of specs) {
      const p = weights.layers.get(spec.name);
      const need = (kind: LayerWeights['kind']) => {
        if (!p || p.kind !== kind) throw new PasticheError(`weights from ${weights.source} have no ${kind} parameters for ${spec.name}`);
        return p as never;
      };
      switch (spec.kind) {
        case 'conv': {
          const c = need('conv') as Extract<LayerWeights, { kind: 'conv' }>;
          const [cin, k, , cout] = c.w.shape as [number, number, number, number];
          const layer = new ConvolutionalLayer(spec.name, backend, k, cin, cout, c.pad, c.stride, options.leanWeights);
          layer.loadParam(c.w, c.b);
          layers.push(layer);
          break;
        }
        case 'fc': {
          const f = need('fc') as Extract<LayerWeights, { kind: 'fc' }>;
          const layer = new FullyConnectedLayer(spec.name, backend, f.w.shape[0]!, f.w.shape[1]!);
          layer.loadParam(f.w, f.b);
          layers.push(layer);
          break;
        }
        case 'pool': {
          const s = need('pool') as Extract<LayerWeights, { kind: 'pool' }>;
          const Pool = options.pooling === 'avg' ? AvgPoolingLayer : MaxPoolingLayer;
          layers.push(new Pool(spec.name, backend, s.kernel, s.stride, s.pad));
          break;
        }
        case 'relu':
          layers.push(new ReLULayer(spec.name, backend));
          break;
        case 'flatten':
          layers.push(new FlattenLayer(spec.name, backend));
          break;
        case 'softmax':
          layers.push(new SoftmaxLossLayer(spec.name, backend));
          break;
      }
      this.index.set(spec.name, layers.length - 1);
    }
    this.layers = layers;
  }

  /** Position of a layer in the table; -1 for 'input'. Throws for unknown names. */
  layerIndex(name: string): number {
    const n = resolveLayerName(name);
    if (n === undefined) throw new PasticheError(`unknown layer '${name}' (known: ${layerNames().join(' ')})`);
    if (n === 'input') return -1;
    const i = this.index.get(n);
    if (i === undefined) throw new PasticheError(`${this.weights.source} holds VGG19's features only (no fc6-fc8): enough for style transfer, not for classification (${n})`);
    return i;
  }

  layer(name: string): Layer {
    const i = this.layerIndex(name);
    if (i < 0) throw new PasticheError("'input' is not a layer");
    return this.layers[i]!;
  }

  /**
   * The outputs a forward pass with these options may leave in the backend's own layout (native:
   * nChw16c) because all that read them take that layout: without a backward to come, any that
   * only the next layer reads; with one, a ReLU's output that goes on to a max-pool (whose backward
   * reads it again) and that pool's output, where a convolution reads it next (it keeps no input
   * for its gradient to the data); and a ReLU's output that a convolution reads next, whose
   * gradient's epilogue reads it again as the mask (relu1_1 too: the gradient to the image reads
   * its gradient as it is). Nothing captured. By layer index.
   */
  private ownLayoutOutputs(options: ForwardOptions): { stop: number; wanted: Map<number, string>; own: (j: number) => boolean } {
    const wanted = new Map<number, string>();
    for (const name of options.capture ?? []) wanted.set(this.layerIndex(name), resolveLayerName(name)!);
    const stop = Math.max(this.layerIndex(options.until ?? 'prob'), ...wanted.keys());
    const own = (j: number): boolean => {
      if (j >= stop || (wanted.has(j) && !options.captureOwnLayout)) return false;
      if (options.inference) return true;
      const [at, after] = [this.layers[j], this.layers[j + 1]];
      if (at instanceof MaxPoolingLayer) return after instanceof ConvolutionalLayer;
      if (!(at instanceof ReLULayer)) return false;
      if (after instanceof ConvolutionalLayer) return true;
      return after instanceof MaxPoolingLayer && own(j + 1);
    };
    return { stop, wanted, own };
  }

  /** The names of the outputs a forward pass with these options may leave in the backend's own layout (ownLayoutOutputs). */
  ownLayoutNames(options: ForwardOptions): Set<string> {
    const { stop, own } = this.ownLayoutOutputs(options);
    return new Set(this.layers.slice(0, stop + 1).flatMap((l, j) => (own(j) ? [l.name] : [])));
  }

  forward(x: Tensor, options: ForwardOptions = {}): ForwardResult {
    if (x.rank !== 4 || x.shape[1] !== 3) throw new PasticheError(`VGG19 input must be [N, 3, H, W], got ${shapeToString(x.shape)}`);
    const { stop, wanted, own } = this.ownLayoutOutputs(options);
    const activations = new Map<string, Tensor>();
    if (wanted.has(-1)) activations.set('input', x);
    this.releaseTransients();
    const made: Tensor[] = [];
    let h = x;
    const kept = new Set<number>();
    for (let i = 0; i <= stop; i++) {
      const layer = this.layers[i]!;
      const next = this.layers[i + 1];
      const pool = this.layers[i + 2];
      // Without a backward to come, a convolution, its ReLU and a max-pool after them are one op
      // where only the pool's output may be looked at.
      if (options.inference && layer instanceof ConvolutionalLayer && next instanceof ReLULayer && pool instanceof MaxPoolingLayer && i + 2 <= stop && !wanted.has(i) && !wanted.has(i + 1)) {
        h = layer.forwardReluMaxPool(h, pool.params, own(i + 2));
        for (const j of [i, i + 1]) options.onLayer?.(j + 1, stop + 1, this.layers[j]!.name);
        i += 2;
      } else if (layer instanceof ConvolutionalLayer && next instanceof ReLULayer && i + 1 <= stop && !wanted.has(i)) {
        // A convolution whose raw output nobody asked for runs with its ReLU fused into it.
        if (own(i + 1)) kept.add(i + 1);
        h = next.acceptFused(layer.forwardWithRelu(h, kept.has(i + 1)));
        options.onLayer?.(i + 1, stop + 1, layer.name);
        i++;
      } else if (layer instanceof MaxPoolingLayer) {
        h = layer.forward(h, own(i));
      } else {
        h = layer.forward(h);
      }
      options.onLayer?.(i + 1, stop + 1, this.layers[i]!.name);
      const name = wanted.get(i);
      if (name) activations.set(name, h);
      else if (i !== stop) made.push(h);
    }
    this.forwardOwned = made;
    this.forwardKept = kept;
    this.forwardStop = stop;
    this.forwardForInference = options.inference ?? false;
    return { output: h, activations };
  }

  /**
   * Back-propagates from gradients injected at named layer outputs (dL/d(output of that layer))
   * down to the input, after a forward pass that ran at least to the deepest of them. Gradients met
   * on the way are added. Returns dL/dinput.
   */
  backward(grads: ReadonlyMap<string, Tensor>, options: ModelBackwardOptions = {}): Tensor {
    const at = new Map<number, Tensor>();
    for (const [name, g] of grads) at.set(this.layerIndex(name), g);
    if (at.size === 0) throw new PasticheError('backward needs at least one gradient');
    const top = Math.max(...at.keys());
    if (top === this.index.get('prob')) throw new PasticheError("backward from 'prob' needs the loss: use lossBackward");
    if (this.forwardForInference) throw new PasticheError('backward needs a forward pass without `inference` (that pass fused layers and kept no inputs for backward)');
    if (top > this.forwardStop) throw new PasticheError(`backward from ${this.layers[top]!.name} needs a forward pass that ran at least that far`);
    let g: Tensor = at.get(top)!;
    // Gradients made here are ours to overwrite; the caller's (the injected ones) are not.
    let owned = false;
    const step = (next: Tensor) => {
      // No layer keeps its dy, so its memory can go back to the pool as soon as the next op is
      // queued (a device queue runs in order).
      if (owned && next !== g) g.recycle();
      g = next;
      owned = true;
    };
    for (let i = top; i >= 0; i--) {
      const extra = i !== top ? at.get(i) : undefined;
      if (extra) {
        const where = this.layers[i]!.name;
        if (!sameShape(g.shape, extra.shape)) throw new PasticheError(`gradient at ${where} is ${shapeToString(extra.shape)}, expected ${shapeToString(g.shape)}`);
        step(this.backend.addScaled(g, extra, 1));
      }
      const layer = this.layers[i]!;
      const before = this.layers[i - 1];
      // A gradient that only the next step's backend op reads may stay in the backend's own layout
      // (native: nChw16c, see ownLayoutOutputs): a convolution's gradient to a max-pool's output, that
      // pool's (through its ReLU) to the output of the convolution before it, and a convolution's
      // gradient through a ReLU mask the forward kept so.
      if (layer instanceof ConvolutionalLayer && before instanceof ReLULayer) {
        // The ReLU below this convolution (and a gradient injected at its output) are applied
        // while the convolution writes its gradient, in the layout the forward kept its mask in
        // (with an injected gradient, where that is in the backend's own layout too).
        const injected = at.get(i - 1);
        const ownLayout = this.forwardKept.has(i - 1) && (!injected || injected.layout !== undefined);
        step(layer.backward(g, { ...options, ownLayout }, { add: injected, reluMask: before.mask }));
        i--;
      } else if (layer instanceof MaxPoolingLayer && before instanceof ReLULayer && !at.has(i - 1)) {
        // Likewise the ReLU below a max-pool, unless a gradient is injected between them.
        step(layer.backwardThroughRelu(g, { ownLayout: this.layers[i - 2] instanceof ConvolutionalLayer }));
        i--;
      } else {
        const toPool = layer instanceof ConvolutionalLayer && before instanceof MaxPoolingLayer && !at.has(i - 1);
        step(layer.backward(g, { ...options, reuseGradient: owned, ownLayout: toPool }));
      }
      options.onLayer?.(layer.name);
    }
    return g;
  }

  /** Recycles the last forward's intermediate tensors (see forwardOwned). */
  private releaseTransients(): void {
    for (const t of this.forwardOwned) t.recycle();
    this.forwardOwned = [];
  }

  /** Cross-entropy of the last forward's probabilities against `labels`, and dL/dinput. */
  lossBackward(labels: Int32Array, options: BackwardOptions = {}): { loss: Tensor; dInput: Tensor } {
    const soft = this.layers[this.layers.length - 1] as SoftmaxLossLayer;
    const loss = soft.loss(labels);
    const dLogits = soft.backward();
    return { loss, dInput: this.backward(new Map([['fc8', dLogits]]), options) };
  }

  /** SGD step on every layer's stored gradients (seed eqs. 10-11). */
  update(lr: number): void {
    for (const l of this.layers) l.update(lr);
  }
}
