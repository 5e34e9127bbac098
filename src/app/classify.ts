/** Image classification with VGG19: the course's lab 3-1 as a library function. */
import { PasticheError } from '../errors.js';
import { readRgb, rgbToTensor, type RgbImage } from '../image/preprocess.js';
import { resizeBilinearPil } from '../image/pil-resize.js';
import type { Vgg19 } from '../model/vgg19.js';
import { VGG19_INPUT_SIZE, resolveLayerName } from '../model/vgg19-table.js';
import type { Tensor } from '../tensor/tensor.js';
import { topK, type Prediction } from './top-k.js';

export type { Prediction } from './top-k.js';
export { topK };

export interface Classification {
  readonly image: string;
  readonly top: Prediction[];
  /** Activations asked for with `capture`. */
  readonly activations: Map<string, Tensor>;
  readonly forwardSeconds: number;
}

export interface ClassifyOptions {
  readonly top?: number;
  /** Layer names whose activations to return ('input' = the preprocessed image). */
  readonly capture?: readonly string[];
  /** Called after each layer of the forward pass. */
  readonly onLayer?: (done: number, total: number, name: string) => void;
  /** The image already decoded by readClassifierImage (the file is then not read again). */
  readonly pixels?: RgbImage;
}

/**
 * Decodes an image and resizes it to the classifier's input size (Pillow-exact bilinear). It needs
 * no weights, so callers can refuse unreadable images before the seconds of loading them.
 */
export async function readClassifierImage(file: string): Promise<RgbImage> {
  return resizeBilinearPil(await readRgb(file), VGG19_INPUT_SIZE, VGG19_INPUT_SIZE);
}

export function checkLayerNames(names: readonly string[]): void {
  for (const n of names) {
    if (resolveLayerName(n) === undefined) throw new PasticheError(`unknown layer '${n}' (try pool5, relu4_2, fc8, prob or input)`);
  }
}

export async function classifyImage(model: Vgg19, image: string, options: ClassifyOptions = {}): Promise<Classification> {
  const capture = options.capture ?? [];
  checkLayerNames(capture);
  const input = rgbToTensor(options.pixels ?? (await readClassifierImage(image)), model.weights.meanPixel);
  const t0 = performance.now();
  const { output, activations } = model.forward(input, { capture, onLayer: options.onLayer });
  // A GPU backend has only queued the work: the time runs until the probabilities are read back.
  await Promise.all([output, ...activations.values()].map((t) => t.toHost()));
  const forwardSeconds = (performance.now() - t0) / 1000;
  const top = topK(output.data.subarray(0, output.shape[1]), model.weights.classes, options.top ?? 5);
  return { image, top, activations, forwardSeconds };
}
