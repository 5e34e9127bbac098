/** `pastiche weights fetch` against a local HTTP server on 127.0.0.1: resume, checksum, failures. */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { fetchWeights } from '../src/app/fetch-weights.js';
import { download } from '../src/weights/download.js';
import type { SourceName, WeightsSource } from '../src/weights/weights-source.js';
import { CLI, TINY } from './helpers.js';
import { tempDir } from './temp.js';

const run = promisify(execFile);
const body = readFileSync(`${TINY}vgg19-tiny-old-z.mat`);
const md5 = createHash('md5').update(body).digest('hex');
const requests: { path: string; range?: string }[] = [];
let dropped = new Set<string>();

const server = http.createServer((req, res) => {
  const path = req.url ?? '/';
  requests.push({ path, range: req.headers.range });
  if (path === '/missing') {
    res.writeHead(404).end();
    return;
  }
  const data = path === '/wrong' ? Buffer.from(body).fill(7, 1000, 2000) : body;
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  if (start >= data.length) {
    res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
    return;
  }
  const headers: http.OutgoingHttpHeaders = { 'content-length': data.length - start, 'accept-ranges': 'bytes' };
  if (m) headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
  res.writeHead(m ? 206 : 200, headers);
  if (path.startsWith('/drop') && !dropped.has(path)) {
    // The first request for this path dies half-way through the body.
    dropped.add(path);
    res.write(data.subarray(start, start + Math.floor((data.length - start) / 2)), () => res.destroy());
    return;
  }
  res.end(data.subarray(start));
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
after(() => server.close());

async function fetchCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, 'weights', 'fetch', ...args]);
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function freshDir(): string {
  return tempDir('pastiche-dl-');
}

test('fetch downloads, verifies the MD5 and keeps a verified file', async () => {
  const dir = freshDir();
  const dest = join(dir, 'w.mat');
  const r = await fetchCli(['--url', `${base}/ok`, '--md5', md5, '--output', dest]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /downloaded and verified/);
  assert.deepEqual(readFileSync(dest), body);
  assert.deepEqual(readdirSync(dir), ['w.mat']);
  const n = requests.length;
  const again = await fetchCli(['--url', `${base}/ok`, '--md5', md5, '--output', dest]);
  assert.match(again.stdout, /already downloaded/);
  assert.equal(requests.length, n, 'no request for a file already verified');
});

test('a connection dropped half-way is resumed with a Range request', async () => {
  const dir = freshDir();
  const dest = join(dir, 'w.mat');
  const r = await fetchCli(['--url', `${base}/drop1`, '--md5', md5, '--output', dest]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readFileSync(dest), body);
  const mine = requests.filter((q) => q.path === '/drop1');
  assert.equal(mine.length, 2);
  assert.equal(mine[0]!.range, undefined);
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(mine[1]!.range ?? '')?.[1]);
  assert.ok(resumedAt > 0 && resumedAt < body.length, `resumed at ${mine[1]!.range}`);
  assert.ok(!existsSync(`${dest}.part`));
});

test('an interrupted earlier run is resumed from its .part file', async () => {
  const dir = freshDir();
  const dest = join(dir, 'w.mat');
  writeFileSync(`${dest}.part`, body.subarray(0, 12345));
  const progress: number[] = [];
  const outcome = await download({ url: `${base}/resume`, dest, md5, onProgress: (p) => progress.push(p.received) });
  assert.equal(outcome, 'downloaded');
  assert.equal(requests.filter((q) => q.path === '/resume').at(-1)!.range, 'bytes=12345-');
  assert.equal(progress[0], 12345);
  assert.equal(progress.at(-1), body.length);
  assert.deepEqual(readFileSync(dest), body);
});

test('a wrong checksum fails, and leaves neither the file nor a partial one', async () => {
  const dir = freshDir();
  const dest = join(dir, 'w.mat');
  const r = await fetchCli(['--url', `${base}/wrong`, '--md5', md5, '--output', dest]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr.trim(), /^pastiche: .*checksum mismatch \(MD5 [0-9a-f]{32}, expected [0-9a-f]{32}\)/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.deepEqual(readdirSync(dir), []);
});

test('no network: a clear message saying how to pass the file by hand', async () => {
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const dir = freshDir();
  const r = await fetchCli(['--url', `http://127.0.0.1:${port}/x.mat`, '--output', join(dir, 'w.mat')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /cannot download .*ECONNREFUSED.*--weights FILE or PASTICHE_WEIGHTS=FILE/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.deepEqual(readdirSync(dir), []);
  const missing = await fetchCli(['--url', `${base}/missing`, '--output', join(dir, 'w.mat')]);
  assert.match(missing.stderr, /HTTP 404/);
});

test('the published checksums are the ones the seed names', async () => {
  const { PUBLISHED } = await import('../src/weights/weights-source.js');
  assert.equal(PUBLISHED.old.md5, '8ee3263992981a1d26e73b3ca028a123');
  assert.equal(PUBLISHED.new.md5, '106118b7cf60435e6d8e04f6a6dc3657');
  assert.match(PUBLISHED.old.url, /\/models\/beta16\/imagenet-vgg-verydeep-19\.mat$/);
  assert.match(PUBLISHED.new.url, /\/models\/imagenet-vgg-verydeep-19\.mat$/);
});

test('fetch without --source tries each source in turn: a dead, a silent, a wrong-hash and a dropping server, then one that answers', async () => {
  // A server that accepts and never answers: left after the connect timeout, not the whole deadline.
  const silent = http.createServer(() => undefined);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/w.pth`;
  const dir = freshDir();
  const sha = createHash('sha256').update(body).digest('hex');
  const source = (name: SourceName, url: string, checksum: WeightsSource['checksum']): WeightsSource => ({ name, dir: name, fileName: `${name}.bin`, url, checksum, approxBytes: body.length });
  const failed: string[] = [];
  const t0 = performance.now();
  try {
    const r = await fetchWeights({
      sources: [
        source('matconvnet', 'http://127.0.0.1:9/refused.mat', { algorithm: 'md5', hex: md5 }),
        source('torchvision', silentUrl, { algorithm: 'sha256', hex: sha.slice(0, 8) }),
        source('keras', `${base}/wrong`, { algorithm: 'md5', hex: md5 }),
        source('caffe', `${base}/drop-fallback`, { algorithm: 'sha256', hex: sha.slice(0, 8) }),
      ],
      output: join(dir, 'w.mat'),
      stallDeadlineMs: 20_000,
      connectTimeoutMs: 1000,
      onSourceFailed: (s, reason) => failed.push(`${s.name}: ${reason}`),
    });
    assert.equal(r.source.name, 'caffe', 'the dropped connection was resumed and the file verified by its SHA-256 prefix');
    assert.equal(r.outcome, 'downloaded');
    assert.ok(readFileSync(r.file).equals(body));
  } finally {
    silent.close();
  }
  assert.equal(failed.length, 3, failed.join('\n'));
  assert.match(failed[0]!, /^matconvnet: cannot download http:\/\/127\.0\.0\.1:9\/refused\.mat: ECONNREFUSED/);
  assert.match(failed[1]!, /^torchvision: cannot download .*w\.pth: .*ETIMEDOUT/);
  assert.match(failed[2]!, /^keras: .*\/wrong: checksum mismatch \(MD5 [0-9a-f]{32}, expected [0-9a-f]{32}\); the download was discarded/);
  assert.ok(performance.now() - t0 < 10_000, `four sources took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // Nothing answers: one line naming every source tried.
  await assert.rejects(
    fetchWeights({ sources: [source('matconvnet', 'http://127.0.0.1:9/a', { algorithm: 'md5', hex: md5 }), source('keras', `${base}/missing`, { algorithm: 'md5', hex: md5 })], output: join(dir, 'x.mat'), stallDeadlineMs: 5000 }),
    /^PasticheError: no source answered \(matconvnet, keras\); the last: keras: the server answered HTTP 404/,
  );
});

test('a source without a published hash is verified by reading the file as VGG19', async () => {
  const dir = freshDir();
  const unverified = (path: string): WeightsSource => ({ name: 'caffe', dir: 'caffe', fileName: 'c.mat', url: `${base}${path}`, checksum: 'unpublished', approxBytes: body.length });
  const ok = await fetchWeights({ sources: [unverified('/ok-unverified')], output: join(dir, 'ok.mat'), stallDeadlineMs: 5000 });
  assert.equal(ok.outcome, 'downloaded');
  // A damaged file (bytes 1000-2000 overwritten) fails to read as VGG19 and is removed.
  await assert.rejects(fetchWeights({ sources: [unverified('/wrong')], output: join(dir, 'bad.mat'), stallDeadlineMs: 5000 }), /the download does not read as VGG19 and was removed \(/);
  assert.equal(existsSync(join(dir, 'bad.mat')), false);
});
