/**
 * A real-time style model from its bytes, wherever they come from (a file in Node, a Blob in the
 * browser): pytorch/examples fast_neural_style checkpoints (torch.save of the state_dict, read by the
 * strict unpickler: nothing in the file runs) and ours, safetensors with the same names and
 * PyTorch's layouts; a training checkpoint's network too (its optimiser state left out).
 */
import { PasticheError } from '../errors.js';
import { transformerFromStateDict, type TransformerWeights } from '../model/transformer/transformer-net.js';
import { parseSafetensors, type SafetensorsFile } from './safetensors.js';
import { isTorchFile, readTorchStateDict } from './torch/pth.js';

/** What our files say they hold (safetensors metadata). */
export const TRANSFORMER_FORMAT = 'pastiche-transformer-net';
/** A training checkpoint: the network's tensors, and the optimiser's under OPTIMIZER_PREFIX. */
export const CHECKPOINT_FORMAT = 'pastiche-train-checkpoint';
export const OPTIMIZER_PREFIX = 'optimizer.';

/** A safetensors file starts with its header's length (little-endian u64) and then its JSON. */
export function looksLikeSafetensors(bytes: Uint8Array): boolean {
  return bytes.length > 9 && bytes[6] === 0 && bytes[7] === 0 && bytes[8] === 0x7b;
}

/** The safetensors file, or undefined when the bytes are not one. */
export function parseIfSafetensors(bytes: Uint8Array, name: string): SafetensorsFile | undefined {
  return looksLikeSafetensors(bytes) ? parseSafetensors(bytes, name) : undefined;
}

export function parseTransformerModel(bytes: Uint8Array, name: string): TransformerWeights {
  if (isTorchFile(bytes)) return transformerFromStateDict(readTorchStateDict(bytes, name).tensors, name);
  const st = parseIfSafetensors(bytes, name);
  if (st) {
    if (st.metadata['format'] === CHECKPOINT_FORMAT) for (const k of [...st.tensors.keys()]) if (k.startsWith(OPTIMIZER_PREFIX)) st.tensors.delete(k);
    return transformerFromStateDict(st.tensors, name);
  }
  throw new PasticheError(`${name}: not a style model (a fast_neural_style .pth or a Pastiche .safetensors)`);
}
