/** `pastiche serve`: the job service (HTTP API, jobs in a worker thread), until Ctrl-C or SIGTERM. */
import type { Command } from 'commander';
import { hostOption, portOption, positiveInt, untilStopped, weightsOption } from '../options.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve style transfer and classification as jobs over HTTP: a JSON API (/openapi.json) with progress as Server-Sent Events; jobs run one at a time in a worker thread')
    .addOption(portOption())
    .addOption(hostOption(' (0.0.0.0: every interface; set --token then)'))
    .addOption(weightsOption())
    .option('--data <folder>', 'where job files go (default: a temporary folder, removed at exit)')
    .option('--token <secret>', 'require "authorization: Bearer SECRET" on /api/')
    .option('--max-queued <n>', 'jobs that may wait at once; more get HTTP 429', positiveInt('--max-queued'), 20)
    .option('--redis <url>', 'queue the jobs on Redis (redis://HOST:PORT) for `pastiche worker` processes instead of running them here')
    .action(async (opts: { port: number; host: string; weights?: string; data?: string; token?: string; maxQueued: number; redis?: string }) => {
      const loopback = /^(127\.|localhost$|::1$|\[::1\]$)/.test(opts.host);
      if (!loopback && !opts.token) process.stderr.write(`pastiche: serving on ${opts.host} without --token: anyone who can reach this machine can run jobs on it\n`);
      // Imported here: Fastify and BullMQ cost ~0.3 s to load, which no other command should pay.
      const { startService } = await import('../../server/serve.js');
      const service = await startService({ port: opts.port, host: opts.host, weights: opts.weights, dataDir: opts.data, token: opts.token, maxQueued: opts.maxQueued, redis: opts.redis });
      process.stdout.write(`Pastiche service: ${service.url} (API description: ${service.url}openapi.json; Ctrl-C to stop)\n`);
      const info = await service.ready;
      if (opts.redis) process.stderr.write(`jobs go to ${opts.redis}: start workers with 'pastiche worker --redis ${opts.redis}'\n`);
      else process.stderr.write(info.error ? `pastiche: jobs cannot run until this is fixed: ${info.error}\n` : `weights: ${info.weightsFile}\n`);
      await untilStopped();
      await service.close();
    });
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('take jobs from a `pastiche serve --redis` queue and run them (in sandboxed child processes), until Ctrl-C or SIGTERM')
    .requiredOption('--redis <url>', 'the queue: redis://HOST:PORT')
    .addOption(weightsOption())
    .option('--concurrency <n>', 'jobs run at once (each in its own process)', positiveInt('--concurrency'), 1)
    .option('--lock-ms <n>', 'a job whose worker stops renewing its lock for this long goes back to the queue', positiveInt('--lock-ms'), 30_000)
    .action(async (opts: { redis: string; weights?: string; concurrency: number; lockMs: number }) => {
      const { connected } = await import('../../server/redis-queue.js');
      const { startRedisWorker } = await import('../../server/redis-worker.js');
      (await connected(opts.redis)).disconnect(); // a Redis that does not answer is one line, not a wait
      const worker = startRedisWorker({ url: opts.redis, weights: opts.weights, concurrency: opts.concurrency, lockDurationMs: opts.lockMs, stalledIntervalMs: opts.lockMs });
      worker.on('error', (e) => process.stderr.write(`pastiche: worker: ${e.message}\n`));
      worker.on('failed', (job, e) => process.stderr.write(`pastiche: job ${job?.id} failed: ${e.message}\n`));
      await worker.waitUntilReady();
      process.stdout.write(`Pastiche worker: taking jobs from ${opts.redis}, ${opts.concurrency} at a time (Ctrl-C to stop)\n`);
      await untilStopped();
      await worker.close();
    });
}
