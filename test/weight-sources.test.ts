/**
 * VGG19 from torchvision (.pth, zip and legacy), Keras (.h5, with and without the top) and Caffe
 * (.caffemodel, V1 and V2), each written by its own tool (test/fixtures/sources/make_sources.py:
 * torch.save, h5py, the protobuf library) with one set of random weights, against PyTorch running
 * that source's own preprocessing; and hostile files of each kind, refused in one line.
 */
import * as assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { getBackend } from '../src/backends/index.js';
import { loadClassifierInput } from '../src/image/preprocess.js';
import { Vgg19 } from '../src/model/vgg19.js';
import { readNpy } from '../src/tensor/npy.js';
import { loadVgg19Weights, randomVgg19Weights, type Vgg19Weights } from '../src/index.js';
import { writeConvertedVgg19 } from '../src/weights/weights-cache.js';
import { halfBits } from '../src/weights/safetensors.js';
import { halfToFloat } from '../src/weights/torch/pth.js';
import { FIXTURES, TINY, assertClose, runCli, type CliResult } from './helpers.js';
import { tempDir } from './temp.js';

const SOURCES = `${FIXTURES}sources/`;
const IMAGE = `${TINY}chelsea.png`;
const dir = tempDir('pastiche-sources-');

const FILES = [
  { file: 'vgg19-tiny.pth', ref: 'ref-torchvision', format: 'torchvision', layout: 'zip' },
  { file: 'vgg19-tiny-legacy.pth', ref: 'ref-torchvision', format: 'torchvision', layout: 'legacy' },
  { file: 'vgg19-tiny.h5', ref: 'ref-caffe', format: 'keras', layout: 'with top' },
  { file: 'vgg19-tiny-notop.h5', ref: 'ref-caffe', format: 'keras', layout: 'notop' },
  { file: 'vgg19-tiny-v1.caffemodel', ref: 'ref-caffe', format: 'caffe', layout: 'V1 layers' },
  { file: 'vgg19-tiny-v2.caffemodel', ref: 'ref-caffe', format: 'caffe', layout: 'V2 layer' },
] as const;

function oneLine(r: CliResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, 'exit code');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
}

for (const f of FILES) {
  test(`${f.file}: read as ${f.format} (${f.layout}); pool5, fc8 and prob equal PyTorch with ${f.ref.slice(4)}'s preprocessing (rel. 1e-4)`, async () => {
    const w = await loadVgg19Weights(`${SOURCES}${f.file}`);
    assert.equal(w.format, f.format);
    assert.equal(w.layout, f.layout);
    assert.equal(w.hasClassifier, !f.file.includes('notop'));
    const model = new Vgg19(w, getBackend());
    // Pastiche's own input (RGB 0..255 minus the mean pixel): the source's convention is folded into conv1_1.
    const x = await loadClassifierInput(IMAGE, w.meanPixel);
    const layers = w.hasClassifier ? ['pool5', 'fc8', 'prob'] : ['pool5'];
    const { activations } = model.forward(x, { until: layers[layers.length - 1], capture: layers });
    for (const name of layers) {
      const ref = await readNpy(`${SOURCES}${f.ref}/${name}.npy`);
      assertClose(activations.get(name)!.reshape(ref.shape), ref, 1e-4, `${f.file} ${name}`);
    }
  });
}

test('classify takes every format without flags and gives PyTorch\'s top 5; weights info names format and input', async () => {
  for (const f of FILES.filter((f) => !f.file.includes('notop'))) {
    const prob = await readNpy(`${SOURCES}${f.ref}/prob.npy`);
    const top5 = Array.from(prob.data.keys()).sort((a, b) => prob.data[b]! - prob.data[a]!).slice(0, 5);
    const r = await runCli(['classify', IMAGE, '-w', `${SOURCES}${f.file}`, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { top: { index: number }[] }[] | { top: { index: number }[] };
    const got = (Array.isArray(out) ? out[0]! : out).top.map((p) => p.index);
    assert.deepEqual(got, top5, f.file);
  }
  const info = await runCli(['weights', 'info', `${SOURCES}vgg19-tiny.pth`]);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /^format: +torchvision state_dict \(\.pth\), zip$/m);
  assert.match(info.stdout, /^input: +RGB \/ 255, minus \(0\.485, 0\.456, 0\.406\), divided by \(0\.229, 0\.224, 0\.225\); folded into conv1_1, so Pastiche feeds RGB 0\.\.255 minus \(123\.675, 116\.280, 103\.530\)$/m);
  assert.match(info.stdout, /^classifier: +fc6 784->128, fc7 128->128, fc8 128->1000$/m);
  const notop = await runCli(['weights', 'info', `${SOURCES}vgg19-tiny-notop.h5`]);
  assert.match(notop.stdout, /^input: +BGR 0\.\.255, minus \(103\.939, 116\.779, 123\.68\)/m);
  assert.match(notop.stdout, /^classifier: +none \(features only\): enough for stylize, not for classify$/m);
});

test('a features-only file stylizes, and classify says in one line why it cannot', async () => {
  const notop = `${SOURCES}vgg19-tiny-notop.h5`;
  oneLine(await runCli(['classify', IMAGE, '-w', notop]), /vgg19-tiny-notop\.h5 holds VGG19's features only \(no fc6-fc8, e\.g\. Keras' notop file\): enough for stylize, not for classify$/);
  const out = join(dir, 'notop.png');
  const r = await runCli(['stylize', IMAGE, `${FIXTURES}resize/gradient301x199.png`, '-w', notop, '-o', out, '-s', '48', '-i', '2', '-q']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(out));
});

test('hostile files: code in a pickle, absurd ZIP sizes, truncated HDF5 and torch files, a Caffe blob short of its shape: one line each, nothing run', async () => {
  const pwned = '/tmp/pastiche-pwned';
  rmSync(pwned, { force: true });
  oneLine(await runCli(['weights', 'info', `${SOURCES}hostile/os-system.pth`]), /os-system\.pth: it names the Python global posix\.system, which a state_dict never needs \(a \.pth can carry code: Pastiche runs none\)$/);
  assert.equal(existsSync(pwned), false, 'nothing was executed');
  oneLine(await runCli(['classify', IMAGE, '-w', `${SOURCES}hostile/short-blob.caffemodel`]), /short-blob\.caffemodel: conv1_2's weight holds 33 values for shape \[2, 2, 3, 3\] \(36\)$/);

  // A ZIP whose directory claims 2 GB for data.pkl: refused before anything is allocated.
  const zip = Buffer.from(readFileSync(`${SOURCES}vgg19-tiny.pth`));
  const central = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  zip.writeUInt32LE(0x7fffffff, central + 20);
  zip.writeUInt32LE(0x7fffffff, central + 24);
  writeFileSync(join(dir, 'absurd.pth'), zip);
  oneLine(await runCli(['weights', 'info', join(dir, 'absurd.pth')]), /absurd\.pth: vgg19-tiny\/data\.pkl claims 2147483647 bytes beyond the archive's end$/);

  for (const [name, keep, pattern] of [
    ['truncated.h5', 50_000, /truncated\.h5: not a readable HDF5 file: truncated file: eof = 50000/],
    ['truncated.pth', 600_000, /truncated\.pth: a ZIP archive without its directory \(truncated\?\)$/],
    ['truncated-legacy.pth', 600_000, /truncated-legacy\.pth: storage \d+ does not match its description or runs past the file's end$/],
    ['truncated.caffemodel', 600_000, /truncated\.caffemodel: not a Caffe model \(protobuf NetParameter\): /],
  ] as const) {
    const source = name.endsWith('.h5') ? 'vgg19-tiny.h5' : name === 'truncated-legacy.pth' ? 'vgg19-tiny-legacy.pth' : name.endsWith('.pth') ? 'vgg19-tiny.pth' : 'vgg19-tiny-v2.caffemodel';
    writeFileSync(join(dir, name), readFileSync(`${SOURCES}${source}`).subarray(0, keep));
    const r = await runCli(['weights', 'info', join(dir, name)]);
    oneLine(r, pattern);
    assert.doesNotMatch(r.stderr, /HDF5-DIAG|\n\s+at /);
  }
  // A file named .pth that is none of these.
  copyFileSync(`${TINY}chelsea.png`, join(dir, 'picture.pth'));
  oneLine(await runCli(['weights', 'info', join(dir, 'picture.pth')]), /picture\.pth: not a VGG19 weights file Pastiche reads/);
});

/** Every parameter of `a` equals `b`'s bit for bit. */
function sameParameters(a: Vgg19Weights, b: Vgg19Weights): void {
  for (const [name, p] of b.layers) {
    const q = a.layers.get(name);
    assert.equal(q?.kind, p.kind, name);
    if (p.kind === 'pool' || q?.kind === 'pool' || !q) continue;
    assert.deepEqual(q.w.shape, p.w.shape, name);
    assert.ok(Buffer.from(q.w.data.buffer, q.w.data.byteOffset, q.w.data.byteLength).equals(Buffer.from(p.w.data.buffer, p.w.data.byteOffset, p.w.data.byteLength)), `${name} weights differ`);
    assert.ok(Buffer.from(q.b.data.buffer, q.b.data.byteOffset, q.b.data.byteLength).equals(Buffer.from(p.b.data.buffer, p.b.data.byteOffset, p.b.data.byteLength)), `${name} biases differ`);
  }
  assert.deepEqual(a.meanPixel, b.meanPixel);
  assert.equal(a.classes.length, b.classes.length);
}

test('the converted cache: written on first use, read after (bit-identical), rebuilt when the source changes or the cache is damaged, safe under concurrent first runs', async () => {
  const cacheDir = join(dir, 'cache');
  const warnings: string[] = [];
  const cache = { dir: cacheDir, minBytes: 0, onWarning: (m: string) => warnings.push(m) };
  const source = join(dir, 'vgg19.pth');
  copyFileSync(`${SOURCES}vgg19-tiny.pth`, source);
  const direct = await loadVgg19Weights(source);
  // Four first runs at once: each writes a whole file under a temporary name and renames it.
  const first = await Promise.all([1, 2, 3, 4].map(() => loadVgg19Weights(source, { cache })));
  for (const w of first) sameParameters(w, direct);
  const files = readdirSync(cacheDir);
  assert.equal(files.length, 1, `one converted file, no temporaries: ${files.join(', ')}`);
  const again = await loadVgg19Weights(source, { cache });
  assert.match(again.layout, /converted/, 'the second run reads the converted file');
  assert.equal(again.source, source);
  sameParameters(again, direct);
  // The source replaced by another network: the cache is rebuilt from it.
  copyFileSync(`${SOURCES}vgg19-tiny-v2.caffemodel`, source);
  const caffe = await loadVgg19Weights(source, { cache });
  assert.equal(caffe.format, 'caffe');
  assert.doesNotMatch(caffe.layout, /converted/);
  sameParameters(caffe, await loadVgg19Weights(`${SOURCES}vgg19-tiny-v2.caffemodel`));
  // A damaged converted file: one warning, and the source is read and converted again.
  const converted = join(cacheDir, readdirSync(cacheDir)[0]!);
  writeFileSync(converted, readFileSync(converted).subarray(0, 5000));
  const repaired = await loadVgg19Weights(source, { cache });
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0]!, /the converted weights .* are damaged \(.*\); converting again$/);
  sameParameters(repaired, caffe);
  sameParameters(await loadVgg19Weights(source, { cache }), caffe);
  assert.equal(warnings.length, 1);
});

/** Resident bytes of this process's mappings of `file` (/proc/self/smaps). */
function residentBytesOf(file: string): number {
  let bytes = 0;
  let inFile = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(` ${file}`);
    else if (inFile && line.startsWith('Rss:')) bytes += Number(/(\d+) kB/.exec(line)![1]) * 1024;
  }
  return bytes;
}

test('features only (stylize, train-style): the convolutions bit-identical, no fc6-fc8, and a mapped file\'s classifier never read into memory', async () => {
  // A direct read (a torchvision file), and one through the cache.
  const pth = `${SOURCES}vgg19-tiny.pth`;
  const direct = await loadVgg19Weights(pth);
  const cache = { dir: join(dir, 'features-cache'), minBytes: 0 };
  for (const features of [await loadVgg19Weights(pth, { classifier: false }), await loadVgg19Weights(pth, { cache, classifier: false }), await loadVgg19Weights(pth, { cache, classifier: false })]) {
    assert.equal(features.hasClassifier, false);
    assert.deepEqual([...features.layers.keys()].filter((k) => /^fc/.test(k)), []);
    assert.equal(features.layers.size, direct.layers.size - 3);
    sameParameters(direct, features);
  }
  // A converted file whose classifier is 6x its convolutions (widths / 4): mapped lazily, only the
  // convolutions' pages become this process's; read whole, all of them.
  const file = join(dir, 'wide.safetensors');
  const wide = randomVgg19Weights(1, 4);
  await writeConvertedVgg19(file, wide);
  const bytesOf = (kind: 'conv' | 'fc') => [...wide.layers.values()].reduce((s, p) => s + (p.kind === kind ? 4 * (p.w.size + p.b.size) : 0), 0);
  const features = await loadVgg19Weights(file, { classifier: false });
  sameParameters(wide, features);
  const lazy = residentBytesOf(file);
  assert.ok(lazy >= bytesOf('conv') && lazy < bytesOf('conv') + 2 ** 20, `features: ${lazy} bytes resident, the convolutions are ${bytesOf('conv')}`);
  const whole = await loadVgg19Weights(file);
  sameParameters(whole, wide);
  const both = residentBytesOf(file);
  assert.ok(both - lazy >= bytesOf('conv') + bytesOf('fc'), `whole: ${both - lazy} bytes more resident, the file holds ${bytesOf('conv') + bytesOf('fc')}`);
});

test('weights convert: float32 is bit-identical to the source; float16 and bfloat16 halve the file and move the probabilities a little', async () => {
  const source = `${SOURCES}vgg19-tiny-legacy.pth`;
  const direct = await loadVgg19Weights(source);
  const x = await loadClassifierInput(IMAGE, direct.meanPixel);
  const prob = async (w: Vgg19Weights) => {
    const out = new Vgg19(w, getBackend()).forward(x).output;
    await out.toHost();
    return out.data;
  };
  const reference = await prob(direct);
  const sizes: Record<string, number> = {};
  for (const dtype of ['float32', 'float16', 'bfloat16']) {
    const out = join(dir, `converted-${dtype}.safetensors`);
    const r = await runCli(['weights', 'convert', source, '-o', out, '--dtype', dtype]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^wrote .*converted-${dtype}\\.safetensors: [\\d.]+ MB \\(${dtype}\\) in [\\d.]+ s\\n$`));
    // The tensors' bytes (after the 8-byte length and the JSON header, which holds the class names).
    const bytes = readFileSync(out);
    sizes[dtype] = bytes.length - 8 - Number(bytes.readBigUInt64LE(0));
    const w = await loadVgg19Weights(out);
    if (dtype === 'float32') sameParameters(w, direct);
    const p = await prob(w);
    const change = Math.max(...Array.from(p, (v, i) => Math.abs(v - reference[i]!) / reference[i]!));
    // Measured on this fixture: float16 8.5e-4, bfloat16 8.1e-3 at most (relative, over the 1000 classes).
    if (process.env['PASTICHE_VERBOSE']) console.log(`${dtype}: largest relative probability change ${change}`);
    assert.ok(dtype === 'float32' ? change === 0 : change < (dtype === 'float16' ? 2e-3 : 2e-2), `${dtype}: relative probability change ${change}`);
  }
  assert.deepEqual([sizes['float16'], sizes['bfloat16']], [sizes['float32']! / 2, sizes['float32']! / 2]);
  oneLine(await runCli(['weights', 'convert', source, '-o', join(dir, 'out.bin')]), /out\.bin: the output must end in \.safetensors$/);
  oneLine(await runCli(['weights', 'convert', source, '-o', '/proc/nope.safetensors']), /nope\.safetensors/);
});

test('float32 to float16 rounds to nearest even like numpy, and every half survives the round trip', () => {
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  const half = (x: number) => ((f32[0] = x), halfBits(bits[0]!));
  // From numpy's astype(float16) on the same values.
  assert.deepEqual([65504, 65520, 65519.99, 2.98e-8, 2.99e-8, 1.00048828125, 1.00146484375, -0].map(half), [0x7bff, 0x7c00, 0x7bff, 0, 1, 0x3c00, 0x3c02, 0x8000]);
  for (let h = 0; h < 0x10000; h++) {
    const v = halfToFloat(h);
    if (!Number.isNaN(v)) assert.equal(half(v), h, `half 0x${h.toString(16)}`);
  }
});
