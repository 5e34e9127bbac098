/** `pastiche bench`: the course's case, VGG19 forward and style iterations, optionally against onnxruntime. */
import { type Command, Option } from 'commander';
import { BENCH_SECTIONS, parseBenchLists, rooflinePanels, runBench } from '../../app/bench-run.js';
import { parsePrintSizes } from '../../app/print-bench.js';
import { plotFormat, rooflinePicture } from '../../app/roofline.js';
import { parseStylizeSettings } from '../../app/stylize-request.js';
import { BACKEND_NAMES, type BackendName } from '../../backends/index.js';
import { PasticheError } from '../../errors.js';
import { writeFileAtomic } from '../../util/atomic-write.js';
import { progressBar } from '../../util/progress.js';
import { formatBench } from '../format.js';
import { checkOutputFile, nonNegativeInt, positiveInt } from '../options.js';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description("time the course's case, VGG19 forward passes and style-transfer iterations: medians after warm-up runs, contenders interleaved, ratios from the same run")
    .addOption(new Option('-b, --backend <name...>', 'backends to time (default: the CPU ones but loops; style: native, else ts); add webgpu for the GPU').choices(BACKEND_NAMES))
    .option('--sections <list>', `comma-separated: ${BENCH_SECTIONS.join(', ')} (machine: the FMA peak and memory bandwidth, measured first in every bench; layers: VGG19 forward layer by layer, CPU backends; fast: the real-time style network; print: stylize at print sizes within --max-memory, each in its own process)`, 'case,vgg,style')
    .option('--style-sizes <list>', 'image sizes of the style iteration', '256,512')
    .option('-w, --weights <file>', 'time with these weights and report how long loading them takes (default: random weights of the real size)')
    .option('-r, --repeat <n>', 'timed runs per contender', positiveInt('--repeat'), 5)
    .option('--warmup <n>', 'untimed runs first (native keeps its transformed weights from their second pass on)', nonNegativeInt('--warmup'), 2)
    .option('--peers', 'also run onnxruntime-node on the same network and weights, interleaved, and print the ratios')
    .option('--fast-sizes <list>', 'with --sections fast: input sizes of the real-time style network', '256,512,1024')
    .option('--train-step <batch>x<size>', 'with --sections fast: the training step timed, e.g. 4x256', '4x256')
    .option('--print-sizes <list>', 'with --sections print: output sizes, e.g. 1024,2048,4000x3000 (each run in its own process)', '1024,2048,4000x3000')
    .option('--print-iterations <n>', 'with --sections print: iterations at each size', positiveInt('--print-iterations'), 2)
    .option('--max-memory <size>', "with --sections print: the runs' memory budget, e.g. 3G (default: 80% of the free memory)")
    .addOption(new Option('--precision <p>', 'bf16: also time native with bf16 operands, beside fp32 (AVX512-BF16)').choices(['fp32', 'bf16']).default('fp32'))
    .option('--plot <file>', "with --sections layers: draw the first backend's layers on this machine's roofline, the forward pass and the style iteration (.svg or .png)")
    .option('--json', 'machine-readable output')
    .option('-q, --quiet', 'no progress bar')
    .action(async (opts: { backend?: BackendName[]; sections: string; styleSizes: string; weights?: string; repeat: number; warmup: number; peers?: boolean; plot?: string; json?: boolean; quiet?: boolean; printSizes: string; printIterations: number; maxMemory?: string; fastSizes: string; trainStep: string; precision: 'fp32' | 'bf16' }) => {
      const { sections, styleSizes } = parseBenchLists(opts.sections, opts.styleSizes);
      if (opts.precision === 'bf16' && opts.backend && !opts.backend.includes('native')) throw new PasticheError('--precision bf16 times native beside its fp32: add -b native');
      const printSizes = parsePrintSizes(opts.printSizes);
      const fastSizes = parsePrintSizes(opts.fastSizes, '--fast-sizes').map((s) => s.width);
      const step = /^(\d+)x(\d+)$/.exec(opts.trainStep);
      if (!step || Number(step[1]) < 1 || Number(step[2]) < 16 || Number(step[2]) % 4 !== 0) throw new PasticheError(`--train-step takes BATCHxSIZE, the size a multiple of 4 of at least 16 (got '${opts.trainStep}')`);
      const trainStep = { batch: Number(step[1]), size: Number(step[2]) };
      const maxMemory = opts.maxMemory === undefined ? undefined : parseStylizeSettings({ maxMemory: opts.maxMemory }, 1, () => '--max-memory').maxMemory;
      if (opts.plot && !sections.includes('layers')) throw new PasticheError('--plot draws the layers: add layers to --sections');
      const plot = opts.plot ? { file: opts.plot, format: plotFormat(opts.plot) } : undefined;
      if (plot) checkOutputFile(plot.file); // before minutes of timing
      const bar = progressBar(1, 'bench {bar} | {what}', opts.quiet);
      const report = await runBench({
        sections, styleSizes, backends: opts.backend, weightsFile: opts.weights, repeat: opts.repeat, warmup: opts.warmup, peers: opts.peers,
        printSizes, printIterations: opts.printIterations, maxMemory, fastSizes, trainStep, bf16: opts.precision === 'bf16',
        onProgress: (p) => p.kind === 'stage' && bar.update(0, { what: p.stage }),
      }).finally(() => bar.stop());
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatBench(report)}\n`);
      if (plot) {
        const panels = rooflinePanels(report);
        if (panels.length === 0) throw new PasticheError('no roofline to draw: the machine limits need the native addon');
        await writeFileAtomic(plot.file, await rooflinePicture(panels, report.machine, plot.format));
        if (!opts.json) process.stdout.write(`roofline: ${plot.file}\n`);
      }
    });
}
