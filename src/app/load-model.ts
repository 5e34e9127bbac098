/** Loads weights and builds the model, for every command that needs one. */
import { getBackend } from '../backends/index.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadMatConvNetVgg19 } from '../weights/matconvnet.js';
import { resolveWeightsFile } from '../weights/weights-source.js';

export interface LoadedModel {
  readonly model: Vgg19;
  readonly weightsFile: string;
  readonly loadSeconds: number;
}

export async function loadModel(options: { weights?: string; backend?: string }): Promise<LoadedModel> {
  const backend = getBackend(options.backend); // fail on a bad name before reading 576 MB
  const weightsFile = resolveWeightsFile(options.weights);
  const t0 = performance.now();
  const weights = await loadMatConvNetVgg19(weightsFile);
  const loadSeconds = (performance.now() - t0) / 1000;
  return { model: new Vgg19(weights, backend), weightsFile, loadSeconds };
}
