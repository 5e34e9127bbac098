/**
 * Bad input, as a new user and as an attacker send it, through the command line and the web server:
 * every case is refused in one line (an HTTP 4xx for the server) before any work, never a stack
 * trace, a hang or a half-written output.
 */
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { startWebServer } from '../src/server/web-server.js';
import { PasticheError } from '../src/errors.js';
import { readNpy } from '../src/tensor/npy.js';
import { CLI, TINY, runCli, type CliResult } from './helpers.js';
import { tempDir } from './temp.js';

const dir = tempDir('pastiche-hard-');
const emptyCache = tempDir('pastiche-hard-cache-');
const WEIGHTS = `${TINY}vgg19-tiny-old.mat`;
const IMAGE = `${TINY}chelsea.png`;

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: emptyCache, ...extra };
  if (!('PASTICHE_WEIGHTS' in extra)) delete e['PASTICHE_WEIGHTS'];
  return e;
}
const pastiche = (args: string[], extra: Record<string, string> = {}) => runCli(args, { env: env(extra), timeout: 60_000 });

/** Non-zero exit, one line on stderr in our style matching `pattern`, no stack trace. */
function assertOneLine(r: CliResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^pastiche: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at |internal error/);
}

test('commander\'s own errors speak in the same one-line style as ours', async () => {
  assertOneLine(await pastiche(['classify', IMAGE, '--bogus']), /^pastiche: unknown option '--bogus'/);
  assertOneLine(await pastiche(['classify']), /^pastiche: missing required argument 'image'/);
  assertOneLine(await pastiche(['classify', IMAGE, '--top', 'x']), /^pastiche: option .*--top.* argument 'x' is invalid\. --top must be a positive whole number/);
  assertOneLine(await pastiche(['frobnicate']), /^pastiche: unknown command 'frobnicate'/);
});

test('numbers are validated where they are parsed, not used as NaN or 0', async () => {
  assertOneLine(await pastiche(['stylize', IMAGE, IMAGE, '-o', join(dir, 's.png'), '--seed', 'abc']), /--seed must be a whole number of at least 0/);
  assertOneLine(await pastiche(['bench', '--warmup', 'abc']), /--warmup must be a whole number of at least 0/);
  assertOneLine(await pastiche(['web', '--port', '70000']), /--port must be a whole number from 1 to 65535/);
  assertOneLine(await pastiche(['stylize', IMAGE, IMAGE, IMAGE, '-o', join(dir, 's.png'), '--style-blend', '0.5,,0.5']), /--style-blend must be a comma-separated list of numbers \(got '0\.5,,0\.5'\)/);
  assertOneLine(await pastiche(['classify', IMAGE, '--top', '1e400']), /--top must be a positive whole number/);
  assertOneLine(await pastiche(['weights', 'fetch', '--md5', 'zz', '--url', 'http://127.0.0.1:9/x.mat']), /--md5 'zz' is not an MD5 checksum/);
});

test('--threads beyond the cores is lowered with a line, not thousands of threads or an abort', async () => {
  const t0 = performance.now();
  const r = await pastiche(['--threads', '100000', 'classify', IMAGE, '-w', WEIGHTS, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^pastiche: --threads 100000 is more than the \d+ core\(s\) here; using \d+\n$/);
  assert.equal(JSON.parse(r.stdout).top[0].index, 185);
  assert.ok(performance.now() - t0 < 20_000);
});

test('weights path fails when the file it names cannot be used', async () => {
  const r = await pastiche(['weights', 'path'], { PASTICHE_WEIGHTS: join(dir, 'gone.mat') });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /weights: .*gone\.mat \(from PASTICHE_WEIGHTS\)/);
  assert.match(r.stderr, /^pastiche: .*gone\.mat: no such file\n$/);
  const none = await pastiche(['weights', 'path']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no VGG19 weights found: run 'pastiche weights fetch'/);
  const ok = await pastiche(['weights', 'path'], { PASTICHE_WEIGHTS: WEIGHTS });
  assert.equal(ok.code, 0, ok.stderr);
});

test('weights and images that are folders or FIFOs are refused at once', async () => {
  const fifo = join(dir, 'pipe.mat');
  execFileSync('mkfifo', [fifo]);
  assertOneLine(await pastiche(['classify', IMAGE, '-w', dir]), /is a folder, not a file/);
  assertOneLine(await pastiche(['classify', IMAGE, '-w', fifo]), /pipe\.mat: is a FIFO \(named pipe\), not a file/);
  assertOneLine(await pastiche(['classify', fifo, '-w', WEIGHTS]), /pipe\.mat: is a FIFO/);
  assertOneLine(await pastiche(['stylize', IMAGE, fifo, '-o', join(dir, 'x.png'), '-w', WEIGHTS]), /pipe\.mat: is a FIFO/);
});

test('classify reports each unreadable image, classifies the others and exits non-zero', async () => {
  const bad = join(dir, 'bad.jpg');
  writeFileSync(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  const r = await pastiche(['classify', IMAGE, bad, IMAGE, join(dir, 'missing.png'), '-w', WEIGHTS, '--json']);
  assert.equal(r.code, 1);
  const results = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { image: string });
  assert.deepEqual(results.map((x) => x.image), [IMAGE, IMAGE]);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 3, r.stderr);
  assert.match(lines[0]!, /^pastiche: .*bad\.jpg: cannot decode image: /);
  assert.match(lines[1]!, /^pastiche: .*missing\.png: no such file$/);
  assert.match(lines[2]!, /^pastiche: 2 of 4 image\(s\) could not be classified$/);
});

test('images are read before the weights: a bad image is said without reading the weights', async () => {
  const notMat = join(dir, 'not-weights.mat');
  writeFileSync(notMat, 'not a mat file at all, and never read');
  const bad = join(dir, 'empty.png');
  writeFileSync(bad, '');
  // Only the image's line: the weights (which would fail too) are never opened.
  assertOneLine(await pastiche(['classify', bad, '-w', notMat]), /empty\.png: is empty \(0 bytes\)/);
});

test('decoder messages are whole sentences: no dangling colon, no "Unknown error"', async () => {
  const png = readFileSync(IMAGE);
  const cases: [string, Uint8Array][] = [
    ['cut.png', png.subarray(0, 3000)],
    ['header.png', Buffer.concat([png.subarray(0, 8), Buffer.alloc(40, 0x78)])],
    ['cut.jpg', (await sharp(IMAGE).jpeg().toBuffer()).subarray(0, 2000)],
    ['gif.gif', Buffer.from('GIF89a\x01')],
    ['text.png', Buffer.from('hello, not an image\n')],
  ];
  for (const [name, bytes] of cases) {
    const f = join(dir, name);
    writeFileSync(f, bytes);
    const r = await pastiche(['classify', f, '-w', WEIGHTS]);
    assertOneLine(r, new RegExp(`${name.replace('.', '\\.')}: cannot decode image: \\S`));
    assert.doesNotMatch(r.stderr, /:\s*$|Unknown error/i, r.stderr);
  }
});

test('stylize proves its outputs writable before any work (the weights are not even read)', async () => {
  const missingWeights = join(dir, 'never-read.mat');
  const run = (args: string[]) => pastiche(['stylize', IMAGE, IMAGE, '-w', missingWeights, '--size', '32', '--iterations', '1', ...args]);
  const folder = join(dir, 'a-folder.png');
  mkdirSync(folder);
  assertOneLine(await run(['-o', folder]), /a-folder\.png: is a folder: cannot write an output there/);
  assertOneLine(await run(['-o', '/sys/pastiche-out.png']), /pastiche-out\.png: cannot write there \(permission denied\)/);
  assertOneLine(await run(['-o', join(dir, 'ok.png'), '--log-json', dir]), /is a folder: cannot write an output there/);
  assertOneLine(await run(['-o', join(dir, 'ok.png'), '--log-json', '/dev/full']), /\/dev\/full: is a device: cannot write an output there/);
  assertOneLine(await run(['-o', join(dir, 'no-folder', 'ok.png')]), /the folder .*no-folder does not exist/);
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp') || f.startsWith('ok')), [], 'nothing written, no probe left');
  // The checks passed: now the weights are read (and found missing).
  assertOneLine(await run(['-o', join(dir, 'ok.png')]), /never-read\.mat: no such file/);
});

test('SIGTERM during stylize (what a job runner sends) writes the best image so far and exits 130', async () => {
  const out = join(dir, 'term.png');
  const log = join(dir, 'term.jsonl');
  const child = spawn(process.execPath, [CLI, 'stylize', IMAGE, IMAGE, '-o', out, '-w', WEIGHTS, '--size', '48', '--iterations', '100000', '--log-json', log]);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!(existsSync(log) && readFileSync(log, 'utf8').split('\n').length > 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted: the best image of \d+ iteration/);
  assert.equal((await sharp(out).metadata()).width, 48);
});

test('the web server answers every request, malformed or hostile, and keeps serving', async () => {
  const server = await startWebServer({ port: 0 });
  after(() => server.close());
  const { hostname, port } = new URL(server.url);
  const raw = (request: string | Buffer) =>
    new Promise<string>((resolve, reject) => {
      const s = net.connect(Number(port), hostname);
      let data = '';
      s.on('data', (d) => (data += d.toString('latin1')));
      s.on('end', () => resolve(data));
      s.on('error', reject);
      s.setTimeout(5000, () => s.destroy(new Error('no answer')));
      s.end(request);
    });
  const status = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
  // The request line that ended the server before: a bad absolute URL as the target.
  assert.equal(status(await raw('GET http://[bad/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')), 404);
  assert.equal(status(await raw('GET //[::1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')), 404);
  assert.equal(status(await raw('GET /%zz%00/../../etc/passwd HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')), 404);
  assert.equal(status(await raw('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc')), 405);
  assert.equal(status(await raw('\x00\x01\x02 garbage\r\n\r\n')), 400);
  assert.equal(status(await raw(`GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(100_000)}\r\n\r\n`)), 431);
  const page = await new Promise<number | undefined>((resolve) => http.get(server.url, (res) => (res.resume(), resolve(res.statusCode))));
  assert.equal(page, 200, 'still serving');
});

test('weights fetch: a stalled server costs the deadline, says it retries (even with -q), and a failed first download leaves nothing', async () => {
  const body = readFileSync(WEIGHTS);
  const sockets = new Set<net.Socket>();
  const stalling = http.createServer((req, res) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    res.writeHead(m ? 206 : 200, { 'content-length': body.length - start, ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    // Half of the file on the first request, then silence; nothing at all on the next.
    if (!m) res.write(body.subarray(0, body.length >> 1));
  });
  stalling.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => stalling.listen(0, '127.0.0.1', r));
  after(() => {
    for (const s of sockets) s.destroy();
    stalling.close();
  });
  const url = `http://127.0.0.1:${(stalling.address() as AddressInfo).port}/w.mat`;
  const out = join(tempDir('pastiche-fetch-'), 'w.mat');
  const t0 = performance.now();
  const r = await pastiche(['weights', 'fetch', '--url', url, '--md5', '0'.repeat(32), '--output', out, '--timeout', '2', '-q']);
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(r.code, 1);
  const lines = r.stderr.trim().split('\n');
  assert.ok(lines.length >= 2, r.stderr);
  assert.match(lines[0]!, /^pastiche: the download stopped at \d+ MB \(.*\); retrying \(attempt 2\)$/);
  for (const l of lines.slice(1, -1)) assert.match(l, /; retrying \(attempt \d\)$/);
  assert.match(lines.at(-1)!, /^pastiche: cannot download .*: no data for [23] s .*bytes kept in .*w\.mat\.part; run again to resume/);
  assert.ok(seconds < 15, `took ${seconds.toFixed(1)} s`);

  // Offline, into an empty cache: no folder is left behind.
  const closed = http.createServer();
  await new Promise<void>((res) => closed.listen(0, '127.0.0.1', res));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((res) => closed.close(res));
  const cache = tempDir('pastiche-fetch-cache-');
  const offline = await pastiche(['weights', 'fetch', '--url', `http://127.0.0.1:${port}/x.mat`, '-q'], { XDG_CACHE_HOME: cache });
  assertOneLine(offline, /cannot download .*ECONNREFUSED/);
  assert.deepEqual(readdirSync(cache), [], 'no empty cache folders');
});

test('bytes quoted from a file cannot break the one-line rule (found by the long fuzz run)', async () => {
  const header = "{'descr': '\n\u001b[2J<f4', 'fortran_order': False, 'shape': (2,), }";
  const bytes = Buffer.concat([Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]), Buffer.from([header.length, 0]), Buffer.from(header, 'latin1'), Buffer.alloc(8)]);
  const f = join(dir, 'weird.npy');
  writeFileSync(f, bytes);
  await assert.rejects(readNpy(f), (e: unknown) => e instanceof PasticheError && !/[\n\u001b]/.test(e.message) && /unsupported dtype "\\n\\u001b\[2J<f4"/.test(e.message));
  assert.equal(new PasticheError('a\nb\u001bc').message, 'a\\x0ab\\x1bc');
});
