/** Loads weights and builds the model on an opened backend, for every use case that needs one. */
import type { Backend } from '../backends/index.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadVgg19Weights } from '../weights/load-vgg19.js';
import { convertedCacheDir, resolveWeightsFile } from '../weights/weights-source.js';

export interface LoadedModel {
  readonly model: Vgg19;
  readonly weightsFile: string;
  readonly loadSeconds: number;
}

/** Files from this size on are read through a converted copy in the cache (the real ones: 548-576 MB). */
const CACHE_FROM_BYTES = 64 * 2 ** 20;

export interface LoadWeightsFileOptions {
  /** Hears about a cache that could not be used; the run goes on. */
  readonly onWarning?: (message: string) => void;
  /** false: VGG19's features only, for style transfer (fc6-fc8 never read: 494 MB less memory). */
  readonly classifier?: boolean;
}

/**
 * A weights file as every command reads it: any supported format, big files through the converted
 * cache (PASTICHE_WEIGHTS_CACHE=off reads the file itself every time).
 */
export function loadWeightsFile(file: string, o: LoadWeightsFileOptions = {}): Promise<Vgg19Weights> {
  const off = process.env['PASTICHE_WEIGHTS_CACHE'] === 'off';
  return loadVgg19Weights(file, { classifier: o.classifier, ...(off ? {} : { cache: { dir: convertedCacheDir(), minBytes: CACHE_FROM_BYTES, onWarning: o.onWarning } }) });
}

/**
 * `backend` comes opened (openBackend), so that a bad name or a missing GPU is said before the
 * seconds of reading 576 MB; `weights` as --weights gives it (else $PASTICHE_WEIGHTS, the cache).
 */
export async function loadModel(options: { weights?: string; backend: Backend; onWarning?: (message: string) => void }): Promise<LoadedModel> {
  const weightsFile = resolveWeightsFile(options.weights);
  const t0 = performance.now();
  const weights = await loadWeightsFile(weightsFile, { onWarning: options.onWarning });
  const loadSeconds = (performance.now() - t0) / 1000;
  return { model: new Vgg19(weights, options.backend), weightsFile, loadSeconds };
}
