// A bounded load test of `pastiche serve` on loopback: N concurrent clients submit small stylize
// jobs and poll them for a fixed time while the workers are busy; prints the API's latency (p50,
// p99) for each kind of request, the failed requests, and the jobs finished per minute.
//   npm run build && node scripts/load-test.mjs --clients 50 --seconds 60 [--weights FILE]
//   ... --redis redis://127.0.0.1:6399 --workers 2 [--worker-threads 1]   (queue mode: that many `pastiche worker`s)
// It starts its own server (and workers) on 127.0.0.1 (the tiny test weights by default) and stops
// them by itself; in queue mode the Redis must be running (and is left as it was).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '60' },
    weights: { type: 'string' },
    size: { type: 'string', default: '48' },
    iterations: { type: 'string', default: '20' },
    redis: { type: 'string' },
    workers: { type: 'string', default: '1' },
    'worker-threads': { type: 'string' },
  },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
if (!(clients >= 1 && clients <= 500) || !(seconds > 0 && seconds <= 600)) {
  console.error('usage: node scripts/load-test.mjs --clients 1..500 --seconds 1..600 [--weights FILE] [--size N] [--iterations N]');
  process.exit(2);
}
const root = new URL('..', import.meta.url);
const { startService } = await import(new URL('dist/src/server/serve.js', root).href);
const tiny = fileURLToPath(new URL('test/fixtures/vgg19-tiny/', root));
const weights = values.weights ?? `${tiny}vgg19-tiny-old.mat`;
const service = await startService({ weights, maxQueued: 10_000, rateLimit: 1_000_000, redis: values.redis });
const ready = await service.ready;
if (ready.error) throw new Error(ready.error);
const workers = [];
if (values.redis) {
  const { spawn } = await import('node:child_process');
  const cli = fileURLToPath(new URL('dist/src/cli/main.js', root));
  for (let i = 0; i < Number(values.workers); i++) {
    const threads = values['worker-threads'] ? ['--threads', values['worker-threads']] : [];
    const w = spawn(process.execPath, [cli, ...threads, 'worker', '--redis', values.redis, '-w', weights], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => w.stdout.on('data', (d) => d.toString().includes('taking jobs') && r()));
    workers.push(w);
  }
}
const content = new Blob([readFileSync(`${tiny}chelsea.png`)]);
const style = new Blob([readFileSync(fileURLToPath(new URL('test/fixtures/resize/gradient301x199.png', root)))]);
const options = JSON.stringify({ size: Number(values.size), iterations: Number(values.iterations), optimizer: 'adam' });

const latencies = { submit: [], poll: [] };
let failed = 0;
let finished = 0;
const deadline = performance.now() + seconds * 1000;

async function timed(kind, url, init) {
  const t0 = performance.now();
  try {
    const res = await fetch(new URL(url, service.url), init);
    const body = await res.json();
    latencies[kind].push(performance.now() - t0);
    if (!res.ok) failed++;
    return body;
  } catch {
    failed++;
    return undefined;
  }
}

async function client() {
  while (performance.now() < deadline) {
    const form = new FormData();
    form.append('options', options);
    form.append('content', content, 'content.png');
    form.append('style', style, 'style.png');
    const job = await timed('submit', '/api/jobs', { method: 'POST', body: form });
    if (!job?.id) continue;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      const view = await timed('poll', `/api/jobs/${job.id}`);
      if (!view || ['done', 'failed', 'cancelled'].includes(view.state)) {
        if (view?.state === 'done') finished++;
        break;
      }
      if (performance.now() > deadline + 120_000) break; // stop waiting for a job that never ends
    }
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: clients }, client));
const wall = (performance.now() - t0) / 1000;
await service.close();
for (const w of workers) w.kill('SIGTERM');

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
console.log(`${clients} clients for ${seconds} s (ran ${wall.toFixed(0)} s, jobs of ${values.size} px x ${values.iterations} iterations, ${values.redis ? `${values.workers} worker process(es) on Redis${values['worker-threads'] ? `, ${values['worker-threads']} thread(s) each` : ''}` : 'one worker thread'})`);
for (const [kind, xs] of Object.entries(latencies)) {
  console.log(`  ${kind.padEnd(6)} ${String(xs.length).padStart(6)} requests  p50 ${pct(xs, 50).toFixed(1)} ms  p99 ${pct(xs, 99).toFixed(1)} ms`);
}
console.log(`  failed requests: ${failed}; jobs finished: ${finished} (${((finished / wall) * 60).toFixed(0)} per minute)`);
process.exit(failed > 0 ? 1 : 0);
