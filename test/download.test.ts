/** `pastiche weights fetch` against a local HTTP server on 127.0.0.1: resume, checksum, failures. */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { download } from '../src/weights/download.js';
import { CLI, TINY } from './helpers.js';

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
  return mkdtempSync(join(tmpdir(), 'pastiche-dl-'));
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
