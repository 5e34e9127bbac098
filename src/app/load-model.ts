/** Loads weights and builds the model on an opened backend, for every use case that needs one. */
import type { Backend } from '../backends/index.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadVgg19Weights } from '../weights/load-vgg19.js';
import { resolveWeightsFile } from '../weights/weights-source.js';

export interface LoadedModel {
  readonly model: Vgg19;
  readonly weightsFile: string;
  readonly loadSeconds: number;
}

/**
 * `backend` comes opened (openBackend), so that a bad name or a missing GPU is said before the
 * seconds of reading 576 MB; `weights` as --weights gives it (else $PASTICHE_WEIGHTS, the cache).
 */
export async function loadModel(options: { weights?: string; backend: Backend }): Promise<LoadedModel> {
  const weightsFile = resolveWeightsFile(options.weights);
  const t0 = performance.now();
  const weights = await loadVgg19Weights(weightsFile);
  const loadSeconds = (performance.now() - t0) / 1000;
  return { model: new Vgg19(weights, options.backend), weightsFile, loadSeconds };
}
