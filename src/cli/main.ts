#!/usr/bin/env node
/** The `pastiche` command line. Each command is a thin shell over an application function. */
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { forwardRunner, styleIterationRunner, timeInterleaved, vgg19ForwardFlops } from '../app/bench.js';
import { onnxRunner } from '../app/onnx-peer.js';
import { runCheck } from '../app/check.js';
import { checkLayerNames, classifyImage } from '../app/classify.js';
import { loadModel } from '../app/load-model.js';
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
