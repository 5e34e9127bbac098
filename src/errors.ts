/**
 * Errors meant for the person at the terminal. The CLI prints `message` on one line and exits
 * non-zero; anything that is not a PasticheError is a bug and is reported as such.
 */
export class PasticheError extends Error {
  override readonly name = 'PasticheError';

  constructor(message: string) {
    // Messages quote bytes from the files they are about (names, headers): control characters
    // are escaped so that the message stays one line and cannot drive the terminal.
    super(message.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  }
}

/** A problem with a named file: the message always starts with the file's path. */
export function fileError(file: string, problem: string): PasticheError {
  return new PasticheError(`${file}: ${problem}`);
}
