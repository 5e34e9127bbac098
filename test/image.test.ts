/** Image input: Pillow-exact resizing, EXIF orientation, colour conversions, formats, bad images. */
import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { PasticheError } from '../src/errors.js';
import { resizeBilinearPil } from '../src/image/pil-resize.js';
import { readRgb } from '../src/image/preprocess.js';
import { readNpy } from '../src/tensor/npy.js';
import { FIXTURES } from './helpers.js';
import { tempDir } from './temp.js';

const dir = tempDir('pastiche-img-');

for (const name of ['noise37x53', 'gradient301x199']) {
  for (const [w, h] of [[150, 150], [100, 61], [37, 200]] as const) {
    test(`resize of ${name} to ${w}x${h} is identical to Pillow's BILINEAR`, async () => {
      const img = await readRgb(`${FIXTURES}resize/${name}.png`);
      const out = resizeBilinearPil(img, w, h);
      const ref = await readNpy(`${FIXTURES}resize/${name}-${w}x${h}.npy`);
      assert.deepEqual([...ref.shape], [h, w, 3]);
      let diff = 0;
      for (let i = 0; i < ref.size; i++) diff = Math.max(diff, Math.abs(out.data[i]! - ref.data[i]!));
      assert.equal(diff, 0, `max difference ${diff} grey levels`);
    });
  }
}

test('EXIF orientation is applied (a 40x20 JPEG tagged "rotate 90" reads as 20x40)', async () => {
  const raw = Buffer.alloc(40 * 20 * 3);
  for (let x = 0; x < 40; x++) for (let y = 0; y < 20; y++) raw[(y * 40 + x) * 3] = x < 20 ? 250 : 5; // left half red
  const file = join(dir, 'rotated.jpg');
  await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(file);
  const img = await readRgb(file);
  assert.deepEqual([img.width, img.height], [20, 40]);
  // Orientation 6 turns the image 90 degrees clockwise: the left half ends up on top.
  assert.ok(img.data[0]! > 200 && img.data[(39 * 20) * 3]! < 50);
});

test('grey, grey+alpha, RGBA and WebP images become 8-bit RGB', async () => {
  const grey = join(dir, 'grey.png');
  await sharp(Buffer.alloc(6 * 5, 77), { raw: { width: 6, height: 5, channels: 1 } }).png().toFile(grey);
  const g = await readRgb(grey);
  assert.equal(g.data.length, 6 * 5 * 3);
  assert.deepEqual([...g.data.subarray(0, 3)], [77, 77, 77]);
  const rgba = join(dir, 'rgba.png');
  await sharp(Buffer.from(Array.from({ length: 4 * 4 }, () => [10, 20, 30, 0]).flat()), { raw: { width: 4, height: 4, channels: 4 } }).png().toFile(rgba);
  assert.deepEqual([...(await readRgb(rgba)).data.subarray(0, 3)], [10, 20, 30], 'alpha dropped, not composited (as PIL convert("RGB"))');
  const webp = join(dir, 'x.webp');
  await sharp(Buffer.alloc(8 * 8 * 3, 200), { raw: { width: 8, height: 8, channels: 3 } }).webp({ lossless: true }).toFile(webp);
  const wimg = await readRgb(webp, { width: 4, height: 4 });
  assert.deepEqual([wimg.width, wimg.height, wimg.data[0]], [4, 4, 200]);
});

test('an image whose header claims 100000 x 100000 pixels is refused before decoding', async () => {
  const png = await sharp(Buffer.alloc(3, 1), { raw: { width: 1, height: 1, channels: 3 } }).png().toBuffer();
  // IHDR data starts at byte 16: width, height (big-endian); its CRC follows the 13 data bytes.
  png.writeUInt32BE(100_000, 16);
  png.writeUInt32BE(100_000, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)) >>> 0, 29);
  const file = join(dir, 'huge.png');
  writeFileSync(file, png);
  const before = process.memoryUsage().rss;
  await assert.rejects(readRgb(file), (e: Error) => e instanceof PasticheError && /huge\.png: cannot decode image: .*pixel limit/.test(e.message));
  assert.ok(process.memoryUsage().rss - before < 200e6, 'no large allocation');
});
