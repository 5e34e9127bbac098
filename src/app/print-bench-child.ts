/**
 * One print-size run of `bench --sections print` (print-bench.ts), in a process of its own: it
 * gets a PrintRequest, stylizes synthetic pictures of that size within the budget, and answers with
 * the plan, the times and its own peak resident memory.
 */
import { readFileSync } from 'node:fs';
import { openBackend } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import type { RgbImage } from '../image/rgb.js';
import { randomVgg19Weights } from '../model/vgg19-params.js';
import { uniformRng } from '../util/random.js';
import { loadWeightsFile } from './load-model.js';
import type { MemoryPlan } from './memory-plan.js';
import type { PrintRequest, PrintRow } from './print-bench.js';
import { parseStylizeSettings } from './stylize-request.js';
import { machineMemoryBudget } from './stylize-job.js';
import { stylizeImages } from './stylize.js';
import { tileGrid } from './tiled-evaluate.js';

/** A picture with structure at every scale (smooth waves and noise), so that no tile is trivial. */
function synthetic(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  const r = uniformRng(seed);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++) {
        const v = 128 + 60 * Math.sin((x * (c + 1)) / 97 + seed) * Math.cos(y / (53 + 20 * c)) + 40 * (r() - 0.5);
        data[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, v));
      }
  return { width, height, data };
}

async function run(q: PrintRequest): Promise<PrintRow> {
  const send = (stage: string) => process.send?.({ stage });
  send('loading weights');
  const weights = q.weightsFile ? await loadWeightsFile(q.weightsFile, { classifier: false }) : randomVgg19Weights(1);
  const backend = await openBackend(q.backend);
  const content = synthetic(q.width, q.height, 1);
  const styleScale = q.styleSide / Math.max(q.width, q.height);
  const style = synthetic(Math.round(q.styleSide * (q.width >= q.height ? 1 : q.width / q.height)), Math.round(q.styleSide * (q.height > q.width ? 1 : q.height / q.width)), 2);
  let plan: MemoryPlan | undefined;
  let last = performance.now();
  let targetsSeconds = 0;
  const iterationSeconds: number[] = [];
  await stylizeImages({
    ...parseStylizeSettings({ iterations: q.iterations, styleScale }, 1),
    size: { height: q.height, width: q.width },
    maxMemory: q.maxMemory,
    memoryLimitBytes: machineMemoryBudget(),
    content,
    styles: [style],
    weights,
    backend,
    onProgress: (p) => {
      const now = performance.now();
      if (p.kind === 'plan') {
        plan = p.plan;
        send(p.text);
        last = now;
      } else if (p.kind === 'tile') {
        send(`${p.pass === 'targets' ? 'targets' : `iteration ${p.iteration}: ${p.pass}`} tile ${p.done}/${p.tiles}`);
        if (p.pass === 'targets' && p.done === p.tiles) {
          targetsSeconds = (now - last) / 1000;
          last = now;
        }
      } else if (p.kind === 'iteration') {
        iterationSeconds.push((now - last) / 1000);
        last = now;
        send(`iteration ${p.iteration} of ${p.of}`);
      }
    },
  });
  if (!plan) throw new PasticheError('no plan was made');
  // An untiled run has no tile events: its first iteration includes the targets.
  const crops = plan.tile === undefined ? q.width * q.height : tileGrid(q.height, q.width, plan.tile, plan.halo).reduce((s, t) => s + (t.cy1 - t.cy0) * (t.cx1 - t.cx0), 0);
  return {
    width: q.width, height: q.height, plan, haloOverhead: crops / (q.width * q.height), targetsSeconds, iterationSeconds,
    peakRssBytes: peakRss(),
  };
}

/**
 * This process's peak resident memory. On Linux getrusage's maxrss survives exec, so a child
 * spawned by a large parent reports at least the parent's size: /proc's VmHWM is its own.
 */
function peakRss(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

process.once('message', (q: PrintRequest) => {
  run(q).then(
    (row) => process.send?.({ row }, () => process.exit(0)),
    (e: unknown) => process.send?.({ error: e instanceof Error ? e.message : String(e) }, () => process.exit(1)),
  );
});
