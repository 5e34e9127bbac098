/** `pastiche stylize`: the course's lab 3-3, neural style transfer. Flags in, app/ does the rest. */
import { type Command } from 'commander';
import { fanOut, jsonLinesLog, type OnProgress } from '../../app/progress.js';
import { abortOnSignals } from '../../app/signals.js';
import { DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS } from '../../app/stylize.js';
import { checkStylizeFiles, runStylize } from '../../app/stylize-job.js';
import { checkFastStylizeFiles, runFastStylize } from '../../app/fast-stylize.js';
import { PasticheError } from '../../errors.js';
import { loadTransformerModel } from '../../weights/transformer-file.js';
import { PRESET_NAMES, parseStylizeSettings, type StylizeFields } from '../../app/stylize-request.js';
import type { Precision } from '../../backends/index.js';
import { progressBar, withStatus } from '../../util/progress.js';
import { loadWeightsFile } from '../../app/load-model.js';
import { resolveWeightsFile } from '../../weights/weights-source.js';
import { backendOption, openChosenBackend, positiveInt, precisionOption, weightsOption } from '../options.js';

/** A request field as its flag: styleWeight -> --style-weight. */
const flagName = (field: string) => `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

export function registerStylize(program: Command): void {
  const stylizeCmd = program
    .command('stylize')
    .description("neural style transfer (Gatys et al.): optimise an image to have CONTENT's content and STYLE's style; with --model, a trained style network stylizes images in one pass")
    .argument('<content>', 'the content image')
    .argument('[style...]', 'one or more style images (with --model: more images to stylize)')
    .requiredOption('-o, --output <file>', 'the result (.png, .jpg or .jpeg); with --model and several images, a folder')
    .option('--model <file>', "a real-time style network (pytorch/examples fast_neural_style .pth, or Pastiche's .safetensors): one forward pass per image")
    // The request's own fields are passed on as text: app/stylize-request.ts parses and checks them.
    .option('--preset <name>', `starting settings: ${PRESET_NAMES.join(' or ')} (the course's lab 3-3 exactly)`, 'default')
    .addOption(weightsOption())
    .addOption(backendOption())
    .addOption(precisionOption())
    .option('-s, --size <n>', 'longest side of the output in pixels (preset default: 512)')
    .option('-i, --iterations <n>', 'optimiser steps per scale (preset default: 300)')
    .option('--optimizer <name>', 'adam or lbfgs (preset default: lbfgs)')
    .option('--lr <x>', 'learning rate / step size (default 1)')
    .option('--lbfgs-history <n>', 'L-BFGS memory (default 100)')
    .option('--content-weight <x>', 'alpha (default 1)')
    .option('--style-weight <x>', 'beta (default 500)')
    .option('--tv-weight <x>', 'total-variation weight (default 0)')
    .option('--content-layers <list>', `e.g. ${DEFAULT_CONTENT_LAYERS.join(',')} (default), or with weights relu4_2:1`)
    .option('--style-layers <list>', `default ${DEFAULT_STYLE_LAYERS.join(',')}; weights with name:w`)
    .option('--init <how>', "content, noise, blend (the course's 0.5 content + 0.5 uniform(-20,20)) or an image file")
    .option('--seed <n>', 'random seed for noise initialisation (default 0)')
    .option('--style-blend <list>', 'weights of the style images, e.g. 0.7,0.3')
    .option('--style-scale <x>', 'style image size relative to the output (default 1)')
    .option('--original-colors', "keep the content's colours: transfer luminance only")
    .option('--pooling <kind>', 'max or avg pooling in VGG19 (default max)')
    .option('--scales <list>', 'multi-scale: longest sides to optimise at first, e.g. 256,384 (then --size)')
    .option('--tile <n>', 'compute the loss in tiles of N pixels a side (a multiple of 16): the same result, activations of one tile at a time (default: tiles only where the whole image does not fit --max-memory)')
    .option('--max-memory <size>', 'memory the run may use, e.g. 3G: chooses the tile size and L-BFGS history (default: 80% of the free memory)')
    .option('--save-every <n>', 'also save the image every N iterations (OUT-0050.png, ...)', positiveInt('--save-every'))
    .option('--log-json <file>', 'one JSON line per iteration: iteration, content, style, tv, total, seconds')
    .option('-q, --quiet', 'no progress bar');
  stylizeCmd.addHelpText('after', '\nCtrl-C or SIGTERM stops the run and still writes the best image so far (exit code 130).');

  stylizeCmd.action(async (content: string, styles: string[], o: StylizeFields & { output: string; model?: string; weights?: string; backend?: string; precision: Precision; saveEvery?: number; logJson?: string; quiet?: boolean }) => {
    if (o.model) return stylizeWithModel([content, ...styles], o.model, o);
    if (styles.length === 0) throw new PasticheError('give at least one style image (or --model MODEL: a trained style network)');
    // Everything is checked before any work: bad input never leaves a partial output, and an
    // unwritable output never costs a whole run; a missing GPU is said before the weights are read.
    const settings = parseStylizeSettings(o, styles.length, flagName);
    checkStylizeFiles({ content, styles, output: o.output, init: settings.init, saveEvery: o.saveEvery, logJson: o.logJson });
    const backend = await openChosenBackend(o.backend, o.precision);
    const weightsFile = resolveWeightsFile(o.weights);
    const weights = await withStatus(`loading ${weightsFile}`, o.quiet, () => loadWeightsFile(weightsFile, { classifier: false, onWarning: (m) => process.stderr.write(`pastiche: warning: ${m}\n`) }));
    const scales = (settings.scales ?? []).length + 1;
    const bar = progressBar(settings.iterations * scales, 'stylize {bar} {value}/{total}{tile} | content {c} style {s} tv {tv} | {ips} it/s | ETA {eta_formatted}', o.quiet);
    const f = (v: number) => v.toExponential(3);
    let last = { c: '-', s: '-', tv: '-', ips: '-', tile: '' };
    let done = 0;
    const warn = (message: string) => {
      bar.stop();
      process.stderr.write(`pastiche: ${message}\n`);
    };
    const render: OnProgress = (p) => {
      if (p.kind === 'warning') warn(p.message);
      // Only a plan that is not the plain one is worth a line: tiles, a shorter history, Adam.
      const plain = p.kind === 'plan' && p.plan.tile === undefined && p.plan.optimizer === settings.optimizer && (p.plan.optimizer === 'adam' || p.plan.lbfgsHistory === (settings.lbfgsHistory ?? 100));
      if (p.kind === 'plan' && !plain && !o.quiet) {
        bar.stop();
        process.stderr.write(`pastiche: ${p.text}\n`);
      }
      if (p.kind === 'tile') {
        last = { ...last, tile: ` (${p.iteration}: ${p.pass} tile ${p.done}/${p.tiles})` };
        bar.update(done, last);
      }
      if (p.kind !== 'iteration') return;
      done = p.iteration;
      last = { c: f(p.content), s: f(p.style), tv: f(p.tv), ips: (p.iteration / p.seconds).toFixed(2), tile: '' };
      bar.setTotal(p.of);
      bar.update(p.iteration, last);
    };
    const log = o.logJson ? jsonLinesLog(o.logJson, warn) : undefined;
    const stop = abortOnSignals();
    let result;
    try {
      result = await runStylize({ ...settings, content, styles, weights, backend, output: o.output, saveEvery: o.saveEvery, signal: stop.signal, onProgress: fanOut(render, log) });
    } finally {
      stop.dispose();
      bar.stop();
      log?.close();
    }
    const note = result.interrupted ? ` (interrupted: the best image of ${result.iterations} iteration(s))` : '';
    process.stderr.write(`wrote ${result.output}: ${result.rgb.width}x${result.rgb.height}, best loss ${result.bestLoss.toExponential(4)}${note}\n`);
    if (result.interrupted) process.exitCode = 130;
  });
}

/** Options of the optimisation that a trained network has no use for. */
const OPTIMISATION_ONLY = ['preset', 'iterations', 'optimizer', 'lr', 'lbfgsHistory', 'contentWeight', 'styleWeight', 'tvWeight', 'contentLayers', 'styleLayers', 'init', 'seed', 'styleBlend', 'styleScale', 'originalColors', 'pooling', 'scales', 'weights', 'saveEvery', 'logJson'] as const;

/** `stylize IMAGE... --model MODEL -o OUT`: one forward pass of a trained style network per image. */
async function stylizeWithModel(inputs: string[], model: string, o: StylizeFields & { output: string; backend?: string; precision: Precision; quiet?: boolean }): Promise<void> {
  // 'default' is commander's default for --preset, not the user's choice.
  const set: Record<string, unknown> = { ...o };
  const given = OPTIMISATION_ONLY.find((k) => set[k] !== undefined && !(k === 'preset' && set[k] === 'default'));
  if (given) throw new PasticheError(`${flagName(given)} is for the optimisation; --model runs a trained network (--size, --tile, --max-memory, --backend, --precision and -o apply)`);
  const size = o.size === undefined ? undefined : positiveInt('--size')(String(o.size));
  const tile = o.tile === undefined ? undefined : positiveInt('--tile')(String(o.tile));
  if (tile !== undefined && tile % 4 !== 0) throw new PasticheError(`--tile must be a multiple of 4 for a style network (its strides' grid; got ${tile})`);
  const maxMemory = o.maxMemory === undefined ? undefined : parseStylizeSettings({ maxMemory: o.maxMemory }, 1, flagName).maxMemory;
  const backend = await openChosenBackend(o.backend, o.precision);
  const weights = await withStatus(`loading ${model}`, o.quiet, () => loadTransformerModel(model));
  // After the model (a few MB, read in a moment): a bad model leaves no empty output folder behind.
  checkFastStylizeFiles(inputs, o.output);
  const bar = progressBar(inputs.length, 'stylize {bar} {value}/{total} | {what}', o.quiet);
  let done = 0;
  let what = '';
  try {
    const results = await runFastStylize({
      inputs, output: o.output, weights, backend, size, tile, maxMemory,
      onProgress: (p) => {
        if (p.kind === 'stage') [what, done] = [p.stage, done + 1];
        if (p.kind === 'tile') bar.update(done - 1, { what: `${what}, ${p.pass} tile ${p.done}/${p.tiles}` });
        else bar.update(done - 1, { what });
      },
    });
    bar.stop();
    for (const r of results) process.stderr.write(`wrote ${r.file}: ${r.width}x${r.height} in ${r.seconds.toFixed(2)} s\n`);
  } finally {
    bar.stop();
  }
}
