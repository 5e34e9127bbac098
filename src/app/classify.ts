/** Image classification with VGG19: the course's lab 3-1 as a library function. */
import { PasticheError } from '../errors.js';
import { checkWritableFile } from '../util/file-checks.js';
import { readRgb, rgbToTensor, type RgbImage } from '../image/preprocess.js';
import { resizeBilinearPil } from '../image/pil-resize.js';
import type { Vgg19 } from '../model/vgg19.js';
import { VGG19_INPUT_SIZE, resolveLayerName } from '../model/vgg19-table.js';
import type { Tensor } from '../tensor/tensor.js';
import type { LoadedModel } from './load-model.js';
import type { OnProgress } from './progress.js';
import { topK, type Prediction } from './top-k.js';
import { writeNpy } from '../tensor/npy.js';

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
  /** Called with a 'layer' event after each layer of the forward pass. */
  readonly onProgress?: OnProgress;
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
  const onLayer = options.onProgress && ((done: number, total: number, layer: string) => options.onProgress!({ kind: 'layer', image, done, total, layer }));
  const { output, activations } = model.forward(input, { capture, onLayer, inference: true });
  // A GPU backend has only queued the work: the time runs until the probabilities are read back.
  await Promise.all([output, ...activations.values()].map((t) => t.toHost()));
  const forwardSeconds = (performance.now() - t0) / 1000;
  const top = topK(output.data.subarray(0, output.shape[1]), model.weights.classes, options.top ?? 5);
  return { image, top, activations, forwardSeconds };
}

/** A request to write an activation: the layer (its name resolved once: 'softmax' is 'prob') and the .npy file. */
export interface Dump {
  readonly layer: string;
  readonly file: string;
}

/** 'pool5=p.npy' as a Dump. */
export function parseDump(spec: string): Dump {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new PasticheError(`--dump '${spec}' is not LAYER=FILE.npy`);
  const name = spec.slice(0, eq);
  const file = spec.slice(eq + 1);
  const layer = resolveLayerName(name);
  if (layer === undefined) throw new PasticheError(`unknown layer '${name}' (try input, pool5, relu4_2, fc8, prob)`);
  if (!file.endsWith('.npy')) throw new PasticheError(`${file}: the file name must end in .npy`);
  return { layer, file };
}

export interface ClassifyRun {
  readonly images: readonly string[];
  readonly top: number;
  readonly dumps?: readonly Dump[];
  /** Loads the model: called once, after every image has been read, and only if one could be. */
  readonly load: () => Promise<LoadedModel>;
  readonly onProgress?: OnProgress;
  /** Each image's classification, in order, as soon as it is done. */
  readonly onResult?: (r: Classification) => void;
  /** An image that could not be read or classified; the others go on. */
  readonly onImageError?: (image: string, e: PasticheError) => void;
}

export interface ClassifyRunSummary {
  readonly classified: number;
  readonly failed: number;
  readonly loaded?: LoadedModel;
  readonly forwardMs: readonly number[];
}

/** Images decoded up front are kept until their turn, up to this many (150 KB each); later ones are decoded again then. */
const KEEP_DECODED = 256;

/**
 * The classify use case: every image is read before the seconds of loading the weights (an
 * unreadable one is reported and the others go on), the dump files are proven writable first,
 * then each image is classified and its activations written.
 */
export async function runClassify(run: ClassifyRun): Promise<ClassifyRunSummary> {
  const dumps = run.dumps ?? [];
  if (dumps.length > 0 && run.images.length > 1) throw new PasticheError('--dump works with one image at a time');
  for (const d of dumps) checkWritableFile(d.file);
  const failed = new Set<number>();
  const fail = (i: number, e: unknown) => {
    if (!(e instanceof PasticheError)) throw e;
    failed.add(i);
    run.onImageError?.(run.images[i]!, e);
  };
  const pixels = new Map<number, RgbImage>();
  run.onProgress?.({ kind: 'stage', stage: 'reading images' });
  for (const [i, image] of run.images.entries()) {
    try {
      const rgb = await readClassifierImage(image);
      if (i < KEEP_DECODED) pixels.set(i, rgb);
    } catch (e) {
      fail(i, e);
    }
  }
  if (failed.size === run.images.length) return { classified: 0, failed: failed.size, forwardMs: [] };
  run.onProgress?.({ kind: 'stage', stage: 'loading VGG19 weights' });
  const loaded = await run.load();
  if (!loaded.model.weights.hasClassifier) throw new PasticheError(`${loaded.weightsFile} holds VGG19's features only (no fc6-fc8, e.g. Keras' notop file): enough for stylize, not for classify`);
  const forwardMs: number[] = [];
  for (const [i, image] of run.images.entries()) {
    if (failed.has(i)) continue;
    let result: Classification;
    try {
      result = await classifyImage(loaded.model, image, { top: run.top, capture: dumps.map((d) => d.layer), pixels: pixels.get(i), onProgress: run.onProgress });
    } catch (e) {
      fail(i, e); // changed or removed since it was first read
      continue;
    }
    pixels.delete(i);
    forwardMs.push(result.forwardSeconds * 1000);
    for (const d of dumps) await writeNpy(d.file, result.activations.get(d.layer)!);
    run.onResult?.(result);
  }
  return { classified: forwardMs.length, failed: failed.size, loaded, forwardMs };
}
