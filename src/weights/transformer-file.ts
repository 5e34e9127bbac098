/**
 * Real-time style models on disk: pytorch/examples fast_neural_style checkpoints (torch.save of the
 * state_dict, read by the strict unpickler: nothing in the file runs) and ours, safetensors with the
 * same names and PyTorch's layouts, so that either project reads the other's.
 */
import { PasticheError } from '../errors.js';
import { transformerFromStateDict, transformerStateDict, type TransformerWeights } from '../model/transformer/transformer-net.js';
import { readWholeFile } from './read-file.js';
import { parseSafetensors, writeSafetensors } from './safetensors.js';
import { isTorchFile, readTorchStateDict } from './torch/pth.js';

/** What our files say they hold (safetensors metadata). */
export const TRANSFORMER_FORMAT = 'pastiche-transformer-net';

/** A safetensors file starts with its header's length (little-endian u64) and then its JSON. */
function looksLikeSafetensors(bytes: Uint8Array): boolean {
  return bytes.length > 9 && bytes[6] === 0 && bytes[7] === 0 && bytes[8] === 0x7b;
}

export async function loadTransformerModel(file: string): Promise<TransformerWeights> {
  let bytes: Uint8Array;
  try {
    bytes = await readWholeFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PasticheError(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a folder, not a model file' : `cannot read (${code ?? (e as Error).message})`}`);
  }
  if (isTorchFile(bytes)) return transformerFromStateDict(readTorchStateDict(bytes, file).tensors, file);
  if (looksLikeSafetensors(bytes)) return transformerFromStateDict(parseSafetensors(bytes, file).tensors, file);
  throw new PasticheError(`${file}: not a style model (a fast_neural_style .pth or a Pastiche .safetensors)`);
}

/** Writes `weights` as safetensors (atomically), PyTorch's names and layouts. */
export async function saveTransformerModel(file: string, weights: TransformerWeights, metadata: Record<string, string> = {}): Promise<void> {
  await writeSafetensors(file, transformerStateDict(weights), { format: TRANSFORMER_FORMAT, width: String(weights.width), ...metadata });
}
