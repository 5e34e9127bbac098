/**
 * Benchmarks of whole-network work, measured as medians of repeated runs after a warm-up, and
 * compared as ratios within the same run (timings on a shared machine drift between runs).
 */
import { getBackend } from '../backends/index.js';
import { Vgg19 } from '../model/vgg19.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import { windowOutput } from '../backends/shapes.js';
import { Tensor } from '../tensor/tensor.js';
import { fillUniform, uniformRng } from '../util/random.js';
import { median } from '../util/stats.js';
import type { Vgg19Weights } from '../weights/vgg19-weights.js';

/** Multiply-adds x 2 of a forward pass at size x size (convolutions and fully connected layers). */
export function vgg19ForwardFlops(weights: Vgg19Weights, size: number, until = 'prob'): number {
  let h = size;
  let w = size;
  let flops = 0;
  for (const spec of VGG19_LAYERS) {
    const p = weights.layers.get(spec.name);
    if (p?.kind === 'conv') {
      const [cin, k, , cout] = p.w.shape as [number, number, number, number];
      h = windowOutput(h, k, p.pad, p.stride);
      w = windowOutput(w, k, p.pad, p.stride);
      flops += 2 * cin * k * k * cout * h * w;
    } else if (p?.kind === 'pool') {
      h = windowOutput(h, p.kernel, p.pad, p.stride);
      w = windowOutput(w, p.kernel, p.pad, p.stride);
    } else if (p?.kind === 'fc') {
      flops += 2 * p.w.size;
    }
    if (spec.name === until) break;
  }
  return flops;
}

export interface ForwardBenchRow {
  readonly backend: string;
  /** Every timed run, milliseconds. */
  readonly runs: number[];
  readonly medianMs: number;
  readonly gflops: number;
}

export interface ForwardBenchOptions {
  readonly weights: Vgg19Weights;
  readonly backends: readonly string[];
  readonly size?: number;
  readonly repeat?: number;
  readonly warmup?: number;
  readonly onRun?: (backend: string, run: number, of: number) => void;
}

/** VGG19 forward (input to prob), batch 1, random input; backends interleaved run by run. */
export function benchForward(o: ForwardBenchOptions): ForwardBenchRow[] {
  const size = o.size ?? 224;
  const repeat = Math.max(1, o.repeat ?? 5);
  const warmup = Math.max(0, o.warmup ?? 1);
  const x = new Tensor([1, 3, size, size], fillUniform(new Float32Array(3 * size * size), uniformRng(7), -120, 130));
  const models = o.backends.map((b) => new Vgg19(o.weights, getBackend(b)));
  const until = size === 224 ? 'prob' : 'pool5';
  const runs = models.map(() => [] as number[]);
  for (let r = 0; r < warmup + repeat; r++) {
    models.forEach((m, i) => {
      o.onRun?.(m.backend.name, r + 1, warmup + repeat);
      const t0 = performance.now();
      m.forward(x, { until });
      if (r >= warmup) runs[i]!.push(performance.now() - t0);
    });
  }
  const flops = vgg19ForwardFlops(o.weights, size, until);
  return models.map((m, i) => {
    const ms = median(runs[i]!);
    return { backend: m.backend.name, runs: runs[i]!, medianMs: ms, gflops: flops / (ms * 1e6) };
  });
}
