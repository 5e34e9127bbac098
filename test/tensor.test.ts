import * as assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PasticheError } from '../src/errors.js';
import { formatNpy, parseNpy, readNpy, writeNpy } from '../src/tensor/npy.js';
import { clearHostPool, hostPoolBytes } from '../src/tensor/host-pool.js';
import { NCHW16C, fromChannelBlocked, toChannelBlocked } from '../src/tensor/channel-blocked.js';
import { Tensor, expectShape } from '../src/tensor/tensor.js';
import { TINY, randomTensor } from './helpers.js';
import { tempDir } from './temp.js';

test('tensor shapes are checked with readable messages', () => {
  assert.throws(() => new Tensor([2, 3], new Float32Array(5)), /5 elements but shape \[2, 3\] needs 6/);
  assert.throws(() => new Tensor([2, -1]), /invalid tensor shape/);
  const t = randomTensor([2, 3, 4], 1);
  assert.equal(t.reshape([6, 4]).data, t.data, 'reshape is a view');
  assert.throws(() => expectShape(t, [2, 3, 5], 'weights'), /weights: expected shape \[2, 3, 5\], got \[2, 3, 4\]/);
});

test('.npy round-trips float32 tensors, including rank 1 and empty', async () => {
  const dir = tempDir('pastiche-npy-');
  for (const shape of [[5], [2, 3, 4, 5], [0, 3], [1, 1000]]) {
    const t = randomTensor(shape, 7);
    const file = join(dir, 'x.npy');
    await writeNpy(file, t);
    const back = await readNpy(file);
    assert.deepEqual(back.shape, t.shape);
    assert.deepEqual(back.data, t.data);
    // numpy requires the data to start at a multiple of 64 bytes
    const bytes = formatNpy(t);
    assert.equal((bytes.length - 4 * t.size) % 64, 0);
  }
  assert.deepEqual(readdirSync(dir), ['x.npy'], 'no temporary files left');
});

test('.npy reads the PyTorch references (float32, C order)', async () => {
  const t = await readNpy(`${TINY}ref-old/input.npy`);
  assert.deepEqual(t.shape, [1, 3, 224, 224]);
});

test('.npy rejects malformed files with a PasticheError', () => {
  assert.throws(() => parseNpy(new Uint8Array([1, 2, 3]), 'a.npy'), (e: Error) => e instanceof PasticheError && /a\.npy: not a readable \.npy file: missing magic/.test(e.message));
  const good = formatNpy(randomTensor([4, 4], 1));
  assert.throws(() => parseNpy(good.subarray(0, good.length - 3), 'b.npy'), /b\.npy: .*truncated data/);
  const f8 = new TextEncoder().encode("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }");
  const bad = new Uint8Array(10 + f8.length + 16);
  bad.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(bad.buffer).setUint16(8, f8.length, true);
  bad.set(f8, 10);
  assert.throws(() => parseNpy(bad, 'c.npy'), /unsupported dtype "<i8"/);
});

test('recycled host memory goes to the next uninitialised tensor of its size, and only there', () => {
  clearHostPool();
  const a = Tensor.uninitialized([4, 5]);
  assert.ok(Number.isNaN(a.data[0]!), 'the tests poison uninitialised memory with NaN');
  a.data.fill(1);
  const memory = a.data;
  a.recycle();
  a.recycle(); // twice is harmless: the array is pooled once
  assert.equal(hostPoolBytes(), 80);
  assert.throws(() => a.data, /\[4, 5\] was recycled/);
  assert.notEqual(Tensor.uninitialized([21]).data, memory, 'another size does not take it');
  const b = Tensor.uninitialized([2, 10]);
  assert.equal(b.data, memory, 'the same size reuses it');
  assert.ok(Number.isNaN(b.data[3]!), 'poisoned again on the way out');
  assert.equal(hostPoolBytes(), 0);
  assert.equal(Tensor.uninitialized([2, 10]).data === memory, false, 'handed out once');
  // A view shares the array, so recycling the tensor it came from must not pool it.
  const view = b.reshape([20]);
  b.recycle();
  assert.equal(hostPoolBytes(), 0);
  assert.equal(view.data, memory);
  // Tensors made from caller data are never pooled.
  const own = new Tensor([3], new Float32Array([1, 2, 3]));
  own.recycle();
  assert.equal(hostPoolBytes(), 0);
  assert.throws(() => Tensor.uninitialized([2, -1]), /invalid tensor shape/);
});

test("a tensor in a backend's layout (nChw16c) reads as NCHW, once converted, and gives both arrays back when recycled", async () => {
  clearHostPool();
  // Element (n, c, y, x) of [2, 32, 3, 5] at ((n * 2 + c / 16) * 15 + y * 5 + x) * 16 + c % 16.
  const shape = [2, 32, 3, 5];
  const x = randomTensor(shape, 7);
  const blocked = new Float32Array(x.size);
  toChannelBlocked(x.data, shape, blocked);
  assert.equal(blocked[((1 * 2 + 1) * 15 + 2 * 5 + 4) * 16 + 3], x.data[((1 * 32 + 19) * 3 + 2) * 5 + 4]);
  assert.equal(blocked[1], x.data[1 * 15]);
  const back = new Float32Array(x.size);
  fromChannelBlocked(blocked, shape, back);
  assert.deepEqual(back, x.data);
  assert.throws(() => toChannelBlocked(x.data, [2, 20, 3, 8], blocked), /C a multiple of 16, not \[2, 20, 3, 8\]/);

  const t = Tensor.uninitializedIn(NCHW16C, shape);
  t.arrayIn(NCHW16C)!.set(blocked);
  assert.equal(t.layout, NCHW16C);
  assert.equal(t.onDevice, false);
  assert.equal(hostPoolBytes(), 0);
  assert.deepEqual(t.data, x.data, 'data converts');
  assert.equal(t.data, t.data, 'once');
  assert.equal(t.arrayIn(NCHW16C)!.length, x.size, 'and keeps the blocked array for the backend');
  assert.equal(t.arrayIn({ name: 'other', toNchw: () => {} }), undefined);
  assert.equal(await t.toHost(), t);
  t.recycle();
  assert.equal(hostPoolBytes(), 2 * 4 * x.size, 'both arrays back in the pool');
  assert.throws(() => t.data, /was recycled/);
  // A view is NCHW: reshape converts first.
  const u = Tensor.uninitializedIn(NCHW16C, shape);
  u.arrayIn(NCHW16C)!.set(blocked);
  assert.deepEqual(u.reshape([2, 480]).data, x.data);
  assert.deepEqual(Tensor.uninitializedIn(NCHW16C, [0, 16, 1, 1]).layout, undefined, 'empty tensors stay plain');
  assert.throws(() => new Tensor(shape, new Float32Array(3), NCHW16C), /a tensor in nChw16c needs 960 host elements/);
  // The caller's own array in a layout is read the same way and never pooled.
  clearHostPool();
  const own = new Tensor(shape, blocked, NCHW16C);
  assert.deepEqual(own.data, x.data);
  own.recycle();
  assert.equal(hostPoolBytes(), 4 * x.size, 'only the converted copy');
});
