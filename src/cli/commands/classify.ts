/** `pastiche classify`: the course's lab 3-1 at the command line. Flags in, app/ does the rest. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { parseDump, runClassify } from '../../app/classify.js';
import { loadModel } from '../../app/load-model.js';
import type { OnProgress } from '../../app/progress.js';
import { backendLabel, type Precision } from '../../backends/index.js';
import { progressBar, withStatus, type Progress as Bar } from '../../util/progress.js';
import { formatClassification } from '../format.js';
import { backendOption, openChosenBackend, positiveInt, precisionOption, weightsOption } from '../options.js';

export function registerClassify(program: Command): void {
  program
    .command('classify')
    .description('classify images with VGG19 (top-N ImageNet classes)')
    .argument('<image...>', 'JPEG, PNG, WebP, ... images')
    .addOption(weightsOption())
    .option('-n, --top <n>', 'how many classes to show', positiveInt('--top'), 5)
    .option('--json', 'one JSON object per image per line')
    .addOption(backendOption())
    .addOption(precisionOption())
    .option('--dump <layer=file.npy>', "write an activation as float32 .npy ('input', 'pool5', 'fc8', 'prob', ...); repeatable, one image only", (v: string, prev: string[] = []) => [...prev, v])
    .option('-q, --quiet', 'no progress bar or timing summary')
    .action(async (images: string[], opts: { weights?: string; top: number; json?: boolean; backend?: string; precision: Precision; dump?: string[]; quiet?: boolean }) => {
      const dumps = (opts.dump ?? []).map(parseDump);
      const backend = await openChosenBackend(opts.backend, opts.precision);
      let bar: Bar | undefined;
      // The 'layer' events of each image's pass drive a bar of its own.
      const render: OnProgress = (p) => {
        if (p.kind !== 'layer') return;
        bar ??= progressBar(p.total, `${path.basename(p.image)} {bar} {value}/{total} layers | {layer} | {duration}s`, opts.quiet);
        bar.update(p.done, { layer: p.layer });
        if (p.done === p.total) {
          bar.stop();
          bar = undefined;
        }
      };
      const summary = await runClassify({
        images,
        top: opts.top,
        dumps,
        load: () => withStatus('loading VGG19 weights', opts.quiet, () => loadModel({ weights: opts.weights, backend, onWarning: (m) => process.stderr.write(`pastiche: warning: ${m}\n`) })),
        onProgress: render,
        onResult: (r) => process.stdout.write(opts.json ? `${JSON.stringify({ image: r.image, top: r.top })}\n` : `${formatClassification(r)}\n`),
        onImageError: (_image, e) => {
          bar?.stop();
          bar = undefined;
          process.stderr.write(`pastiche: ${e.message}\n`);
        },
      }).finally(() => bar?.stop());
      const { loaded } = summary;
      // Last, so that errors stand out above it.
      if (loaded && !opts.json && !opts.quiet && summary.classified > 0) {
        process.stderr.write(
          `weights: ${loaded.weightsFile} (${loaded.model.weights.format}, ${loaded.model.weights.layout}; loaded in ${loaded.loadSeconds.toFixed(2)} s); ` +
            `backend: ${backendLabel(loaded.model.backend)}; forward pass: ${summary.forwardMs.map((ms) => ms.toFixed(1)).join(', ')} ms\n`,
        );
      }
      // One image that failed has said so; of several, the count says how many.
      if (summary.failed > 0 && images.length > 1) process.stderr.write(`pastiche: ${summary.failed} of ${images.length} image(s) could not be classified\n`);
      if (summary.failed > 0) process.exitCode = 1;
    });
}
