/** `pastiche stylize`: the course's lab 3-3, neural style transfer. */
import { closeSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { type Command, Option } from 'commander';
import { DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, parseLayers, stylize, type Init, type StylizeOptions } from '../../app/stylize.js';
import { openBackend } from '../../backends/index.js';
import { PasticheError } from '../../errors.js';
import { readRgb } from '../../image/preprocess.js';
import { resizeBilinearPil } from '../../image/pil-resize.js';
import { IMAGE_EXTENSIONS, keepOriginalColors, tensorToRgb, writeRgb } from '../../image/tensor-image.js';
import { progressBar, withStatus } from '../../util/progress.js';
import { loadMatConvNetVgg19 } from '../../weights/load-vgg19.js';
import { WEIGHTS_FILE_NAME, resolveWeightsFile } from '../../weights/weights-source.js';
import { backendOption, checkInputFile, checkOutputFile, chooseBackend, nonNegativeInt, nonNegativeNumber, parseNumberList, positiveInt, positiveNumber } from '../options.js';

function parseInit(v: string): Init {
  if (v === 'content' || v === 'noise') return { kind: v };
  if (v === 'blend') return { kind: 'blend', ratio: 0.5, amplitude: 20 };
  return { kind: 'file', file: v };
}

/** Settings that --preset starts from; every option overrides its own. */
const STYLE_PRESETS = {
  // Gatys et al. optimised with L-BFGS, which reaches a good image in a few hundred steps; starting
  // from the content image converges faster than from noise; the content/style balance is the one
  // the course validated (beta/alpha = 500 in this normalisation).
  default: { size: 512 as StylizeOptions['size'], iterations: 300, optimizer: 'lbfgs' as const, lr: 1, contentWeight: 1, styleWeight: 500, tvWeight: 0, init: 'content', pooling: 'max' as const },
  // The course's lab 3-3: 100 Adam steps, lr 1, 192x320, alpha 1, beta 500, 0.5 content + 0.5 noise.
  lab: { size: { height: 192, width: 320 } as StylizeOptions['size'], iterations: 100, optimizer: 'adam' as const, lr: 1, contentWeight: 1, styleWeight: 500, tvWeight: 0, init: 'blend', pooling: 'max' as const },
};

export function registerStylize(program: Command): void {
  const stylizeCmd = program
    .command('stylize')
    .description('neural style transfer (Gatys et al.): optimise an image to have CONTENT\'s content and STYLE\'s style')
    .argument('<content>', 'the content image')
    .argument('<style...>', 'one or more style images')
    .requiredOption('-o, --output <file>', 'the result (.png, .jpg or .jpeg)')
    .addOption(new Option('--preset <name>', "starting settings: 'default' or 'lab' (the course's lab 3-3 exactly)").choices(['default', 'lab']).default('default'))
    .option('-w, --weights <file>', `VGG19 weights (${WEIGHTS_FILE_NAME}); default: $PASTICHE_WEIGHTS, then the fetched file`)
    .addOption(backendOption())
    .option('-s, --size <n>', 'longest side of the output in pixels (preset default: 512)', positiveInt('--size'))
    .option('-i, --iterations <n>', 'optimiser steps per scale (preset default: 300)', positiveInt('--iterations'))
    .addOption(new Option('--optimizer <name>', 'adam or lbfgs (preset default: lbfgs)').choices(['adam', 'lbfgs']))
    .option('--lr <x>', 'learning rate / step size (default 1)', positiveNumber('--lr'))
    .option('--lbfgs-history <n>', 'L-BFGS memory (default 100)', positiveInt('--lbfgs-history'))
    .option('--content-weight <x>', 'alpha (default 1)', nonNegativeNumber('--content-weight'))
    .option('--style-weight <x>', 'beta (default 500)', nonNegativeNumber('--style-weight'))
    .option('--tv-weight <x>', 'total-variation weight (default 0)', nonNegativeNumber('--tv-weight'))
    .option('--content-layers <list>', `e.g. ${DEFAULT_CONTENT_LAYERS.join(',')} (default), or with weights relu4_2:1`)
    .option('--style-layers <list>', `default ${DEFAULT_STYLE_LAYERS.join(',')}; weights with name:w`)
    .option('--init <how>', "content, noise, blend (the course's 0.5 content + 0.5 uniform(-20,20)) or an image file")
    .option('--seed <n>', 'random seed for noise initialisation', nonNegativeInt('--seed'), 0)
    .option('--style-blend <list>', 'weights of the style images, e.g. 0.7,0.3')
    .option('--style-scale <x>', 'style image size relative to the output (default 1)', positiveNumber('--style-scale'))
    .option('--original-colors', "keep the content's colours: transfer luminance only")
    .addOption(new Option('--pooling <kind>', 'max or avg pooling in VGG19').choices(['max', 'avg']))
    .option('--scales <list>', 'multi-scale: longest sides to optimise at first, e.g. 256,384 (then --size)')
    .option('--save-every <n>', 'also save the image every N iterations (OUT-0050.png, ...)', positiveInt('--save-every'))
    .option('--log-json <file>', 'one JSON line per iteration: iteration, content, style, tv, total, seconds')
    .option('-q, --quiet', 'no progress bar');
  stylizeCmd.addHelpText('after', '\nCtrl-C or SIGTERM stops the run and still writes the best image so far (exit code 130).');

  stylizeCmd.action(async (content: string, styles: string[], o: StylizeCli) => {
    const preset = STYLE_PRESETS[o.preset];
    // Everything is checked before any work, so that bad input never leaves a partial output and
    // an unwritable output never costs a whole run.
    if (!IMAGE_EXTENSIONS.includes(path.extname(o.output).toLowerCase())) throw new PasticheError(`${o.output}: the output must end in .png, .jpg or .jpeg`);
    checkOutputFile(o.output);
    const ext = path.extname(o.output);
    const snapshotName = (iteration: number) => o.output.slice(0, o.output.length - ext.length) + `-${String(iteration).padStart(4, '0')}${ext}`;
    if (o.saveEvery) checkOutputFile(snapshotName(o.saveEvery));
    if (o.logJson) checkOutputFile(o.logJson);
    [content, ...styles].forEach(checkInputFile);
    const init = parseInit(o.init ?? preset.init);
    if (init.kind === 'file') checkInputFile(init.file);
    const contentLayers = parseLayers(o.contentLayers ?? DEFAULT_CONTENT_LAYERS, '--content-layers');
    const styleLayers = parseLayers(o.styleLayers ?? DEFAULT_STYLE_LAYERS, '--style-layers');
    const styleBlend = o.styleBlend ? parseNumberList(o.styleBlend, '--style-blend') : undefined;
    if (styleBlend && styleBlend.length !== styles.length) throw new PasticheError(`--style-blend has ${styleBlend.length} weight(s) for ${styles.length} style image(s)`);
    const scales = o.scales ? parseNumberList(o.scales, '--scales') : [];
    if (scales.some((v) => !Number.isInteger(v) || v < 16)) throw new PasticheError('--scales: whole numbers of at least 16');
    const backend = chooseBackend(o.backend);
    await openBackend(backend); // a missing GPU is said before 576 MB of weights are read
    const weightsFile = resolveWeightsFile(o.weights);
    const weights = await withStatus(`loading ${weightsFile}`, o.quiet, () => loadMatConvNetVgg19(weightsFile));
    const iterations = o.iterations ?? preset.iterations;
    const size = o.size ?? preset.size;
    const bar = progressBar(iterations * (scales.length + 1), 'stylize {bar} {value}/{total} | content {c} style {s} tv {tv} | {ips} it/s | ETA {eta_formatted}', o.quiet);
    // The log and the snapshots are side outputs: if the disk fills or the folder goes away
    // mid-run, say so once and go on, so that the run still ends with its image.
    const sideProblems = new Set<string>();
    const sideProblem = (what: string, e: unknown) => {
      const msg = e instanceof PasticheError ? e.message : `${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      if (sideProblems.has(what)) return;
      sideProblems.add(what);
      bar.stop();
      process.stderr.write(`pastiche: ${msg}; no more ${what === o.logJson ? 'log lines' : 'snapshots'} are written\n`);
    };
    // Opened at the first iteration, so that a run that fails before it leaves no empty log.
    let logFd: number | undefined;
    let logOpen = Boolean(o.logJson);
    const saves: Promise<void>[] = [];
    const controller = new AbortController();
    const stop = () => controller.abort();
    // SIGTERM is what a job runner sends: it stops like Ctrl-C, with the best image written.
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    let result;
    try {
      result = await stylize({
        content, styles, weights, backend, size, iterations,
        optimizer: o.optimizer ?? preset.optimizer, lr: o.lr ?? preset.lr, lbfgsHistory: o.lbfgsHistory,
        contentWeight: o.contentWeight ?? preset.contentWeight, styleWeight: o.styleWeight ?? preset.styleWeight,
        tvWeight: o.tvWeight ?? preset.tvWeight, contentLayers, styleLayers, init, seed: o.seed, styleBlend,
        styleScale: o.styleScale, pooling: o.pooling ?? preset.pooling, scales, signal: controller.signal,
        onIteration: (r) => {
          const f = (v: number) => v.toExponential(3);
          bar.setTotal(r.of);
          bar.update(r.iteration, { c: f(r.content), s: f(r.style), tv: f(r.tv), ips: (r.iteration / r.seconds).toFixed(2) });
          if (logOpen) {
            try {
              logFd ??= openSync(o.logJson!, 'w');
              writeSync(logFd, `${JSON.stringify({ iteration: r.iteration, content: r.content, style: r.style, tv: r.tv, total: r.total, seconds: r.seconds })}\n`);
            } catch (e) {
              sideProblem(o.logJson!, e);
              if (logFd !== undefined) closeSync(logFd);
              logFd = undefined;
              logOpen = false;
            }
          }
          if (o.saveEvery && r.iteration % o.saveEvery === 0 && !sideProblems.has('snapshots')) {
            const file = snapshotName(r.iteration);
            saves.push(writeRgb(file, tensorToRgb(r.image, weights.meanPixel)).catch((e: unknown) => sideProblem('snapshots', e)));
          }
        },
      });
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      bar.stop();
      if (logFd !== undefined) closeSync(logFd);
    }
    await Promise.all(saves);
    let rgb = result.rgb;
    if (o.originalColors) rgb = keepOriginalColors(rgb, resizeBilinearPil(await readRgb(content), rgb.width, rgb.height));
    await writeRgb(o.output, rgb);
    const note = result.interrupted ? ` (interrupted: the best image of ${result.iterations} iteration(s))` : '';
    process.stderr.write(`wrote ${o.output}: ${rgb.width}x${rgb.height}, best loss ${result.bestLoss.toExponential(4)}${note}\n`);
    if (result.interrupted) process.exitCode = 130;
  });
}

interface StylizeCli {
  output: string; preset: 'default' | 'lab'; weights?: string; backend?: string; size?: number; iterations?: number;
  optimizer?: 'adam' | 'lbfgs'; lr?: number; lbfgsHistory?: number; contentWeight?: number; styleWeight?: number;
  tvWeight?: number; contentLayers?: string; styleLayers?: string; init?: string; seed: number; styleBlend?: string;
  styleScale?: number; originalColors?: boolean; pooling?: 'max' | 'avg'; scales?: string; saveEvery?: number;
  logJson?: string; quiet?: boolean;
}
