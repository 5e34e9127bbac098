/**
 * Benchmarks: medians of repeated runs after a warm-up, with the contenders interleaved run by run
 * and compared as ratios within the same run (timings on a shared machine drift between runs).
 */
import type { Backend } from '../backends/backend.js';
import { Vgg19 } from '../model/vgg19.js';
import { Lbfgs } from '../style/optimizers.js';
import { vgg19LayerCosts } from '../model/layer-costs.js';
import { Tensor } from '../tensor/tensor.js';
import { fillUniform, uniformRng } from '../util/random.js';
import { median } from '../util/stats.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { buildTargets, evaluate } from './stylize.js';
import { parseStylizeSettings } from './stylize-request.js';

/** Something to time: one call of `run` is one measurement. */
export interface Runner {
  readonly name: string;
  run(): unknown;
}

export interface Timing {
  readonly name: string;
  /** Every timed run, milliseconds. */
  readonly runs: number[];
  readonly medianMs: number;
}

/** Times the runners in turn, `warmup` untimed rounds then `repeat` timed ones. */
export async function timeInterleaved(
  runners: readonly Runner[],
  repeat: number,
  warmup: number,
  onRun?: (name: string, round: number, of: number) => void,
): Promise<Timing[]> {
  const runs = runners.map(() => [] as number[]);
  const rounds = warmup + repeat;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < runners.length; i++) {
      onRun?.(runners[i]!.name, r + 1, rounds);
      const t0 = performance.now();
      await runners[i]!.run();
      if (r >= warmup) runs[i]!.push(performance.now() - t0);
    }
  }
  return runners.map((rn, i) => ({ name: rn.name, runs: runs[i]!, medianMs: median(runs[i]!) }));
}

/** Multiply-adds x 2 of a forward pass at size x size up to `until` (convolutions and fc layers). */
export function vgg19ForwardFlops(weights: Vgg19Weights, size: number, until = 'prob'): number {
  return vgg19LayerCosts(weights, size, until).reduce((sum, c) => sum + c.flops, 0);
}

/** A random mean-subtracted image [1, 3, size, size]. */
export function randomImage(size: number, seed = 7): Tensor {
  return new Tensor([1, 3, size, size], fillUniform(new Float32Array(3 * size * size), uniformRng(seed), -120, 130));
}

/** The layers a style-transfer iteration reads (the default content and style layers). */
export const STYLE_ITERATION_LAYERS = ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu4_2', 'relu5_1'] as const;

/** The style iteration's forward pass: as stylize's evaluate() runs it, the captures in the backend's own layout. */
export const STYLE_ITERATION_FORWARD = { until: 'relu5_1', capture: [...STYLE_ITERATION_LAYERS], captureOwnLayout: true } as const;

/**
 * Gradients for a style iteration's captured features: their shapes and layouts, as the losses'
 * come (Backend.mixChannels and the content loss's element-wise ops keep them); their values do not
 * change the work. They live where the backend computes (a GPU computes the losses there too).
 */
export function styleIterationGradients(backend: Backend, activations: ReadonlyMap<string, Tensor>): Map<string, Tensor> {
  return new Map([...activations].map(([name, a]) => [name, backend.scale(a, 1e-3)]));
}

/** The row label: a backend's name, with its precision where that is not fp32. */
export function runnerName(backend: Backend): string {
  const precision = (backend as { precision?: string }).precision;
  return precision && precision !== 'fp32' ? `${backend.name} ${precision}` : backend.name;
}

/**
 * VGG19 forward from the image to prob, batch 1, until the probabilities are in host memory (a GPU
 * backend: the image's upload, the queued work and one read-back).
 */
export function forwardRunner(weights: Vgg19Weights, backend: Backend, size = 224): Runner {
  const model = new Vgg19(weights, backend);
  const x = randomImage(size);
  return {
    name: runnerName(backend),
    run: async () => {
      const { output } = model.forward(x, { inference: true });
      await output.toHost();
      output.dispose();
    },
  };
}

/**
 * One style-transfer iteration's network work: forward to relu5_1 keeping the content and style
 * layers, then back-propagate gradients injected at those layers to the image (no weight gradients).
 */
export function styleIterationRunner(weights: Vgg19Weights, backend: Backend, size: number): Runner {
  const model = new Vgg19(weights, backend);
  const x = randomImage(size);
  let grads: Map<string, Tensor> | undefined;
  return {
    name: runnerName(backend),
    run: async () => {
      const { activations } = model.forward(x, STYLE_ITERATION_FORWARD);
      grads ??= styleIterationGradients(backend, activations);
      const dx = model.backward(grads, { paramGrads: false });
      await dx.toHost();
      for (const t of [dx, ...activations.values()]) t.recycle();
    },
  };
}

/**
 * One step of `pastiche stylize` with the default preset's objective at size x size: the forward
 * pass, the content and style losses with their gradients, the backward pass (stylize.ts's
 * evaluate), then an L-BFGS step with a full history. The history is filled first from a synthetic
 * quadratic (a step's cost depends on how many pairs it holds, not on their values: 100 steps at
 * 512 px take ~10 s), and the steps are taken on a copy of the image, so that every run evaluates
 * the same one (`run` returns its loss). `optimizerMs`: each run's L-BFGS step, warm-up runs included.
 */
export function stylizeStepRunner(weights: Vgg19Weights, backend: Backend, size: number, history: number): Runner & { readonly optimizerMs: readonly number[] } {
  const model = new Vgg19(weights, backend);
  const x = randomImage(size);
  // The default preset's settings, as `stylize` with no options parses them.
  const w = parseStylizeSettings({}, 1);
  const targets = buildTargets(model, randomImage(size, 8), [randomImage(size, 9)], [1], w);
  const opt = new Lbfgs(w.lr, history, backend);
  // Random points of the quadratic sum_j (1 + j % 7) v_j^2 / 2: every pair has y.s > 0 and is kept
  // (an optimisation of it would converge and leave the later pairs out).
  const moved = new Float32Array(x.size);
  const g = new Float32Array(x.size);
  const rng = uniformRng(11);
  for (let i = 0; i <= history; i++) {
    fillUniform(moved, rng, -1, 1);
    for (let j = 0; j < g.length; j++) g[j] = (1 + (j % 7)) * moved[j]!;
    opt.step(moved, g);
  }
  const optimizerMs: number[] = [];
  return {
    name: runnerName(backend),
    optimizerMs,
    run: async () => {
      const e = await evaluate(model, x, targets, w);
      const t0 = performance.now();
      opt.step(moved, e.grad.data);
      optimizerMs.push(performance.now() - t0);
      return e.total;
    },
  };
}
