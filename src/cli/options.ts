/** Option parsers and up-front checks shared by the commands. */
import { InvalidArgumentError, Option } from 'commander';
import type { Backend } from '../backends/backend.js';
import { BACKEND_NAMES, DEFAULT_BACKEND, noticeFallback, openBackend, type Precision } from '../backends/index.js';
import { reducedPrecisionBackend } from '../app/check.js';
import { checkReadableFile, checkWritableFile } from '../util/file-checks.js';
import { WEIGHTS_FILE_NAME } from '../weights/weights-source.js';

export function positiveInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a positive whole number.`);
    return n;
  };
}

export function nonNegativeInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${what} must be a whole number of at least 0.`);
    return n;
  };
}

/** A TCP port: 1-65535 (0 would pick a random one, which a user cannot then find). */
export function portNumber(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('--port must be a whole number from 1 to 65535.');
  return n;
}

export function positiveNumber(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a positive number.`);
    return n;
  };
}

/** A file the command will read: it exists, is a regular non-empty file and may be opened. */
export function checkInputFile(file: string): void {
  checkReadableFile(file);
}

/** A file the command will write, checked by writing a probe beside it before any work starts. */
export function checkOutputFile(file: string): void {
  checkWritableFile(file);
}

/** -w/--weights of the commands that run the model (else $PASTICHE_WEIGHTS, then the fetched file). */
export const weightsOption = () => new Option('-w, --weights <file>', `VGG19 weights (${WEIGHTS_FILE_NAME}); default: $PASTICHE_WEIGHTS, then the fetched file`);

export const backendOption = () =>
  new Option(
    '-b, --backend <name>',
    `compute backend (default: ${DEFAULT_BACKEND}, the fastest CPU one; webgpu: the GPU; auto: the GPU if there is one, else ${DEFAULT_BACKEND})`,
  ).choices([...BACKEND_NAMES, 'auto']);

export const precisionOption = () =>
  new Option('--precision <p>', "products' operands: fp32; fp16 on webgpu (like the course's DLP); bf16 on native (AVX512-BF16); sums stay fp32")
    .choices(['fp32', 'fp16', 'bf16'])
    .default('fp32');

/**
 * The backend named on the command line, else the one a reduced precision runs on (fp16: webgpu,
 * bf16: native), else the default (saying once if native is missing).
 */
function chooseBackend(name: string | undefined, precision: Precision): string {
  if (name) return name;
  const reduced = reducedPrecisionBackend(precision);
  if (reduced) return reduced;
  noticeFallback();
  return DEFAULT_BACKEND;
}

/** The backend for -b and --precision (chooseBackend), opened at that precision. */
export function openChosenBackend(name: string | undefined, precision: Precision = 'fp32'): Promise<Backend> {
  return openBackend(chooseBackend(name, precision), { precision });
}

/** --port and --host of the commands that serve (web, serve). */
export const portOption = () => new Option('-p, --port <n>', 'port (1-65535)').argParser(portNumber).default(8080);
export const hostOption = (more = '') => new Option('--host <address>', `address to listen on${more}`).default('127.0.0.1');

/** Resolves on Ctrl-C or SIGTERM: how a server command waits to be stopped. */
export function untilStopped(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}
