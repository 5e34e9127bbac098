/**
 * Up-front checks on the files a command reads and writes, so that a bad path is refused in one
 * line before any work starts (not after minutes of optimisation, and never by blocking on a FIFO).
 */
import { closeSync, constants, openSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { fileError } from '../errors.js';
import { temporaryNameFor } from './atomic-write.js';

/** What a path that is not a regular file is, in words ('a folder', 'a FIFO', ...). */
export function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function describeCode(code: string | undefined): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return 'the file system is read-only';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'ENAMETOOLONG':
      return 'the name is too long';
    case 'ENOTDIR':
      return 'a part of the path is not a folder';
    case 'ELOOP':
      return 'too many symbolic links';
    case 'ENOENT':
      return 'the file system does not let a file be created there';
    default:
      return code ?? 'unknown error';
  }
}

/** A regular, non-empty file that this process may open for reading; else a one-line PasticheError. */
export function checkReadableFile(file: string): Stats {
  let st: Stats;
  try {
    st = statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(file, code === 'ENOENT' ? 'no such file' : `cannot read (${describeCode(code)})`);
  }
  if (!st.isFile()) throw fileError(file, `is ${kindOf(st)}, not a file`);
  if (st.size === 0) throw fileError(file, 'is empty (0 bytes)');
  try {
    // O_NONBLOCK: a path swapped for a FIFO since the stat must not block here.
    closeSync(openSync(file, constants.O_RDONLY | constants.O_NONBLOCK));
  } catch (e) {
    throw fileError(file, `cannot read (${describeCode((e as NodeJS.ErrnoException).code)})`);
  }
  return st;
}

/**
 * Proves that `file` can be written the way the outputs are (a temporary file beside it, then a
 * rename): the folder exists, the path is not a folder or a special file, and the file system
 * accepts a new file there. Nothing is left behind.
 */
export function checkWritableFile(file: string): void {
  const dir = path.dirname(path.resolve(file));
  let dirStat: Stats;
  try {
    dirStat = statSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(file, code === 'ENOENT' ? `the folder ${dir} does not exist` : `cannot write there (${describeCode(code)})`);
  }
  if (!dirStat.isDirectory()) throw fileError(file, `${dir} is not a folder`);
  let existing: Stats | undefined;
  try {
    existing = statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw fileError(file, `cannot write there (${describeCode(code)})`);
  }
  if (existing && !existing.isFile()) throw fileError(file, `is ${kindOf(existing)}: cannot write an output there`);
  const probe = temporaryNameFor(path.resolve(file));
  try {
    const fd = openSync(probe, 'wx');
    try {
      writeSync(fd, 'pastiche');
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw fileError(file, `cannot write there (${describeCode((e as NodeJS.ErrnoException).code)})`);
  } finally {
    try {
      unlinkSync(probe);
    } catch {
      // never created
    }
  }
}
