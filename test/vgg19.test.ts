/** VGG19 on the tiny fixtures against PyTorch: pool5, fc8, prob, and the whole pipeline from the PNG. */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyImage } from '../src/app/classify.js';
import type { Backend } from '../src/backends/backend.js';
import { availableBackends, getBackend, nativeBackend } from '../src/backends/index.js';
import { Vgg19 } from '../src/model/vgg19.js';
import { VGG19_LAYERS } from '../src/model/vgg19-table.js';
import { clearHostPool, hostPoolBytes } from '../src/tensor/host-pool.js';
import { readNpy } from '../src/tensor/npy.js';
import { Tensor } from '../src/tensor/tensor.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { randomVgg19Weights } from '../src/model/vgg19-params.js';
import { TINY, assertClose, nchwThroughout, randomTensor, relError } from './helpers.js';

const FILES = ['vgg19-tiny-old.mat', 'vgg19-tiny-old-z.mat', 'vgg19-tiny-new.mat'];
const input = await readNpy(`${TINY}ref-old/input.npy`);
const refs = {
  pool5: await readNpy(`${TINY}ref-old/pool5.npy`),
  relu7: await readNpy(`${TINY}ref-old/fc7.npy`),
  fc8: await readNpy(`${TINY}ref-old/fc8.npy`),
  prob: await readNpy(`${TINY}ref-old/prob.npy`),
};

test('the table has the 44 layers of VGG19 in order', () => {
  assert.equal(VGG19_LAYERS.length, 44);
  assert.deepEqual(VGG19_LAYERS.slice(0, 5).map((l) => l.name), ['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1']);
  assert.deepEqual(VGG19_LAYERS.slice(-7).map((l) => l.name), ['flatten', 'fc6', 'relu6', 'fc7', 'relu7', 'fc8', 'prob']);
  assert.equal(VGG19_LAYERS.filter((l) => l.kind === 'conv').length, 16);
});

for (const file of FILES) {
  for (const backend of availableBackends()) {
    test(`${file} on ${backend}: pool5, fc7, fc8 and prob equal PyTorch (rel. error < 1e-4)`, async () => {
      const model = new Vgg19(await loadMatConvNetVgg19(`${TINY}${file}`), getBackend(backend));
      const { activations } = model.forward(input, { capture: ['pool5', 'relu7', 'fc8', 'prob', 'input'] });
      for (const [name, ref] of Object.entries(refs)) {
        const got = activations.get(name)!;
        assertClose(got.reshape(ref.shape), ref, 1e-4, name);
      }
      assert.equal(activations.get('input'), input);
    });
  }
}

test('the whole pipeline from chelsea.png agrees with prob.npy (Pillow-exact preprocessing)', async () => {
  const model = new Vgg19(await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`), getBackend('ts'));
  const r = await classifyImage(model, `${TINY}chelsea.png`, { top: 5, capture: ['input', 'prob'] });
  assert.equal(relError(r.activations.get('input')!, input), 0, 'input identical to PIL preprocessing');
  const prob = r.activations.get('prob')!;
  assertClose(prob.reshape([1, 1000]), refs.prob, 1e-5, 'prob');
  assert.deepEqual(r.top.map((p) => p.index), [185, 949, 984, 978, 151]);
  assert.ok(Math.abs(r.top[0]!.prob - 0.375233302788687) < 1e-5);
  assert.equal(r.top[0]!.label, 'Norfolk terrier');
});

test("Vgg19's leanWeights reaches every convolution call, forward and backward (the memory plan's choice)", () => {
  for (const leanWeights of [true, false]) {
    const seen: (boolean | undefined)[] = [];
    const ts = getBackend('ts');
    // The real ts backend, its convolutions' parameters noted on the way.
    const be = new Proxy(ts, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver) as unknown;
        if (typeof v !== 'function' || !['conv2d', 'conv2dMaxPool', 'conv2dBackwardData', 'conv2dBackwardParams'].includes(key as string)) return v;
        return (...args: unknown[]) => {
          seen.push((args.find((a) => typeof a === 'object' && a !== null && 'stride' in a) as { leanWeights?: boolean }).leanWeights);
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const model = new Vgg19(randomVgg19Weights(3, 16), be, { leanWeights });
    const { output } = model.forward(randomTensor([1, 3, 32, 32], 1, -50, 50), { until: 'relu3_1' });
    model.backward(new Map([['relu3_1', randomTensor(output.shape, 2)]]));
    assert.ok(seen.length >= 15, `${seen.length} calls`); // 5 convolutions: forward, gradients to data and weights
    assert.deepEqual(new Set(seen), new Set([leanWeights]));
  }
});

test('building a VGG19 allocates nothing for its parameters: the layers hold the loaded tensors', () => {
  const weights = randomVgg19Weights(1, 4);
  const before = process.memoryUsage().arrayBuffers;
  const model = new Vgg19(weights, getBackend('ts'));
  const grown = process.memoryUsage().arrayBuffers - before;
  // The parameters are ~39 MB here; placeholders of their size were made and dropped until 2026-12-03.
  assert.ok(grown < 2 ** 20, `building the model allocated ${grown} bytes of arrays`);
  for (const [name, p] of weights.layers) {
    if (p.kind === 'pool') continue;
    const layer = model.layer(name) as unknown as { weight: Tensor; bias: Tensor };
    assert.equal(layer.weight, p.w, name);
    assert.equal(layer.bias.data, p.b.data, name);
  }
});

test('forward stops at the layer asked for, and backward reaches the input', () => {
  const model = new Vgg19(randomVgg19Weights(3, 16), getBackend('ts'));
  const x = randomTensor([2, 3, 32, 32], 1, -50, 50);
  const { output } = model.forward(x, { until: 'relu3_1' });
  assert.deepEqual([...output.shape], [2, 16, 8, 8]);
  // d(sum relu3_1 * r)/dx by backward, against a finite difference along a random direction.
  const r = randomTensor(output.shape, 2);
  const dx = model.backward(new Map([['relu3_1', r]]), { paramGrads: false });
  assert.deepEqual([...dx.shape], [...x.shape]);
  const dir = randomTensor(x.shape, 4);
  const L = (t: number) => {
    const xt = new Tensor(x.shape, x.data.map((v, i) => v + t * dir.data[i]!));
    const y = model.forward(xt, { until: 'relu3_1' }).output;
    let s = 0;
    for (let i = 0; i < y.size; i++) s += y.data[i]! * r.data[i]!;
    return s;
  };
  let analytic = 0;
  for (let i = 0; i < dx.size; i++) analytic += dx.data[i]! * dir.data[i]!;
  // Through five float32 layers a small step drowns in rounding and a large one crosses ReLU and
  // max-pool kinks; the best of a few steps must agree (a broken chain is off by far more).
  const errors = [1e-2, 3e-3, 1e-3].map((h) => Math.abs((L(h) - L(-h)) / (2 * h) - analytic) / Math.abs(analytic));
  assert.ok(Math.min(...errors) < 3e-3, `directional derivative errors ${errors.join(', ')} (analytic ${analytic})`);
});

test('repeated passes on native reuse their memory and give the same numbers', () => {
  const model = new Vgg19(randomVgg19Weights(5, 16), getBackend('native'));
  const x = randomTensor([2, 3, 40, 40], 6, -50, 50);
  const r = randomTensor([2, 16, 10, 10], 7);
  const held: Tensor[] = [];
  const pass = () => {
    const out = model.forward(x, { until: 'relu3_1', capture: ['relu2_1'] });
    const dx = model.backward(new Map([['relu3_1', r]]), { paramGrads: false });
    held.push(out.output, out.activations.get('relu2_1')!, dx);
    return [out.output.data.slice(), out.activations.get('relu2_1')!.data.slice(), dx.data.slice()];
  };
  clearHostPool();
  const first = pass();
  const pooled = hostPoolBytes();
  assert.ok(pooled > 0, 'the backward pass gives its intermediate gradients back');
  for (let i = 0; i < 3; i++) {
    const again = pass();
    // Bit for bit: a recycled array still read by somebody would change the numbers.
    first.forEach((want, k) => assert.deepEqual(again[k], want, `pass ${i + 2}, result ${k}`));
    assert.ok(hostPoolBytes() <= 2 * pooled, `the pool stays bounded: ${hostPoolBytes()} bytes after pass ${i + 2}`);
  }
  // What the passes handed out is the caller's: later passes never recycle it.
  held.forEach((t, k) => assert.deepEqual(t.data, first[k % 3], `result ${k % 3} of pass ${Math.floor(k / 3) + 1}, kept`));
});

test('a style-transfer pass on native keeps nChw16c where nobody looks (AVX-512): the captures and the gradient of NCHW throughout', { skip: !nativeBackend && 'native backend unavailable' }, () => {
  // Channels 16-128 and planes from 144 down to 9 px: every convolution after the first runs
  // Winograd channel-blocked, forward and backward.
  const weights = randomVgg19Weights(8, 4);
  const native = nativeBackend!;
  // The reference: the same backend with every layout left NCHW.
  const nchw = nchwThroughout(native);
  // Which layouts reach the ops that may take nChw16c.
  const seen: string[] = [];
  const layout = (t: Tensor) => t.layout?.name ?? 'NCHW';
  const watched = new Proxy(native, {
    get(target, key, receiver) {
      if (key === 'maxPool2d') return (...a: Parameters<Backend['maxPool2d']>) => (seen.push(`pool x ${layout(a[0])}`), target.maxPool2d(...a));
      if (key === 'maxPool2dBackward')
        return (...a: Parameters<Backend['maxPool2dBackward']>) => (seen.push(`pool backward dy ${layout(a[0])} x ${layout(a[1])}`), target.maxPool2dBackward(...a));
      if (key === 'conv2dBackwardData')
        return (...a: Parameters<Backend['conv2dBackwardData']>) => (seen.push(`conv backward dy ${layout(a[0])}`), target.conv2dBackwardData(...a));
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  const x = randomTensor([2, 3, 144, 144], 11, -60, 60);
  const capture = ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu4_2', 'relu5_1'];
  const [ref, got] = [new Vgg19(weights, nchw), new Vgg19(weights, watched)];
  const want = ref.forward(x, { until: 'relu5_1', capture }).activations;
  const have = got.forward(x, { until: 'relu5_1', capture }).activations;
  for (const name of capture) assert.deepEqual(have.get(name)!.data, want.get(name)!.data, `${name}: the bits of NCHW throughout`);
  const grads = new Map(capture.map((name, i) => [name, randomTensor(want.get(name)!.shape, 20 + i)]));
  assertClose(got.backward(grads, { paramGrads: false }), ref.backward(grads, { paramGrads: false }), 1e-4, 'dL/dx');
  const b = native.addon.cpuHasAvx512 ? 'nChw16c' : 'NCHW';
  // Each max-pool reads its input, the ReLU's output, so; so do its backward and the gradients on
  // either side of it: from the convolution after it, and into the convolution before it. So do the
  // gradients between convolutions whose ReLU output nobody captured: into conv3_2, conv3_3 and
  // conv4_3 (relu3_1 and relu4_2 are captured).
  assert.equal(seen.filter((s) => s === `pool x ${b}`).length, 4, seen.join('; '));
  assert.equal(seen.filter((s) => s === `pool backward dy ${b} x ${b}`).length, 4, seen.join('; '));
  assert.equal(seen.filter((s) => s === `conv backward dy ${b}`).length, b === 'nChw16c' ? 7 : 13, seen.join('; '));
});

test('lossBackward gives the cross-entropy and an SGD step lowers it', () => {
  const model = new Vgg19(randomVgg19Weights(5, 32), getBackend('ts'));
  const x = randomTensor([2, 3, 224, 224], 9, -60, 60);
  const labels = Int32Array.from([3, 7]);
  model.forward(x);
  const loss = model.lossBackward(labels).loss.data[0]!;
  model.update(1e-3);
  model.forward(x);
  const after = model.lossBackward(labels).loss.data[0]!;
  assert.ok(after < loss, `loss ${loss} -> ${after}`);
});

test('a captured convolution output is the raw one; its ReLU is fused only when nobody looks', () => {
  for (const backend of availableBackends()) {
    const model = new Vgg19(randomVgg19Weights(2, 16), getBackend(backend));
    const x = randomTensor([1, 3, 24, 24], 3, -60, 60);
    const fused = model.forward(x, { until: 'relu2_1', capture: ['relu1_2', 'relu2_1'] }).activations;
    const plain = model.forward(x, { until: 'relu2_1', capture: ['conv1_2', 'relu1_2', 'conv2_1', 'relu2_1'] }).activations;
    const conv = plain.get('conv1_2')!;
    assert.ok(conv.data.some((v) => v < 0), 'raw convolution output has negatives');
    assert.deepEqual(plain.get('relu1_2')!.data, conv.data.map((v) => (v > 0 ? v : 0)));
    assertClose(fused.get('relu2_1')!, plain.get('relu2_1')!, 1e-6, `${backend} fused vs unfused`);
  }
});

test('an inference pass runs each convolution, ReLU and max-pool nobody looks into as one op: the same numbers, no backward after it', () => {
  for (const backend of availableBackends()) {
    // 16-128 channels at 64 px: native's Winograd pools conv1_2 to conv3_4 in its output stage;
    // conv4_4 at 8 px is below Winograd's size and takes the two steps.
    const model = new Vgg19(randomVgg19Weights(4, 4), getBackend(backend));
    const x = randomTensor([1, 3, 64, 64], 5, -60, 60);
    const run = (inference: boolean) => {
      const names: string[] = [];
      const r = model.forward(x, { until: 'pool5', capture: ['relu3_1', 'pool2'], inference, onLayer: (_d, _n, name) => names.push(name) });
      return { names, out: r.output.data.slice(), relu31: r.activations.get('relu3_1')!.data.slice(), pool2: r.activations.get('pool2')!.data.slice() };
    };
    const [fused, plain] = [run(true), run(false)];
    assert.deepEqual(fused.names, plain.names, `${backend}: every layer reported`);
    assert.deepEqual(fused.out, plain.out, `${backend}: pool5`);
    assert.deepEqual(fused.relu31, plain.relu31, `${backend}: relu3_1`);
    assert.deepEqual(fused.pool2, plain.pool2, `${backend}: pool2`);
    // native on AVX-512 passes nChw16c from one channel-blocked convolution to the next; a layer
    // whose output is captured, or read by another op, keeps NCHW.
    if (backend === 'native' && nativeBackend?.addon.cpuHasAvx512) {
      const layouts: string[] = [];
      const spy = new Proxy(nativeBackend, {
        get(target, key, receiver) {
          const f = Reflect.get(target, key, receiver);
          if (key !== 'conv2d' && key !== 'conv2dMaxPool') return f;
          return (...args: unknown[]) => {
            const y = (f as (...a: unknown[]) => Tensor).apply(target, args);
            layouts.push(y.layout?.name ?? 'NCHW');
            return y;
          };
        },
      });
      const r = new Vgg19(randomVgg19Weights(4, 4), spy).forward(x, { until: 'pool5', capture: ['relu3_1'], inference: true });
      assert.deepEqual(r.output.data, fused.out);
      // conv1_1 (direct), conv1_2 + pool1, conv2_1, conv2_2 + pool2 nChw16c, relu3_1 captured NCHW,
      // conv3_2 to conv3_4 + pool3 nChw16c, conv4 at 8 px and conv5 (not Winograd) NCHW.
      assert.deepEqual(layouts.slice(0, 8), ['nChw16c', 'nChw16c', 'nChw16c', 'nChw16c', 'NCHW', 'nChw16c', 'nChw16c', 'nChw16c']);
    }
    run(true);
    assert.throws(() => model.backward(new Map([['relu3_1', randomTensor([1, 64, 16, 16], 6)]])), /backward needs a forward pass without `inference`/);
  }
});

test('unknown layer names are refused', () => {
  const model = new Vgg19(randomVgg19Weights(1, 64), getBackend('ts'));
  assert.throws(() => model.forward(randomTensor([1, 3, 32, 32], 1), { capture: ['conv9_9'] }), /unknown layer 'conv9_9'/);
  assert.equal(model.layerIndex('softmax'), model.layerIndex('prob'));
});
