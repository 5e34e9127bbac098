/**
 * The course's grading, re-created (lab 3-3's speed test): convolution and max-pooling forward and
 * backward on the course's case, every backend against the four-loop reference, with errors, times
 * and speed-ups.
 */
import type { Backend } from '../backends/backend.js';
import { getBackend } from '../backends/index.js';
import { Tensor } from '../tensor/tensor.js';
import { NumpyRandomState } from '../util/random.js';
import { compare, timeMedian, worst, type ErrorMeasures } from '../util/stats.js';

/** The case: input and top gradient 1x256x24x40, weights 256x3x3x256, conv 3x3 pad 1 stride 1. */
export const CHECK_CASE = { n: 1, c: 256, h: 24, w: 40, cout: 256, k: 3, pad: 1, stride: 1, seed: 1234 } as const;
/** The course's pass mark on the mean squared error; ours adds a relative bound. */
export const MAX_MSE = 0.003;
export const MAX_REL_ERR = 1e-4;

export const CHECK_OPS = ['conv forward', 'conv backward', 'pool forward', 'pool backward'] as const;
export type CheckOp = (typeof CHECK_OPS)[number];

export interface CheckRow extends ErrorMeasures {
  readonly op: CheckOp;
  readonly backend: string;
  /** Median milliseconds of this backend. */
  readonly ms: number;
  /** Median milliseconds of `loops` on the same op, same run. */
  readonly loopsMs: number;
  /** loopsMs / ms, as the course reports it. */
  readonly speedup: number;
  readonly pass: boolean;
}

interface CaseData {
  x: Tensor; w: Tensor; b: Tensor; dy: Tensor; dyPool: Tensor;
}

/** numpy.random.seed(1234), then rand() for input, weights, bias, top gradient, pool top gradient. */
export function checkCaseData(size: { c?: number; cout?: number; h?: number; w?: number } = {}): CaseData {
  const { n, k } = CHECK_CASE;
  const c = size.c ?? CHECK_CASE.c;
  const cout = size.cout ?? CHECK_CASE.cout;
  const h = size.h ?? CHECK_CASE.h;
  const w = size.w ?? CHECK_CASE.w;
  const rng = new NumpyRandomState(CHECK_CASE.seed);
  const x = new Tensor([n, c, h, w], rng.rand(n * c * h * w));
  const wt = new Tensor([c, k, k, cout], rng.rand(c * k * k * cout));
  const b = new Tensor([cout], rng.rand(cout));
  const dy = new Tensor([n, cout, h, w], rng.rand(n * cout * h * w));
  const ph = Math.floor(h / 2);
  const pw = Math.floor(w / 2);
  const dyPool = new Tensor([n, c, ph, pw], rng.rand(n * c * ph * pw));
  return { x, w: wt, b, dy, dyPool };
}

function runOp(op: CheckOp, be: Backend, d: CaseData): Tensor[] {
  const cp = { pad: CHECK_CASE.pad, stride: CHECK_CASE.stride };
  const pp = { kernel: 2, stride: 2, pad: 0 };
  switch (op) {
    case 'conv forward':
      return [be.conv2d(d.x, d.w, d.b, cp)];
    case 'conv backward': {
      const { dw, db } = be.conv2dBackwardParams(d.dy, d.x, CHECK_CASE.k, cp);
      return [be.conv2dBackwardData(d.dy, d.w, d.x.shape, cp), dw, db];
    }
    case 'pool forward':
      return [be.maxPool2d(d.x, pp)];
    case 'pool backward':
      return [be.maxPool2dBackward(d.dyPool, d.x, pp)];
  }
}

export interface CheckOptions {
  /** Backends to grade against `loops` (default: all others). */
  readonly backends: readonly string[];
  /** Timed runs per op and backend; the median is reported. */
  readonly repeat?: number;
  /** Smaller case for quick runs and tests (channels, size). */
  readonly size?: { c?: number; cout?: number; h?: number; w?: number };
  readonly onStep?: (label: string) => void;
}

export function runCheck(options: CheckOptions): CheckRow[] {
  const repeat = Math.max(1, options.repeat ?? 3);
  const data = checkCaseData(options.size);
  const loops = getBackend('loops');
  const backends = options.backends.map((n) => getBackend(n));
  const rows: CheckRow[] = [];
  for (const op of CHECK_OPS) {
    options.onStep?.(`${op}: loops`);
    const ref = timeMedian(repeat, () => runOp(op, loops, data));
    for (const be of backends) {
      options.onStep?.(`${op}: ${be.name}`);
      const got = timeMedian(repeat, () => runOp(op, be, data));
      const err = worst(got.result.map((t, i) => compare(t, ref.result[i]!)));
      rows.push({
        op, backend: be.name, ms: got.ms, loopsMs: ref.ms, speedup: ref.ms / got.ms, ...err,
        pass: err.mse < MAX_MSE && err.maxRelErr < MAX_REL_ERR,
      });
    }
  }
  return rows;
}
