/** Loading a MatConvNet VGG19 file from disk (Node); the interpretation is in matconvnet.ts. */
import { readMatFile } from './mat/mat-file.js';
import { VGG19_MAT_LIMITS, VGG19_MAT_VARIABLES, vgg19FromMat } from './matconvnet.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';

/** Reads a MatConvNet VGG19 file in either layout. Errors are one-line PasticheErrors naming the file. */
export async function loadMatConvNetVgg19(file: string): Promise<Vgg19Weights> {
  const { variables } = await readMatFile(file, { only: VGG19_MAT_VARIABLES, maxBytes: VGG19_MAT_LIMITS });
  return vgg19FromMat(variables, file);
}
