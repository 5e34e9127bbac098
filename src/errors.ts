/**
 * Errors meant for the person at the terminal. The CLI prints `message` on one line and exits
 * non-zero; anything that is not a PasticheError is a bug and is reported as such.
 */
export class PasticheError extends Error {
  override readonly name = 'PasticheError';
}

/** A problem with a named file: the message always starts with the file's path. */
export function fileError(file: string, problem: string): PasticheError {
  return new PasticheError(`${file}: ${problem}`);
}
