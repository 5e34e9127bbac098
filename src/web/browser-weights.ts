/** VGG19 weights in the browser: a .mat file as a Blob, read by the same MAT reader as in Node. */
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { readMatBlob } from '../weights/mat/mat-blob.js';
import { VGG19_MAT_LIMITS, VGG19_MAT_VARIABLES, vgg19FromMat } from '../weights/matconvnet.js';

export async function vgg19FromBlob(blob: Blob, name: string): Promise<Vgg19Weights> {
  const { variables } = await readMatBlob(blob, name, { only: VGG19_MAT_VARIABLES, maxBytes: VGG19_MAT_LIMITS });
  return vgg19FromMat(variables, name);
}

/**
 * Downloads a weights file with its progress (bytes so far, bytes in all when the server says);
 * the response's `x-pastiche-weights` header names the file.
 */
export async function fetchWeights(url: string, onBytes: (got: number, of: number) => void): Promise<{ blob: Blob; name: string }> {
  const res = await fetch(url);
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { error?: string };
    throw new Error(body.error ?? `the server gives no weights (HTTP ${res.status}): choose the .mat file`);
  }
  const of = Number(res.headers.get('content-length') ?? 0);
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let got = 0;
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value as Uint8Array<ArrayBuffer>);
    got += value.length;
    onBytes(got, of);
  }
  return { blob: new Blob(chunks), name: decodeURIComponent(res.headers.get('x-pastiche-weights') ?? 'weights.mat') };
}
