import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileError } from '../errors.js';

/** A temporary name in the same folder, so that the final rename never crosses file systems. */
export function temporaryNameFor(file: string): string {
  const dir = path.dirname(file);
  return path.join(dir, `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Writes `bytes` to `file` so that a reader sees either the old file or the whole new one, never a
 * half-written file: write a temporary file beside it, then rename.
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array | string): Promise<void> {
  const dir = path.dirname(file);
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw fileError(file, `${dir} is not a folder`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw fileError(file, `the folder ${dir} does not exist`);
    }
    throw e;
  }
  const tmp = temporaryNameFor(file);
  try {
    await fs.writeFile(tmp, bytes);
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    const err = e as NodeJS.ErrnoException;
    if (err.code) throw fileError(file, `cannot write (${err.code})`);
    throw e;
  }
}
