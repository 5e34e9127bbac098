/**
 * VGG19's forward pass layer by layer: where the time of a pass goes, per backend (and per node of
 * onnxruntime, from its own profiler). A ReLU that follows a convolution or a fully connected layer
 * is counted in that layer's row, since the engines fuse it there.
 */
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { Vgg19 } from '../model/vgg19.js';
import { vgg19LayerCosts } from '../model/layer-costs.js';
import { median } from '../util/stats.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { randomImage, runnerName } from './bench.js';

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
 * layers as a matrix-vector product (its weights read once), pools and the flatten as the bytes
 * they read and write (no arithmetic to speak of). A fused ReLU adds no traffic.
 */
export function rowWork(weights: Vgg19Weights, size: number, backend: Backend): Record<string, RowWork> {
  const out: Record<string, RowWork> = {};
  let input: readonly number[] = [1, 3, size, size];
  for (const c of vgg19LayerCosts(weights, size)) {
    const p = weights.layers.get(c.name);
    const output = [1, ...c.output];
    const count = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    if (p?.kind === 'conv') out[c.name] = backend.conv2dWork(input, p.w.shape, { pad: p.pad, stride: p.stride });
    else if (p?.kind === 'fc') out[c.name] = { algorithm: 'matrix-vector', flops: 2 * p.w.size, bytes: 4 * (p.w.size + p.b.size + count(input) + count(output)) };
    else if (c.kind !== 'relu') out[c.name] = { algorithm: c.kind, flops: 0, bytes: 4 * (count(input) + count(output)) };
    input = output;
  }
  return out;
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
  const device = backends.find((b) => b.name === 'webgpu');
  if (device) throw new PasticheError('layer timings are for CPU backends: webgpu queues its work, so per-layer host times mean nothing there');
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
      if (r < warmup) continue;
      for (const [row, ms] of perRow) {
        const list = samples[i]!.get(row) ?? [];
        list.push(ms);
        samples[i]!.set(row, list);
      }
    }
  }
  const ms: Record<string, Record<string, number>> = {};
  const work: Record<string, Record<string, RowWork>> = {};
  backends.forEach((b, i) => {
    ms[runnerName(b)] = Object.fromEntries([...samples[i]!].map(([row, list]) => [row, median(list)]));
    work[runnerName(b)] = rowWork(weights, size, b);
  });
  return { size, rows, ms, work };
}
