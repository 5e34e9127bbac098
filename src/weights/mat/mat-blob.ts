/**
 * MAT-files in a browser: a MatSource over a Blob (a File the user picked), inflated by the
 * browser's own DecompressionStream ('deflate' is the zlib format MAT-files use).
 */
import type { MatValue } from './mat-types.js';
import { readMat, type MatHeader, type ReadMatOptions } from './mat-reader.js';

async function* inflate(blob: Blob, position: number, length: number): AsyncGenerator<Uint8Array> {
  const stream = blob.slice(position, position + length).stream().pipeThrough(new DecompressionStream('deflate'));
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

export async function readMatBlob(blob: Blob, name: string, options: ReadMatOptions = {}): Promise<{ header: MatHeader; variables: Map<string, MatValue> }> {
  return readMat(
    {
      name,
      size: blob.size,
      read: async (p, n) => new Uint8Array(await blob.slice(p, p + n).arrayBuffer()),
      inflate: (p, n) => inflate(blob, p, n),
    },
    options,
  );
}
