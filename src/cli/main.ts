#!/usr/bin/env node
/** The `pastiche` command line. Each command is a thin shell over an application function. */
import { Command } from 'commander';
import { closeBackends, setThreads } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import { registerBench } from './commands/bench.js';
import { registerCheck } from './commands/check.js';
import { registerClassify } from './commands/classify.js';
import { registerStylize } from './commands/stylize.js';
import { registerTrainStyle } from './commands/train-style.js';
import { registerServe, registerWorker } from './commands/serve.js';
import { registerWeb } from './commands/web.js';
import { registerWeights } from './commands/weights.js';
import { positiveInt } from './options.js';

const program = new Command();
program
  .name('pastiche')
  .description('VGG19 classification and the course\'s CNN labs, in TypeScript, every line readable and timed.')
  .version('0.1.0')
  .option('-t, --threads <n>', 'threads for the native backend (default and most: one per core)', positiveInt('--threads'))
  // Commander's own messages ("error: unknown option ...") in the same one-line style as ours.
  .configureOutput({ outputError: (message, write) => write(message.replace(/^error: /, 'pastiche: ')) })
  .hook('preAction', (cmd) => {
    const threads = cmd.opts<{ threads?: number }>().threads;
    if (threads) {
      const { lowered } = setThreads(threads);
      if (lowered) process.stderr.write(`pastiche: ${lowered}\n`);
    }
  });

registerClassify(program);
registerStylize(program);
registerTrainStyle(program);
registerWeights(program);
registerCheck(program);
registerBench(program);
registerWeb(program);
registerServe(program);
registerWorker(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof PasticheError) {
    process.stderr.write(`pastiche: ${e.message}\n`);
  } else {
    const err = e as Error;
    process.stderr.write(`pastiche: internal error: ${err?.message ?? String(e)} (set PASTICHE_DEBUG=1 for details; please report it)\n`);
    if (process.env['PASTICHE_DEBUG']) process.stderr.write(`${err?.stack}\n`);
  }
  process.exitCode = process.exitCode || 1;
} finally {
  // A WebGPU device keeps Node's event loop alive until it is let go.
  await closeBackends().catch(() => undefined);
}
