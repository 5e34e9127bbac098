/**
 * Pastiche Studio in headless Chromium (Debian's, driven by playwright-core) against a real
 * `pastiche serve` with the tiny VGG19: a whole job from upload to download, cancel, an invalid
 * upload, classification, the page in dark mode and on a phone-sized screen, and a run in the
 * browser itself on WebGPU (Chromium's SwiftShader here) against the same run in Node. Screenshots go to
 * $PASTICHE_SCREENSHOTS when it is set (for looking at them, not compared by the test).
 */
import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';
import { stylize } from '../src/app/stylize-job.js';
import { parseStylizeSettings } from '../src/app/stylize-request.js';
import { startService } from '../src/server/serve.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { FIXTURES, TINY } from './helpers.js';
import { tempDir } from './temp.js';

const CHROMIUM = process.env['PASTICHE_CHROMIUM'] ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'];
const SHOTS = process.env['PASTICHE_SCREENSHOTS'];
const CONTENT = `${TINY}chelsea.png`;
const STYLE = `${FIXTURES}resize/gradient301x199.png`;

const service = await startService({ weights: `${TINY}vgg19-tiny-old.mat` });
const profile = tempDir('pastiche-studio-');
let ctx: BrowserContext | undefined;
after(async () => {
  await ctx?.close();
  await service.close();
});

async function page(options: { colorScheme?: 'light' | 'dark'; viewport?: { width: number; height: number } } = {}): Promise<Page> {
  ctx ??= await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 860 } });
  const p = await ctx.newPage();
  if (options.viewport) await p.setViewportSize(options.viewport);
  await p.emulateMedia({ colorScheme: options.colorScheme ?? 'light' });
  await p.goto(service.url);
  await p.waitForFunction(() => document.getElementById('health')!.textContent!.startsWith('ready'), null, { timeout: 30_000 });
  return p;
}

const shot = async (p: Page, name: string) => {
  if (SHOTS) await p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
};

/** The job the page follows, once its state is one of `states`. */
async function jobState(p: Page, states: string[], timeout = 60_000): Promise<{ id: string; state: string; previews: number }> {
  await p.waitForFunction((s) => s.includes((window as unknown as { pasticheStudio: { job?: { state: string } } }).pasticheStudio.job?.state ?? ''), states, { timeout });
  return p.evaluate(() => (window as unknown as { pasticheStudio: { job: { id: string; state: string; previews: number } } }).pasticheStudio.job);
}

async function pickImages(p: Page, iterations: number): Promise<void> {
  await p.setInputFiles('#content', CONTENT);
  await p.setInputFiles('#style', STYLE);
  await p.click('summary');
  await p.fill('#size', '64');
  await p.fill('#iterations', String(iterations));
  await p.selectOption('#optimizer', 'adam');
}

test('a whole job in the Studio: upload, watch the picture form, download; the gallery keeps it', async () => {
  const p = await page();
  await shot(p, 'studio-empty');
  await pickImages(p, 40);
  await p.click('#start');
  const job = await jobState(p, ['done', 'failed']);
  assert.equal(job.state, 'done', await p.textContent('#status') ?? '');
  assert.ok(job.previews >= 2, `${job.previews} previews`);
  assert.match((await p.textContent('#status')) ?? '', /^done: 64x43, 40 iterations/);
  assert.equal(await p.getAttribute('#download', 'aria-disabled'), 'false');
  const href = (await p.getAttribute('#download', 'href'))!;
  const png = Buffer.from(await (await fetch(new URL(href, service.url))).arrayBuffer());
  assert.deepEqual(Object.values((({ width, height }) => ({ width, height }))(await sharp(png).metadata())), [64, 43]);
  assert.equal(await p.locator('#gallery img').count(), 1);
  assert.ok(await p.isVisible('#chart'), 'the loss chart');
  await shot(p, 'studio-done');
  // Cancel a long one: it stops within a second or so and keeps its best image.
  await p.fill('#iterations', '100000');
  await p.click('#start');
  await p.waitForFunction(
    (first) => {
      const j = (window as unknown as { pasticheStudio: { job?: { id: string; progress?: { iteration: number } } } }).pasticheStudio.job;
      return j !== undefined && j.id !== first && (j.progress?.iteration ?? 0) > 3;
    },
    job.id,
    { timeout: 30_000 },
  );
  assert.match((await p.textContent('#status')) ?? '', /^iteration \d+ of 100000 · loss /);
  await shot(p, 'studio-running');
  await p.click('#cancel');
  assert.equal((await jobState(p, ['cancelled', 'done', 'failed'], 5_000)).state, 'cancelled');
  assert.match((await p.textContent('#status')) ?? '', /cancelled: the best image so far is kept/);
  assert.equal(await p.locator('#gallery img').count(), 2);
  await p.close();
});

test('an invalid upload is said on the page; the keyboard reaches every control', async () => {
  const p = await page();
  const bad = join(profile, 'not-an-image.png');
  writeFileSync(bad, 'hello, not an image');
  await p.setInputFiles('#content', bad);
  await p.setInputFiles('#style', STYLE);
  await p.click('#start');
  await p.waitForFunction(() => document.getElementById('status')!.classList.contains('error'));
  assert.match((await p.textContent('#status')) ?? '', /^content: cannot decode image: /);
  // Tab order: the tabs, the two file inputs, the preset, Start.
  const seen: string[] = [];
  await p.focus('#tab-stylize');
  for (let i = 0; i < 8; i++) {
    seen.push(await p.evaluate(() => document.activeElement?.id ?? ''));
    await p.keyboard.press('Tab');
  }
  for (const id of ['tab-stylize', 'tab-classify', 'content', 'style', 'preset', 'start']) assert.ok(seen.includes(id), `${id} not reached: ${seen.join(', ')}`);
  await p.close();
});

test('the Classify tab names what VGG19 sees; dark mode and a phone screen', async () => {
  const p = await page({ colorScheme: 'dark' });
  await p.click('#tab-classify');
  await p.setInputFiles('#image', CONTENT);
  await p.waitForFunction(() => document.querySelectorAll('#top5 .bar').length === 5, null, { timeout: 30_000 });
  assert.match((await p.textContent('#top5 .bar')) ?? '', /^Norfolk terrier/);
  const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(20, 20, 22)', 'dark colours follow the system');
  await shot(p, 'studio-classify-dark');
  await p.close();
  const phone = await page({ viewport: { width: 390, height: 844 } });
  const widths = await phone.evaluate(() => Array.from(document.querySelectorAll('#stylize .panel')).map((e) => e.getBoundingClientRect().width));
  for (const w of widths) assert.ok(w > 300, `panels stack on a phone: ${widths.join(', ')}`);
  assert.ok(await phone.evaluate(() => document.documentElement.scrollWidth <= 390), 'no sideways scrolling');
  await shot(phone, 'studio-phone');
  await phone.close();
});

interface LocalRun {
  state: string;
  iteration: number;
  losses: number[];
  previews: number;
  width?: number;
  height?: number;
  adapter?: string;
  error?: string;
}
const localRun = (p: Page) => p.evaluate(() => (window as unknown as { pasticheStudio: { local?: LocalRun } }).pasticheStudio.local);

test('Run in this browser: the optimisation on WebGPU in the page equals the engine in Node; cancel; the weights come once', async () => {
  const p = await page();
  const weightRequests: string[] = [];
  p.on('request', (r) => r.url().includes('/api/weights') && weightRequests.push(r.url()));
  const jobPosts: string[] = [];
  p.on('request', (r) => r.method() === 'POST' && jobPosts.push(r.url()));
  assert.equal(await p.isVisible('#here'), false);
  await p.selectOption('#where', 'browser');
  assert.ok(await p.isVisible('#here'), 'the weights choice shows for a run here');
  await pickImages(p, 3);
  await p.click('#start');
  await p.waitForFunction(() => ['done', 'failed', 'cancelled'].includes((window as unknown as { pasticheStudio: { local?: LocalRun } }).pasticheStudio.local?.state ?? ''), null, { timeout: 180_000 });
  const run = (await localRun(p))!;
  assert.equal(run.state, 'done', `${run.error} / ${await p.textContent('#status')}`);
  assert.deepEqual([run.width, run.height, run.iteration], [64, 43, 3]);
  assert.match((await p.textContent('#status')) ?? '', /^done in this browser: 64x43, 3 iterations on /);
  assert.ok(run.previews >= 1);
  assert.deepEqual(jobPosts, [], 'no job went to the server');

  // The same settings through the same parser, run by the engine in Node on the CPU.
  const totals: number[] = [];
  const ref = await stylize({
    ...parseStylizeSettings({ preset: 'default', size: 64, iterations: 3, optimizer: 'adam' }, 1),
    content: CONTENT,
    styles: [STYLE],
    weights: await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`),
    onProgress: (e) => e.kind === 'iteration' && totals.push(e.total),
  });
  run.losses.forEach((l, i) => assert.ok(Math.abs(l - totals[i]!) <= 1e-3 * totals[i]!, `iteration ${i + 1}: browser ${l}, Node ${totals[i]}`));
  const href = (await p.getAttribute('#download', 'href'))!;
  assert.match(href, /^blob:/);
  const png = Buffer.from(await p.evaluate(async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer())), href));
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height], [64, 43]);
  let diff = 0;
  for (let i = 0; i < data.length; i++) diff += Math.abs(data[i]! - ref.rgb.data[i]!);
  assert.ok(diff / data.length < 0.5, `mean pixel difference to Node's result ${diff / data.length}`);
  assert.equal(await p.locator('#gallery img').count(), 1);
  await shot(p, 'studio-browser-done');

  // A long run here stops within an iteration of Cancel and keeps its best image.
  await p.fill('#iterations', '100000');
  await p.click('#start');
  await p.waitForFunction(() => ((window as unknown as { pasticheStudio: { local?: LocalRun } }).pasticheStudio.local?.iteration ?? 0) > 1, null, { timeout: 60_000 });
  await p.click('#cancel');
  await p.waitForFunction(() => (window as unknown as { pasticheStudio: { local?: LocalRun } }).pasticheStudio.local?.state !== 'running', null, { timeout: 5_000 });
  assert.equal((await localRun(p))!.state, 'cancelled');
  assert.match((await p.textContent('#status')) ?? '', /cancelled: the best image so far is kept/);
  assert.equal(await p.locator('#gallery img').count(), 2);
  assert.equal(weightRequests.length, 1, 'the weights are downloaded once per page');
  await p.close();
});
