/** Option parsers and up-front checks shared by the commands. */
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import { BACKEND_NAMES, DEFAULT_BACKEND, noticeFallback } from '../backends/index.js';
import { PasticheError } from '../errors.js';

export function positiveInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a positive whole number.`);
    return n;
  };
}

export function positiveNumber(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a positive number.`);
    return n;
  };
}

export function nonNegativeNumber(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!(n >= 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a non-negative number.`);
    return n;
  };
}

export function parseNumberList(v: string, what: string): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x))) throw new PasticheError(`${what}: '${v}' is not a comma-separated list of numbers`);
  return xs;
}

export function checkInputFile(file: string): void {
  if (!existsSync(file)) throw new PasticheError(`${file}: no such file`);
  const st = statSync(file);
  if (!st.isFile()) throw new PasticheError(`${file}: is not a file`);
  if (st.size === 0) throw new PasticheError(`${file}: is empty (0 bytes)`);
}

export function checkOutputFolder(file: string): void {
  const dir = path.dirname(path.resolve(file));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new PasticheError(`${file}: the folder ${dir} does not exist`);
}

export const backendOption = () =>
  new Option(
    '-b, --backend <name>',
    `compute backend (default: ${DEFAULT_BACKEND}, the fastest CPU one; webgpu: the GPU; auto: the GPU if there is one, else ${DEFAULT_BACKEND})`,
  ).choices([...BACKEND_NAMES, 'auto']);

export const precisionOption = () =>
  new Option('--precision <p>', "webgpu arithmetic: fp32, or fp16 operands with fp32 sums (like the course's DLP)").choices(['fp32', 'fp16']).default('fp32');

/** The backend named on the command line, else the default (saying once if native is missing). */
export function chooseBackend(name: string | undefined): string {
  if (name) return name;
  noticeFallback();
  return DEFAULT_BACKEND;
}
