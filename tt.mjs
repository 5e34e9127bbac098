import { loadVgg19Weights } from './dist/src/weights/load-vgg19.js';
import { Vgg19 } from './dist/src/model/vgg19.js';
import { getBackend } from './dist/src/backends/index.js';
import { buildTargets, evaluate, parseLayers } from './dist/src/app/stylize.js';
import { evaluateTiled, haloFor } from './dist/src/app/tiled-evaluate.js';
import { Tensor } from './dist/src/tensor/tensor.js';
import { uniformRng } from './dist/src/util/random.js';
const w = await loadVgg19Weights('test/fixtures/vgg19-tiny/vgg19-tiny-old.mat');
const be = getBackend(process.argv[2] ?? 'native');
const model = new Vgg19(w, be);
const rnd = (shape, seed) => { const r = uniformRng(seed); const t = new Tensor(shape); for (let i = 0; i < t.size; i++) t.data[i] = (r() * 2 - 1) * 60; return t; };
const [H, W] = [Number(process.argv[3] ?? 384), Number(process.argv[4] ?? 640)];
const content = rnd([1, 3, H, W], 1), styleImg = rnd([1, 3, 200, 300], 2), x = rnd([1, 3, H, W], 3);
const ow = { contentWeight: 1, styleWeight: 500, tvWeight: 0.01, contentLayers: parseLayers('relu4_2', 'c'), styleLayers: parseLayers('relu1_1,relu2_1,relu3_1,relu4_1,relu5_1', 's') };
const targets = buildTargets(model, content, [styleImg], [1], ow);
console.log('halo', haloFor('relu5_1'));
const ref = await evaluate(model, x, targets, ow);
const rg = Float32Array.from(ref.grad.data);
for (const tile of [128, 256, 96]) {
  const t0 = performance.now();
  const e = await evaluateTiled(model, x, targets, ow, { tile });
  let num = 0, den = 0, maxd = 0; for (let i = 0; i < rg.length; i++) { num += (e.grad.data[i] - rg[i]) ** 2; den += rg[i] ** 2; maxd = Math.max(maxd, Math.abs(e.grad.data[i] - rg[i])); }
  console.log(tile, 'content', e.content / ref.content - 1, 'style', e.style / ref.style - 1, 'tv', e.tv - ref.tv, 'grad rel L2', Math.sqrt(num / den), 'max', maxd, ((performance.now() - t0) / 1000).toFixed(2), 's');
}
for (const halo of [0, 16, 32, 48]) {
  const e = await evaluateTiled(model, x, targets, ow, { tile: 128, halo });
  let num = 0, den = 0, maxd=0, maxr=0; for (let i = 0; i < rg.length; i++) { maxd=Math.max(maxd,Math.abs(e.grad.data[i] - rg[i])); maxr=Math.max(maxr,Math.abs(rg[i])); }
  console.log('halo', halo, 'relError', maxd/maxr, 'style', e.style/ref.style-1);
}
