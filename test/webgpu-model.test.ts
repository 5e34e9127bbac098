/**
 * VGG19 and style transfer on the webgpu backend: the tiny fixtures against PyTorch, backward and
 * the style objective against the CPU, bounded memory over repeated passes, and clear errors when
 * the device goes away.
 */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { forwardRunner, styleIterationRunner, timeInterleaved } from '../src/app/bench.js';
import { comparePrecision, runCheck } from '../src/app/check.js';
import { classifyImage } from '../src/app/classify.js';
import { buildTargets, evaluate, parseLayers, type ObjectiveWeights } from '../src/app/stylize.js';
import { evaluateTiled } from '../src/app/tiled-evaluate.js';
import { planMemory } from '../src/app/memory-plan.js';
import { TransformerNet } from '../src/model/transformer/transformer-net.js';
import { loadTransformerModel } from '../src/weights/transformer-file.js';
import { stylize } from '../src/app/stylize-job.js';
import { getBackend } from '../src/backends/index.js';
import { PasticheError } from '../src/errors.js';
import { Vgg19 } from '../src/model/vgg19.js';
import { readNpy } from '../src/tensor/npy.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { randomVgg19Weights } from '../src/model/vgg19-params.js';
import { FIXTURES, TINY, assertClose, randomTensor } from './helpers.js';
import { testGpu } from './webgpu-env.js';
import { checkTransformerBackward } from './transformer-reference.js';
import { checkTrainingReplay } from './train-reference.js';

const gpu = await testGpu();
const ts = getBackend('ts');
const input = await readNpy(`${TINY}ref-old/input.npy`);

for (const file of ['vgg19-tiny-old.mat', 'vgg19-tiny-new.mat']) {
  test(`${file} on webgpu: pool5, fc7, fc8 and prob equal PyTorch (rel. error < 1e-4)`, async () => {
    const model = new Vgg19(await loadMatConvNetVgg19(`${TINY}${file}`), gpu);
    const { activations } = model.forward(input, { capture: ['pool5', 'relu7', 'fc8', 'prob'] });
    for (const [name, ref] of [['pool5', 'pool5'], ['relu7', 'fc7'], ['fc8', 'fc8'], ['prob', 'prob']] as const) {
      const got = await activations.get(name)!.toHost();
      const want = await readNpy(`${TINY}ref-old/${ref}.npy`);
      assertClose(got.reshape(want.shape), want, 1e-4, `${file} ${name}`);
    }
  });
}

test('classifying chelsea.png on webgpu gives the same top-5 as PyTorch', async () => {
  const model = new Vgg19(await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`), gpu);
  const r = await classifyImage(model, `${TINY}chelsea.png`, { top: 5 });
  assert.deepEqual(r.top.map((p) => p.index), [185, 949, 984, 978, 151]);
  assert.ok(Math.abs(r.top[0]!.prob - 0.375233302788687) < 1e-4);
});

// 16 passes, not more: the pool's byte count must not change at all after the second pass, so one
// leaked buffer per pass shows at the third; on SwiftShader each pass costs ~0.5 s of the suite.
test('16 consecutive forward passes (and 8 backward) do not grow GPU memory', async () => {
  const model = new Vgg19(randomVgg19Weights(3, 16), gpu);
  const x = randomTensor([1, 3, 32, 32], 1, -50, 50);
  const pass = async (i: number) => {
    const { output } = model.forward(x, { until: 'relu5_1' });
    if (i < 8) {
      // The injected gradient is the caller's (backward leaves it alone): disposed here, not left
      // to the garbage collector's finaliser, whose timing made the pool's count vary by one buffer.
      const g = gpu.scale(output, 1);
      model.backward(new Map([['relu5_1', g]]), { paramGrads: false }).dispose();
      g.dispose();
    }
    await output.toHost();
    output.dispose();
  };
  await pass(0);
  await pass(1);
  const after2 = gpu.pool.allocatedBytes;
  for (let i = 2; i < 16; i++) await pass(i);
  assert.equal(gpu.pool.allocatedBytes, after2, `allocated ${after2} bytes after 2 passes, ${gpu.pool.allocatedBytes} after 16`);
});

test('backward on webgpu equals ts: gradients injected at several layers, down to the image', async () => {
  const weights = randomVgg19Weights(3, 16);
  const x = randomTensor([2, 3, 32, 32], 1, -50, 50);
  const grads = new Map([['relu3_1', randomTensor([2, 16, 8, 8], 2)], ['relu2_1', randomTensor([2, 8, 16, 16], 3)], ['conv1_2', randomTensor([2, 4, 32, 32], 4)]]);
  const results = [];
  for (const be of [ts, gpu]) {
    const model = new Vgg19(weights, be);
    model.forward(x, { until: 'relu3_1' });
    results.push(await model.backward(grads, { paramGrads: false }).toHost());
  }
  assertClose(results[1]!, results[0]!, 1e-4, 'dL/dx');
});

test('training on webgpu: the cross-entropy and an SGD step that lowers it, parameters updated on the GPU', async () => {
  // 64 px (pool5 2 x 2): SwiftShader takes 0.1-0.3 s a convolution at 224 whatever the channels.
  const model = new Vgg19(randomVgg19Weights(5, 32, 64), gpu);
  const x = randomTensor([1, 3, 64, 64], 9, -60, 60);
  const labels = Int32Array.from([3]);
  model.forward(x);
  const loss = (await model.lossBackward(labels).loss.toHost()).data[0]!;
  const ref = new Vgg19(randomVgg19Weights(5, 32, 64), ts);
  ref.forward(x);
  const refLoss = ref.lossBackward(labels).loss.data[0]!;
  assert.ok(Math.abs(loss - refLoss) < 1e-4 * Math.abs(refLoss), `loss ${loss} vs ts ${refLoss}`);
  model.update(1e-3);
  model.forward(x);
  const after = (await model.lossBackward(labels).loss.toHost()).data[0]!;
  assert.ok(after < loss, `loss ${loss} -> ${after}`);
});

const lab: ObjectiveWeights = {
  contentWeight: 1,
  styleWeight: 500,
  tvWeight: 1e-3,
  contentLayers: parseLayers('relu4_2', 'content'),
  styleLayers: parseLayers('relu1_1,relu2_1,relu3_1,relu4_1,relu5_1', 'style'),
};

test('the style objective on webgpu (losses computed on the GPU) equals ts: losses and gradient', async () => {
  const tiny = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
  const content = await readNpy(`${FIXTURES}style/content.npy`);
  const style = await readNpy(`${FIXTURES}style/style.npy`);
  const x = randomTensor(content.shape, 5, -40, 40);
  const out = [];
  for (const be of [ts, gpu]) {
    const model = new Vgg19(tiny, be);
    out.push(await evaluate(model, x, buildTargets(model, content, [style], [1], lab), lab));
  }
  const [a, b] = out as [typeof out[0], typeof out[0]];
  for (const k of ['content', 'style', 'tv', 'total'] as const) assert.ok(Math.abs(b[k] - a[k]) <= 1e-4 * Math.abs(a[k]), `${k}: ${b[k]} vs ${a[k]}`);
  assertClose(b.grad, a.grad, 1e-4, 'gradient');
  const trajectory = JSON.parse(readFileSync(`${FIXTURES}style/trajectory.json`, 'utf8')) as { steps: { total: number }[] };
  assert.ok(trajectory.steps.length > 0);
});

test('stylize runs on webgpu and agrees with ts', async () => {
  const tiny = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
  const o = { content: `${TINY}chelsea.png`, styles: [`${FIXTURES}resize/gradient301x199.png`], weights: tiny, size: 40, iterations: 3, optimizer: 'adam' as const, lr: 1, ...lab, init: { kind: 'noise' as const }, seed: 3 };
  const a = await stylize({ ...o, backend: getBackend('ts') });
  const b = await stylize({ ...o, backend: gpu });
  assertClose(b.image, a.image, 1e-3, 'webgpu vs ts');
  assert.ok(Math.abs(b.bestLoss - a.bestLoss) < 1e-3 * a.bestLoss);
});

test("the course's check grades webgpu (fp32 and fp16) against loops", async () => {
  const size = { c: 8, cout: 6, h: 6, w: 10 };
  for (const precision of ['fp32', 'fp16'] as const) {
    const rows = await runCheck({ backends: ['webgpu'], repeat: 1, size, precision });
    assert.equal(rows.length, 4);
    for (const r of rows) {
      assert.equal(r.backend, precision === 'fp16' ? 'webgpu fp16' : 'webgpu');
      assert.ok(r.pass, `${precision} ${r.op}: mse ${r.mse} rel ${r.maxRelErr}`);
      if (precision === 'fp32') assert.ok(r.maxRelErr < 1e-5);
    }
  }
});

test('fp16 changes the probabilities a little, as the DLP did (check --precision fp16)', async () => {
  const c = await comparePrecision({ weights: `${TINY}vgg19-tiny-old.mat`, image: `${TINY}chelsea.png`, precision: 'fp16', repeat: 1, styleSize: 32 });
  assert.equal(c.reference.top.index, 185);
  assert.ok(Math.abs(c.reference.top.prob - 0.375233302788687) < 1e-5);
  assert.ok(c.maxProbDiff > 1e-6 && c.maxProbDiff < 0.05, `largest probability change ${c.maxProbDiff}`);
  // The style trajectory: Adam's losses in fp16 stay near fp32's, step by step.
  const adam = c.trajectories.find((t) => t.optimizer === 'adam')!;
  assert.equal(adam.reduced.length, 5);
  assert.ok(adam.maxRelDiff < 0.02, JSON.stringify(adam));
});

test('the bench runners time webgpu (forward and style iteration, read back each time)', async () => {
  const w = randomVgg19Weights(2, 32);
  const rows = await timeInterleaved([forwardRunner(w, gpu), styleIterationRunner(w, gpu, 48)], 2, 1);
  assert.deepEqual(rows.map((r) => r.name), ['webgpu', 'webgpu']);
  for (const r of rows) assert.ok(r.runs.length === 2 && r.medianMs > 0);
});

// Last: it ends the device.
test("tiled style loss and gradient on webgpu equal its untiled ones (rel. 1e-4); the plan keeps a tile's tensors under the device's buffer limit", async () => {
  const weights = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
  const model = new Vgg19(weights, gpu);
  const w: ObjectiveWeights = { contentWeight: 1, styleWeight: 500, tvWeight: 0.01, contentLayers: parseLayers('relu4_2', 'c'), styleLayers: parseLayers('relu1_1,relu3_1,relu5_1', 's') };
  const [content, style, x] = [randomTensor([1, 3, 131, 177], 1, -60, 60), randomTensor([1, 3, 96, 128], 2, -60, 60), randomTensor([1, 3, 131, 177], 3, -60, 60)];
  const targets = buildTargets(model, content, [style], [1], w);
  const ref = await evaluate(model, x, targets, w);
  const refGrad = ref.grad.clone();
  // 2 x 2 tiles: the GPU's crops, injections and summed gradients; the thin last tiles are the CPU
  // tests' (tiled.test.ts), SwiftShader took 50 s for the 3 x 3 of tile 64.
  const tiled = await evaluateTiled(model, x, targets, w, { tile: 96 });
  for (const k of ['content', 'style', 'tv', 'total'] as const) assert.ok(Math.abs(tiled[k] - ref[k]) <= 1e-4 * Math.abs(ref[k]), `${k}: ${tiled[k]} vs ${ref[k]}`);
  assertClose(tiled.grad, refGrad, 1e-4, 'tiled gradient on webgpu');
  assert.ok(Number.isFinite(gpu.maxTensorBytes) && gpu.maxTensorBytes > 0, `the device's limit: ${gpu.maxTensorBytes}`);
  const plan = planMemory({ layers: weights.layers, ...w, optimizer: 'adam', budget: Infinity, maxTensorBytes: 4 * 4 * 300 * 300 }, 2000, 2000);
  // conv1's 4 channels at the crop (tile + 160 px a side) stay under the limit.
  assert.ok(plan.tile !== undefined && 4 * 4 * (plan.tile + 160) ** 2 <= 4 * 4 * 300 * 300, `tile ${plan.tile}`);
});

test("the real-time style network's ops and their backward on webgpu equal loops; a TransformerNet saved by torch.save gives PyTorch's output (1e-4 of the range)", async () => {
  const loops = getBackend('loops')!;
  const x = randomTensor([2, 5, 9, 13], 2, -3, 3);
  const weight = randomTensor([5], 3, 0.5, 1.5);
  const bias = randomTensor([5], 4, -1, 1);
  assertClose(await gpu.reflectionPad2d(x, 4).toHost(), loops.reflectionPad2d(x, 4), 1e-9, 'reflectionPad2d');
  assertClose(await gpu.instanceNorm2d(x, weight, bias, 1e-5, true).toHost(), loops.instanceNorm2d(x, weight, bias, 1e-5, true), 1e-5, 'instanceNorm2d');
  assertClose(await gpu.upsampleNearest2d(x, 2).toHost(), loops.upsampleNearest2d(x, 2), 1e-9, 'upsampleNearest2d');
  assertClose(await gpu.channelAffine2d(x, weight, bias, true).toHost(), loops.channelAffine2d(x, weight, bias, true), 1e-6, 'channelAffine2d');
  const y = loops.instanceNorm2d(x, weight, bias, 1e-5, true);
  const dy = randomTensor(x.shape, 5, -1, 1);
  for (const mask of [undefined, y]) {
    const [a, b] = [gpu.instanceNorm2dBackward(dy, x, weight, 1e-5, mask), loops.instanceNorm2dBackward(dy, x, weight, 1e-5, mask)];
    for (const k of ['dx', 'dw', 'db'] as const) assertClose(await a[k].toHost(), b[k], 1e-4, `instanceNorm2dBackward ${k}${mask ? ' + ReLU' : ''}`);
  }
  // Batch norm: the same kernels with a group per channel over the batch, and its statistics.
  const bnGpu = gpu.batchNorm2d(x, weight, bias, 1e-5, true);
  const bnRef = loops.batchNorm2d(x, weight, bias, 1e-5, true);
  assertClose(await bnGpu.y.toHost(), bnRef.y, 1e-5, 'batchNorm2d');
  assertClose(await bnGpu.mean.toHost(), bnRef.mean, 1e-5, 'batchNorm2d mean');
  assertClose(await bnGpu.variance.toHost(), bnRef.variance, 1e-5, 'batchNorm2d variance');
  for (const mask of [undefined, bnRef.y]) {
    const [a, b] = [gpu.batchNorm2dBackward(dy, x, weight, 1e-5, mask), loops.batchNorm2dBackward(dy, x, weight, 1e-5, mask)];
    for (const k of ['dx', 'dw', 'db'] as const) assertClose(await a[k].toHost(), b[k], 1e-4, `batchNorm2dBackward ${k}${mask ? ' + ReLU' : ''}`);
  }
  // Padding 4 of 9 rows: cells with a mirror above and below.
  const dp = randomTensor([2, 5, 17, 21], 6, -1, 1);
  assertClose(await gpu.reflectionPad2dBackward(dp, x.shape, 4).toHost(), loops.reflectionPad2dBackward(dp, x.shape, 4), 1e-6, 'reflectionPad2dBackward');
  const du = randomTensor([2, 5, 18, 26], 7, -1, 1);
  assertClose(await gpu.upsampleNearest2dBackward(du, 2).toHost(), loops.upsampleNearest2dBackward(du, 2), 1e-6, 'upsampleNearest2dBackward');
  const dir = `${FIXTURES}transformer/`;
  const net = new TransformerNet(await loadTransformerModel(`${dir}transformer-tiny.pth`), gpu);
  const want = await readNpy(`${dir}output.npy`);
  const got = await net.forward(await readNpy(`${dir}input.npy`)).toHost();
  assert.deepEqual(got.shape, want.shape);
  let [lo, hi, worst] = [Infinity, -Infinity, 0];
  for (const v of want.data) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  for (let i = 0; i < got.size; i++) worst = Math.max(worst, Math.abs(got.data[i]! - want.data[i]!));
  assert.ok(worst <= 1e-4 * (hi - lo), `largest difference ${worst}, range ${hi - lo}`);
});

test("the real-time style network's backward on webgpu: every parameter's gradient and dL/dx equal PyTorch's autograd", async () => {
  await checkTransformerBackward(gpu);
  await checkTransformerBackward(gpu, 'deconv');
});

// Last: it destroys the file's device.
test('training the style network on webgpu: gradients, losses and weights after 3 Adam steps equal a PyTorch float64 replay, with instance norm and with batch norm', async () => {
  await checkTrainingReplay(gpu, 1e-3);
  await checkTrainingReplay(gpu, 1e-3, 'batch');
});

test('a lost device gives clear errors, not a crash or a hang', async () => {
  const y = gpu.relu(randomTensor([8], 1));
  const { gpuContext } = await import('../src/backends/webgpu/gpu-device.js');
  (await gpuContext()).device.destroy();
  await assert.rejects(y.toHost(), (e: unknown) => e instanceof PasticheError && /device was lost/.test(e.message));
  assert.throws(() => gpu.relu(randomTensor([8], 1)), (e: unknown) => e instanceof PasticheError && /device was lost/.test(e.message));
});
