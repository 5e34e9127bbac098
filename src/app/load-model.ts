/** Loads weights and builds the model, for every command that needs one. */
import { openBackend, type Precision } from '../backends/index.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadMatConvNetVgg19 } from '../weights/load-vgg19.js';
import { resolveWeightsFile } from '../weights/weights-source.js';

export interface LoadedModel {
  readonly model: Vgg19;
  readonly weightsFile: string;
  readonly loadSeconds: number;
}

export async function loadModel(options: { weights?: string; backend?: string; precision?: Precision }): Promise<LoadedModel> {
  // Fail on a bad name or a missing GPU before reading 576 MB.
  const backend = await openBackend(options.backend, { precision: options.precision });
  const weightsFile = resolveWeightsFile(options.weights);
  const t0 = performance.now();
  const weights = await loadMatConvNetVgg19(weightsFile);
  const loadSeconds = (performance.now() - t0) / 1000;
  return { model: new Vgg19(weights, backend), weightsFile, loadSeconds };
}
