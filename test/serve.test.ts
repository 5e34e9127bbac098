/**
 * `pastiche serve` in its embedded mode (no Redis): jobs over HTTP from upload to download, progress
 * as Server-Sent Events, cancel, classify, the OpenAPI description, and hostile requests, each a
 * clear 4xx while the server keeps serving.
 */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { startService, type Service } from '../src/server/serve.js';
import { FIXTURES, TINY } from './helpers.js';

const WEIGHTS = `${TINY}vgg19-tiny-old.mat`;
const CONTENT = readFileSync(`${TINY}chelsea.png`);
const STYLE = readFileSync(`${FIXTURES}resize/gradient301x199.png`);

const services: Service[] = [];
after(() => Promise.all(services.map((s) => s.close())));
async function service(o: Parameters<typeof startService>[0] = {}): Promise<Service> {
  const s = await startService({ weights: WEIGHTS, ...o });
  services.push(s);
  assert.equal((await s.ready).error, undefined);
  return s;
}
const main = await service();
const api = (path: string, init?: RequestInit, s: Service = main) => fetch(new URL(path, s.url), init);

function form(fields: Record<string, string>, files: Record<string, Buffer | Buffer[]>): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  for (const [k, v] of Object.entries(files)) for (const b of Array.isArray(v) ? v : [v]) f.append(k, new Blob([new Uint8Array(b)]), `${k}.png`);
  return f;
}
const submit = (options: object, files: Record<string, Buffer | Buffer[]> = { content: CONTENT, style: STYLE }, kind = 'stylize', s = main) =>
  api('/api/jobs', { method: 'POST', body: form({ kind, options: JSON.stringify(options) }, files) }, s);

/** Reads a job's event stream to its end: [event, view] pairs. */
async function events(id: string): Promise<[string, { state: string; progress?: { iteration: number }; previews: number }][]> {
  const res = await api(`/api/jobs/${id}/events`);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('event: '))
    .map((b) => {
      const [e, d] = b.split('\n');
      return [e!.slice(7), JSON.parse(d!.slice(6))];
    });
}

test('a stylize job from upload to download, with progress and previews streamed as it runs', async () => {
  const res = await submit({ size: 48, iterations: 30, optimizer: 'adam' });
  assert.equal(res.status, 201);
  const job = (await res.json()) as { id: string; state: string };
  assert.match(job.state, /queued|running/);
  const stream = await events(job.id);
  const kinds = new Set(stream.map(([e]) => e));
  assert.ok(kinds.has('progress') && kinds.has('preview'), [...kinds].join(','));
  const iterations = stream.filter(([e]) => e === 'progress').map(([, v]) => v.progress!.iteration);
  assert.deepEqual(iterations, [...iterations].sort((a, b) => a - b), 'in order');
  assert.equal(stream.at(-1)![1].state, 'done');
  const view = (await (await api(`/api/jobs/${job.id}`)).json()) as { result: { width: number; height: number; iterations: number } };
  assert.deepEqual([view.result.width, view.result.height, view.result.iterations], [48, 32, 30]);
  const png = await api(`/api/jobs/${job.id}/result`);
  assert.equal(png.headers.get('content-type'), 'image/png');
  assert.match(png.headers.get('content-disposition') ?? '', /attachment; filename="pastiche-/);
  const meta = await sharp(Buffer.from(await png.arrayBuffer())).metadata();
  assert.deepEqual([meta.width, meta.height], [48, 32]);
  assert.equal((await api(`/api/jobs/${job.id}/preview`)).status, 200);
  const list = (await (await api('/api/jobs')).json()) as { jobs: { id: string }[] };
  assert.equal(list.jobs[0]!.id, job.id);
});

test('cancel stops a running job within a second and keeps its best image', async () => {
  const { id } = (await (await submit({ size: 64, iterations: 100000 })).json()) as { id: string };
  for (let i = 0; i < 200 && ((await (await api(`/api/jobs/${id}`)).json()) as { progress?: unknown }).progress === undefined; i++) await new Promise((r) => setTimeout(r, 25));
  const t0 = performance.now();
  assert.equal((await api(`/api/jobs/${id}`, { method: 'DELETE' })).status, 200);
  let state = '';
  while (performance.now() - t0 < 5000 && state !== 'cancelled') state = ((await (await api(`/api/jobs/${id}`)).json()) as { state: string }).state;
  assert.equal(state, 'cancelled');
  assert.ok(performance.now() - t0 < 1000, `took ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal((await api(`/api/jobs/${id}/result`)).status, 200, 'the best image so far');
  assert.equal((await api(`/api/jobs/${id}`, { method: 'DELETE' })).status, 409, 'already ended');
});

test('a classify job gives the same top class as the CLI', async () => {
  const res = await submit({ top: 3 }, { image: CONTENT }, 'classify');
  assert.equal(res.status, 201);
  const { id } = (await res.json()) as { id: string };
  assert.equal((await events(id)).at(-1)![1].state, 'done');
  const view = (await (await api(`/api/jobs/${id}`)).json()) as { result: { top: { index: number; prob: number }[] } };
  assert.equal(view.result.top.length, 3);
  assert.equal(view.result.top[0]!.index, 185);
  assert.ok(Math.abs(view.result.top[0]!.prob - 0.3752333) < 1e-5);
});

test('the OpenAPI description comes from the route schemas', async () => {
  const doc = (await (await api('/openapi.json')).json()) as { openapi: string; paths: Record<string, Record<string, { requestBody?: { content: Record<string, unknown> } }>> };
  assert.match(doc.openapi, /^3\./);
  for (const p of ['/api/jobs', '/api/jobs/{id}', '/api/jobs/{id}/events', '/api/jobs/{id}/result', '/api/jobs/{id}/preview']) assert.ok(doc.paths[p], p);
  assert.ok(doc.paths['/api/jobs']!['post']!.requestBody!.content['multipart/form-data']);
});

test('hostile and malformed requests get a clear 4xx, and the server keeps serving', async () => {
  const small = await service({ maxUploadBytes: 200_000, maxPixels: 100_000, maxQueued: 1 });
  const status = async (r: Promise<Response>, want: number, pattern?: RegExp) => {
    const res = await r;
    const body = (await res.json()) as { error: string };
    assert.equal(res.status, want, body.error);
    if (pattern) assert.match(body.error, pattern);
  };
  const tiny = await sharp(CONTENT).resize(64, 48).png().toBuffer();
  await status(submit({}, { content: CONTENT.subarray(0, 3000), style: STYLE }), 400, /^content: cannot decode image: /);
  await status(submit({}, { content: STYLE, style: Buffer.from('not an image') }), 400, /^style 1: cannot decode image: /);
  // A decompression bomb: 4000 x 4000 pixels in a PNG of a few kilobytes.
  const bomb = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: '#000' } }).png().toBuffer();
  assert.ok(bomb.length < 100_000);
  await status(submit({}, { content: bomb, style: tiny }, 'stylize', small), 400, /content: the image has more than 100000 pixels/);
  await status(submit({}, { content: Buffer.alloc(300_000, 1), style: tiny }, 'stylize', small), 413);
  await status(api('/api/jobs', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' }), 415, /takes multipart\/form-data/);
  await status(api('/api/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"kind":"stylize"}' }), 415);
  await status(api('/api/jobs', { method: 'POST', body: form({}, { style: tiny }) }), 400, /content: exactly one image/);
  await status(api('/api/jobs', { method: 'POST', body: form({ options: '{nope' }, { content: tiny, style: tiny }) }), 400, /options: not valid JSON/);
  await status(submit({ size: 0 }), 400, /^size must be a positive whole number/);
  await status(submit({ init: '/etc/passwd' }), 400, /init: 'content', 'noise' or 'blend'/);
  await status(submit({ styleLayers: 'relu9_9' }), 400, /unknown layer 'relu9_9'/);
  await status(submit({ size: 16000, maxMemory: '2G' }), 400, /^a 16000x\d+ output needs at least .* GiB \(.*\), more than maxMemory \(2\.0 GiB\): choose a smaller size or a larger maxMemory$/);
  await status(api('/api/jobs/00000000-0000-0000-0000-000000000000'), 404, /no job/);
  await status(api('/api/jobs/..%2F..%2Fetc%2Fpasswd'), 400);
  await status(api('/api/jobs/x/../../../etc/passwd'), 404);
  // Too many jobs: one runs, one waits, the next is refused.
  const long = { size: 32, iterations: 100000 };
  const first = (await (await submit(long, { content: tiny, style: tiny }, 'stylize', small)).json()) as { id: string };
  const second = (await (await submit(long, { content: tiny, style: tiny }, 'stylize', small)).json()) as { id: string };
  await status(submit(long, { content: tiny, style: tiny }, 'stylize', small), 429, /jobs are already waiting/);
  for (const id of [second.id, first.id]) await api(`/api/jobs/${id}`, { method: 'DELETE' }, small);
  // A malformed request line on a raw socket.
  const { hostname, port } = new URL(main.url);
  const answer = await new Promise<string>((resolve, reject) => {
    const s = net.connect(Number(port), hostname);
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.end('GET http://[bad/ HTTP/1.1\r\nhost: x\r\n\r\n');
  });
  assert.match(answer, /^HTTP\/1\.1 4\d\d/);
  assert.equal((await api('/api/health')).status, 200, 'still serving');
});

test('without weights the server still starts, says why on /api/health, and refuses jobs with a 503', async () => {
  const s = await startService({ weights: `${TINY}no-such-weights.mat` });
  services.push(s);
  assert.match((await s.ready).error ?? '', /no-such-weights\.mat: no such file/);
  const health = (await (await api('/api/health', undefined, s)).json()) as { ok: boolean; error: string };
  assert.equal(health.ok, false);
  const res = await submit({}, { content: CONTENT, style: STYLE }, 'stylize', s);
  assert.equal(res.status, 503);
  assert.match(((await res.json()) as { error: string }).error, /^the server cannot run jobs: .*no such file/);
});

test("/api/weights gives the worker's own weights file for a run in the browser, or a 404 that says to choose one", async () => {
  await main.ready;
  const res = await api('/api/weights');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-pastiche-weights'), 'vgg19-tiny-old.mat');
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(Number(res.headers.get('content-length')), bytes.length);
  assert.ok(bytes.equals(readFileSync(WEIGHTS)), 'the same bytes as the file');
  const none = await startService({ weights: `${TINY}no-such-weights.mat` });
  services.push(none);
  await none.ready;
  const missing = await api('/api/weights', undefined, none);
  assert.equal(missing.status, 404);
  assert.match(((await missing.json()) as { error: string }).error, /^this server has no weights file to give: choose the \.mat file/);
  // A torchvision file serves jobs, but the page's reader is MatConvNet's: it is not offered.
  const pth = await service({ weights: `${FIXTURES}sources/vgg19-tiny.pth` });
  assert.equal((await pth.ready).error, undefined);
  const other = await api('/api/weights', undefined, pth);
  assert.equal(other.status, 404);
  assert.match(((await other.json()) as { error: string }).error, /not a MatConvNet \.mat, the format the page reads/);
});

test('--token: /api/ needs it (a header, or ?token= for event streams)', async () => {
  const locked = await service({ token: 's3cret' });
  assert.equal((await api('/api/jobs', undefined, locked)).status, 401);
  assert.equal((await api('/api/jobs', { headers: { authorization: 'Bearer wrong' } }, locked)).status, 401);
  assert.equal((await api('/api/jobs', { headers: { authorization: 'Bearer s3cret' } }, locked)).status, 200);
  assert.equal((await api('/api/jobs?token=s3cret', undefined, locked)).status, 200);
});
