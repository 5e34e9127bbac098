/** Shared test helpers: fixture paths, random tensors, tolerant comparisons. */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SUITE_CONV_SHAPES } from '../src/app/kernel-suite.js';
import type { Backend } from '../src/backends/backend.js';
import { getBackend } from '../src/backends/index.js';
import { setHostPoolPoison } from '../src/tensor/host-pool.js';
import { Tensor, type Shape } from '../src/tensor/tensor.js';
import { uniformRng } from '../src/util/random.js';

// Every uninitialised output a CPU kernel gets is NaN-filled in the tests: a kernel that relies on
// zeros, or leaves an element unwritten, fails its comparison instead of passing by luck.
setHostPoolPoison(true);

/** test/fixtures (the compiled tests run from dist/test). */
export const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
export const TINY = `${FIXTURES}vgg19-tiny/`;
export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the compiled `pastiche` CLI; a non-zero exit is a result to assert on, not an exception. */
export async function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { env: options.env ?? process.env, timeout: options.timeout });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as CliResult;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

export function randomTensor(shape: Shape, seed: number, lo = -1, hi = 1): Tensor {
  const r = uniformRng(seed);
  const t = new Tensor(shape);
  for (let i = 0; i < t.size; i++) t.data[i] = lo + (hi - lo) * r();
  return t;
}

/**
 * Case i of CONV_SHAPES for comparing a backend with the four loops: seeded random input, weights,
 * bias and output gradient, and the loops' forward result.
 */
export function convCase(i: number) {
  const [xs, k, cout, pad, stride] = SUITE_CONV_SHAPES[i]!;
  const x = randomTensor(xs, 10 + i);
  const w = randomTensor([xs[1]!, k, k, cout], 20 + i);
  const b = randomTensor([cout], 30 + i);
  const p = { pad, stride };
  const y = getBackend('loops').conv2d(x, w, b, p);
  const dy = randomTensor(y.shape, 40 + i);
  return { x, w, b, k, p, y, dy, what: `shape ${JSON.stringify(xs)} k${k} pad${pad} s${stride}` };
}

/** max |a - b| / max |b| */
export function relError(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape], 'shapes differ');
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.size; i++) {
    d = Math.max(d, Math.abs(a.data[i]! - b.data[i]!));
    m = Math.max(m, Math.abs(b.data[i]!));
  }
  return m > 0 ? d / m : d;
}

export interface GradCheckOptions {
  /** Check every `step`-th coordinate (default: about 24 of them). */
  readonly step?: number;
  /** Central-difference step; `relativeStep` scales it by max(1, |x_i|). */
  readonly h?: number;
  readonly relativeStep?: boolean;
  /** The error is relative to max(max |analytic|, scaleFloor). */
  readonly scaleFloor?: number;
}

/**
 * Checks `analytic` = dL/dx by central differences on sampled coordinates of x (perturbed in
 * place and restored): |numeric - analytic| < 2e-3 * max(max |analytic|, scaleFloor).
 */
export function gradCheck(what: string, x: Tensor, loss: () => number, analytic: Tensor, o: GradCheckOptions = {}): void {
  assert.deepEqual([...analytic.shape], [...x.shape], `${what}: gradient shape`);
  const step = o.step ?? Math.max(1, Math.floor(x.size / 24));
  let scale = 0;
  for (const v of analytic.data) scale = Math.max(scale, Math.abs(v));
  scale = Math.max(scale, o.scaleFloor ?? 1e-3);
  for (let i = 0; i < x.size; i += step) {
    const keep = x.data[i]!;
    const h = (o.h ?? 1e-2) * (o.relativeStep ? Math.max(1, Math.abs(keep)) : 1);
    x.data[i] = keep + h;
    const up = loss();
    x.data[i] = keep - h;
    const down = loss();
    x.data[i] = keep;
    const numeric = (up - down) / (2 * h);
    const err = Math.abs(numeric - analytic.data[i]!) / scale;
    assert.ok(err < 2e-3, `${what}[${i}]: numeric ${numeric} vs analytic ${analytic.data[i]} (err ${err})`);
  }
}

export function assertClose(a: Tensor, b: Tensor, tol: number, what: string): void {
  const e = relError(a, b);
  assert.ok(e < tol, `${what}: relative error ${e.toExponential(3)} >= ${tol}`);
}

/** [N, Cin, H, W], kernel, Cout, pad, stride: the shapes every fast convolution is tested on. */
export { SUITE_CONV_SHAPES as CONV_SHAPES } from '../src/app/kernel-suite.js';

/**
 * `native` with every layout left NCHW: the forward's kernels are the same, so are its ReLU masks (a
 * reference on another backend sends a few elements that round to the other side of zero down the
 * other branch of a ReLU), and without nChw16c tensors the style losses' products go through matmul.
 */
export function nchwThroughout<B extends Backend>(native: B): B {
  return new Proxy(native, {
    get(target, key, receiver) {
      if (key === 'conv2d') return (...a: Parameters<Backend['conv2d']>) => target.conv2d(a[0], a[1], a[2], { ...a[3], ownLayout: false }, a[4]);
      if (key === 'maxPool2d') return (...a: Parameters<Backend['maxPool2d']>) => target.maxPool2d(a[0], a[1]);
      if (key === 'maxPool2dBackward') return (...a: Parameters<Backend['maxPool2dBackward']>) => target.maxPool2dBackward(a[0], a[1], a[2], a[3]);
      if (key === 'conv2dBackwardData') return (...a: Parameters<Backend['conv2dBackwardData']>) => target.conv2dBackwardData(a[0], a[1], a[2], a[3], a[4]);
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
}

/**
 * Runs `body` with `watch[name](...args)` called before each call of those methods of `target` (a
 * real addon's, to count or look at its calls), and puts the methods back after, whatever happens.
 */
export function watchingCalls<T extends object, R>(
  target: T,
  watch: { [K in keyof T]?: T[K] extends (...a: infer A) => unknown ? (...a: A) => void : never },
  body: () => R,
): R {
  const methods = target as Record<string, (...a: unknown[]) => unknown>;
  const originals = Object.keys(watch).map((name) => [name, methods[name]!] as const);
  for (const [name, original] of originals) {
    const seen = (watch as Record<string, (...a: unknown[]) => void>)[name]!;
    methods[name] = (...a) => (seen(...a), original.apply(target, a));
  }
  try {
    return body();
  } finally {
    for (const [name, original] of originals) methods[name] = original;
  }
}
