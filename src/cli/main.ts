#!/usr/bin/env node
/** The `pastiche` command line. Each command is a thin shell over an application function. */
import { createWriteStream, existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { forwardRunner, styleIterationRunner, timeInterleaved, vgg19ForwardFlops } from '../app/bench.js';
import { onnxRunner } from '../app/onnx-peer.js';
import { runCheck } from '../app/check.js';
import { checkLayerNames, classifyImage } from '../app/classify.js';
import { loadModel } from '../app/load-model.js';
import { DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, parseLayers, stylize, type Init, type StylizeOptions } from '../app/stylize.js';
import { readRgb } from '../image/preprocess.js';
import { resizeBilinearPil } from '../image/pil-resize.js';
import { IMAGE_EXTENSIONS, keepOriginalColors, tensorToRgb, writeRgb } from '../image/tensor-image.js';
import { BACKEND_NAMES, DEFAULT_BACKEND, availableBackends, nativeBackend, noticeFallback, setThreads } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import { resolveLayerName } from '../model/vgg19-table.js';
import { writeNpy } from '../tensor/npy.js';
import { progressBar } from '../util/progress.js';
import { download } from '../weights/download.js';
import { loadMatConvNetVgg19 } from '../weights/matconvnet.js';
import { randomVgg19Weights, type Vgg19Weights } from '../weights/vgg19-weights.js';
import { PUBLISHED, WEIGHTS_FILE_NAME, cacheDir, cachedWeightsPath, resolveWeightsFile, type Layout } from '../weights/weights-source.js';
import { formatBench, formatCheck, formatClassification, machineDescription, type BenchReport } from './format.js';

function positiveInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a positive whole number.`);
    return n;
  };
}

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

function positiveNumber(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a positive number.`);
    return n;
  };
}

function nonNegativeNumber(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!(n >= 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a non-negative number.`);
    return n;
  };
}

function parseNumberList(v: string, what: string): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x))) throw new PasticheError(`${what}: '${v}' is not a comma-separated list of numbers`);
  return xs;
}

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

function checkInputFile(file: string): void {
  if (!existsSync(file)) throw new PasticheError(`${file}: no such file`);
  const st = statSync(file);
  if (!st.isFile()) throw new PasticheError(`${file}: is not a file`);
  if (st.size === 0) throw new PasticheError(`${file}: is empty (0 bytes)`);
}

function checkOutputFolder(file: string): void {
  const dir = path.dirname(path.resolve(file));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new PasticheError(`${file}: the folder ${dir} does not exist`);
}

const backendOption = () =>
  new Option('-b, --backend <name>', `compute backend (default: ${DEFAULT_BACKEND}, the fastest available)`).choices(BACKEND_NAMES);

/** The backend named on the command line, else the default (saying once if native is missing). */
function chooseBackend(name: string | undefined): string {
  if (name) return name;
  noticeFallback();
  return DEFAULT_BACKEND;
}

const program = new Command();
program
  .name('pastiche')
  .description('VGG19 classification and the course\'s CNN labs, in TypeScript, every line readable and timed.')
  .version('0.1.0')
  .option('-t, --threads <n>', 'threads for the native backend (default: one per core)', positiveInt('--threads'))
  .hook('preAction', (cmd) => {
    const threads = cmd.opts<{ threads?: number }>().threads;
    if (threads) setThreads(threads);
  });

program
  .command('classify')
  .description('classify images with VGG19 (top-N ImageNet classes)')
  .argument('<image...>', 'JPEG, PNG, WebP, ... images')
  .option('-w, --weights <file>', `VGG19 weights (${WEIGHTS_FILE_NAME}); default: $PASTICHE_WEIGHTS, then the fetched file`)
  .option('-n, --top <n>', 'how many classes to show', positiveInt('--top'), 5)
  .option('--json', 'one JSON object per image per line')
  .addOption(backendOption())
  .option('--dump <layer=file.npy>', "write an activation as float32 .npy ('input', 'pool5', 'fc8', 'prob', ...); repeatable, one image only", parseDump)
  .option('-q, --quiet', 'no progress bar or timing summary')
  .action(async (images: string[], opts: { weights?: string; top: number; json?: boolean; backend?: string; dump?: Dump[]; quiet?: boolean }) => {
    const dumps = opts.dump ?? [];
    if (dumps.length > 0 && images.length > 1) throw new PasticheError('--dump works with one image at a time');
    checkLayerNames(dumps.map((d) => d.layer));
    dumps.forEach((d) => checkOutputFolder(d.file));
    images.forEach(checkInputFile); // fail before reading 576 MB of weights
    const { model, weightsFile, loadSeconds } = await loadModel({ weights: opts.weights, backend: chooseBackend(opts.backend) });
    const forwardMs: number[] = [];
    for (const image of images) {
      const bar = progressBar(1, `${path.basename(image)} {bar} {value}/{total} layers | {layer} | {duration}s`, opts.quiet);
      const result = await classifyImage(model, image, {
        top: opts.top,
        capture: dumps.map((d) => d.layer),
        onLayer: (done, total, name) => {
          bar.setTotal(total);
          bar.update(done, { layer: name });
        },
      }).finally(() => bar.stop());
      forwardMs.push(result.forwardSeconds * 1000);
      for (const d of dumps) await writeNpy(d.file, result.activations.get(resolveLayerName(d.layer)!)!);
      process.stdout.write(opts.json ? `${JSON.stringify({ image: result.image, top: result.top })}\n` : `${formatClassification(result)}\n`);
    }
    // Last, so that an error is the only thing on stderr.
    if (!opts.json && !opts.quiet) {
      process.stderr.write(
        `weights: ${weightsFile} (${model.weights.layout} layout, loaded in ${loadSeconds.toFixed(2)} s); ` +
          `backend: ${model.backend.name}; forward pass: ${forwardMs.map((ms) => ms.toFixed(1)).join(', ')} ms\n`,
      );
    }
  });

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
  .option('--seed <n>', 'random seed for noise initialisation', (v) => Number(v), 0)
  .option('--style-blend <list>', 'weights of the style images, e.g. 0.7,0.3')
  .option('--style-scale <x>', 'style image size relative to the output (default 1)', positiveNumber('--style-scale'))
  .option('--original-colors', "keep the content's colours: transfer luminance only")
  .addOption(new Option('--pooling <kind>', 'max or avg pooling in VGG19').choices(['max', 'avg']))
  .option('--scales <list>', 'multi-scale: longest sides to optimise at first, e.g. 256,384 (then --size)')
  .option('--save-every <n>', 'also save the image every N iterations (OUT-0050.png, ...)', positiveInt('--save-every'))
  .option('--log-json <file>', 'one JSON line per iteration: iteration, content, style, tv, total, seconds')
  .option('-q, --quiet', 'no progress bar');

interface StylizeCli {
  output: string; preset: 'default' | 'lab'; weights?: string; backend?: string; size?: number; iterations?: number;
  optimizer?: 'adam' | 'lbfgs'; lr?: number; lbfgsHistory?: number; contentWeight?: number; styleWeight?: number;
  tvWeight?: number; contentLayers?: string; styleLayers?: string; init?: string; seed: number; styleBlend?: string;
  styleScale?: number; originalColors?: boolean; pooling?: 'max' | 'avg'; scales?: string; saveEvery?: number;
  logJson?: string; quiet?: boolean;
}

stylizeCmd.action(async (content: string, styles: string[], o: StylizeCli) => {
  const preset = STYLE_PRESETS[o.preset];
  // Everything is checked before any work, so that bad input never leaves a partial output.
  checkOutputFolder(o.output);
  if (!IMAGE_EXTENSIONS.includes(path.extname(o.output).toLowerCase())) throw new PasticheError(`${o.output}: the output must end in .png, .jpg or .jpeg`);
  if (o.logJson) checkOutputFolder(o.logJson);
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
  const weights = await loadMatConvNetVgg19(resolveWeightsFile(o.weights));
  const iterations = o.iterations ?? preset.iterations;
  const size = o.size ?? preset.size;
  const bar = progressBar(iterations * (scales.length + 1), 'stylize {bar} {value}/{total} | content {c} style {s} tv {tv} | {ips} it/s | ETA {eta_formatted}', o.quiet);
  const log = o.logJson ? createWriteStream(o.logJson) : undefined;
  const saves: Promise<void>[] = [];
  const ext = path.extname(o.output);
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
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
        log?.write(`${JSON.stringify({ iteration: r.iteration, content: r.content, style: r.style, tv: r.tv, total: r.total, seconds: r.seconds })}\n`);
        if (o.saveEvery && r.iteration % o.saveEvery === 0) {
          const file = o.output.slice(0, o.output.length - ext.length) + `-${String(r.iteration).padStart(4, '0')}${ext}`;
          saves.push(writeRgb(file, tensorToRgb(r.image, weights.meanPixel)));
        }
      },
    });
  } finally {
    process.off('SIGINT', onSigint);
    bar.stop();
    await new Promise<void>((r) => (log ? log.end(r) : r()));
  }
  await Promise.all(saves);
  let rgb = result.rgb;
  if (o.originalColors) rgb = keepOriginalColors(rgb, resizeBilinearPil(await readRgb(content), rgb.width, rgb.height));
  await writeRgb(o.output, rgb);
  const note = result.interrupted ? ` (interrupted: the best image of ${result.iterations} iteration(s))` : '';
  process.stderr.write(`wrote ${o.output}: ${rgb.width}x${rgb.height}, best loss ${result.bestLoss.toExponential(4)}${note}\n`);
  if (result.interrupted) process.exitCode = 130;
});

const weights = program.command('weights').description('download and locate the VGG19 weights');

weights
  .command('fetch')
  .description(`download ${WEIGHTS_FILE_NAME} (576 MB) from MatConvNet into the cache, resumable, MD5-checked`)
  .addOption(new Option('--layout <layout>', "which release: 'old' (beta16, the course's) or 'new'").choices(['old', 'new']).default('old'))
  .option('--url <url>', 'download from this address instead (a mirror)')
  .option('--md5 <hex>', 'expected MD5 (default: the published one for the layout)')
  .option('-o, --output <file>', 'write here instead of the cache')
  .option('-q, --quiet', 'no progress bar')
  .action(async (opts: { layout: Layout; url?: string; md5?: string; output?: string; quiet?: boolean }) => {
    const pub = PUBLISHED[opts.layout];
    const dest = opts.output ?? cachedWeightsPath(opts.layout);
    const url = opts.url ?? pub.url;
    const mb = (n: number) => (n / 1e6).toFixed(0);
    const bar = progressBar(pub.approxBytes, `${WEIGHTS_FILE_NAME} {bar} {percentage}% | {mb}/{totalmb} MB | {speed} MB/s | ETA {eta_formatted}`, opts.quiet);
    const t0 = performance.now();
    let first: number | undefined;
    const outcome = await download({
      url,
      dest,
      md5: opts.md5 ?? pub.md5,
      manualHint: `Download ${WEIGHTS_FILE_NAME} by hand and pass it with --weights FILE or PASTICHE_WEIGHTS=FILE, or save it as ${dest}`,
      onProgress: ({ received, total }) => {
        first ??= received;
        if (total) bar.setTotal(total);
        const s = (performance.now() - t0) / 1000;
        bar.update(received, { mb: mb(received), totalmb: mb(total ?? pub.approxBytes), speed: s > 0 ? ((received - first) / 1e6 / s).toFixed(1) : '0' });
      },
    }).finally(() => bar.stop());
    process.stdout.write(`${outcome === 'already-present' ? 'already downloaded' : 'downloaded and verified'}: ${dest}\n`);
  });

weights
  .command('path')
  .description('print the weights file a run would use, and the cache folder')
  .action(() => {
    process.stdout.write(`cache: ${cacheDir()}\n`);
    try {
      process.stdout.write(`weights: ${resolveWeightsFile()}\n`);
    } catch (e) {
      process.stdout.write(`weights: none (${(e as Error).message})\n`);
    }
  });

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

program
  .command('bench')
  .description("time the course's case, VGG19 forward passes and style-transfer iterations: medians after a warm-up, contenders interleaved, ratios from the same run")
  .addOption(new Option('-b, --backend <name...>', 'backends to time (default: all available but loops; style: native, else ts)').choices(BACKEND_NAMES))
  .addOption(new Option('--sections <list>', 'comma-separated: case, vgg, style').default('case,vgg,style'))
  .option('--style-sizes <list>', 'image sizes of the style iteration', '256,512')
  .option('-w, --weights <file>', 'time with these weights and report how long loading them takes (default: random weights of the real size)')
  .option('-r, --repeat <n>', 'timed runs per contender', positiveInt('--repeat'), 5)
  .option('--warmup <n>', 'untimed runs first', (v) => Number(v), 1)
  .option('--peers', 'also run onnxruntime-node on the same network and weights, interleaved, and print the ratios')
  .option('--json', 'machine-readable output')
  .option('-q, --quiet', 'no progress bar')
  .action(async (opts: { backend?: string[]; sections: string; styleSizes: string; weights?: string; repeat: number; warmup: number; peers?: boolean; json?: boolean; quiet?: boolean }) => {
    const sections = new Set(opts.sections.split(',').map((x) => x.trim()));
    for (const sct of sections) if (!['case', 'vgg', 'style'].includes(sct)) throw new PasticheError(`--sections: unknown section '${sct}' (case, vgg, style)`);
    const styleSizes = opts.styleSizes.split(',').map((v) => Number(v));
    if (styleSizes.some((v) => !Number.isInteger(v) || v < 32)) throw new PasticheError('--style-sizes: whole numbers of at least 32');
    const backends = opts.backend ?? availableBackends().filter((b) => b !== 'loops');
    const styleBackends = opts.backend ?? [nativeBackend ? 'native' : 'ts'];
    let weights: Vgg19Weights;
    let loadSeconds: number | undefined;
    if (opts.weights) {
      const t0 = performance.now();
      weights = await loadMatConvNetVgg19(opts.weights);
      loadSeconds = (performance.now() - t0) / 1000;
    } else {
      weights = randomVgg19Weights(1);
    }
    const threads = nativeBackend ? nativeBackend.addon.threads() : 1;
    const report: BenchReport = {
      machine: machineDescription(threads),
      weights: weights.source,
      loadSeconds,
      repeat: opts.repeat,
      warmup: opts.warmup,
    };
    const bar = progressBar(1, 'bench {bar} | {what}', opts.quiet);
    const progress = (what: string) => bar.update(0, { what });
    try {
      if (sections.has('case')) {
        report.courseCase = runCheck({ backends: backends.filter((b) => b !== 'loops'), repeat: opts.repeat, onStep: (st) => progress(`course case: ${st}`) });
      }
      if (sections.has('vgg')) {
        const runners = backends.map((b) => forwardRunner(weights, b));
        if (opts.peers) runners.push(await onnxRunner(weights, 224, 'prob', threads));
        const flops = vgg19ForwardFlops(weights, 224);
        const rows = await timeInterleaved(runners, opts.repeat, opts.warmup, (n, r, of) => progress(`VGG19 forward: ${n} ${r}/${of}`));
        report.vgg19Forward = { size: 224, gflop: flops / 1e9, rows: rows.map((r) => ({ ...r, gflops: flops / (r.medianMs * 1e6) })) };
      }
      if (sections.has('style')) {
        report.styleIteration = [];
        for (const size of styleSizes) {
          const runners = styleBackends.map((b) => styleIterationRunner(weights, b, size));
          if (opts.peers) runners.push(await onnxRunner(weights, size, 'relu5_1', threads));
          const rows = await timeInterleaved(runners, opts.repeat, opts.warmup, (n, r, of) => progress(`style iteration ${size}: ${n} ${r}/${of}`));
          report.styleIteration.push({ size, rows });
        }
        report.peakRssMB = process.resourceUsage().maxRSS / 1024;
      }
    } finally {
      bar.stop();
    }
    process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatBench(report)}\n`);
  });

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
}
