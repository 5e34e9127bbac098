/** The MAT-file reader and the MatConvNet interpretation: both layouts, MATLAB's habits, bad files. */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { createInflate, deflateSync } from 'node:zlib';
import { PasticheError } from '../src/errors.js';
import { VGG19_LAYERS } from '../src/model/vgg19-table.js';
import { readMatFile } from '../src/weights/mat/mat-file.js';
import { readMat, type MatSource } from '../src/weights/mat/mat-reader.js';
import { VGG19_MAT_LIMITS, VGG19_MAT_VARIABLES } from '../src/weights/matconvnet.js';
import type { MatCell, MatStruct, MatValue } from '../src/weights/mat/mat-types.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import type { Vgg19Weights } from '../src/model/vgg19-params.js';
import { FIXTURES, TINY } from './helpers.js';
import { concat, matHeader, writeMat, type WriterOptions } from './mat-writer.js';
import { tempDir } from './temp.js';

const dir = tempDir('pastiche-mat-');
let counter = 0;
function tmpFile(bytes: Uint8Array): string {
  const f = join(dir, `f${counter++}.mat`);
  writeFileSync(f, bytes);
  return f;
}

function assertSameWeights(a: Vgg19Weights, b: Vgg19Weights): void {
  assert.deepEqual([...a.layers.keys()], [...b.layers.keys()]);
  for (const [name, la] of a.layers) {
    const lb = b.layers.get(name)!;
    assert.equal(la.kind, lb.kind, name);
    if (la.kind !== 'pool' && lb.kind !== 'pool') {
      assert.deepEqual(la.w.shape, lb.w.shape, `${name} w shape`);
      assert.deepEqual(la.w.data, lb.w.data, `${name} w`);
      assert.deepEqual(la.b.data, lb.b.data, `${name} b`);
    } else {
      assert.deepEqual(la, lb, name);
    }
  }
  a.meanPixel.forEach((m, i) => assert.ok(Math.abs(m - b.meanPixel[i]!) < 1e-9, 'mean pixel'));
  assert.deepEqual(a.classes, b.classes);
}

async function expectFileError(file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(loadMatConvNetVgg19(file), (e: Error) => {
    assert.ok(e instanceof PasticheError, `not a PasticheError: ${e.stack}`);
    assert.ok(e.message.startsWith(`${file}: `), `message does not name the file: ${e.message}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

const newVars = (await readMatFile(`${TINY}vgg19-tiny-new.mat`)).variables;
const oldWeights = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);

test('the three fixtures (old, old compressed, new) give identical weights', async () => {
  assert.equal(oldWeights.layout, 'old');
  const z = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old-z.mat`);
  const n = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-new.mat`);
  assert.equal(n.layout, 'new');
  assertSameWeights(oldWeights, z);
  assertSameWeights(oldWeights, n);
  assert.deepEqual(oldWeights.meanPixel.map((m) => m.toFixed(3)), ['123.680', '116.779', '103.939']);
  assert.equal(oldWeights.classes[281], 'tabby, tabby cat');
  assert.equal(oldWeights.layers.size, 16 + 3 + 5);
});

test('weights are transposed from MatConvNet [H,W,Cin,Cout] to the course layout', () => {
  const conv = (newVars.get('layers') as MatCell).items[2] as MatStruct; // conv1_2
  const W = (conv.elements[0]!['weights'] as MatCell).items[0]!;
  assert.equal(W.kind, 'numeric');
  const [kh, kw, cin] = W.dims as [number, number, number, number];
  const lw = oldWeights.layers.get('conv1_2')!;
  assert.equal(lw.kind, 'conv');
  const w = lw.kind === 'conv' ? lw.w : undefined!;
  // MATLAB W(h, w, ci, co) (column-major) is the course's w[ci][h][w][co]
  for (const [h, x, ci, co] of [[0, 0, 0, 0], [2, 1, 3, 1], [1, 2, 0, 3]] as const) {
    const matlab: number = (W.data as Float32Array)[h + kh * (x + kw * (ci + cin * co))]!;
    assert.equal(w.data[((ci * 3 + h) * 3 + x) * 4 + co], matlab);
  }
});

const matlabStyles: [string, WriterOptions][] = [
  ['MATLAB -v7 (UTF-16 chars, whole doubles as uint8, compressed)', { chars: 'utf16', shrinkWholeDoubles: true, compress: true }],
  ['big-endian with uint16 chars', { littleEndian: false, chars: 'uint16', shrinkWholeDoubles: true }],
  ['big-endian compressed', { littleEndian: false, compress: true }],
];
for (const [what, opts] of matlabStyles) {
  test(`reads what MATLAB writes: ${what}`, async () => {
    const file = tmpFile(writeMat(newVars, opts));
    const { variables, header } = await readMatFile(file);
    assert.equal(header.littleEndian, opts.littleEndian ?? true);
    const layer0 = ((variables.get('layers') as MatCell).items[0] as MatStruct).elements[0]!;
    const pad = layer0['pad']!;
    assert.ok(pad.kind === 'numeric' && pad.class === 'double' && pad.data instanceof Float64Array);
    assert.deepEqual(Array.from(pad.data as Float64Array), [1, 1, 1, 1]);
    const precious = layer0['precious']!;
    assert.ok(precious.kind === 'numeric' && precious.logical, 'logical flag');
    const opts0 = layer0['opts']!;
    assert.ok(opts0.kind === 'cell' && opts0.items.length === 0, 'empty cell');
    assertSameWeights(oldWeights, await loadMatConvNetVgg19(file));
  });
}

test('reads char data in every encoding, including non-ASCII UTF-16', async () => {
  const text: MatValue = { kind: 'char', dims: [1, 6], text: 'café ü' };
  for (const chars of ['utf8', 'utf16', 'uint16'] as const) {
    for (const littleEndian of [true, false]) {
      const v = (await readMatFile(tmpFile(writeMat(new Map([['s', text]]), { chars, littleEndian })))).variables.get('s');
      assert.deepEqual(v, text, `${chars} ${littleEndian}`);
    }
  }
});

test('bad files: missing, not a .mat, HDF5, truncated, damaged compression', async () => {
  await expectFileError(join(dir, 'nope.mat'), /no such file/);
  await expectFileError(`${TINY}chelsea.png`, /not a MATLAB level-5 \.mat file/);
  const hdf = Buffer.alloc(600);
  hdf.write('MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00', 0, 'latin1');
  await expectFileError(tmpFile(hdf), /v7\.3 \(HDF5\)/);
  const old = readFileSync(`${TINY}vgg19-tiny-old.mat`);
  await expectFileError(tmpFile(old.subarray(0, 1_000_000)), /truncated/);
  await expectFileError(tmpFile(old.subarray(0, 100)), /not a MATLAB level-5/);
  const z = readFileSync(`${TINY}vgg19-tiny-old-z.mat`);
  await expectFileError(tmpFile(z.subarray(0, 1_000_000)), /truncated/);
  const damaged = Buffer.from(z);
  for (let i = 500_000; i < 500_400; i++) damaged[i] = (damaged[i]! * 7 + 13) & 0xff;
  await expectFileError(tmpFile(damaged), /corrupt \.mat/);
  await expectFileError(tmpFile(Buffer.alloc(0)), /is empty \(0 bytes\)/);
});

test('random corruption never crashes the reader: a PasticheError or a valid result', async () => {
  const small: Map<string, MatValue> = new Map([['layers', { kind: 'cell', dims: [1, 2], items: [
    { kind: 'struct', dims: [1, 1], fields: ['name', 'w'], elements: [{ name: { kind: 'char', dims: [1, 3], text: 'abc' }, w: { kind: 'numeric', class: 'single', dims: [2, 3], data: new Float32Array(6).fill(1.5), logical: false, complex: false } }] },
    { kind: 'numeric', class: 'double', dims: [1, 3], data: Float64Array.from([1, 2, 3]), logical: false, complex: false },
  ] } as MatCell]]);
  for (const compress of [false, true]) {
    const good = writeMat(small, { compress });
    let seed = compress ? 99 : 7;
    for (let trial = 0; trial < 150; trial++) {
      const bad = Buffer.from(good);
      for (let j = 0; j < 3; j++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const pos = 128 + (seed % (bad.length - 128));
        bad[pos] = (seed >>> 8) & 0xff;
      }
      try {
        await readMatFile(tmpFile(bad));
      } catch (e) {
        assert.ok(e instanceof PasticheError, `trial ${trial}: ${(e as Error).stack}`);
      }
    }
  }
});

test('absurd sizes in headers are refused without allocating them', async () => {
  const w = (v: MatValue) => writeMat(new Map([['x', v]]));
  // A 1e5 x 1e5 x 100 single array holding 6 numbers.
  const huge = Buffer.from(w({ kind: 'numeric', class: 'single', dims: [2, 3], data: new Float32Array(6), logical: false, complex: false }));
  const dimsAt = huge.indexOf(Buffer.from([5, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0])) + 8;
  huge.writeInt32LE(100_000, dimsAt);
  huge.writeInt32LE(100_000, dimsAt + 4);
  await assert.rejects(readMatFile(tmpFile(huge)), /has dimensions \[100000, 100000\] .* holds 6 values/);
  // A cell claiming 2^31 - 1 elements.
  const cell = Buffer.from(w({ kind: 'cell', dims: [1, 1], items: [{ kind: 'char', dims: [1, 1], text: 'a' }] }));
  const cd = cell.indexOf(Buffer.from([5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])) + 8;
  cell.writeInt32LE(0x7fffffff, cd + 4);
  await assert.rejects(readMatFile(tmpFile(cell)), /claims 2147483647 elements/);
  // A top-level element claiming 4 GB in a small file.
  const big = Buffer.from(w({ kind: 'char', dims: [1, 1], text: 'a' }));
  big.writeUInt32LE(0xfffffff0, 132);
  await assert.rejects(readMatFile(tmpFile(big)), /truncated/);
  // A compressed element whose inner tag claims 4 GB.
  const { deflateSync } = await import('node:zlib');
  const inner = Buffer.alloc(64);
  inner.writeUInt32LE(14, 0);
  inner.writeUInt32LE(0xfffffff0, 4);
  const zz = deflateSync(inner);
  const tag = Buffer.alloc(8);
  tag.writeUInt32LE(15, 0);
  tag.writeUInt32LE(zz.length, 4);
  await assert.rejects(readMatFile(tmpFile(concat([matHeader(), tag, zz]))), /claims 4294967280 bytes, more than/);
  // A zip bomb: the inner tag claims 64 bytes, the stream inflates to 100 MB of zeros.
  const bomb = Buffer.concat([inner.subarray(0, 8), Buffer.alloc(100_000_000)]);
  bomb.writeUInt32LE(64, 4);
  const bz = deflateSync(bomb);
  tag.writeUInt32LE(bz.length, 4);
  await assert.rejects(readMatFile(tmpFile(concat([matHeader(), tag, bz]))), /inflates to more bytes than it claims/);
});

function edit(f: (layers: MatValue[]) => MatValue[]): Map<string, MatValue> {
  const layers = newVars.get('layers') as MatCell;
  const items = f([...layers.items]);
  return new Map([...newVars, ['layers', { kind: 'cell', dims: [1, items.length], items }]]);
}

function setField(layer: MatValue, field: string, value: MatValue): MatValue {
  const s = layer as MatStruct;
  return { ...s, elements: [{ ...s.elements[0]!, [field]: value }] };
}

test('a .mat holding another network is refused with the reason', async () => {
  const vgg16ish = edit((ls) => ls.filter((_, i) => i !== 14 && i !== 15));
  await expectFileError(tmpFile(writeMat(vgg16ish)), /has 41 layers where VGG19 has 43: not the VGG19 network/);
  const renamed = edit((ls) => ls.map((l, i) => (i === 2 ? setField(l, 'name', { kind: 'char', dims: [1, 5], text: 'convX' }) : l)));
  await expectFileError(tmpFile(writeMat(renamed)), /layer 3 is named 'convX' where VGG19 has 'conv1_2'/);
  const avg = edit((ls) => ls.map((l, i) => (i === 4 ? setField(l, 'method', { kind: 'char', dims: [1, 3], text: 'avg' }) : l)));
  await expectFileError(tmpFile(writeMat(avg)), /pool1 uses 'avg' pooling/);
  const noLayers = new Map([['meta', newVars.get('meta')!]]);
  await expectFileError(tmpFile(writeMat(noLayers)), /no 'layers' cell array: not a MatConvNet model/);
  const other = new Map<string, MatValue>([['x', { kind: 'char', dims: [1, 2], text: 'hi' }]]);
  await expectFileError(tmpFile(writeMat(other)), /not a MatConvNet model/);
});

/** An in-memory MatSource that counts the bytes its inflation hands out, and the most array-buffer memory seen meanwhile. */
function countingSource(bytes: Uint8Array, name = 'mem.mat') {
  const stats = { inflated: 0, peakArrayBuffers: 0 };
  const base = process.memoryUsage().arrayBuffers;
  const sample = () => (stats.peakArrayBuffers = Math.max(stats.peakArrayBuffers, process.memoryUsage().arrayBuffers - base));
  const source: MatSource = {
    name,
    size: bytes.length,
    read: async (p, n) => bytes.subarray(p, Math.min(bytes.length, p + n)),
    async *inflate(p, n) {
      const z = createInflate();
      const input = Readable.from([Buffer.from(bytes.buffer, bytes.byteOffset + p, n)]);
      input.pipe(z);
      try {
        for await (const chunk of z) {
          stats.inflated += (chunk as Buffer).length;
          sample();
          yield chunk as Buffer;
          sample();
        }
      } finally {
        input.destroy();
        z.destroy();
      }
    },
  };
  return { source, stats, sample };
}

/** A compressed top-level element whose inner matrix is named `name`, claims `claim` bytes and carries `payload` bytes of zeros. */
function compressedVariable(name: string, claim: number, payload: number): Uint8Array {
  const head = Buffer.from(writeMat(new Map([[name, { kind: 'numeric', class: 'uint8', dims: [1, 1], data: new Uint8Array(1), logical: false, complex: false } as MatValue]])).subarray(128));
  const body = Buffer.concat([head, Buffer.alloc(Math.max(0, payload - head.length))]);
  body.writeUInt32LE(claim, 4);
  const z = deflateSync(body);
  const tag = Buffer.alloc(8);
  tag.writeUInt32LE(15, 0);
  tag.writeUInt32LE(z.length, 4);
  return concat([tag, z]);
}

test('a real MATLAB v7.3 file (HDF5 behind a level-5-looking header) is named as such', async () => {
  await expectFileError(`${FIXTURES}mat/v73.mat`, /v73\.mat: is a MATLAB v7\.3 \(HDF5\) file.*-v7/);
});

test('long UTF-16 text in a big-endian file (once a stack overflow)', async () => {
  const text = 'VGG19 '.repeat(60_000); // 360k characters
  const v = (await readMatFile(tmpFile(writeMat(new Map([['s', { kind: 'char', dims: [1, text.length], text }]]), { chars: 'utf16', littleEndian: false })))).variables.get('s');
  assert.equal(v?.kind === 'char' && v.text, text);
});

test('int64 arrays: whole numbers stored as doubles are read, fractions are refused in one line', async () => {
  const int64 = (data: number[]) => tmpFile(writeMat(new Map([['n', { kind: 'numeric', class: 'int64', dims: [1, data.length], data: Float64Array.from(data), logical: false, complex: false } as MatValue]]), { storeAs: { int64: 'double' } }));
  const ok = (await readMatFile(int64([1, -2, 3]))).variables.get('n');
  assert.deepEqual(ok?.kind === 'numeric' && [...(ok.data as BigInt64Array)], [1n, -2n, 3n]);
  await assert.rejects(readMatFile(int64([1, 2.5])), /corrupt \.mat: a int64 array stores the value 2\.5, which is not a whole number/);
  await assert.rejects(readMatFile(int64([NaN])), /stores the value NaN/);
});

test('a variable that appears twice is refused (it would silently replace the first)', async () => {
  const one = writeMat(new Map([['layers', { kind: 'char', dims: [1, 1], text: 'a' }]]));
  await assert.rejects(readMatFile(tmpFile(concat([one, one.subarray(128)]))), /variable 'layers' appears twice/);
});

test('compressed variables the model does not need are skipped without inflating them', async () => {
  const tiny = readFileSync(`${TINY}vgg19-tiny-old.mat`);
  // 300 MB of zeros in 300 KB, three times over, ahead of the real variables.
  const junk = [1, 2, 3].map((i) => compressedVariable(`junk${i}`, 300_000_000, 300_000_000));
  const { source, stats } = countingSource(concat([tiny.subarray(0, 128), ...junk, tiny.subarray(128)]));
  const { variables } = await readMat(source, { only: VGG19_MAT_VARIABLES, maxBytes: VGG19_MAT_LIMITS });
  assert.ok(variables.has('layers') && !variables.has('junk1'));
  assert.ok(stats.inflated < 3 * 1_000_000, `inflated ${stats.inflated} bytes of variables nobody reads`);
  assert.ok(stats.peakArrayBuffers < 64 * 2 ** 20, `peak ${stats.peakArrayBuffers} bytes`);
});

test('inflation grows with what arrives: a small file claiming gigabytes allocates what it holds', async () => {
  // 'layers' claims 1 GB (within what VGG19 can need) but holds 4 KB: the old reader reserved the 1 GB first.
  const { source, stats, sample } = countingSource(concat([matHeader(), compressedVariable('layers', 1_000_000_000, 4096)]));
  await assert.rejects(readMat(source, { only: VGG19_MAT_VARIABLES, maxBytes: VGG19_MAT_LIMITS }), /mem\.mat: corrupt \.mat: .* ends early/);
  sample();
  assert.ok(stats.peakArrayBuffers < 64 * 2 ** 20, `peak ${stats.peakArrayBuffers} bytes`);
  // Beyond what the model can need (VGG19's parameters as doubles): refused before inflating.
  const big = countingSource(concat([matHeader(), compressedVariable('layers', 1_500_000_000, 4096)]));
  await assert.rejects(readMat(big.source, { only: VGG19_MAT_VARIABLES, maxBytes: VGG19_MAT_LIMITS }), /variable 'layers' claims 1500000000 bytes, more than the \d+ it can need/);
  assert.ok(big.stats.peakArrayBuffers < 64 * 2 ** 20);
  // A needed variable that really inflates past its claim stops at once.
  const bomb = countingSource(concat([matHeader(), compressedVariable('meta', 1000, 200_000_000)]));
  await assert.rejects(readMat(bomb.source, { only: VGG19_MAT_VARIABLES, maxBytes: VGG19_MAT_LIMITS }), /inflates to more bytes than it claims/);
  assert.ok(bomb.stats.inflated < 4_000_000, `inflated ${bomb.stats.inflated}`);
});

test('non-finite weights are refused with the layer that holds them', async () => {
  const poison = (layerIndex: number, item: 0 | 1, value: number) =>
    edit((ls) =>
      ls.map((l, i) => {
        if (i !== layerIndex) return l;
        const w = (l as MatStruct).elements[0]!['weights'] as MatCell;
        const arr = w.items[item] as MatValue & { kind: 'numeric' };
        const data = Float32Array.from(arr.data as Float32Array);
        data[Math.floor(data.length / 2)] = value;
        return setField(l, 'weights', { ...w, items: w.items.map((it, k) => (k === item ? { ...arr, data } : it)) });
      }),
    );
  const names = (VGG19_LAYERS.filter((l) => l.kind !== 'flatten')).map((l) => l.name);
  await expectFileError(tmpFile(writeMat(poison(names.indexOf('conv3_2'), 0, NaN))), /layer conv3_2: the weights holds a non-finite value \(NaN at index \d+\)/);
  await expectFileError(tmpFile(writeMat(poison(names.indexOf('fc7'), 1, -Infinity))), /layer fc7: the biases holds a non-finite value \(-Infinity/);
  await expectFileError(tmpFile(writeMat(poison(names.indexOf('conv1_1'), 0, Infinity), { compress: true })), /layer conv1_1: the weights holds a non-finite value \(Infinity/);
});

test('folders and FIFOs given as the weights file are refused at once, by name', async () => {
  await expectFileError(dir, /is a folder, not a file/);
  const fifo = join(dir, 'weights.fifo');
  execFileSync('mkfifo', [fifo]);
  // Opening a FIFO for reading blocks until a writer comes: this must answer, not hang.
  await expectFileError(fifo, /weights\.fifo: is a FIFO \(named pipe\), not a file/);
});
