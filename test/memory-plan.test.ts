/**
 * Fitting a style transfer into a memory budget (memory-plan.ts): untiled when it fits, else the
 * largest tile that does, a shorter L-BFGS history or Adam, a GPU's buffer limit respected, and one
 * clear line when nothing fits. Then the CLI: --max-memory parsed, refused before anything is
 * written, tiles chosen and shown, and the tile events of a run.
 */
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { describePlan, optimizerBytesPerPixel, parseByteSize, planMemory, type ParamShapes, type PlanRequest } from '../src/app/memory-plan.js';
import { tileGrid } from '../src/app/tiled-evaluate.js';
import { parseStylizeSettings } from '../src/app/stylize-request.js';
import { stylizeImages } from '../src/app/stylize.js';
import { getBackend } from '../src/backends/index.js';
import { Adam, Lbfgs } from '../src/style/optimizers.js';
import { readRgb } from '../src/image/preprocess.js';
import { VGG19_FC_WIDTH, VGG19_LAYERS, VGG19_WIDTHS } from '../src/model/vgg19-table.js';
import type { Progress } from '../src/app/progress.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { FIXTURES, TINY, runCli } from './helpers.js';
import { tempDir } from './temp.js';

/** The real VGG19's shapes (no values needed). */
function fullShapes(): ParamShapes {
  const m = new Map<string, ParamShapes extends ReadonlyMap<string, infer V> ? V : never>();
  let cin = 3;
  let block = 0;
  for (const spec of VGG19_LAYERS) {
    if (spec.kind === 'conv') {
      const cout = VGG19_WIDTHS[block]!;
      m.set(spec.name, { kind: 'conv', w: { shape: [cin, 3, 3, cout], size: cin * 9 * cout }, b: { size: cout } });
      cin = cout;
    } else if (spec.kind === 'pool') {
      m.set(spec.name, { kind: 'pool', kernel: 2, stride: 2, pad: 0 });
      block++;
    }
  }
  for (const [name, din, dout] of [['fc6', 7 * 7 * 512, VGG19_FC_WIDTH], ['fc7', VGG19_FC_WIDTH, VGG19_FC_WIDTH], ['fc8', VGG19_FC_WIDTH, 1000]] as const) {
    m.set(name, { kind: 'fc', w: { shape: [din, dout], size: din * dout }, b: { size: dout } });
  }
  return m;
}

const GiB = 2 ** 30;
const request = (o: Partial<PlanRequest>): PlanRequest => ({
  layers: fullShapes(),
  contentLayers: [{ name: 'relu4_2' }],
  styleLayers: ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1'].map((name) => ({ name })),
  optimizer: 'lbfgs',
  budget: Infinity,
  ...o,
});

test('sizes: 3G, 512M, 2.5GiB, plain bytes; nonsense is undefined', () => {
  assert.equal(parseByteSize('3G'), 3 * GiB);
  assert.equal(parseByteSize('512m'), 512 * 2 ** 20);
  assert.equal(parseByteSize('2.5GiB'), 2.5 * GiB);
  assert.equal(parseByteSize('1000000000'), 1e9);
  for (const bad of ['', 'G', '-1G', 'three', '3X', '0']) assert.equal(parseByteSize(bad), undefined, bad);
});

test('a plan is untiled with the full L-BFGS history when it fits, and tiles only when it must', () => {
  const roomy = planMemory(request({ budget: 20 * GiB }), 512, 512);
  assert.equal(roomy.tile, undefined);
  assert.equal(roomy.lbfgsHistory, 100);
  assert.ok(roomy.bytes <= 20 * GiB);
  // 2048x2048 untiled: ~11 GiB of activations alone; 4 GiB forces tiles and a short history.
  const tight = planMemory(request({ budget: 4 * GiB }), 2048, 2048);
  assert.ok(tight.tile !== undefined && tight.tile >= 256, `tile ${tight.tile}`);
  assert.ok(tight.bytes <= 4 * GiB);
  assert.ok(tight.lbfgsHistory < 100 && tight.lbfgsHistory >= 5, `history ${tight.lbfgsHistory}`);
  // The larger the budget, the larger the tile (fewer halo pixels recomputed), never the other way.
  const tiles = [3, 4, 6, 8].map((g) => planMemory(request({ budget: g * GiB, optimizer: 'adam' }), 4000, 3000).tile ?? Infinity);
  for (let i = 1; i < tiles.length; i++) assert.ok(tiles[i]! >= tiles[i - 1]!, `tiles ${tiles.join(', ')}`);
});

test('at 4000x3000 in 3 GiB, L-BFGS cannot keep even 5 pairs (0.29 GB each): Adam, in tiles, within the budget', () => {
  const p = planMemory(request({ budget: 3 * GiB }), 3000, 4000);
  assert.equal(p.optimizer, 'adam');
  assert.ok(p.tile !== undefined && p.bytes <= 3 * GiB, `${p.tile}: ${p.bytes / GiB} GiB`);
  assert.ok(p.parts.image > 0.5 * GiB, 'the image-sized arrays are counted');
  // A history the user set is kept as given: then a budget that cannot hold it is an error.
  assert.throws(() => planMemory(request({ budget: 3 * GiB, lbfgsHistory: 100 }), 3000, 4000), /4000x3000 output needs at least .* GiB .*L-BFGS history 100.*more than the memory budget/);
});

test("the plan counts what L-BFGS holds once its history is full, and Adam's moments", () => {
  // Every array the optimiser keeps, each memory block once (a pair's two vectors share one).
  const held = (o: object) => {
    const buffers = new Set<ArrayBufferLike>();
    const visit = (v: unknown): void => {
      if (ArrayBuffer.isView(v)) buffers.add(v.buffer);
      else if (Array.isArray(v)) v.forEach(visit);
    };
    Object.values(o).forEach(visit);
    return [...buffers].reduce((sum, b) => sum + b.byteLength, 0);
  };
  const pixels = 30 * 20;
  const x = Float32Array.from({ length: 3 * pixels }, (_, j) => Math.sin(j));
  const grad = () => Float32Array.from(x, (v, j) => (1 + (j % 5)) * v);
  for (const history of [1, 3]) {
    const lbfgs = new Lbfgs(0.1, history);
    for (let it = 0; it < 6; it++) lbfgs.step(x, grad());
    assert.equal(held(lbfgs), pixels * optimizerBytesPerPixel('lbfgs', history), `L-BFGS, history ${history}`);
  }
  const adam = new Adam(0.1);
  adam.step(x, grad());
  assert.equal(held(adam), pixels * optimizerBytesPerPixel('adam', 0), 'Adam');
});

test("the transformed weights counted are the native backend's tiles at the run's sizes: conv4's F(6x6) from 288 px up, unless lean ones keep a larger tile", () => {
  const fixed = (size: number) => planMemory(request({}), size, size).parts.fixed;
  // conv4_1 (256 -> 512) and conv4_2..4 (512 -> 512), each way: F(4x4) keeps 36/9 of the weights, F(6x6) 64/9.
  const conv4 = 256 * 9 * 512 + 3 * 512 * 9 * 512;
  const bytes = (m: number) => 2 * 4 * ((m + 2) ** 2 / 9) * conv4;
  // 256 px: conv4 at 32x32 takes F(4x4); 512 px: at 64x64, F(6x6); every other layer alike at both.
  assert.ok(Math.abs(fixed(512) - fixed(256) - (bytes(6) - bytes(4))) < 1, `${fixed(512) - fixed(256)}`);
  // Lean transforms (F(4x4) past the cap) where the faster ones would cost a smaller tile: 1024 px
  // in 4 GiB takes 384-px tiles with them, 320-px ones without; a roomy budget keeps F(6x6).
  const style = [{ height: 384, width: 512 }];
  const tight = planMemory(request({ budget: 4 * GiB }), 1024, 1024, style);
  assert.equal(tight.leanWeights, true);
  assert.match(describePlan(tight), /^1024x1024 in 384-px tiles \(9 tiles, 80-px halo\), L-BFGS history 50, lean weight transforms: about 3\.\d GiB of 4\.0 GiB$/);
  const fast = planMemory(request({ budget: 4 * GiB, leanWeights: false }), 1024, 1024, style);
  assert.ok(fast.tile! < tight.tile!, `${fast.tile}-px tiles with F(6x6) transforms`);
  assert.equal(planMemory(request({ budget: 20 * GiB }), 1024, 1024, style).leanWeights, false);
  assert.ok(Math.abs(planMemory(request({ leanWeights: true }), 512, 512).parts.fixed - fixed(256)) < 1, 'lean: conv4 in F(4x4) at 512 px too');
  // A tiled plan's sizes are its crops, edges and corners included, as tileGrid cuts them.
  const p = planMemory(request({ tile: 128, budget: 20 * GiB }), 600, 520);
  const crops = new Set(tileGrid(600, 520, 128, p.halo).map((t) => `${t.cy1 - t.cy0}x${t.cx1 - t.cx0}`));
  assert.deepEqual(new Set(p.sides.map(([h, w]) => `${h}x${w}`)), crops);
});

test('a forced --tile is kept; a budget too small for the smallest tile is one line naming the size and what it needs', () => {
  assert.equal(planMemory(request({ tile: 128, budget: 20 * GiB }), 512, 512).tile, 128);
  const r = request({ budget: 1 * GiB, budgetName: '--max-memory', optimizer: 'adam' });
  assert.throws(() => planMemory(r, 1000, 1000), (e: Error) => {
    assert.match(e.message, /^a 1000x1000 output needs at least \d+\.\d GiB \(in 16-px tiles, Adam\), more than --max-memory \(1\.0 GiB\): choose a smaller --size or a larger --max-memory$/);
    return true;
  });
});

test("a GPU's buffer limit caps the tile: no activation of a tile exceeds it", () => {
  const limit = 128 * 2 ** 20;
  const untiled = planMemory(request({ budget: Infinity, optimizer: 'adam' }), 2048, 2048);
  assert.equal(untiled.tile, undefined);
  const p = planMemory(request({ budget: Infinity, optimizer: 'adam', maxTensorBytes: limit }), 2048, 2048);
  // conv1's 64 channels at the crop: 64 x (tile + 160)^2 x 4 bytes <= 128 MiB -> tile <= 563.
  assert.ok(p.tile !== undefined && 64 * (p.tile + 160) ** 2 * 4 <= limit && p.tile >= 384, `tile ${p.tile}`);
  assert.throws(() => planMemory(request({ maxTensorBytes: limit, tile: 1024 }), 2048, 2048), /buffer limit: choose a smaller --tile/);
});

test('--max-memory: parsed with the other settings; too small for any tile -> one line, exit 1, nothing written', async () => {
  assert.throws(() => parseStylizeSettings({ maxMemory: 'lots' }, 1, () => '--max-memory'), /--max-memory must be a size such as 3G or 500M \(got 'lots'\)/);
  assert.equal(parseStylizeSettings({ maxMemory: '3G' }, 1).maxMemory, 3 * GiB);
  const out = join(tempDir('pastiche-budget-'), 'never.png');
  const r = await runCli(['stylize', `${TINY}chelsea.png`, `${FIXTURES}resize/gradient301x199.png`, '-o', out, '--max-memory', '2M', '-w', `${TINY}vgg19-tiny-old.mat`, '-s', '2000']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^pastiche: a 2000x\d+ output needs at least \d+ MiB \(in 16-px tiles, .*\), more than --max-memory \(2 MiB\): choose a smaller --size or a larger --max-memory\n$/);
  assert.equal(existsSync(out), false);
});

test('a run whose budget needs tiles (two scales, two blended styles, original colours): the plan says so, tile events count each pass, the image equals the untiled run', async () => {
  const weights = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
  const content = await readRgb(`${TINY}chelsea.png`);
  const styles = [await readRgb(`${FIXTURES}resize/gradient301x199.png`), await readRgb(`${TINY}chelsea.png`)];
  const run = async (maxMemory?: number) => {
    const events: Progress[] = [];
    const r = await stylizeImages({
      ...parseStylizeSettings({ iterations: 2, optimizer: 'adam', size: 400, scales: '200', originalColors: true, styleBlend: '0.7,0.3' }, 2),
      maxMemory, content, styles, weights, backend: getBackend(),
      onProgress: (p) => events.push(p.kind === 'iteration' ? { ...p, image: p.image.clone() } : p),
    });
    return { r, events };
  };
  const plain = await run();
  const plans = (e: Progress[]) => e.flatMap((p) => (p.kind === 'plan' ? [p] : []));
  assert.deepEqual(plans(plain.events).map((p) => [p.scale, p.plan.tile]), [[200, undefined], [400, undefined]]);
  // Just under the untiled estimate at 400 px: that scale must tile, the 200-px one need not.
  const budget = plans(plain.events)[1]!.plan.bytes - 1;
  const tiled = await run(budget);
  const [small, large] = plans(tiled.events);
  assert.equal(small!.plan.tile, undefined);
  assert.ok(large!.plan.tile !== undefined && large!.plan.bytes <= budget, large!.text);
  const n = large!.plan.tiles;
  const tileEvents = tiled.events.flatMap((e) => (e.kind === 'tile' ? [e] : []));
  for (const pass of ['loss', 'gradient'] as const) {
    const ofPass = tileEvents.filter((e) => e.pass === pass);
    assert.equal(ofPass.length, 2 * n, `${pass}: ${n} tiles x 2 iterations at 400 px`);
    assert.deepEqual(ofPass.slice(0, n).map((e) => [e.iteration, e.done, e.tiles]), Array.from({ length: n }, (_, i) => [3, i + 1, n]));
  }
  // The targets: the content image's tiles, then each style image's.
  assert.ok(tileEvents.filter((e) => e.pass === 'targets').length > n);
  let max = 0;
  for (let i = 0; i < plain.r.rgb.data.length; i++) max = Math.max(max, Math.abs(plain.r.rgb.data[i]! - tiled.r.rgb.data[i]!));
  assert.ok(max <= 3, `largest pixel difference ${max}`);
  const totals = (e: Progress[]) => e.flatMap((p) => (p.kind === 'iteration' ? [p.total] : []));
  totals(plain.events).forEach((t, i) => assert.ok(Math.abs(totals(tiled.events)[i]! - t) <= 1e-3 * t, `iteration ${i + 1}`));
});

test('4000x3000 within --max-memory 1.5G (bench --sections print, tiny weights, one iteration): tiled, and its process peaks under the budget', async () => {
  const r = await runCli(['bench', '--sections', 'print', '--print-sizes', '4000x3000', '--print-iterations', '1', '-w', `${TINY}vgg19-tiny-old.mat`, '--max-memory', '1.5G', '--json'], { timeout: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const row = (JSON.parse(r.stdout) as { print: { rows: { plan: { tile?: number; bytes: number; budget: number }; peakRssBytes: number; iterationSeconds: number[]; haloOverhead: number }[] } }).print.rows[0]!;
  assert.ok(row.plan.tile !== undefined, 'the whole image does not fit: tiles');
  assert.equal(row.plan.budget, 1.5 * GiB);
  assert.ok(row.peakRssBytes <= row.plan.budget, `peak RSS ${(row.peakRssBytes / 2 ** 20).toFixed(0)} MiB, budget 1536 MiB`);
  // The estimate is an upper bound of what was used (it is what the budget is checked against).
  assert.ok(row.peakRssBytes <= row.plan.bytes, `peak RSS ${(row.peakRssBytes / 2 ** 20).toFixed(0)} MiB, estimate ${(row.plan.bytes / 2 ** 20).toFixed(0)} MiB`);
  assert.equal(row.iterationSeconds.length, 1);
  assert.ok(row.haloOverhead > 1);
});

test('bench --print-sizes: a size that is not one is a one-line error before any work', async () => {
  const r = await runCli(['bench', '--sections', 'print', '--print-sizes', '1024,12x']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "pastiche: --print-sizes: '12x' is not a size such as 2048 or 4000x3000 (64 to 16384 px)\n");
});
