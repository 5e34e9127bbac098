/** Style transfer: losses and gradients against PyTorch and finite differences, Adam's trajectory, the CLI. */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { buildTargets, evaluate, parseLayers, type ObjectiveWeights } from '../src/app/stylize.js';
import { stylize } from '../src/app/stylize-job.js';
import { availableBackends, getBackend, nativeBackend } from '../src/backends/index.js';
import { randomVgg19Weights } from '../src/model/vgg19-params.js';
import { Vgg19 } from '../src/model/vgg19.js';
import { contentLoss, gram, styleLoss, tvLoss } from '../src/style/losses.js';
import { Adam, Lbfgs } from '../src/style/optimizers.js';
import { readNpy } from '../src/tensor/npy.js';
import { Tensor } from '../src/tensor/tensor.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { CLI, FIXTURES, TINY, assertClose, gradCheck, nchwThroughout, randomTensor, runCli } from './helpers.js';
import { tempDir } from './temp.js';

const REF = `${FIXTURES}style/`;
const dir = tempDir('pastiche-style-');
const tiny = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
const STYLE = `${FIXTURES}resize/gradient301x199.png`;
const CONTENT = `${TINY}chelsea.png`;

const weightsLab = (tvWeight: number): ObjectiveWeights => ({
  contentWeight: 1,
  styleWeight: 500,
  tvWeight,
  contentLayers: parseLayers('relu4_2', 'content'),
  styleLayers: parseLayers('relu1_1,relu2_1,relu3_1,relu4_1,relu5_1', 'style'),
});

test('content, style and TV losses and gradients equal PyTorch (float64 references)', async () => {
  const ref = JSON.parse(readFileSync(`${REF}losses.json`, 'utf8')) as { content: number; style: number; tv: number };
  const [F, P, F2, x] = await Promise.all(['F', 'P', 'F2', 'x'].map((n) => readNpy(`${REF}${n}.npy`)));
  for (const name of availableBackends()) {
    const be = getBackend(name);
    const c = contentLoss(be, F!, P!);
    const cl = c.loss.data[0]!;
    assert.ok(Math.abs(cl - ref.content) / ref.content < 1e-6, `${name} content ${cl} vs ${ref.content}`);
    assertClose(c.grad, await readNpy(`${REF}grad_content.npy`), 1e-6, `${name} content gradient`);
    const s = styleLoss(be, F!, gram(be, F2!));
    const sl = s.loss.data[0]!;
    assert.ok(Math.abs(sl - ref.style) / ref.style < 1e-5, `${name} style ${sl} vs ${ref.style}`);
    assertClose(s.grad, await readNpy(`${REF}grad_style.npy`), 1e-5, `${name} style gradient`);
    // A weight in the objective comes with the gradient (folded into the Gram difference for style).
    assertClose(contentLoss(be, F!, P!, -2.5).grad, be.scale(c.grad, -2.5), 1e-6, `${name} weighted content gradient`);
    assertClose(styleLoss(be, F!, gram(be, F2!), 300).grad, be.scale(s.grad, 300), 1e-5, `${name} weighted style gradient`);
  }
  const t = tvLoss(x!);
  const tl = t.loss.data[0]!;
  assert.ok(Math.abs(tl - ref.tv) / ref.tv < 1e-6, `tv ${tl} vs ${ref.tv}`);
  assertClose(t.grad, await readNpy(`${REF}grad_tv.npy`), 1e-6, 'tv gradient');
});

test('loss gradients match finite differences', () => {
  const be = getBackend('ts');
  const f = randomTensor([1, 4, 3, 5], 1);
  const p = randomTensor([1, 4, 3, 5], 2);
  const a = gram(be, randomTensor([1, 4, 6, 2], 3));
  const x = randomTensor([1, 3, 4, 5], 4, -30, 30);
  const cases: [string, Tensor, () => number, Tensor][] = [
    ['content', f, () => contentLoss(be, f, p).loss.data[0]!, contentLoss(be, f, p).grad],
    ['style', f, () => styleLoss(be, f, a).loss.data[0]!, styleLoss(be, f, a).grad],
    ['tv', x, () => tvLoss(x).loss.data[0]!, tvLoss(x).grad],
  ];
  // A step relative to each value, and no floor under the gradient's scale (these are small).
  for (const [what, t, loss, grad] of cases) gradCheck(what, t, loss, grad, { step: 3, relativeStep: true, scaleFloor: 0 });
});

test('Adam from the content image follows PyTorch\'s loss trajectory through the tiny VGG19 (rel. < 1e-3), on every backend', async () => {
  const ref = JSON.parse(readFileSync(`${REF}trajectory.json`, 'utf8')) as { tv: number; steps: { content: number; style: number; tv: number; total: number }[] };
  const content = await readNpy(`${REF}content.npy`);
  const style = await readNpy(`${REF}style.npy`);
  for (const name of availableBackends()) {
    const model = new Vgg19(tiny, getBackend(name));
    const w = weightsLab(ref.tv);
    const targets = buildTargets(model, content, [style], [1], w);
    const x = content.clone();
    const adam = new Adam(1);
    for (const [i, r] of ref.steps.entries()) {
      const e = await evaluate(model, x, targets, w);
      assert.ok(Math.abs(e.total - r.total) / r.total < 1e-3, `${name} step ${i}: total ${e.total} vs ${r.total}`);
      assert.ok(Math.abs(e.style - r.style) / r.style < 1e-3, `${name} step ${i}: style ${e.style} vs ${r.style}`);
      if (r.content > 0) assert.ok(Math.abs(e.content - r.content) / r.content < 1e-3, `${name} step ${i}: content ${e.content} vs ${r.content}`);
      adam.step(x.data, e.grad.data);
    }
  }
});

test('the gradient of the whole objective agrees with a directional finite difference', async () => {
  const content = await readNpy(`${REF}content.npy`);
  const model = new Vgg19(tiny, getBackend('ts'));
  const w = weightsLab(1e-6);
  const targets = buildTargets(model, content, [await readNpy(`${REF}style.npy`)], [1], w);
  const x = randomTensor(content.shape, 5, -40, 40);
  const e = await evaluate(model, x, targets, w);
  const dir = randomTensor(x.shape, 6);
  let analytic = 0;
  for (let i = 0; i < x.size; i++) analytic += e.grad.data[i]! * dir.data[i]!;
  const at = async (t: number) => (await evaluate(model, new Tensor(x.shape, x.data.map((v, i) => v + t * dir.data[i]!)), targets, w)).total;
  const errors: number[] = [];
  for (const h of [1e-1, 3e-2, 1e-2]) errors.push(Math.abs(((await at(h)) - (await at(-h))) / (2 * h) - analytic) / Math.abs(analytic));
  assert.ok(Math.min(...errors) < 1e-2, `errors ${errors.join(', ')}`);
});

test('the loss decreases under Adam and under L-BFGS', async () => {
  const content = await readNpy(`${REF}content.npy`);
  const model = new Vgg19(tiny, getBackend('ts'));
  const w = weightsLab(1e-6);
  const targets = buildTargets(model, content, [await readNpy(`${REF}style.npy`)], [1], w);
  for (const opt of [new Adam(1), new Lbfgs(1, 20)]) {
    const x = randomTensor(content.shape, 9, -20, 20);
    const first = (await evaluate(model, x, targets, w)).total;
    let last = first;
    for (let i = 0; i < 15; i++) {
      const e = await evaluate(model, x, targets, w);
      last = e.total;
      opt.step(x.data, e.grad.data);
    }
    assert.ok(last < 0.7 * first, `${opt.constructor.name}: ${first} -> ${last}`);
  }
});

test("evaluate() on native takes the captured features channel-blocked: the losses and gradient of NCHW throughout", { skip: !nativeBackend && 'native backend unavailable' }, async () => {
  // Channels 16-128 (every convolution after the first channel-blocked on AVX-512, forward and
  // backward): the captures stay nChw16c, the Gram matrices and the gradients' products read them
  // in place, the content loss's differences and the gradients stay nChw16c into the backward pass.
  const weights = randomVgg19Weights(8, 4);
  const native = nativeBackend!;
  const [ref, got] = [new Vgg19(weights, nchwThroughout(native)), new Vgg19(weights, native)];
  const [x, content, style] = [11, 12, 13].map((seed) => randomTensor([1, 3, 96, 80], seed, -60, 60)) as [Tensor, Tensor, Tensor];
  const w = weightsLab(0);
  // Both the loss's parts: a content weight that makes them of one size.
  const o = { ...w, contentWeight: 1e-4 };
  const [want, have] = [ref, got].map((m) => evaluate(m, x, buildTargets(m, content, [style], [1], o), o));
  const [a, b] = await Promise.all([want!, have!]);
  for (const k of ['content', 'style', 'total'] as const) assert.ok(Math.abs(b[k] - a[k]) <= 1e-5 * Math.abs(a[k]), `${k}: ${b[k]} vs ${a[k]}`);
  assertClose(b.grad, a.grad, 1e-4, 'dL/dx');
  // What the capture left channel-blocked (on AVX-512): every style and content layer but the last
  // (the pass ends there); conv1_1's gradient to the image reads relu1_1's gradient as it is.
  const { activations } = got.forward(x, { until: 'relu5_1', capture: ['relu1_1', 'relu2_1', 'relu4_2', 'relu5_1'], captureOwnLayout: true });
  const blocked = native.addon.cpuHasAvx512 ? 'nChw16c' : 'NCHW';
  assert.deepEqual(
    [...activations].map(([name, t]) => `${name} ${t.layout?.name ?? 'NCHW'}`),
    [`relu1_1 ${blocked}`, `relu2_1 ${blocked}`, `relu4_2 ${blocked}`, 'relu5_1 NCHW'],
  );
});

const base = { content: CONTENT, styles: [STYLE], weights: tiny, size: 48, iterations: 4, optimizer: 'adam' as const, lr: 1, ...weightsLab(0) };

test("L-BFGS's fused sweeps take the textbook two-loop recursion's steps (history wrapping, skipped pairs)", () => {
  // Nocedal & Wright's algorithm 7.4 as written, with the optimiser's rules: the first step scaled
  // by min(1, 1/|g|_1), pairs with y.s <= 1e-10 skipped, the oldest dropped from a full history.
  const textbook = (history: number) => {
    const [s, y, rho] = [[] as Float64Array[], [] as Float64Array[], [] as number[]];
    let [prevX, prevG, hDiag, first] = [undefined as Float64Array | undefined, undefined as Float64Array | undefined, 1, true];
    const dot = (u: Float64Array, v: Float64Array) => u.reduce((acc, ui, j) => acc + ui * v[j]!, 0);
    return (x: Float32Array, grad: Float32Array) => {
      const g = Float64Array.from(grad);
      if (prevX && prevG) {
        const [si, yi] = [Float64Array.from(x, (v, j) => v - prevX![j]!), g.map((v, j) => v - prevG![j]!)];
        const ys = dot(yi, si);
        if (ys > 1e-10) {
          if (s.length === history) [s.shift(), y.shift(), rho.shift()];
          [s.push(si), y.push(yi), rho.push(1 / ys)];
          hDiag = ys / dot(yi, yi);
        }
      }
      const q = Float64Array.from(g);
      const alpha: number[] = [];
      for (let i = s.length - 1; i >= 0; i--) {
        alpha[i] = rho[i]! * dot(s[i]!, q);
        q.forEach((v, j) => (q[j] = v - alpha[i]! * y[i]![j]!));
      }
      q.forEach((v, j) => (q[j] = v * hDiag));
      for (let i = 0; i < s.length; i++) {
        const beta = rho[i]! * dot(y[i]!, q);
        q.forEach((v, j) => (q[j] = v + (alpha[i]! - beta) * s[i]![j]!));
      }
      const step = first ? Math.min(1, 1 / Math.max(g.reduce((a, v) => a + Math.abs(v), 0), 1e-30)) : 1;
      [prevX, prevG, first] = [Float64Array.from(x), g, false];
      x.forEach((v, j) => (x[j] = v - step * q[j]!));
    };
  };
  // A badly conditioned quadratic 0.5 sum d_j (x_j - c_j)^2, odd length (the sweeps' tails), and a
  // gradient repeated once (y = 0: a skipped pair).
  const n = 1003;
  const d = Float64Array.from({ length: n }, (_, j) => 0.01 + (j % 97) / 10);
  const c = Float64Array.from({ length: n }, (_, j) => Math.sin(j));
  // With the TypeScript sweeps, and with every backend's (native's are its own).
  for (const name of [undefined, ...availableBackends()]) {
    const [xa, xb] = [new Float32Array(n), new Float32Array(n)];
    const [fast, ref] = [new Lbfgs(1, 3, name ? getBackend(name) : undefined), textbook(3)];
    let repeat: [Float32Array, Float32Array] | undefined;
    for (let it = 0; it < 9; it++) {
      const grad = (x: Float32Array) => Float32Array.from(x, (v, j) => d[j]! * (v - c[j]!));
      // Each side's own last gradient again (the two sides' images agree only to rounding).
      const [ga, gb] = it === 5 && repeat ? repeat : [grad(xa), grad(xb)];
      repeat = [ga, gb];
      fast.step(xa, ga);
      ref(xb, gb);
      assertClose(new Tensor([n], xa), new Tensor([n], xb), 1e-6, `${name ?? 'the default sweeps'}: step ${it}`);
    }
  }
});

test('the same seed gives the same image, another seed another one; backends agree', async () => {
  const a = await stylize({ ...base, init: { kind: 'noise' }, seed: 3, backend: getBackend('ts') });
  const b = await stylize({ ...base, init: { kind: 'noise' }, seed: 3, backend: getBackend('ts') });
  const c = await stylize({ ...base, init: { kind: 'noise' }, seed: 4, backend: getBackend('ts') });
  assert.deepEqual(a.rgb.data, b.rgb.data);
  assert.notDeepEqual(a.rgb.data, c.rgb.data);
  assert.deepEqual([a.rgb.width, a.rgb.height], [48, 32], "the content's aspect ratio");
  for (const name of availableBackends().filter((n) => n !== 'ts')) {
    const other = await stylize({ ...base, init: { kind: 'noise' }, seed: 3, backend: getBackend(name) });
    assertClose(other.image, a.image, 1e-3, `${name} vs ts`);
  }
});

test('multi-scale, style blend, style scale and average pooling run and keep the output size', async () => {
  const r = await stylize({ ...base, styles: [STYLE, CONTENT], styleBlend: [0.7, 0.3], styleScale: 0.75, scales: [32, 40], pooling: 'avg', init: { kind: 'content' } });
  assert.deepEqual([r.rgb.width, r.rgb.height], [48, 32]);
  assert.equal(r.iterations, 12);
  await assert.rejects(stylize({ ...base, styleBlend: [1, 2], init: { kind: 'content' } }), /1 style image\(s\) but 2 blend weight\(s\)/);
  await assert.rejects(stylize({ ...base, styleScale: 0.2, init: { kind: 'content' } }), /style image 1 would be 10x7 at this scale; relu5_1 needs at least 16 pixels a side/);
});

test('cancelling returns the best image so far', async () => {
  const controller = new AbortController();
  const r = await stylize({ ...base, iterations: 50, init: { kind: 'content' }, signal: controller.signal, onProgress: (p) => p.kind === 'iteration' && p.iteration === 3 && controller.abort() });
  assert.ok(r.interrupted);
  assert.equal(r.iterations, 3);
});

const cli = (args: string[]) => runCli(args);

test('pastiche stylize writes the image, the JSON log and intermediate saves', async () => {
  const out = join(dir, 'out.png');
  const log = join(dir, 'log.jsonl');
  const r = await cli(['stylize', CONTENT, STYLE, '-o', out, '-w', `${TINY}vgg19-tiny-old.mat`, '--size', '40', '--iterations', '6', '--optimizer', 'lbfgs', '--save-every', '3', '--log-json', log, '--original-colors']);
  assert.equal(r.code, 0, r.stderr);
  const meta = await sharp(out).metadata();
  assert.deepEqual([meta.width, meta.height, meta.format], [40, 27, 'png']);
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.equal(lines.length, 6);
  assert.deepEqual(Object.keys(lines[0]!), ['iteration', 'content', 'style', 'tv', 'total', 'seconds']);
  assert.ok(existsSync(join(dir, 'out-0003.png')) && existsSync(join(dir, 'out-0006.png')));
  const jpg = join(dir, 'lab.jpg');
  const lab = await cli(['stylize', CONTENT, STYLE, '-o', jpg, '-w', `${TINY}vgg19-tiny-old.mat`, '--preset', 'lab', '--iterations', '2']);
  assert.equal(lab.code, 0, lab.stderr);
  const m2 = await sharp(jpg).metadata();
  assert.deepEqual([m2.width, m2.height, m2.format], [320, 192, 'jpeg'], "the lab's 192x320");
});

test('pastiche stylize: bad input gives one-line errors and no output', async () => {
  const out = join(dir, 'never.png');
  const w = ['-w', `${TINY}vgg19-tiny-old.mat`, '--size', '32', '--iterations', '2'];
  const cases: [string[], RegExp][] = [
    [['stylize', CONTENT, join(dir, 'missing.jpg'), '-o', out, ...w], /missing\.jpg: no such file/],
    [['stylize', CONTENT, `${TINY}vgg19-tiny-old.mat`, '-o', out, ...w], /vgg19-tiny-old\.mat: cannot decode image/],
    [['stylize', CONTENT, STYLE, STYLE, '--style-blend', '1', '-o', out, ...w], /--style-blend has 1 weight\(s\) for 2 style image\(s\)/],
    [['stylize', CONTENT, STYLE, '--style-layers', 'relu9_9', '-o', out, ...w], /unknown layer 'relu9_9'/],
    [['stylize', CONTENT, STYLE, '--size', '0', '-o', out, '-w', `${TINY}vgg19-tiny-old.mat`], /--size must be a positive whole number \(got '0'\)/],
    [['stylize', CONTENT, STYLE, '--iterations', '-3', '-o', out, '-w', `${TINY}vgg19-tiny-old.mat`], /--iterations must be a positive whole number/],
    [['stylize', CONTENT, STYLE, '--optimizer', 'sgd', '-o', out, ...w], /--optimizer must be one of adam, lbfgs \(got 'sgd'\)/],
    [['stylize', CONTENT, STYLE, '--preset', 'fast', '-o', out, ...w], /--preset must be one of default, lab/],
    [['stylize', CONTENT, STYLE, '--lr', '0', '-o', out, ...w], /--lr must be a positive number/],
    [['stylize', CONTENT, STYLE, '--scales', '8,32', '-o', out, ...w], /--scales must be whole numbers from 16/],
    [['stylize', CONTENT, STYLE, '-o', join(dir, 'nope', 'x.png'), ...w], /x\.png: the folder .*nope does not exist/],
    [['stylize', CONTENT, STYLE, '-o', join(dir, 'x.gif'), ...w], /x\.gif: the output must end in \.png, \.jpg or \.jpeg/],
    [['stylize', CONTENT, STYLE, '-o', out, '-w', `${TINY}vgg19-tiny-old.mat`, '--size', '16000', '--max-memory', '4G'], /needs at least .* GiB \(.*\), more than --max-memory \(4.0 GiB\): choose a smaller --size or a larger --max-memory$/m],
  ];
  for (const [args, pattern] of cases) {
    const r = await cli(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.ok(!existsSync(out));
  }
});

test('Ctrl-C during pastiche stylize writes the best image so far and exits 130', async () => {
  const out = join(dir, 'interrupted.png');
  const log = join(dir, 'interrupted.jsonl');
  const child = spawn(process.execPath, [CLI, 'stylize', CONTENT, STYLE, '-o', out, '-w', `${TINY}vgg19-tiny-old.mat`, '--size', '64', '--iterations', '100000', '--log-json', log]);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 20_000;
  while (!(existsSync(log) && readFileSync(log, 'utf8').split('\n').length > 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted: the best image of \d+ iteration/);
  assert.equal((await sharp(out).metadata()).width, 64);
});
