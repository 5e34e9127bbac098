/** `pastiche serve`: the job service (HTTP API, jobs in a worker thread), until Ctrl-C or SIGTERM. */
import type { Command } from 'commander';
import { startService } from '../../server/serve.js';
import { WEIGHTS_FILE_NAME } from '../../weights/weights-source.js';
import { hostOption, portOption, positiveInt, untilStopped } from '../options.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve style transfer and classification as jobs over HTTP: a JSON API (/openapi.json) with progress as Server-Sent Events; jobs run one at a time in a worker thread')
    .addOption(portOption())
    .addOption(hostOption(' (0.0.0.0: every interface; set --token then)'))
    .option('-w, --weights <file>', `VGG19 weights (${WEIGHTS_FILE_NAME}); default: $PASTICHE_WEIGHTS, then the fetched file`)
    .option('--data <folder>', 'where job files go (default: a temporary folder, removed at exit)')
    .option('--token <secret>', 'require "authorization: Bearer SECRET" on /api/')
    .option('--max-queued <n>', 'jobs that may wait at once; more get HTTP 429', positiveInt('--max-queued'), 20)
    .action(async (opts: { port: number; host: string; weights?: string; data?: string; token?: string; maxQueued: number }) => {
      const loopback = /^(127\.|localhost$|::1$|\[::1\]$)/.test(opts.host);
      if (!loopback && !opts.token) process.stderr.write(`pastiche: serving on ${opts.host} without --token: anyone who can reach this machine can run jobs on it\n`);
      const service = await startService({ port: opts.port, host: opts.host, weights: opts.weights, dataDir: opts.data, token: opts.token, maxQueued: opts.maxQueued });
      process.stdout.write(`Pastiche service: ${service.url} (API description: ${service.url}openapi.json; Ctrl-C to stop)\n`);
      const info = await service.ready;
      process.stderr.write(info.error ? `pastiche: jobs cannot run until this is fixed: ${info.error}\n` : `weights: ${info.weightsFile}\n`);
      await untilStopped();
      await service.close();
    });
}
