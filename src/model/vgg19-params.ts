/**
 * The parameters of one VGG19, in the layouts the layers use, wherever they came from (a weights
 * file's reader in weights/ produces them; the model consumes them).
 */
import { Tensor } from '../tensor/tensor.js';
import { normalRng, uniformRng } from '../util/random.js';
import { VGG19_CLASSES, VGG19_CONV, VGG19_FC_WIDTH, VGG19_LAYERS, VGG19_POOL, VGG19_WIDTHS } from './vgg19-table.js';

export interface ConvWeights {
  readonly kind: 'conv';
  /** [Cin, K, K, Cout] */
  readonly w: Tensor;
  /** [Cout] */
  readonly b: Tensor;
  readonly pad: number;
  readonly stride: number;
}

export interface FcWeights {
  readonly kind: 'fc';
  /** [Din, Dout]; Din in NHWC order of the flattened map. */
  readonly w: Tensor;
  readonly b: Tensor;
}

export interface PoolSettings {
  readonly kind: 'pool';
  readonly method: 'max';
  readonly kernel: number;
  readonly stride: number;
  readonly pad: number;
}

export type LayerWeights = ConvWeights | FcWeights | PoolSettings;

/**
 * How a source's network wants its input: s_k = (pixel_k / divisor - mean_k) / std_k, k in `order`.
 * Pastiche folds it into conv1_1 when it reads the weights (weights/vgg19-sources.ts), so every
 * model takes RGB 0..255 minus `meanPixel`; this says what the file itself expects.
 */
export interface InputConvention {
  readonly order: 'RGB' | 'BGR';
  readonly divisor: number;
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

export type WeightsFormat = 'matconvnet' | 'torchvision' | 'caffe' | 'keras' | 'safetensors' | 'random';

export interface Vgg19Weights {
  /** Keyed by layer name: every conv and pool layer of the table, and fc6-fc8 when `hasClassifier`. */
  readonly layers: ReadonlyMap<string, LayerWeights>;
  /** RGB mean pixel subtracted from the input. */
  readonly meanPixel: readonly [number, number, number];
  /** Class descriptions, index = class id. */
  readonly classes: readonly string[];
  /** Where they came from: a file path, or 'random'. */
  readonly source: string;
  readonly format: WeightsFormat;
  /** The format's variant: MatConvNet's 'old' or 'new', torch's 'zip' or 'legacy', Caffe's 'V1' or 'V2', ... */
  readonly layout: string;
  /** The input the file's network expects (before the fold). */
  readonly input: InputConvention;
  /** false for features-only files (Keras' notop): enough for style transfer, not for classify. */
  readonly hasClassifier: boolean;
}

/**
 * A VGG19 with He-normal random weights and small random biases: for benchmarks and tests that need
 * no file. `widthScale` divides every channel count, as the test fixtures do; `inputSize` is the
 * picture side the classifier expects (fc6 reads pool5's (inputSize / 32)^2 cells a channel), so
 * that a test can train the whole network on a picture smaller than ImageNet's 224.
 */
export function randomVgg19Weights(seed = 1, widthScale = 1, inputSize = 224): Vgg19Weights {
  const gauss = normalRng(uniformRng(seed));
  const layers = new Map<string, LayerWeights>();
  let cin = 3;
  let block = 0;
  let fcIn = 0;
  for (const spec of VGG19_LAYERS) {
    if (spec.kind === 'conv') {
      block = Number(spec.name[4]) - 1;
      const cout = Math.max(1, VGG19_WIDTHS[block]! / widthScale);
      const k = VGG19_CONV.kernel;
      const w = new Tensor([cin, k, k, cout]);
      const std = Math.sqrt(2 / (cin * k * k));
      for (let i = 0; i < w.size; i++) w.data[i] = std * gauss();
      const b = new Tensor([cout]);
      for (let i = 0; i < cout; i++) b.data[i] = 0.01 * gauss();
      layers.set(spec.name, { kind: 'conv', w, b, pad: VGG19_CONV.pad, stride: VGG19_CONV.stride });
      cin = cout;
    } else if (spec.kind === 'pool') {
      layers.set(spec.name, { kind: 'pool', method: 'max', ...VGG19_POOL });
    } else if (spec.kind === 'fc') {
      if (fcIn === 0) fcIn = Math.floor(inputSize / 32) ** 2 * cin;
      const dout = spec.name === 'fc8' ? VGG19_CLASSES : Math.max(1, VGG19_FC_WIDTH / widthScale);
      const w = new Tensor([fcIn, dout]);
      const std = Math.sqrt(2 / fcIn);
      for (let i = 0; i < w.size; i++) w.data[i] = std * gauss();
      const b = new Tensor([dout]);
      for (let i = 0; i < dout; i++) b.data[i] = 0.01 * gauss();
      layers.set(spec.name, { kind: 'fc', w, b });
      fcIn = dout;
    }
  }
  return {
    layers,
    meanPixel: [123.68, 116.779, 103.939],
    classes: Array.from({ length: VGG19_CLASSES }, (_, i) => `class ${i}`),
    source: 'random',
    format: 'random',
    layout: 'random',
    input: { order: 'RGB', divisor: 1, mean: [123.68, 116.779, 103.939], std: [1, 1, 1] },
    hasClassifier: true,
  };
}
