/** `pastiche check`: the course's grading of conv and pool kernels against the four loops. */
import { type Command, Option } from 'commander';
import { runCheck } from '../../app/check.js';
import { BACKEND_NAMES, availableBackends } from '../../backends/index.js';
import { progressBar } from '../../util/progress.js';
import { formatCheck } from '../format.js';
import { positiveInt } from '../options.js';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description("the course's grading: conv and pool forward/backward of each backend against the four loops, with errors, times and speed-ups")
    .addOption(new Option('-b, --backend <name...>', 'backends to grade against loops').choices(BACKEND_NAMES.filter((b) => b !== 'loops')))
    .option('-r, --repeat <n>', 'timed runs per measurement (median reported)', positiveInt('--repeat'), 3)
    .option('--json', 'machine-readable rows')
    .option('-q, --quiet', 'no progress bar')
    .action((opts: { backend?: string[]; repeat: number; json?: boolean; quiet?: boolean }) => {
      const backends = opts.backend ?? availableBackends().filter((b) => b !== 'loops');
      const steps = 4 * (1 + backends.length);
      const bar = progressBar(steps, 'check {bar} {value}/{total} | {step}', opts.quiet);
      let done = 0;
      const rows = runCheck({ backends, repeat: opts.repeat, onStep: (step) => bar.update(done++, { step }) });
      bar.stop();
      process.stdout.write(opts.json ? `${JSON.stringify(rows)}\n` : `${formatCheck(rows, opts.repeat)}\n`);
      if (rows.some((r) => !r.pass)) process.exitCode = 1;
    });
}
