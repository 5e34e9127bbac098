/**
 * The course's grading, re-created (lab 3-3's speed test): convolution and max-pooling forward and
 * backward on the course's case, every backend against the four-loop reference, with errors, times
 * and speed-ups.
 */
import type { Backend } from '../backends/backend.js';
import { DEFAULT_BACKEND, getBackend, openBackend, type Precision } from '../backends/index.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadWeightsFile } from './load-model.js';
import { classifyImage, readClassifierImage, type Prediction } from './classify.js';
import { stylizeImages } from './stylize.js';
import { parseStylizeSettings } from './stylize-request.js';
import { readRgb } from '../image/preprocess.js';
import type { RgbImage } from '../image/rgb.js';
import { PasticheError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { NumpyRandomState } from '../util/random.js';
import { compare, worst, type ErrorMeasures } from '../tensor/compare.js';
import { median, timeMedianAsync } from '../util/stats.js';

/** The case: input and top gradient 1x256x24x40, weights 256x3x3x256, conv 3x3 pad 1 stride 1. */
export const CHECK_CASE = { n: 1, c: 256, h: 24, w: 40, cout: 256, k: 3, pad: 1, stride: 1, seed: 1234 } as const;
/** The course's pass mark on the mean squared error; ours adds a relative bound. */
export const MAX_MSE = 0.003;
export const MAX_REL_ERR = 1e-4;
/** fp16 operands carry 11 significant bits: the course's MSE mark still applies, the relative bound is looser. */
export const FP16_MAX_REL_ERR = 1e-2;
/** bf16 operands carry 8: one unit in the last place at 1, 2^-8 (the case measured 2.4e-4 forward, 3.9e-4 backward). */
export const BF16_MAX_REL_ERR = 2 ** -8;

/** The backend that runs a reduced precision: fp16 on the GPU, bf16 on the native CPU one. */
export function reducedPrecisionBackend(precision: Precision): string | undefined {
  return precision === 'fp16' ? 'webgpu' : precision === 'bf16' ? 'native' : undefined;
}

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
  /** fp16 (webgpu) or bf16 (native): that backend runs at it, graded against a looser bound (FP16_, BF16_MAX_REL_ERR). */
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
  const precision = options.precision ?? 'fp32';
  const reducedName = reducedPrecisionBackend(precision);
  for (const n of options.backends) backends.push(await openBackend(n, n === reducedName ? { precision } : {}));
  const reduced = (be: Backend) => be.name === reducedName;
  const bound = (be: Backend) => (!reduced(be) ? MAX_REL_ERR : precision === 'fp16' ? FP16_MAX_REL_ERR : BF16_MAX_REL_ERR);
  const rows: CheckRow[] = [];
  for (const op of CHECK_OPS) {
    options.onStep?.(`${op}: loops`);
    const ref = await timeMedianAsync(repeat, () => runOpToHost(op, loops, data));
    for (const be of backends) {
      options.onStep?.(`${op}: ${be.name}`);
      // Two untimed runs first: a GPU compiles its kernels on first use, and native keeps its
      // transformed weights from their second run on.
      for (let i = 0; i < 2; i++) await runOpToHost(op, be, data);
      const got = await timeMedianAsync(repeat, () => runOpToHost(op, be, data));
      const err = worst(got.result.map((t, i) => compare(t, ref.result[i]!)));
      rows.push({
        op, backend: reduced(be) ? `${be.name} ${precision}` : be.name, ms: got.ms, loopsMs: ref.ms, speedup: ref.ms / got.ms, ...err,
        pass: err.mse < MAX_MSE && err.maxRelErr < bound(be),
      });
    }
  }
  return rows;
}

export interface Trajectory {
  readonly optimizer: 'adam' | 'lbfgs';
  /** The total loss after each step, in fp32 and at the reduced precision. */
  readonly reference: readonly number[];
  readonly reduced: readonly number[];
  /** max over the steps of |reduced - reference| / reference. */
  readonly maxRelDiff: number;
}

export interface PrecisionComparison {
  readonly image: string;
  readonly weights: string;
  /** fp32: native for a bf16 comparison (the same kernels), else the default CPU backend. */
  readonly reference: { readonly backend: string; readonly top: Prediction; readonly forwardMs: number };
  readonly reduced: { readonly backend: string; readonly top: Prediction; readonly probOfReferenceClass: number; readonly forwardMs: number };
  /** max over the 1000 classes of |p_reduced - p_reference|. */
  readonly maxProbDiff: number;
  /** TRAJECTORY_STEPS of a style transfer of the image (style: stripes) from the same start, both precisions. */
  readonly trajectories: readonly Trajectory[];
  /** The longest side of that style transfer. */
  readonly styleSize: number;
  /** Median ms of one of its steps (adam), both precisions. */
  readonly stepMs: { readonly reference: number; readonly reduced: number };
}

export const TRAJECTORY_STEPS = 5;

/** A style image that needs no file: diagonal bands of three colours. */
function stripes(size: number): RgbImage {
  const colours = [[200, 40, 40], [240, 200, 60], [30, 60, 160]] as const;
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) data.set(colours[Math.floor((x + y) / 8) % 3]!, (y * size + x) * 3);
  return { width: size, height: size, data };
}

/**
 * The course's DLP comparison (0.4790 on the DLP vs 0.4933 on the CPU for the cat), and more: one
 * image classified in fp32 and at `precision` (fp16 on webgpu, bf16 on native) with how far the
 * probabilities move and each forward pass's median time, then a few steps of a style transfer in
 * both from the same start, Adam and L-BFGS, with their losses step by step.
 */
export async function comparePrecision(options: { weights: string; image: string; precision: Precision; repeat?: number; styleSize?: number }): Promise<PrecisionComparison> {
  const name = reducedPrecisionBackend(options.precision);
  if (!name) throw new PasticheError('compare fp32 with a reduced precision: fp16 or bf16');
  const weights = await loadWeightsFile(options.weights);
  const ref = name === 'native' ? getBackend('native') : getBackend(DEFAULT_BACKEND);
  const red = await openBackend(name, { precision: options.precision });
  const pixels = await readClassifierImage(options.image);
  const repeat = Math.max(1, options.repeat ?? 3);
  // Both warmed up first, twice (a GPU compiles its kernels; native keeps its transformed weights
  // from their second pass on), then timed in turns, so that a drifting machine slows both alike.
  const models = [new Vgg19(weights, ref), new Vgg19(weights, red)] as const;
  const run = (i: 0 | 1) => classifyImage(models[i], options.image, { top: 1, capture: ['prob'], pixels });
  await run(0);
  await run(1);
  const last = [await run(0), await run(1)];
  const times: [number[], number[]] = [[], []];
  for (let r = 0; r < repeat; r++) {
    for (const i of [0, 1] as const) times[i].push((last[i] = await run(i)).forwardSeconds * 1000);
  }
  const p0 = last[0]!.activations.get('prob')!.data;
  const p1 = last[1]!.activations.get('prob')!.data;
  let maxProbDiff = 0;
  for (let i = 0; i < p0.length; i++) maxProbDiff = Math.max(maxProbDiff, Math.abs(p1[i]! - p0[i]!));
  const top = last[0]!.top[0]!;

  const styleSize = options.styleSize ?? 128;
  const content = await readRgb(options.image);
  const style = stripes(styleSize);
  const steps = async (be: Backend, optimizer: 'adam' | 'lbfgs') => {
    const totals: number[] = [];
    const seconds: number[] = [];
    await stylizeImages({
      ...parseStylizeSettings({ iterations: TRAJECTORY_STEPS, optimizer, size: styleSize }, 1),
      content, styles: [style], weights, backend: be,
      onProgress: (p) => {
        if (p.kind !== 'iteration') return;
        totals.push(p.total);
        seconds.push(p.seconds);
      },
    });
    return { totals, stepMs: median(seconds.slice(1).map((s, i) => (s - seconds[i]!) * 1000)) };
  };
  const trajectories: Trajectory[] = [];
  const stepMs = { reference: 0, reduced: 0 };
  for (const optimizer of ['adam', 'lbfgs'] as const) {
    const a = await steps(ref, optimizer);
    const b = await steps(red, optimizer);
    if (optimizer === 'adam') Object.assign(stepMs, { reference: a.stepMs, reduced: b.stepMs });
    const maxRelDiff = Math.max(...a.totals.map((t, i) => Math.abs(b.totals[i]! - t) / Math.abs(t)));
    trajectories.push({ optimizer, reference: a.totals, reduced: b.totals, maxRelDiff });
  }
  return {
    image: options.image,
    weights: options.weights,
    reference: { backend: `${ref.name} fp32`, top, forwardMs: median(times[0]) },
    reduced: { backend: `${red.name} ${options.precision}`, top: last[1]!.top[0]!, probOfReferenceClass: p1[top.index]!, forwardMs: median(times[1]) },
    maxProbDiff,
    trajectories,
    styleSize,
    stepMs,
  };
}
