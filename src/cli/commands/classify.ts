/** `pastiche classify`: the course's lab 3-1 at the command line. */
import * as path from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { checkLayerNames, classifyImage, readClassifierImage, type Classification } from '../../app/classify.js';
import { loadModel } from '../../app/load-model.js';
import { backendLabel } from '../../backends/index.js';
import { PasticheError } from '../../errors.js';
import { resolveLayerName } from '../../model/vgg19-table.js';
import type { RgbImage } from '../../image/preprocess.js';
import { writeNpy } from '../../tensor/npy.js';
import { progressBar, withStatus } from '../../util/progress.js';
import { WEIGHTS_FILE_NAME } from '../../weights/weights-source.js';
import { formatClassification } from '../format.js';
import { backendOption, checkOutputFile, chooseBackend, positiveInt, precisionOption } from '../options.js';

interface Dump {
  layer: string;
  file: string;
}

function parseDump(spec: string, previous: Dump[] = []): Dump[] {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new InvalidArgumentError(`'${spec}' is not LAYER=FILE.npy.`);
  const layer = spec.slice(0, eq);
  const file = spec.slice(eq + 1);
  if (resolveLayerName(layer) === undefined) throw new InvalidArgumentError(`unknown layer '${layer}' (try input, pool5, relu4_2, fc8, prob).`);
  if (!file.endsWith('.npy')) throw new InvalidArgumentError(`${file}: the file name must end in .npy.`);
  return [...previous, { layer, file }];
}

export function registerClassify(program: Command): void {
  program
    .command('classify')
    .description('classify images with VGG19 (top-N ImageNet classes)')
    .argument('<image...>', 'JPEG, PNG, WebP, ... images')
    .option('-w, --weights <file>', `VGG19 weights (${WEIGHTS_FILE_NAME}); default: $PASTICHE_WEIGHTS, then the fetched file`)
    .option('-n, --top <n>', 'how many classes to show', positiveInt('--top'), 5)
    .option('--json', 'one JSON object per image per line')
    .addOption(backendOption())
    .addOption(precisionOption())
    .option('--dump <layer=file.npy>', "write an activation as float32 .npy ('input', 'pool5', 'fc8', 'prob', ...); repeatable, one image only", parseDump)
    .option('-q, --quiet', 'no progress bar or timing summary')
    .action(async (images: string[], opts: { weights?: string; top: number; json?: boolean; backend?: string; precision: 'fp32' | 'fp16'; dump?: Dump[]; quiet?: boolean }) => {
      const dumps = opts.dump ?? [];
      if (dumps.length > 0 && images.length > 1) throw new PasticheError('--dump works with one image at a time');
      checkLayerNames(dumps.map((d) => d.layer));
      dumps.forEach((d) => checkOutputFile(d.file));
      // Every image is read before the seconds of loading the weights: an unreadable one gets its
      // line and the others go on; the exit code says that something failed.
      const failed = new Set<number>();
      const report = (e: unknown, i: number) => {
        if (!(e instanceof PasticheError)) throw e;
        process.stderr.write(`pastiche: ${e.message}\n`);
        failed.add(i);
      };
      const pixels = new Map<number, RgbImage>();
      for (const [i, image] of images.entries()) {
        try {
          const rgb = await readClassifierImage(image);
          if (i < KEEP_DECODED) pixels.set(i, rgb); // 150 KB each; later ones are decoded again
        } catch (e) {
          report(e, i);
        }
      }
      if (failed.size === images.length) {
        process.exitCode = 1;
        return;
      }
      const backend = chooseBackend(opts.backend);
      const { model, weightsFile, loadSeconds } = await withStatus('loading VGG19 weights', opts.quiet, () => loadModel({ weights: opts.weights, backend, precision: opts.precision }));
      const forwardMs: number[] = [];
      for (const [i, image] of images.entries()) {
        if (failed.has(i)) continue;
        const bar = progressBar(1, `${path.basename(image)} {bar} {value}/{total} layers | {layer} | {duration}s`, opts.quiet);
        let result: Classification;
        try {
          result = await classifyImage(model, image, {
            top: opts.top,
            capture: dumps.map((d) => d.layer),
            pixels: pixels.get(i),
            onLayer: (done, total, name) => {
              bar.setTotal(total);
              bar.update(done, { layer: name });
            },
          }).finally(() => bar.stop());
        } catch (e) {
          report(e, i); // changed or removed since it was first read
          continue;
        }
        pixels.delete(i);
        forwardMs.push(result.forwardSeconds * 1000);
        for (const d of dumps) await writeNpy(d.file, result.activations.get(resolveLayerName(d.layer)!)!);
        process.stdout.write(opts.json ? `${JSON.stringify({ image: result.image, top: result.top })}\n` : `${formatClassification(result)}\n`);
      }
      // Last, so that errors stand out above it.
      if (!opts.json && !opts.quiet && forwardMs.length > 0) {
        process.stderr.write(
          `weights: ${weightsFile} (${model.weights.layout} layout, loaded in ${loadSeconds.toFixed(2)} s); ` +
            `backend: ${backendLabel(model.backend)}; forward pass: ${forwardMs.map((ms) => ms.toFixed(1)).join(', ')} ms\n`,
        );
      }
      if (failed.size > 0) {
        process.stderr.write(`pastiche: ${failed.size} of ${images.length} image(s) could not be classified\n`);
        process.exitCode = 1;
      }
    });
}

/** Images decoded up front and kept until their turn (the rest are decoded again then). */
const KEEP_DECODED = 256;
