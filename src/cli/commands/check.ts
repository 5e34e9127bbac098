/** `pastiche check`: the course's grading of conv and pool kernels against the four loops. */
import { type Command, Option } from 'commander';
import { comparePrecision, reducedPrecisionBackend, runCheck } from '../../app/check.js';
import { BACKEND_NAMES, availableBackends, backendLabel, openBackend, type Precision } from '../../backends/index.js';
import { PasticheError } from '../../errors.js';
import { progressBar, withStatus } from '../../util/progress.js';
import { fileURLToPath } from 'node:url';
import { resolveWeightsFile } from '../../weights/weights-source.js';
import { formatCheck, formatPrecision } from '../format.js';
import { checkInputFile, positiveInt, precisionOption } from '../options.js';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description("the course's grading: conv and pool forward/backward of each backend against the four loops, with errors, times and speed-ups")
    .addOption(new Option('-b, --backend <name...>', 'backends to grade against loops').choices(BACKEND_NAMES.filter((b) => b !== 'loops')))
    .option('-r, --repeat <n>', 'timed runs per measurement (median reported)', positiveInt('--repeat'), 3)
    .addOption(precisionOption())
    .option('-w, --weights <file>', 'with --precision fp16 or bf16: the weights to classify and stylize with (default: the downloaded VGG19, else the bundled tiny one)')
    .option('--image <file>', 'with --precision fp16 or bf16: the image to classify and stylize (default: the bundled cat, chelsea.png)')
    .option('--json', 'machine-readable rows')
    .option('-q, --quiet', 'no progress bar')
    .action(async (opts: { backend?: string[]; repeat: number; precision: Precision; weights?: string; image?: string; json?: boolean; quiet?: boolean }) => {
      const reduced = reducedPrecisionBackend(opts.precision);
      const backends = opts.backend ?? (reduced ? [reduced] : availableBackends().filter((b) => b !== 'loops'));
      if (reduced && !backends.includes(reduced)) throw new PasticheError(`--precision ${opts.precision} grades the ${reduced} backend: add -b ${reduced}`);
      const image = opts.image ?? BUNDLED_IMAGE;
      const weights = opts.weights ?? defaultWeights();
      if (reduced) [image, weights].forEach(checkInputFile);
      const steps = 4 * (1 + backends.length);
      const bar = progressBar(steps, 'check {bar} {value}/{total} | {step}', opts.quiet);
      let done = 0;
      const rows = await runCheck({ backends, repeat: opts.repeat, precision: opts.precision, onStep: (step) => bar.update(done++, { step }) }).finally(() => bar.stop());
      const precision = reduced ? await withStatus(`comparing fp32 with ${opts.precision}`, opts.quiet, () => comparePrecision({ weights, image, precision: opts.precision, repeat: opts.repeat })) : undefined;
      if (opts.json) process.stdout.write(`${JSON.stringify(precision ? { rows, precision } : rows)}\n`);
      else {
        const gpu = backends.includes('webgpu') ? `webgpu: ${backendLabel(await openBackend('webgpu', reduced === 'webgpu' ? { precision: opts.precision } : {}))}\n` : '';
        process.stdout.write(`${gpu}${formatCheck(rows, opts.repeat)}\n${precision ? `\n${formatPrecision(precision)}\n` : ''}`);
      }
      if (rows.some((r) => !r.pass)) process.exitCode = 1;
    });
}

/** The cat of the tiny fixture (scikit-image's Chelsea), shipped with the package. */
const BUNDLED_IMAGE = fileURLToPath(new URL('../../../../test/fixtures/vgg19-tiny/chelsea.png', import.meta.url));
const BUNDLED_WEIGHTS = fileURLToPath(new URL('../../../../test/fixtures/vgg19-tiny/vgg19-tiny-old.mat', import.meta.url));

function defaultWeights(): string {
  try {
    return resolveWeightsFile();
  } catch {
    return BUNDLED_WEIGHTS;
  }
}
