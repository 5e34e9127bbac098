/**
 * `pastiche serve --redis` and `pastiche worker` on a real Redis (Debian's redis-server, started here
 * on a free loopback port with an append-only file): a job from upload to download through another
 * server instance (no shared files), cancel, a worker killed mid-job (its job is picked up again and
 * completes), a server restart (queued jobs are still there) and a Redis restart (no job lost).
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import * as net from 'node:net';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { startService, type Service } from '../src/server/serve.js';
import { CLI, FIXTURES, TINY } from './helpers.js';
import { tempDir } from './temp.js';

const REDIS_SERVER = process.env['PASTICHE_REDIS_SERVER'] ?? '/usr/bin/redis-server';
const CONTENT = readFileSync(`${TINY}chelsea.png`);
const STYLE = readFileSync(`${FIXTURES}resize/gradient301x199.png`);

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const port = await freePort();
const redisDir = tempDir('pastiche-redis-');
const REDIS = `redis://127.0.0.1:${port}`;
let redis: ChildProcess | undefined;

async function startRedis(): Promise<void> {
  redis = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.end(), r(true)));
      s.on('error', () => r(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}
async function stopRedis(): Promise<void> {
  const r = redis;
  redis = undefined;
  if (!r || r.exitCode !== null) return;
  const gone = new Promise((res) => r.once('exit', res));
  r.kill('SIGTERM'); // redis-server saves and exits on SIGTERM
  await gone;
}
await startRedis();

const workers = new Set<ChildProcess>();
/** A `pastiche worker` process (its own process group, so kill -9 takes its sandboxed children too). */
async function worker(env: NodeJS.ProcessEnv = process.env): Promise<ChildProcess> {
  const w = spawn(process.execPath, [CLI, 'worker', '--redis', REDIS, '-w', `${TINY}vgg19-tiny-old.mat`, '--lock-ms', '1500'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  workers.add(w);
  await new Promise<void>((resolve, reject) => {
    w.stdout!.on('data', (d: Buffer) => d.toString().includes('taking jobs') && resolve());
    w.once('exit', (code) => reject(new Error(`worker exited ${code}`)));
  });
  return w;
}
function kill9(w: ChildProcess): void {
  process.kill(-w.pid!, 'SIGKILL');
  workers.delete(w);
}

const services: Service[] = [];
async function service(): Promise<Service> {
  const s = await startService({ redis: REDIS });
  services.push(s);
  return s;
}
after(async () => {
  for (const w of workers) process.kill(-w.pid!, 'SIGKILL');
  await Promise.all(services.map((s) => s.close().catch(() => undefined)));
  await stopRedis();
});

function form(options: object): FormData {
  const f = new FormData();
  f.append('options', JSON.stringify(options));
  f.append('content', new Blob([new Uint8Array(CONTENT)]), 'c.png');
  f.append('style', new Blob([new Uint8Array(STYLE)]), 's.png');
  return f;
}
async function submit(s: Service, options: object): Promise<string> {
  const res = await fetch(new URL('/api/jobs', s.url), { method: 'POST', body: form(options) });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}
async function view(s: Service, id: string): Promise<{ state: string; progress?: { iteration: number }; result?: { width: number } }> {
  return (await fetch(new URL(`/api/jobs/${id}`, s.url))).json() as Promise<{ state: string; progress?: { iteration: number } }>;
}
async function until(s: Service, id: string, ok: (v: Awaited<ReturnType<typeof view>>) => boolean, ms: number): Promise<Awaited<ReturnType<typeof view>>> {
  const t0 = performance.now();
  for (;;) {
    const v = await view(s, id);
    if (ok(v)) return v;
    if (performance.now() - t0 > ms) assert.fail(`job ${id}: still ${JSON.stringify(v)} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a job through Redis: one server takes it, a worker runs it, another server shows it and serves the image', async () => {
  const a = await service();
  const b = await service();
  await worker();
  const id = await submit(a, { size: 48, iterations: 15, optimizer: 'adam' });
  const done = await until(b, id, (v) => ['done', 'failed'].includes(v.state), 30_000);
  assert.equal(done.state, 'done', JSON.stringify(done));
  const png = await fetch(new URL(`/api/jobs/${id}/result`, b.url));
  assert.equal(png.status, 200);
  assert.equal((await sharp(Buffer.from(await png.arrayBuffer())).metadata()).width, 48);
  assert.equal((await fetch(new URL(`/api/jobs/${id}/preview`, a.url))).status, 200);
  const list = (await (await fetch(new URL('/api/jobs', b.url))).json()) as { jobs: { id: string }[] };
  assert.ok(list.jobs.some((j) => j.id === id));
  const health = (await (await fetch(new URL('/api/health', a.url))).json()) as { ok: boolean; weights: string };
  assert.ok(health.ok && /vgg19-tiny-old\.mat$/.test(health.weights), 'the worker announced its weights');
  // Cancel takes effect within a second.
  const long = await submit(a, { size: 64, iterations: 100000, optimizer: 'adam' });
  await until(a, long, (v) => (v.progress?.iteration ?? 0) > 3, 30_000);
  const t0 = performance.now();
  assert.equal((await fetch(new URL(`/api/jobs/${long}`, a.url), { method: 'DELETE' })).status, 200);
  await until(a, long, (v) => v.state === 'cancelled', 5_000);
  assert.ok(performance.now() - t0 < 1500, `cancel took ${(performance.now() - t0).toFixed(0)} ms`);
});

test('kill -9 a worker mid-job: the job is picked up again by another worker and completes; the uploads it left behind are removed', async () => {
  const s = await service();
  for (const w of [...workers]) kill9(w);
  const tmp = tempDir('pastiche-workers-');
  const jobDirs = () => readdirSync(tmp).filter((n) => n.startsWith('pastiche-job-'));
  const first = await worker({ ...process.env, TMPDIR: tmp });
  const id = await submit(s, { size: 64, iterations: 1500, optimizer: 'adam' });
  await until(s, id, (v) => (v.progress?.iteration ?? 0) > 20, 30_000);
  kill9(first);
  assert.equal(jobDirs().length, 1, "the killed job's folder");
  await worker({ ...process.env, TMPDIR: tmp });
  const v = await until(s, id, (x) => ['done', 'failed'].includes(x.state), 120_000);
  assert.equal(v.state, 'done', JSON.stringify(v));
  assert.deepEqual(jobDirs(), [], 'job folders left in TMPDIR');
});

test('a server restart keeps the queued jobs; a Redis restart loses none', async () => {
  for (const w of [...workers]) kill9(w);
  const s1 = await service();
  const waiting = await submit(s1, { size: 48, iterations: 10, optimizer: 'adam' });
  await s1.close();
  services.splice(services.indexOf(s1), 1);
  const s2 = await service();
  assert.equal((await view(s2, waiting)).state, 'queued', 'still there after the server restarted');
  // Redis stops and starts again (append-only file) while a job runs and one waits: both complete.
  await worker();
  const running = await submit(s2, { size: 64, iterations: 1500, optimizer: 'adam' });
  await until(s2, running, (v) => (v.progress?.iteration ?? 0) > 20, 60_000);
  await stopRedis();
  await startRedis();
  for (const id of [waiting, running]) assert.equal((await until(s2, id, (v) => ['done', 'failed'].includes(v.state), 120_000)).state, 'done', id);
});

test('Redis not there: serve and worker say so in one line', async () => {
  const { runCli } = await import('./helpers.js');
  for (const cmd of [['serve', '--port', String(await freePort())], ['worker']]) {
    const r = await runCli([...cmd, '--redis', 'redis://127.0.0.1:1'], { timeout: 30_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, 'pastiche: cannot reach Redis at redis://127.0.0.1:1 (start redis-server, or check --redis)\n');
  }
});
