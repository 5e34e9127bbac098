/**
 * The loss and gradient of style transfer computed tile by tile equal the untiled ones: tiles that
 * divide the image and tiles that do not, odd sizes, on the CPU backends (webgpu: webgpu-model.test.ts); a halo shorter than half
 * the receptive field breaks it (so the test can fail); and a whole stylize run, tiled or not.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildTargets, evaluate, parseLayers, stylizeImages, type ObjectiveWeights } from '../src/app/stylize.js';
import { parseStylizeSettings } from '../src/app/stylize-request.js';
import { buildTargetsTiled, evaluateTiled, haloFor, tileGrid } from '../src/app/tiled-evaluate.js';
import { getBackend } from '../src/backends/index.js';
import { readRgb } from '../src/image/preprocess.js';
import { Vgg19 } from '../src/model/vgg19.js';
import { Tensor } from '../src/tensor/tensor.js';
import { uniformRng } from '../src/util/random.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { FIXTURES, TINY, assertClose, runCli } from './helpers.js';

const weights = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
const random = (shape: number[], seed: number) => {
  const r = uniformRng(seed);
  const t = new Tensor(shape);
  for (let i = 0; i < t.size; i++) t.data[i] = (r() * 2 - 1) * 60;
  return t;
};
/** ||a - b|| / ||b||. */
function l2Error(a: Tensor, b: Tensor): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.size; i++) {
    num += (a.data[i]! - b.data[i]!) ** 2;
    den += b.data[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

const objective: ObjectiveWeights = {
  contentWeight: 1,
  styleWeight: 500,
  tvWeight: 0.01,
  contentLayers: parseLayers('relu4_2', 'content'),
  styleLayers: parseLayers('relu1_1,relu2_1,relu3_1,relu4_1,relu5_1', 'style'),
};

test('the halo is half of relu5_1\'s 156-px receptive field on the 16-px grid; tiles cover the image once', () => {
  assert.equal(haloFor('relu5_1'), 80);
  assert.equal(haloFor('relu1_1'), 16);
  const tiles = tileGrid(200, 333, 96, 80);
  assert.equal(tiles.length, 3 * 4);
  const covered = new Uint8Array(200 * 333);
  for (const t of tiles) for (let y = t.y0; y < t.y1; y++) for (let x = t.x0; x < t.x1; x++) covered[y * 333 + x]!++;
  assert.ok(covered.every((c) => c === 1));
  assert.ok(tiles.every((t) => t.cy0 % 16 === 0 && t.cx0 % 16 === 0));
  assert.throws(() => tileGrid(100, 100, 40, 80), /multiple of 16/);
});

const CASES = {
  native: [[384, 640, [128, 256]], [200, 333, [96]]],
  // ts is ~8x slower than native: the odd size only; loops (the reference) a small odd one.
  ts: [[200, 333, [96]]],
  loops: [[97, 131, [48]]],
} as const;

for (const backend of ['native', 'ts', 'loops'] as const) {
  for (const [h, w, tiles] of CASES[backend]) {
    test(`tiled loss and gradient equal the untiled ones on ${backend}, ${w}x${h}, tiles ${tiles.join(' and ')} (rel. 1e-4)`, { skip: backend === 'native' && !getBackend('native') }, async () => {
      const model = new Vgg19(weights, getBackend(backend));
      const [content, style] = [random([1, 3, h, w], 1), random([1, 3, 160, 240], 2)];
      const targets = buildTargets(model, content, [style], [1], objective);
      // The targets tile by tile too: content features assembled from interiors, Gram matrices summed.
      const tiledTargets = await buildTargetsTiled(model, content, [style], [1], objective, { tile: tiles[0]! });
      for (const kind of ['content', 'style'] as const) {
        for (const [name, t] of targets[kind]) assertClose(tiledTargets[kind].get(name)!.reshape(t.shape), await t.toHost(), 1e-4, `${kind} target ${name}`);
      }
      const x = random([1, 3, h, w], 3);
      const ref = await evaluate(model, x, targets, objective);
      const refGrad = new Tensor(x.shape, Float32Array.from(ref.grad.data));
      for (const tile of tiles) {
        const e = await evaluateTiled(model, x, targets, objective, { tile });
        for (const k of ['content', 'style', 'tv', 'total'] as const) assert.ok(Math.abs(e[k] - ref[k]) <= 1e-4 * Math.abs(ref[k]), `${k}: ${e[k]} vs ${ref[k]} (tile ${tile})`);
        assertClose(e.grad, refGrad, 1e-4, `gradient, tile ${tile}`);
        assert.ok(l2Error(e.grad, refGrad) < 1e-5, `gradient, tile ${tile}: relative L2 error ${l2Error(e.grad, refGrad)}`);
      }
      if (backend === 'native' && h === 384) {
        // A 32-px halo, under half of relu5_1's receptive field: crop borders reach interior features.
        // Measured: the style loss 1.9e-3 off (0.36 with no halo), the gradient's L2 error 100x the tiled one's.
        const short = await evaluateTiled(model, x, targets, objective, { tile: 128, halo: 32 });
        assert.ok(Math.abs(short.style / ref.style - 1) > 1e-3, `a 32-px halo: style loss ${short.style} vs ${ref.style}`);
      }
    });
  }
}

test('--tile is checked with the other settings: a multiple of 16, one line', async () => {
  const r = await runCli(['stylize', `${TINY}chelsea.png`, `${FIXTURES}resize/gradient301x199.png`, '-o', '/tmp/never.png', '--tile', '40', '-w', `${TINY}vgg19-tiny-old.mat`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "pastiche: --tile must be a multiple of 16 (the pools' grid; got 40)\n");
});

test('a whole stylize run at 512x768, tiled (256) or not: the same loss trajectory (rel. 1e-3) and image', async () => {
  const content = await readRgb(`${TINY}chelsea.png`);
  const style = await readRgb(`${FIXTURES}resize/gradient301x199.png`);
  const run = async (tile?: number) => {
    const totals: number[] = [];
    const r = await stylizeImages({
      ...parseStylizeSettings({ iterations: 3, optimizer: 'adam', tile }, 1),
      size: { height: 512, width: 768 },
      content,
      styles: [style],
      weights,
      backend: getBackend(),
      onProgress: (p) => p.kind === 'iteration' && totals.push(p.total),
    });
    return { totals, rgb: r.rgb };
  };
  const plain = await run();
  const tiled = await run(256);
  plain.totals.forEach((t, i) => assert.ok(Math.abs(tiled.totals[i]! - t) <= 1e-3 * t, `iteration ${i + 1}: ${tiled.totals[i]} vs ${t}`));
  // Adam moves each pixel by about lr per step whatever the gradient's size, so where a gradient is
  // near zero its summation order can flip a step: a few pixels differ by up to 3 steps of lr = 1.
  let max = 0;
  let sum = 0;
  for (let i = 0; i < plain.rgb.data.length; i++) {
    const d = Math.abs(plain.rgb.data[i]! - tiled.rgb.data[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  assert.ok(max <= 3 && sum / plain.rgb.data.length < 0.01, `pixel differences: largest ${max}, mean ${sum / plain.rgb.data.length}`);
});
