/**
 * Real-time style models on disk: pytorch/examples fast_neural_style checkpoints (torch.save of the
 * state_dict, read by the strict unpickler: nothing in the file runs) and ours, safetensors with the
 * same names and PyTorch's layouts, so that either project reads the other's.
 */
import { PasticheError } from '../errors.js';
import { transformerFromStateDict, transformerStateDict, type TransformerWeights } from '../model/transformer/transformer-net.js';
import { readWholeFile } from './read-file.js';
import { writeSafetensors } from './safetensors-file.js';
import { CHECKPOINT_FORMAT, OPTIMIZER_PREFIX, TRANSFORMER_FORMAT, parseIfSafetensors, parseTransformerModel } from './transformer-parse.js';

export { CHECKPOINT_FORMAT, TRANSFORMER_FORMAT };

/** A model file, or a training checkpoint's network (its optimiser state is left out). */
export async function loadTransformerModel(file: string): Promise<TransformerWeights> {
  return parseTransformerModel(await readModelBytes(file), file);
}

async function readModelBytes(file: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readWholeFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PasticheError(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a folder, not a model file' : `cannot read (${code ?? (e as Error).message})`}`);
  }
  return bytes;
}

/** Writes `weights` as safetensors (atomically), PyTorch's names and layouts. */
export async function saveTransformerModel(file: string, weights: TransformerWeights, metadata: Record<string, string> = {}): Promise<void> {
  await writeSafetensors(file, transformerStateDict(weights), { format: TRANSFORMER_FORMAT, width: String(weights.width), ...metadata });
}

/** A training checkpoint: the network, Adam's moments and step count, the steps done, and the run's settings (to check a resumption against). */
export interface TrainingCheckpoint {
  readonly weights: TransformerWeights;
  readonly adam?: { readonly m: Float32Array; readonly v: Float32Array; readonly t: number };
  readonly iteration: number;
  /** The settings the run was started with, as JSON text. */
  readonly settings: string;
}

export async function saveTrainingCheckpoint(file: string, c: TrainingCheckpoint): Promise<void> {
  const tensors = new Map<string, { shape: readonly number[]; data: Float32Array }>(transformerStateDict(c.weights));
  if (c.adam) {
    tensors.set(`${OPTIMIZER_PREFIX}adam.m`, { shape: [c.adam.m.length], data: c.adam.m });
    tensors.set(`${OPTIMIZER_PREFIX}adam.v`, { shape: [c.adam.v.length], data: c.adam.v });
  }
  await writeSafetensors(file, tensors, {
    format: CHECKPOINT_FORMAT, width: String(c.weights.width), iteration: String(c.iteration), adam_t: String(c.adam?.t ?? 0), settings: c.settings,
  });
}

export async function loadTrainingCheckpoint(file: string): Promise<TrainingCheckpoint> {
  const parsed = parseIfSafetensors(await readModelBytes(file), file);
  if (parsed?.metadata['format'] !== CHECKPOINT_FORMAT) throw new PasticheError(`${file}: not a training checkpoint of train-style (to start from a model's weights, use --init)`);
  const { tensors, metadata } = parsed;
  const [m, v] = [tensors.get(`${OPTIMIZER_PREFIX}adam.m`), tensors.get(`${OPTIMIZER_PREFIX}adam.v`)];
  for (const k of [...tensors.keys()]) if (k.startsWith(OPTIMIZER_PREFIX)) tensors.delete(k);
  const weights = transformerFromStateDict(tensors, file);
  const iteration = Number(metadata['iteration']);
  const t = Number(metadata['adam_t']);
  if (!Number.isSafeInteger(iteration) || iteration < 0 || !Number.isSafeInteger(t) || t < 0) throw new PasticheError(`${file}: the checkpoint's step count is damaged`);
  if ((m === undefined) !== (v === undefined) || (m && t === 0)) throw new PasticheError(`${file}: the checkpoint's optimiser state is incomplete`);
  return { weights, adam: m && v ? { m: m.data, v: v.data, t } : undefined, iteration, settings: metadata['settings'] ?? '{}' };
}
