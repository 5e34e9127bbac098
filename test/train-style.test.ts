/**
 * Training the real-time style network: gradients, losses and weights against a PyTorch float64
 * replay of the same steps (fixtures/transformer/make_training.py), a student learning a random
 * teacher through the whole backward pass, the data order, the presets' arithmetic, and
 * `train-style` itself: same seed -> the same file, resume and Ctrl-C -> the same model as an
 * uninterrupted run, bad inputs in one line.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseTrainSettings, TRAIN_PRESETS, vggBlockWidths } from '../src/app/train-request.js';
import { epochOrder, trainingCrop } from '../src/app/train-style.js';
import { getBackend } from '../src/backends/index.js';
import { readRgb } from '../src/image/preprocess.js';
import type { RgbImage } from '../src/image/rgb.js';
import { flattenTransformerWeights, initialTransformerWeights, randomTransformerWeights, TransformerNet, unflattenTransformerWeights } from '../src/model/transformer/transformer-net.js';
import { Adam } from '../src/style/optimizers.js';
import { Tensor } from '../src/tensor/tensor.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { loadTransformerModel, saveTransformerModel } from '../src/weights/transformer-file.js';
import { readNpy } from '../src/tensor/npy.js';
import { CLI, FIXTURES, TINY, randomTensor, runCli } from './helpers.js';
import { checkTrainingReplay } from './train-reference.js';
import { tempDir } from './temp.js';

const DIR = `${FIXTURES}transformer/`;
const MODEL = `${DIR}transformer-tiny.pth`;
const TINY_MAT = `${TINY}vgg19-tiny-old.mat`;
const vgg = await loadMatConvNetVgg19(TINY_MAT);
const BACKENDS = (['loops', 'ts', 'native'] as const).filter((b) => getBackend(b) !== undefined);

for (const name of BACKENDS) {
  // native's Winograd gradients (1.7e-5 of their norm off, the others 2.4e-6) flip more of Adam's
  // near-zero steps: 3e-3 of a tensor's norm (1e-3 over the whole network still).
  test(`${name}: training steps equal a PyTorch float64 replay (gradients, losses and weights after 3 Adam steps)`, () => checkTrainingReplay(getBackend(name)!, name === 'native' ? 3e-3 : 1e-3));
  test(`${name}: batch norm (--norm batch): training steps and the running statistics equal PyTorch's BatchNorm2d replay`, () => checkTrainingReplay(getBackend(name)!, name === 'native' ? 3e-3 : 1e-3, 'batch'));
}

test("a batch-norm network saved by torch.save runs with its running statistics: PyTorch's eval-mode output, and our safetensors keep them", async () => {
  const weights = await loadTransformerModel(`${DIR}transformer-bn-tiny.pth`);
  assert.equal(weights.norm, 'batch');
  assert.equal(weights.batchesTracked, 5);
  const want = await readNpy(`${DIR}bn-eval-output.npy`);
  for (const name of BACKENDS) {
    const got = await new TransformerNet(weights, getBackend(name)!).forward(await readNpy(`${DIR}input.npy`)).toHost();
    let [lo, hi, worst] = [Infinity, -Infinity, 0];
    for (let i = 0; i < want.size; i++) [lo, hi, worst] = [Math.min(lo, want.data[i]!), Math.max(hi, want.data[i]!), Math.max(worst, Math.abs(got.data[i]! - want.data[i]!))];
    assert.ok(worst <= 1e-4 * (hi - lo), `${name}: ${worst} of a range of ${hi - lo}`);
  }
  const file = join(tempDir('pastiche-bn-'), 'bn.safetensors');
  await saveTransformerModel(file, weights);
  const back = await loadTransformerModel(file);
  assert.equal(back.norm, 'batch');
  assert.deepEqual([...back.running!.get('res3.in2')!.variance], [...weights.running!.get('res3.in2')!.variance]);
});

test('teacher-student: a student net trained by pixel MSE through the whole backward pass reaches 30 dB on a random teacher in 400 steps', async () => {
  const backend = getBackend('native') ?? getBackend('ts')!;
  const teacher = new TransformerNet(randomTransformerWeights(4, 3), backend);
  // A wider student (8 channels) than its teacher (4), from PyTorch's initialisation; four batches
  // of two 24x24 noise images. Measured: 18 dB at the start, 26 / 28.5 / 30 / 31 dB after 100-400 steps.
  let student = initialTransformerWeights(8, 4);
  const flat = flattenTransformerWeights(student);
  const adam = new Adam(1e-3);
  const images = [0, 1, 2, 3].map((s) => {
    const x = randomTensor([2, 3, 24, 24], 100 + s, 0, 255);
    return { x, y: teacher.forward(x) };
  });
  const psnr = () => {
    let [se, count, lo, hi] = [0, 0, Infinity, -Infinity];
    for (const { x, y } of images) {
      const out = new TransformerNet(student, backend).forward(x);
      for (let i = 0; i < y.size; i++) [se, count, lo, hi] = [se + (out.data[i]! - y.data[i]!) ** 2, count + 1, Math.min(lo, y.data[i]!), Math.max(hi, y.data[i]!)];
    }
    return 10 * Math.log10((hi - lo) ** 2 / (se / count));
  };
  const before = psnr();
  for (let step = 0; step < 400; step++) {
    const { x, y } = images[step % images.length]!;
    const pass = new TransformerNet(student, backend).forwardForTraining(x);
    // L = mean (out - teacher)^2: dL/dout = 2 (out - teacher) / count.
    const dy = new Tensor(y.shape);
    for (let i = 0; i < y.size; i++) dy.data[i] = (2 * (pass.output.data[i]! - y.data[i]!)) / y.size;
    const { grads } = pass.backward(dy);
    // The gradients in the parameters' own order (the backward pass meets them in reverse).
    const g = flattenTransformerWeights({ ...student, params: new Map([...student.params.keys()].map((k) => [k, { w: grads.get(k)!.dw, b: grads.get(k)!.db }])) });
    pass.release();
    adam.step(flat, g);
    student = unflattenTransformerWeights(student, flat);
  }
  const after = psnr();
  assert.ok(before < 20, `the untrained student already imitates the teacher (${before.toFixed(1)} dB)`);
  assert.ok(after >= 30, `PSNR ${after.toFixed(1)} dB after 400 steps (from ${before.toFixed(1)} dB)`);
});

test('training crops: shorter side to the size, longer side truncated, centre crop with Python rounding', () => {
  // 10x7 -> 5x4 (4 * 10 / 7 = 5.7 truncated), then left = round(0.5) = 0: columns 0..3.
  const img: RgbImage = { width: 10, height: 7, data: Uint8Array.from({ length: 210 }, (_, i) => i % 251) };
  const c = trainingCrop(img, 4);
  assert.deepEqual([c.width, c.height], [4, 4]);
  // A square image of the size is itself; 6x9 -> crop rows 2..5 (round(1.5) = 2), no resize at size 6.
  const sq: RgbImage = { width: 6, height: 9, data: Uint8Array.from({ length: 162 }, (_, i) => i) };
  const s = trainingCrop(sq, 6);
  assert.deepEqual([...s.data.subarray(0, 3)], [...sq.data.subarray(2 * 18, 2 * 18 + 3)]);
  assert.equal(s.height, 6);
});

test('epoch order: a permutation per (seed, epoch), the same every time; --no-shuffle keeps the sorted order', () => {
  const a = epochOrder(50, 0, 7, true);
  assert.deepEqual([...a].sort((x, y) => x - y), [...Array(50).keys()]);
  assert.deepEqual([...epochOrder(50, 0, 7, true)], [...a]);
  assert.notDeepEqual([...epochOrder(50, 1, 7, true)], [...a]);
  assert.notDeepEqual([...epochOrder(50, 0, 8, true)], [...a]);
  assert.deepEqual([...epochOrder(5, 3, 7, false)], [0, 1, 2, 3, 4]);
});

test("presets: the course's and pytorch/examples' weights translated into this normalisation", () => {
  const course = parseTrainSettings({}, 1000);
  assert.equal(course.contentWeight, 15);
  assert.equal(course.styleWeight, 100);
  assert.ok(Math.abs(course.tvWeight - 200 / (3 * 256 * 255)) < 1e-15);
  assert.deepEqual(course.styleLayers.map((l) => [l.name, l.weight]), [['relu1_1', 4 / 64 ** 2], ['relu2_1', 4 / 128 ** 2], ['relu3_1', 4 / 256 ** 2], ['relu4_1', 4 / 512 ** 2], ['relu5_1', 4 / 512 ** 2]]);
  assert.equal(course.iterations, 500); // 2 epochs of 1000 images, 4 a batch
  // The tiny fixture's widths are 1/16: its layer weights follow them.
  const tiny = parseTrainSettings({}, 10, undefined, vggBlockWidths(vgg));
  assert.equal(tiny.styleLayers[0]!.weight, 4 / 4 ** 2);
  const pt = parseTrainSettings({ preset: 'pytorch-examples' }, 8);
  const k = 255 * 0.226;
  assert.ok(Math.abs(pt.contentWeight - 2e5 / k ** 2) < 1e-9);
  assert.deepEqual(pt.styleLayers.map((l) => l.name), ['relu1_2', 'relu2_2', 'relu3_3', 'relu4_3']);
  assert.equal(pt.tvWeight, 0);
  const quick = parseTrainSettings({ preset: 'quick' }, 8);
  assert.deepEqual([quick.width, quick.size, quick.iterations], [16, 128, TRAIN_PRESETS.quick.iterations]);
  // Flags override, errors name the flag.
  const named = (f: string) => `--${f}`;
  assert.equal(parseTrainSettings({ iterations: '7', styleLayers: 'relu1_1,relu2_1' }, 8).styleLayers[1]!.weight, 0.5);
  assert.throws(() => parseTrainSettings({ size: '30' }, 8, named), /^PasticheError: --size must be a multiple of 4 of at least 16/);
  assert.throws(() => parseTrainSettings({ epochs: '1', iterations: '3' }, 8, named), /give --epochs or --iterations, not both/);
  assert.throws(() => parseTrainSettings({ preset: 'fast' }, 8, named), /--preset must be one of course, pytorch-examples, quick/);
});

/** A folder of small content images (the shared samples, scaled down), one of them not an image. */
function contentFolder(withBroken = false): string {
  const dir = tempDir('pastiche-content-');
  mkdirSync(join(dir, 'sub'));
  for (const f of ['chelsea.png']) copyFileSync(`${TINY}${f}`, join(dir, f));
  copyFileSync(`${TINY}chelsea.png`, join(dir, 'sub', 'cat2.png'));
  writeFileSync(join(dir, 'notes.txt'), 'not an image');
  if (withBroken) writeFileSync(join(dir, 'broken.jpg'), 'not a jpeg at all');
  return dir;
}

const STYLE_IMAGE = `${TINY}chelsea.png`;
const common = (dir: string, out: string) => ['train-style', STYLE_IMAGE, '--content-dir', dir, '-o', out, '-w', TINY_MAT, '--size', '32', '--batch', '2', '--width', '4', '-q'];

test('train-style: same seed, same model bit for bit; a resumed run and one stopped by Ctrl-C end as the uninterrupted one', async () => {
  const dir = contentFolder();
  const out = (n: string) => join(dir, `${n}.safetensors`);
  const a = await runCli([...common(dir, out('a')), '--iterations', '4', '--log-json', join(dir, 'a.jsonl')]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /wrote .*a\.safetensors: 4 steps/);
  const lines = readFileSync(join(dir, 'a.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.deepEqual(lines.map((l) => l['iteration']), [1, 2, 3, 4]);
  for (const k of ['content', 'style', 'tv', 'total', 'epoch']) assert.ok(Number.isFinite(lines[0]![k]), k);
  const b = await runCli([...common(dir, out('b')), '--iterations', '4']);
  assert.equal(b.code, 0, b.stderr);
  assert.ok(readFileSync(out('a')).equals(readFileSync(out('b'))), 'same seed and data: the same file');
  const c = await runCli([...common(dir, out('c')), '--iterations', '4', '--seed', '2']);
  assert.equal(c.code, 0, c.stderr);
  assert.ok(!readFileSync(out('a')).equals(readFileSync(out('c'))), 'another seed: another model');
  // A checkpoint at step 2, resumed to 4.
  const d = await runCli([...common(dir, out('d')), '--iterations', '4', '--checkpoint-every', '2']);
  assert.equal(d.code, 0, d.stderr);
  const ckpt = join(dir, 'd.ckpt.safetensors');
  assert.ok(existsSync(ckpt));
  const e = await runCli([...common(dir, out('e')), '--iterations', '4', '--resume', ckpt]);
  assert.equal(e.code, 0, e.stderr);
  assert.ok(readFileSync(out('a')).equals(readFileSync(out('e'))), 'resumed from step 2: the same model');
  // The checkpoint is also a model: stylize and --init read it.
  assert.equal((await loadTransformerModel(ckpt)).width, 4);
  // Ctrl-C after the first step: a checkpoint, exit 130; resuming it finishes the same model.
  const child = spawn(process.execPath, [CLI, ...common(dir, out('f')), '--iterations', '4', '--log-json', join(dir, 'f.jsonl')]);
  let stderr = '';
  child.stderr.on('data', (s: Buffer) => (stderr += s.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const poll = setInterval(() => {
      if (existsSync(join(dir, 'f.jsonl')) && readFileSync(join(dir, 'f.jsonl'), 'utf8').includes('"iteration":1')) {
        clearInterval(poll);
        child.kill('SIGINT');
      }
    }, 20);
    child.on('exit', (c) => {
      clearInterval(poll);
      resolve(c);
    });
  });
  assert.equal(code, 130, stderr);
  assert.match(stderr, /stopped after step \d of 4: wrote .*f\.ckpt\.safetensors \(continue with --resume/);
  assert.ok(!existsSync(out('f')), 'no model from a stopped run');
  const g = await runCli([...common(dir, out('f')), '--iterations', '4', '--resume', join(dir, 'f.ckpt.safetensors')]);
  assert.equal(g.code, 0, g.stderr);
  assert.ok(readFileSync(out('a')).equals(readFileSync(out('f'))), 'stopped and resumed: the same model');
  // The model runs.
  const styled = join(dir, 'styled.png');
  const s = await runCli(['stylize', STYLE_IMAGE, '--model', out('a'), '-o', styled, '--size', '40']);
  assert.equal(s.code, 0, s.stderr);
});

test('train-style: bad inputs are one line each, before any work', async () => {
  const dir = contentFolder(true);
  const out = join(dir, 'm.safetensors');
  const one = (r: { code: number; stderr: string }, pattern: RegExp) => {
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  };
  const empty = tempDir('pastiche-empty-');
  one(await runCli([...common(empty, out), '--iterations', '1']), /^pastiche: .*pastiche-empty-\w+: holds no images \(\.png, \.jpg, \.jpeg\)\n$/);
  one(await runCli([...common(join(dir, 'nope'), out), '--iterations', '1']), /nope: no such folder/);
  one(await runCli([...common(dir, join(dir, 'm.pth')), '--iterations', '1']), /m\.pth: the model is written as \.safetensors/);
  one(await runCli([...common(dir, out), '--iterations', '1', '--size', '30']), /--size must be a multiple of 4/);
  one(await runCli([...common(dir, out), '--iterations', '1', '--init', TINY_MAT]), /not a style model/);
  one(await runCli([...common(dir, out), '--iterations', '1', '--init', MODEL]), /--init is a network of width 8, not 4 \(give --width 8\)/);
  one(await runCli([...common(dir, out), '--iterations', '1', '--resume', MODEL]), /not a training checkpoint of train-style \(to start from a model's weights, use --init\)/);
  // A pickle that names a global a state_dict never holds: refused, nothing run.
  const evil = join(dir, 'evil.pth');
  writeFileSync(evil, Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n(S\'touch /tmp/pwned\'\ntR.')]));
  one(await runCli([...common(dir, out), '--iterations', '1', '--init', evil]), /evil\.pth: /);
  assert.ok(!existsSync(out), 'no model written by a refused run');
  // An unreadable image among readable ones: one warning line, and the run goes on.
  const r = await runCli([...common(dir, out), '--iterations', '3', '--no-shuffle']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^pastiche: skipping .*broken\.jpg: cannot decode image/m);
  assert.equal(r.stderr.match(/skipping/g)!.length, 1);
  // A resumed run with other settings names the one that differs.
  const d = await runCli([...common(dir, join(dir, 'd.safetensors')), '--iterations', '2', '--checkpoint-every', '1']);
  assert.equal(d.code, 0, d.stderr);
  one(await runCli([...common(dir, out), '--iterations', '3', '--batch', '1', '--resume', join(dir, 'd.ckpt.safetensors')]), /d\.ckpt\.safetensors was trained with batch 2, this run has 1/);
});

test("train-style --upsample deconv trains the course's variant (transposed convolutions); --init refuses the other kind in one line", async () => {
  const dir = contentFolder();
  const out = join(dir, 'deconv.safetensors');
  const r = await runCli([...common(dir, out), '--iterations', '2', '--upsample', 'deconv']);
  assert.equal(r.code, 0, r.stderr);
  const m = await loadTransformerModel(out);
  assert.equal(m.upsample, 'deconv');
  assert.deepEqual([...m.params.get('deconv1')!.w.shape], [8, 3, 3, 16]);
  const styled = await runCli(['stylize', STYLE_IMAGE, '--model', out, '-o', join(dir, 's.png'), '--size', '40']);
  assert.equal(styled.code, 0, styled.stderr);
  const bad = await runCli([...common(dir, join(dir, 'x.safetensors')), '--iterations', '1', '--upsample', 'nearest', '--init', out]);
  assert.match(bad.stderr, /^pastiche: --init upsamples with transposed convolutions \(give --upsample deconv\)\n$/);
  const wrong = await runCli([...common(dir, join(dir, 'x.safetensors')), '--iterations', '1', '--upsample', 'bilinear']);
  assert.match(wrong.stderr, /^pastiche: --upsample must be one of nearest, deconv \(got 'bilinear'\)\n$/);
});

test('train-style --preview: the picture through the network every N steps and at the end, as PNGs beside the model', async () => {
  const dir = contentFolder();
  const out = join(dir, 'p.safetensors');
  const r = await runCli([...common(dir, out), '--iterations', '3', '--preview', STYLE_IMAGE, '--preview-every', '2']);
  assert.equal(r.code, 0, r.stderr);
  const [two, three] = await Promise.all([readRgb(join(dir, 'p-preview-0002.png')), readRgb(join(dir, 'p-preview-0003.png'))]);
  // chelsea.png (451x300) at most 512 a side, then the network's grid of 4.
  assert.deepEqual([two.width, two.height, three.width, three.height], [448, 300, 448, 300]);
  assert.ok(two.data.some((v, i) => v !== three.data[i]), 'the network changed between the previews');
  assert.ok(!existsSync(join(dir, 'p-preview-0001.png')));
  const bad = await runCli([...common(dir, out), '--iterations', '1', '--preview', join(dir, 'missing.png')]);
  assert.match(bad.stderr, /^pastiche: .*missing\.png: no such file\n$/);
});

test('train-style --norm batch trains a batch-norm network; --init refuses the other kind in one line', async () => {
  const dir = contentFolder();
  const out = join(dir, 'bn.safetensors');
  const r = await runCli([...common(dir, out), '--iterations', '2', '--norm', 'batch']);
  assert.equal(r.code, 0, r.stderr);
  const m = await loadTransformerModel(out);
  assert.deepEqual([m.norm, m.batchesTracked], ['batch', 2]);
  assert.ok([...m.running!.get('in1')!.mean].some((v) => v !== 0), 'the running means moved');
  const bad = await runCli([...common(dir, join(dir, 'x.safetensors')), '--iterations', '1', '--norm', 'instance', '--init', out]);
  assert.match(bad.stderr, /^pastiche: --init is a batch-norm network \(give --norm batch\)\n$/);
});
