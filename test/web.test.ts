/**
 * The browser page in headless Chromium (Debian's, driven by playwright-core): the tiny VGG19
 * fixture and the cat, classified on WebGPU inside the browser, against PyTorch's probabilities.
 */
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { chromium, type Page } from 'playwright-core';
import { startWebServer } from '../src/server/web-server.js';
import { readNpy } from '../src/tensor/npy.js';
import { Tensor } from '../src/tensor/tensor.js';
import type { PageResult } from '../src/web/classify-page.js';
import sharp from 'sharp';
import { stylizeWithNetwork } from '../src/app/fast-stylize.js';
import { getBackend } from '../src/backends/index.js';
import { readRgb } from '../src/image/preprocess.js';
import { TransformerNet } from '../src/model/transformer/transformer-net.js';
import { loadTransformerModel } from '../src/weights/transformer-file.js';
import { FIXTURES, TINY, assertClose } from './helpers.js';
import { tempDir } from './temp.js';

const CHROMIUM = process.env['PASTICHE_CHROMIUM'] ?? '/usr/bin/chromium';
// The flags a sandboxed, offline machine needs (see the issue and the machine notes).
// The fake camera (a generated test pattern) and no permission prompt: the live page's webcam.
const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'];

const server = await startWebServer();
const profile = tempDir('pastiche-chromium-');
after(async () => {
  await server.close();
});

/** A fresh headless Chromium page at `path` of the served site, closed afterwards. */
async function withPage(path: string, fn: (page: Page) => Promise<void>): Promise<void> {
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  try {
    const page = await ctx.newPage();
    await page.goto(`${server.url}${path}`);
    await fn(page);
  } finally {
    await ctx.close();
  }
}

/** Clicks Classify and waits for the page's result or error. */
async function classify(page: Page, timeout: number): Promise<void> {
  await page.evaluate(() => (window.pasticheResult = undefined));
  await page.click('#run');
  await page.waitForFunction(() => window.pasticheResult ?? window.pasticheError, null, { timeout });
}

test('Chromium is installed where the test expects it', () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (or set PASTICHE_CHROMIUM)`);
});

test('the page classifies chelsea.png with the tiny VGG19 on WebGPU, equal to PyTorch', async () => {
  await withPage('', async (page) => {
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    await page.waitForFunction(() => document.getElementById('status')!.textContent!.startsWith('ready'), null, { timeout: 30_000 });
    await page.setInputFiles('#weights', `${TINY}vgg19-tiny-old-z.mat`); // the compressed layout: DecompressionStream
    await page.setInputFiles('#image', `${TINY}chelsea.png`);
    await classify(page, 180_000);
    const error = await page.evaluate(() => window.pasticheError);
    assert.equal(error, undefined, `page error: ${error} (console: ${logs.join(' | ')})`);
    const r = (await page.evaluate(() => window.pasticheResult)) as PageResult;
    assert.deepEqual(r.top.map((p) => p.index), [185, 949, 984, 978, 151]);
    assert.equal(r.top[0]!.label, 'Norfolk terrier');
    assertClose(new Tensor([1, 1000], Float32Array.from(r.prob)), await readNpy(`${TINY}ref-old/prob.npy`), 1e-4, 'prob in the browser');
    assert.ok(r.forwardMs > 0 && r.adapter.length > 0);
    assert.match(await page.textContent('#status') ?? '', /forward pass .* ms/);
    assert.match(await page.textContent('#result') ?? '', /Norfolk terrier/);
    // The fp16 mode in the browser: same class, a slightly different probability.
    await page.selectOption('#precision', 'fp16');
    await classify(page, 180_000);
    const h = (await page.evaluate(() => window.pasticheResult)) as PageResult;
    assert.match(h.precision, /^fp16/);
    assert.equal(h.top[0]!.index, 185);
    const d = Math.abs(h.top[0]!.prob - r.top[0]!.prob);
    assert.ok(d > 0 && d < 0.01, `fp16 moved the top probability by ${d}`);
  });
});

test('check.html grades every WGSL kernel in the browser against the four loops (rel. error < 1e-4)', async () => {
  await withPage('check.html', async (page) => {
    await page.waitForFunction(() => window.pasticheCheck ?? window.pasticheCheckError, null, { timeout: 300_000 });
    assert.equal(await page.evaluate(() => window.pasticheCheckError), undefined);
    const r = (await page.evaluate(() => window.pasticheCheck))!;
    assert.ok(r.rows.length > 100, `${r.rows.length} rows`);
    const failed = r.rows.filter((x) => !x.pass);
    assert.deepEqual(failed, [], `failed in the browser: ${JSON.stringify(failed)}`);
    assert.match(await page.textContent('#status') ?? '', /^\d+ of \d+ ops equal the four loops/);
  });
});

test('the page says what is wrong when the weights file is not a .mat', async () => {
  await withPage('', async (page) => {
    await page.setInputFiles('#weights', `${TINY}chelsea.png`);
    await page.setInputFiles('#image', `${TINY}chelsea.png`);
    await classify(page, 60_000);
    assert.match((await page.evaluate(() => window.pasticheError)) ?? '', /chelsea.png: not a MATLAB level-5 .mat file/);
    assert.match(await page.textContent('#status') ?? '', /^error: /);
  });
});

test("live.html: a style network (the PyTorch fixture's .pth) stylizes a picture in the browser as native does in Node, and the webcam's frames with their rate", async () => {
  // A 96x64 picture: multiples of 4, so that the page runs it as it is (no resizing to compare).
  const dir = tempDir('pastiche-live-');
  const picture = join(dir, 'cat.png');
  await sharp(`${TINY}chelsea.png`).resize(96, 64, { fit: 'fill' }).png().toFile(picture);
  const model = `${FIXTURES}transformer/transformer-tiny.pth`;
  const want = await stylizeWithNetwork(new TransformerNet(await loadTransformerModel(model), getBackend()), await readRgb(picture));
  await withPage('live.html', async (page) => {
    await page.waitForFunction(() => document.getElementById('status')!.textContent!.startsWith('ready'), null, { timeout: 30_000 });
    await page.setInputFiles('#model', model);
    await page.setInputFiles('#picture', picture);
    await page.selectOption('#size', 'original');
    await page.click('#stylize');
    await page.waitForFunction(() => window.pasticheLive ?? window.pasticheError, null, { timeout: 120_000 });
    assert.equal(await page.evaluate(() => window.pasticheError), undefined);
    const got = (await page.evaluate(() => window.pasticheLive))!;
    assert.deepEqual([got.width, got.height], [96, 64]);
    let worst = 0;
    for (let i = 0; i < want.data.length; i++) worst = Math.max(worst, Math.abs(got.output![i]! - want.data[i]!));
    assert.ok(worst <= 1, `the browser's pixels differ from native's by up to ${worst} levels`);
    // The webcam: Chromium's fake camera, frame after frame.
    await page.selectOption('#size', '128');
    await page.evaluate(() => (window.pasticheLive = undefined));
    await page.click('#webcam');
    await page.waitForFunction(() => (window.pasticheLive?.frames ?? 0) >= 3 || window.pasticheError, null, { timeout: 120_000 });
    assert.equal(await page.evaluate(() => window.pasticheError), undefined);
    const live = (await page.evaluate(() => window.pasticheLive))!;
    assert.equal(live.source, 'webcam');
    assert.ok(live.fps > 0 && live.width <= 128 && live.width % 4 === 0, JSON.stringify(live));
    assert.match((await page.textContent('#status')) ?? '', /^webcam \d+x\d+: [\d.]+ frames\/s/);
    await page.click('#stop');
    assert.match((await page.textContent('#status')) ?? '', /stopped/);
  });
});

test('live.html says in one line what is wrong with a model file that is not one', async () => {
  await withPage('live.html', async (page) => {
    await page.setInputFiles('#model', `${TINY}chelsea.png`);
    await page.setInputFiles('#picture', `${TINY}chelsea.png`);
    await page.click('#stylize');
    await page.waitForFunction(() => window.pasticheError, null, { timeout: 60_000 });
    assert.match((await page.evaluate(() => window.pasticheError)) ?? '', /chelsea.png: not a style model/);
    assert.match((await page.textContent('#status')) ?? '', /^error: /);
  });
});
