/** MAT-files on disk, for Node: a MatSource over a file handle and zlib's streaming inflate. */
import { promises as fs } from 'node:fs';
import { Readable } from 'node:stream';
import { createInflate } from 'node:zlib';
import { fileError } from '../../errors.js';
import { checkReadableFile } from '../../util/file-checks.js';
import type { MatValue } from './mat-types.js';
import { readMat, type MatHeader, type ReadMatOptions } from './mat-reader.js';

const CHUNK = 1 << 22;

async function readAt(handle: fs.FileHandle, position: number, length: number): Promise<Uint8Array> {
  const out = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, Math.min(length - done, 1 << 26), position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? out : out.subarray(0, done);
}

async function* compressedChunks(handle: fs.FileHandle, position: number, length: number): AsyncGenerator<Uint8Array> {
  for (let done = 0; done < length; ) {
    const chunk = await readAt(handle, position + done, Math.min(CHUNK, length - done));
    if (chunk.length === 0) return;
    done += chunk.length;
    yield chunk;
  }
}

async function* inflate(handle: fs.FileHandle, position: number, length: number): AsyncGenerator<Uint8Array> {
  const input = Readable.from(compressedChunks(handle, position, length));
  const z = createInflate();
  input.on('error', (e) => z.destroy(e));
  input.pipe(z);
  try {
    for await (const chunk of z) yield chunk as Buffer;
  } finally {
    // Reached early when the reader stops (a zip bomb): stop reading and inflating.
    input.destroy();
    z.destroy();
  }
}

/** Reads the top-level variables of a MAT-file. Errors are PasticheErrors naming the file. */
export async function readMatFile(file: string, options: ReadMatOptions = {}): Promise<{ header: MatHeader; variables: Map<string, MatValue> }> {
  // A folder, a FIFO (which would block the open forever) or a device is refused by name first.
  checkReadableFile(file);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (e) {
    throw fileError(file, `cannot open (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const { size } = await handle.stat();
    return await readMat(
      { name: file, size, read: (p, n) => readAt(handle, p, n), inflate: (p, n) => inflate(handle, p, n) },
      options,
    );
  } finally {
    await handle.close();
  }
}
