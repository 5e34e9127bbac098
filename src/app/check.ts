/**
 * The course's grading, re-created (lab 3-3's speed test): convolution and max-pooling forward and
 * backward on the course's case, every backend against the four-loop reference, with errors, times
 * and speed-ups.
 */
import type { Backend } from '../backends/backend.js';
import { DEFAULT_BACKEND, getBackend, openBackend, type Precision } from '../backends/index.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadWeightsFile } from './load-model.js';
import { classifyImage, type Prediction } from './classify.js';
import { Tensor } from '../tensor/tensor.js';
import { NumpyRandomState } from '../util/random.js';
import { compare, worst, type ErrorMeasures } from '../tensor/compare.js';
import { timeMedianAsync } from '../util/stats.js';

/** The case: input and top gradient 1x256x24x40, weights 256x3x3x256, conv 3x3 pad 1 stride 1. */
export const CHECK_CASE = { n: 1, c: 256, h: 24, w: 40, cout: 256, k: 3, pad: 1, stride: 1, seed: 1234 } as const;
/** The course's pass mark on the mean squared error; ours adds a relative bound. */
export const MAX_MSE = 0.003;
export const MAX_REL_ERR = 1e-4;
/** fp16 operands carry 11 significant bits: the course's MSE mark still applies, the relative bound is looser. */
export const FP16_MAX_REL_ERR = 1e-2;

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
  /** Precision of the webgpu backend (fp16 is graded against a looser bound, see FP16_MAX_REL_ERR). */
  readonly precision?: Precision;
}

/**
 * One op on one backend, until its results are in host memory: a GPU backend's time includes the
 * upload of the inputs and the read-back, as the course's accelerator timing did.
 */
async function runOpToHost(op: CheckOp, be: Backend, d: CaseData): Promise<Tensor[]> {
  const out = runOp(op, be, d);
  await Promise.all(out.map((t) => t.toHost()));
  for (const t of out) t.dispose(); // host copies stay
  return out;
}

export async function runCheck(options: CheckOptions): Promise<CheckRow[]> {
  const repeat = Math.max(1, options.repeat ?? 3);
  const data = checkCaseData(options.size);
  const loops = getBackend('loops');
  const backends: Backend[] = [];
  for (const n of options.backends) backends.push(await openBackend(n, n === 'webgpu' ? { precision: options.precision } : {}));
  const fp16 = (be: Backend) => be.name === 'webgpu' && options.precision === 'fp16';
  const rows: CheckRow[] = [];
  for (const op of CHECK_OPS) {
    options.onStep?.(`${op}: loops`);
    const ref = await timeMedianAsync(repeat, () => runOpToHost(op, loops, data));
    for (const be of backends) {
      options.onStep?.(`${op}: ${be.name}`);
      // One untimed run first for a GPU backend: it compiles its kernels on first use.
      if (be.name === 'webgpu') await runOpToHost(op, be, data);
      const got = await timeMedianAsync(repeat, () => runOpToHost(op, be, data));
      const err = worst(got.result.map((t, i) => compare(t, ref.result[i]!)));
      rows.push({
        op, backend: fp16(be) ? `${be.name} fp16` : be.name, ms: got.ms, loopsMs: ref.ms, speedup: ref.ms / got.ms, ...err,
        pass: err.mse < MAX_MSE && err.maxRelErr < (fp16(be) ? FP16_MAX_REL_ERR : MAX_REL_ERR),
      });
    }
  }
  return rows;
}

export interface PrecisionComparison {
  readonly image: string;
  readonly weights: string;
  /** The reference: the default CPU backend in fp32. */
  readonly reference: { readonly backend: string; readonly top: Prediction };
  /** webgpu at the reduced precision. */
  readonly reduced: { readonly backend: string; readonly top: Prediction; readonly probOfReferenceClass: number };
  /** max over the 1000 classes of |p_reduced - p_reference|. */
  readonly maxProbDiff: number;
}

/**
 * The course's DLP comparison (0.4790 on the DLP vs 0.4933 on the CPU for the cat): one image
 * classified in fp32 on the CPU and at `precision` on the GPU, and how far the probabilities move.
 */
export async function comparePrecision(options: { weights: string; image: string; precision: Precision }): Promise<PrecisionComparison> {
  const weights = await loadWeightsFile(options.weights);
  const cpu = getBackend(DEFAULT_BACKEND);
  const gpu = await openBackend('webgpu', { precision: options.precision });
  const ref = await classifyImage(new Vgg19(weights, cpu), options.image, { top: 1, capture: ['prob'] });
  const red = await classifyImage(new Vgg19(weights, gpu), options.image, { top: 1, capture: ['prob'] });
  const p0 = ref.activations.get('prob')!.data;
  const p1 = red.activations.get('prob')!.data;
  let maxProbDiff = 0;
  for (let i = 0; i < p0.length; i++) maxProbDiff = Math.max(maxProbDiff, Math.abs(p1[i]! - p0[i]!));
  const top = ref.top[0]!;
  return {
    image: options.image,
    weights: options.weights,
    reference: { backend: `${cpu.name} fp32`, top },
    reduced: { backend: `${gpu.name} ${options.precision}`, top: red.top[0]!, probOfReferenceClass: p1[top.index]! },
    maxProbDiff,
  };
}
