/**
 * VGG19 from torchvision (.pth, zip and legacy), Keras (.h5, with and without the top) and Caffe
 * (.caffemodel, V1 and V2), each written by its own tool (test/fixtures/sources/make_sources.py:
 * torch.save, h5py, the protobuf library) with one set of random weights, against PyTorch running
 * that source's own preprocessing; and hostile files of each kind, refused in one line.
 */
import * as assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { getBackend } from '../src/backends/index.js';
import { loadClassifierInput } from '../src/image/preprocess.js';
import { Vgg19 } from '../src/model/vgg19.js';
import { readNpy } from '../src/tensor/npy.js';
import { loadVgg19Weights } from '../src/index.js';
import { FIXTURES, TINY, assertClose, runCli, type CliResult } from './helpers.js';

const SOURCES = `${FIXTURES}sources/`;
const IMAGE = `${TINY}chelsea.png`;
const dir = mkdtempSync(join(tmpdir(), 'pastiche-sources-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

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
