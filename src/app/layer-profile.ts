/**
 * VGG19's forward pass layer by layer: where the time of a pass goes, per backend (and per node of
 * onnxruntime, from its own profiler). A ReLU that follows a convolution or a fully connected layer
 * is counted in that layer's row, since the engines fuse it there.
 */
import type { Backend } from '../backends/backend.js';
import { sizeOf, Tensor } from '../tensor/tensor.js';
import { PasticheError } from '../errors.js';
import { Vgg19 } from '../model/vgg19.js';
import { vgg19LayerCosts } from '../model/layer-costs.js';
import { median } from '../util/stats.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { randomImage, runnerName, STYLE_ITERATION_FORWARD, styleIterationGradients } from './bench.js';

export interface LayerRow {
  /** The row's first layer (conv1_1); `label` also names a ReLU counted in it (conv1_1+relu1_1). */
  readonly name: string;
  readonly label: string;
  /** Output shape of the row's last layer, batch 1. */
  readonly output: readonly number[];
  /** 2 x multiply-adds of the layer (as a direct convolution). */
  readonly gflop: number;
}

/** The work of a row as a backend executes it (a convolution's algorithm decides it). */
export interface RowWork {
  readonly algorithm: string;
  /** Floating-point operations executed (Winograd's products and transforms, not the direct count). */
  readonly flops: number;
  /** Bytes moved to and from memory, estimated (backends/conv-work.ts). */
  readonly bytes: number;
}

export interface LayerProfile {
  readonly size: number;
  readonly rows: readonly LayerRow[];
  /** Median milliseconds per row name, per contender (backend row name, or 'onnxruntime'). */
  readonly ms: Record<string, Record<string, number>>;
  /** Per backend contender, each row's work. */
  readonly work: Record<string, Record<string, RowWork>>;
}

/**
 * Each row's work on `backend`: convolutions as the backend runs them (conv2dWork), fully connected
 * layers as it runs them on inputs with `zeroInputs` zero features (linearWork: the weight rows it
 * reads), pools and the flatten as the bytes they read and write (no arithmetic to speak of). A
 * fused ReLU adds no traffic.
 */
export function rowWork(weights: Vgg19Weights, size: number, backend: Backend, zeroInputs: ReadonlyMap<string, number> = new Map()): Record<string, RowWork> {
  const out: Record<string, RowWork> = {};
  for (const c of vgg19LayerCosts(weights, size)) {
    const p = weights.layers.get(c.name);
    const [input, output] = [[1, ...c.input], [1, ...c.output]];
    if (p?.kind === 'conv') out[c.name] = backend.conv2dWork(input, p.w.shape, { pad: p.pad, stride: p.stride });
    else if (p?.kind === 'fc') out[c.name] = backend.linearWork(input, p.w.shape, zeroInputs.get(c.name) ?? 0);
    else if (c.kind !== 'relu') out[c.name] = { algorithm: c.kind, flops: 0, bytes: 4 * (sizeOf(input) + sizeOf(output)) };
  }
  return out;
}

/** A backward row's name: 'conv3_2' -> 'conv3_2 backward'. */
const backwardRow = (name: string) => `${name} backward`;

/** What bounds a pass from below on any engine: one layer's operations and its least traffic. */
export interface FloorLayer {
  readonly name: string;
  readonly flops: number;
  /** Its input, weights and output, each read or written once. */
  readonly bytes: number;
}

/**
 * The layers that set a pass's machine floor: each convolution's products as `backend` runs them
 * (Winograd's, the fewest we know how to compute, where it uses it) and each fully connected
 * layer's as it runs them on inputs with `zeroInputs` zero features (linearWork: native reads only
 * the weight rows of the others), every array moved once. ReLUs, pools, the flatten and the
 * softmax are left out: an engine can fuse them into the layer before. `iteration` adds each
 * convolution's gradient to its input back to the image (style transfer's backward pass, no weight
 * gradients), reading dy and the weights and writing dx.
 */
export function floorLayers(weights: Vgg19Weights, size: number, backend: Backend, until = 'prob', iteration = false, zeroInputs: ReadonlyMap<string, number> = new Map()): FloorLayer[] {
  const out: FloorLayer[] = [];
  for (const c of vgg19LayerCosts(weights, size, until)) {
    const p = weights.layers.get(c.name);
    if (p?.kind !== 'conv' && p?.kind !== 'fc') continue;
    if (p.kind === 'fc') {
      const { flops, bytes } = backend.linearWork([1, ...c.input], p.w.shape, zeroInputs.get(c.name) ?? 0);
      out.push({ name: c.name, flops, bytes });
      continue;
    }
    const bytes = 4 * (sizeOf(c.input) + p.w.size + p.b.size + sizeOf(c.output));
    const geometry = { pad: p.pad, stride: p.stride };
    out.push({ name: c.name, flops: backend.conv2dWork([1, ...c.input], p.w.shape, geometry).flops, bytes });
    if (iteration) {
      const back = backend.conv2dWork([1, ...c.input], p.w.shape, geometry, 'backward-data').flops;
      out.push({ name: backwardRow(c.name), flops: back, bytes: 4 * (sizeOf(c.output) + p.w.size + sizeOf(c.input)) });
    }
  }
  return out;
}

/** A device backend's host time per layer is only its queueing. */
function requireCpu(backends: readonly Backend[]): void {
  if (backends.some((b) => b.name === 'webgpu')) throw new PasticheError('layer timings are for CPU backends: webgpu queues its work, so per-layer host times mean nothing there');
}

/** Adds one timed round's milliseconds per row to the samples. */
function record(samples: Map<string, number[]>, perRow: ReadonlyMap<string, number>): void {
  for (const [row, ms] of perRow) samples.set(row, [...(samples.get(row) ?? []), ms]);
}

/** The median milliseconds per row, per backend. */
function medians(backends: readonly Backend[], samples: readonly Map<string, number[]>[]): Record<string, Record<string, number>> {
  return Object.fromEntries(backends.map((b, i) => [runnerName(b), Object.fromEntries([...samples[i]!].map(([row, list]) => [row, median(list)]))]));
}

/** The table's rows: every layer but the ReLUs, which join the row before them. */
export function layerRows(weights: Vgg19Weights, size: number): { rows: LayerRow[]; rowOf: Map<string, string> } {
  const rows: { name: string; label: string; output: readonly number[]; gflop: number }[] = [];
  const rowOf = new Map<string, string>();
  for (const c of vgg19LayerCosts(weights, size)) {
    const last = rows[rows.length - 1];
    if (c.kind === 'relu' && last) {
      last.label = `${last.name}+${c.name}`;
      rowOf.set(c.name, last.name);
      continue;
    }
    rows.push({ name: c.name, label: c.name, output: c.output, gflop: c.flops / 1e9 });
    rowOf.set(c.name, c.name);
  }
  return { rows, rowOf };
}

/**
 * Times each layer of a forward pass to prob on each backend, rounds interleaved, `warmup` untimed
 * rounds first. CPU backends only: a device backend queues its work, so the host's time between
 * two layers says nothing about the device's.
 */
export async function profileLayers(
  weights: Vgg19Weights,
  backends: readonly Backend[],
  size: number,
  repeat: number,
  warmup: number,
  onRun?: (name: string, round: number, of: number) => void,
): Promise<LayerProfile> {
  requireCpu(backends);
  const { rows, rowOf } = layerRows(weights, size);
  const x = randomImage(size);
  const models = backends.map((b) => new Vgg19(weights, b));
  const samples = backends.map(() => new Map<string, number[]>());
  const rounds = warmup + repeat;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < backends.length; i++) {
      onRun?.(runnerName(backends[i]!), r + 1, rounds);
      const perRow = new Map<string, number>();
      let t = performance.now();
      models[i]!.forward(x, {
        onLayer: (_done, _of, name) => {
          const now = performance.now();
          const row = rowOf.get(name) ?? name;
          perRow.set(row, (perRow.get(row) ?? 0) + now - t);
          t = now;
        },
      });
      if (r >= warmup) record(samples[i]!, perRow);
    }
  }
  const work = Object.fromEntries(backends.map((b, i) => [runnerName(b), rowWork(weights, size, b, fcZeroInputs(models[i]!, weights, size, x))]));
  return { size, rows, ms: medians(backends, samples), work };
}

/** Per fully connected layer, how many of its input features are zero on `x` (after a ReLU, about half). */
export function fcZeroInputs(model: Vgg19, weights: Vgg19Weights, size: number, x: Tensor): Map<string, number> {
  const costs = vgg19LayerCosts(weights, size);
  const before = new Map(costs.flatMap((c, i) => (c.kind === 'fc' && i > 0 ? [[costs[i - 1]!.name, c.name] as const] : [])));
  const { activations } = model.forward(x, { capture: [...before.keys()] });
  return new Map([...activations].map(([name, t]) => [before.get(name)!, zeroFeatures(t)]));
}

/** The features (columns of [N, ...]) that are zero in every row. */
function zeroFeatures(t: Tensor): number {
  const n = t.shape[0]!;
  const k = t.size / n;
  let zeros = 0;
  for (let j = 0; j < k; j++) {
    let all = true;
    for (let i = 0; i < n && all; i++) all = t.data[i * k + j] === 0;
    if (all) zeros++;
  }
  return zeros;
}

/**
 * Each backward step's work on `backend`: a convolution's gradient to its input as the backend
 * computes it (conv2dWork 'backward-data'; the ReLU below it is fused there; its dy or dx in the
 * backend's own layout where the output on either side of it stays so, as `model` keeps them),
 * pools and ReLUs as the bytes they read (dy and x) and write (dx).
 */
function backwardWork(model: Vgg19, weights: Vgg19Weights, size: number, backend: Backend, until: string): Record<string, RowWork> {
  const out: Record<string, RowWork> = {};
  const costs = vgg19LayerCosts(weights, size, until);
  const own = model.ownLayoutNames(STYLE_ITERATION_FORWARD);
  for (const [i, c] of costs.entries()) {
    const p = weights.layers.get(c.name);
    const [input, output] = [[1, ...c.input], [1, ...c.output]];
    const ownLayout = own.has(costs[i - 1]?.name ?? '') || own.has(costs[i + 1]?.name ?? '');
    if (p?.kind === 'conv') out[backwardRow(c.name)] = backend.conv2dWork(input, p.w.shape, { pad: p.pad, stride: p.stride }, 'backward-data', ownLayout);
    else out[backwardRow(c.name)] = { algorithm: `${c.kind} backward`, flops: 0, bytes: 4 * (2 * sizeOf(input) + sizeOf(output)) };
  }
  return out;
}

/**
 * A style-transfer iteration layer by layer: the forward pass to relu5_1 (rows as in profileLayers)
 * and the backward pass to the image (one row per step, named 'conv3_2 backward'), with gradients
 * injected at the style and content layers as stylize does. Same timing rules as profileLayers.
 */
export async function profileStyleIteration(
  weights: Vgg19Weights,
  backends: readonly Backend[],
  size: number,
  repeat: number,
  warmup: number,
  onRun?: (name: string, round: number, of: number) => void,
): Promise<LayerProfile> {
  requireCpu(backends);
  const until = 'relu5_1';
  const all = layerRows(weights, size);
  const last = all.rows.findIndex((r) => r.label.split('+').includes(until));
  const forwardRows = all.rows.slice(0, last + 1);
  const backwardRows: LayerRow[] = [];
  const costs = vgg19LayerCosts(weights, size);
  const upTo = costs.findIndex((c) => c.name === until);
  // A backward step's output is the gradient to its layer's input.
  for (let i = upTo; i >= 0; i--) {
    const c = costs[i]!;
    backwardRows.push({ name: backwardRow(c.name), label: backwardRow(c.name), output: c.input, gflop: c.flops / 1e9 });
  }
  const x = randomImage(size);
  const samples = backends.map(() => new Map<string, number[]>());
  const models = backends.map((b) => new Vgg19(weights, b));
  const grads = new Map<number, Map<string, Tensor>>();
  for (let r = 0; r < warmup + repeat; r++) {
    for (let i = 0; i < backends.length; i++) {
      onRun?.(runnerName(backends[i]!), r + 1, warmup + repeat);
      const perRow = new Map<string, number>();
      let t = performance.now();
      const lap = (row: string) => {
        const now = performance.now();
        perRow.set(row, (perRow.get(row) ?? 0) + now - t);
        t = now;
      };
      const model = models[i]!;
      const { activations } = model.forward(x, { ...STYLE_ITERATION_FORWARD, onLayer: (_d, _n, name) => lap(all.rowOf.get(name) ?? name) });
      if (!grads.has(i)) grads.set(i, styleIterationGradients(backends[i]!, activations));
      t = performance.now();
      const dx = model.backward(grads.get(i)!, { paramGrads: false, onLayer: (name) => lap(backwardRow(name)) });
      for (const tensor of [dx, ...activations.values()]) tensor.recycle();
      if (r >= warmup) record(samples[i]!, perRow);
    }
  }
  const ms = medians(backends, samples);
  const work: Record<string, Record<string, RowWork>> = {};
  for (const [i, b] of backends.entries()) {
    const forward = rowWork(weights, size, b);
    work[runnerName(b)] = { ...Object.fromEntries(forwardRows.map((r) => [r.name, forward[r.name]!])), ...backwardWork(models[i]!, weights, size, b, until) };
  }
  // Only the steps that ran get rows (a ReLU fused into the convolution above it has none).
  const ran = new Set(Object.values(ms).flatMap((m) => Object.keys(m)));
  return { size, rows: [...forwardRows, ...backwardRows.filter((r) => ran.has(r.name))], ms, work };
}
