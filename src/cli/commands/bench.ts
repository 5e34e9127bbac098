/** `pastiche bench`: the course's case, VGG19 forward and style iterations, optionally against onnxruntime. */
import { type Command, Option } from 'commander';
import { forwardRunner, styleIterationRunner, timeInterleaved, vgg19ForwardFlops } from '../../app/bench.js';
import { runCheck } from '../../app/check.js';
import { layerRows, profileLayers } from '../../app/layer-profile.js';
import { onnxLayerTimes, onnxRunner } from '../../app/onnx-peer.js';
import { BACKEND_NAMES, availableBackends, nativeBackend, openBackend } from '../../backends/index.js';
import type { Backend } from '../../backends/backend.js';
import { PasticheError } from '../../errors.js';
import { progressBar } from '../../util/progress.js';
import { loadMatConvNetVgg19 } from '../../weights/load-vgg19.js';
import { randomVgg19Weights, type Vgg19Weights } from '../../model/vgg19-params.js';
import { formatBench, machineDescription, type BenchReport } from '../format.js';
import { nonNegativeInt, positiveInt } from '../options.js';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description("time the course's case, VGG19 forward passes and style-transfer iterations: medians after a warm-up, contenders interleaved, ratios from the same run")
    .addOption(new Option('-b, --backend <name...>', 'backends to time (default: the CPU ones but loops; style: native, else ts); add webgpu for the GPU').choices(BACKEND_NAMES))
    .addOption(new Option('--sections <list>', 'comma-separated: case, vgg, style, layers (VGG19 forward layer by layer, CPU backends)').default('case,vgg,style'))
    .option('--style-sizes <list>', 'image sizes of the style iteration', '256,512')
    .option('-w, --weights <file>', 'time with these weights and report how long loading them takes (default: random weights of the real size)')
    .option('-r, --repeat <n>', 'timed runs per contender', positiveInt('--repeat'), 5)
    .option('--warmup <n>', 'untimed runs first', nonNegativeInt('--warmup'), 1)
    .option('--peers', 'also run onnxruntime-node on the same network and weights, interleaved, and print the ratios')
    .option('--json', 'machine-readable output')
    .option('-q, --quiet', 'no progress bar')
    .action(async (opts: { backend?: string[]; sections: string; styleSizes: string; weights?: string; repeat: number; warmup: number; peers?: boolean; json?: boolean; quiet?: boolean }) => {
      const sections = new Set(opts.sections.split(',').map((x) => x.trim()));
      for (const sct of sections) if (!['case', 'vgg', 'style', 'layers'].includes(sct)) throw new PasticheError(`--sections: unknown section '${sct}' (case, vgg, style, layers)`);
      const styleSizes = opts.styleSizes.split(',').map((v) => Number(v));
      if (styleSizes.some((v) => !Number.isInteger(v) || v < 32)) throw new PasticheError('--style-sizes: whole numbers of at least 32');
      const backends = opts.backend ?? availableBackends().filter((b) => b !== 'loops');
      const styleBackendNames = opts.backend ?? [nativeBackend ? 'native' : 'ts'];
      const open = async (names: string[]) => {
        const out: Backend[] = [];
        for (const n of names) out.push(await openBackend(n));
        return out;
      };
      const vggBackends = await open(backends);
      const styleBackends = await open(styleBackendNames);
      const gpu = [...vggBackends, ...styleBackends].find((b) => b.name === 'webgpu');
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
        gpu: gpu?.description,
        weights: weights.source,
        loadSeconds,
        repeat: opts.repeat,
        warmup: opts.warmup,
      };
      const bar = progressBar(1, 'bench {bar} | {what}', opts.quiet);
      const progress = (what: string) => bar.update(0, { what });
      try {
        if (sections.has('case')) {
          report.courseCase = await runCheck({ backends: backends.filter((b) => b !== 'loops'), repeat: opts.repeat, onStep: (st) => progress(`course case: ${st}`) });
        }
        if (sections.has('vgg')) {
          const runners = vggBackends.map((b) => forwardRunner(weights, b));
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
        if (sections.has('layers')) {
          // A device backend's host time per layer is only its queueing: CPU backends only.
          const cpu = vggBackends.filter((b) => b.name !== 'webgpu');
          if (cpu.length === 0) throw new PasticheError('--sections layers times CPU backends (webgpu queues its work; per-layer host times mean nothing there)');
          const profile = await profileLayers(weights, cpu, 224, opts.repeat, opts.warmup, (n, r, of) => progress(`layers: ${n} ${r}/${of}`));
          if (opts.peers) {
            progress('layers: onnxruntime');
            profile.ms['onnxruntime'] = await onnxLayerTimes(weights, 224, threads, opts.repeat, opts.warmup, layerRows(weights, 224).rowOf);
          }
          report.layers = profile;
        }
      } finally {
        bar.stop();
      }
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatBench(report)}\n`);
    });
}
