/**
 * Temporary folders for tests, removed when the test file's process exits: the suite used to
 * leave ~50 folders (~70 MB) in the system's temp folder per run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.on('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A new empty folder `<tmp>/<prefix>XXXXXX`, gone after this process. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
