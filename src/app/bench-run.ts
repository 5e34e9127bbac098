/**
 * The bench use case: which sections to time on which backends, with or without onnxruntime as a
 * peer, all in one run so that the ratios compare like with like. The CLI formats the report.
 */
import * as os from 'node:os';
import { availableBackends, nativeBackend, openBackend, type Backend, type BackendName } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import { randomVgg19Weights, type Vgg19Weights } from '../model/vgg19-params.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadWeightsFile } from './load-model.js';
import { forwardRunner, randomImage, runnerName, styleIterationRunner, stylizeStepRunner, timeInterleaved, vgg19ForwardFlops, type Runner, type Timing } from './bench.js';
import { runCheck, type CheckRow } from './check.js';
import { fcZeroInputs, floorLayers, layerRows, profileLayers, profileStyleIteration, type LayerProfile } from './layer-profile.js';
import { TransformerNet, randomTransformerWeights, transformerForwardFlops } from '../model/transformer/transformer-net.js';
import { Tensor } from '../tensor/tensor.js';
import { fillUniform, uniformRng } from '../util/random.js';
import { activePeak, bestLimits, measureMachine, probeShortfall, type MachineLimits } from './machine.js';
import { passFloor, roofline, type PassFloor, type Roofline, type RooflinePanel } from './roofline.js';
import { timeWinogradStages, winogradStages, type StageTiming, type WinogradStageProfile } from './winograd-stages.js';
import type { NativeBackend } from '../backends/native/native-backend.js';
import type { OnProgress } from './progress.js';
import { torchTrainStepPeer, trainStepRunner } from './train-bench.js';
import { benchPrintSizes, type PrintRow, type PrintSize } from './print-bench.js';
import { DEFAULT_LBFGS_HISTORY } from './memory-plan.js';
import { median } from '../util/stats.js';

export const BENCH_SECTIONS = ['machine', 'case', 'vgg', 'style', 'layers', 'fast', 'print'] as const;
export type BenchSection = (typeof BENCH_SECTIONS)[number];

export interface BenchOptions {
  readonly sections: readonly BenchSection[];
  /** Backends to time (default: the CPU ones but loops); style iterations: these, else native (or ts). */
  readonly backends?: readonly BackendName[];
  readonly styleSizes: readonly number[];
  /** Time with these weights (and report their loading time); default: random weights of the real size. */
  readonly weightsFile?: string;
  readonly repeat: number;
  readonly warmup: number;
  /** Also run onnxruntime-node on the same network and weights. */
  readonly peers?: boolean;
  /** `fast`: the style network's input sizes (default 256, 512, 1024). */
  readonly fastSizes?: readonly number[];
  /** `fast`: the training step's batch and crop size (default 4 of 256x256). */
  readonly trainStep?: { readonly batch: number; readonly size: number };
  /** `print`: the output sizes, the iterations at each, the memory budget (default: the machine's). */
  readonly printSizes?: readonly PrintSize[];
  readonly printIterations?: number;
  readonly maxMemory?: number;
  /** Also time native with bf16 operands (`--precision bf16`), right after native in fp32. */
  readonly bf16?: boolean;
  readonly onProgress?: OnProgress;
}

/** Parses '--sections case,vgg' and '--style-sizes 256,512' (the only parsing bench needs). */
export function parseBenchLists(sections: string, styleSizes: string): { sections: BenchSection[]; styleSizes: number[] } {
  const s = sections.split(',').map((x) => x.trim());
  for (const x of s) if (!(BENCH_SECTIONS as readonly string[]).includes(x)) throw new PasticheError(`--sections: unknown section '${x}' (${BENCH_SECTIONS.join(', ')})`);
  const sizes = styleSizes.split(',').map((v) => Number(v));
  if (sizes.some((v) => !Number.isInteger(v) || v < 32)) throw new PasticheError('--style-sizes: whole numbers of at least 32');
  return { sections: s as BenchSection[], styleSizes: sizes };
}

export interface BenchReport {
  machine: string;
  /** The machine's measured limits: probed first in every bench and again after the timings, the better of each (--sections machine alone: only them). */
  limits?: MachineLimits;
  /** The two probes, and how far the worse fell short of the better in the peak and bandwidth in use (probeShortfall): a busy VM reads low. */
  probes?: { before: MachineLimits; after: MachineLimits; shortfall: number };
  /** The WebGPU adapter, when webgpu was timed. */
  gpu?: string;
  weights: string;
  loadSeconds?: number;
  repeat: number;
  warmup: number;
  courseCase?: CheckRow[];
  /** floor: the pass's machine floor (passFloor), when the machine's limits were measured; ofFloor: floor / time (CPU fp32 rows). */
  vgg19Forward?: { size: number; gflop: number; rows: (Timing & { gflops: number; ofFloor?: number })[]; floor?: PassFloor };
  /** floor: the iteration's and the forward pass's to relu5_1 (what onnxruntime runs); ofFloor: floor / time. */
  styleIteration?: { size: number; rows: (Timing & { ofFloor?: number })[]; floor?: { iteration: PassFloor; forward: PassFloor } }[];
  /** A whole step of `pastiche stylize` (the style iteration, the losses, an L-BFGS step with `history` pairs); optimizerMs: the median L-BFGS step. */
  stylizeStep?: { size: number; history: number; rows: (Timing & { optimizerMs: number })[] }[];
  /** VGG19's forward pass layer by layer (`--sections layers`). */
  layers?: LayerProfile;
  /** The first backend's layers against this machine's roofline (with `layers`, when the limits were measured). */
  roofline?: Roofline;
  /** A style iteration (forward to relu5_1, backward to the image) layer by layer at the first style size, and its roofline. */
  styleLayers?: LayerProfile;
  styleRoofline?: Roofline;
  /** native's Winograd layers stage by stage (`--sections layers`, with the native backend). */
  winogradStages?: WinogradStageProfile;
  /** Peak resident memory of the bench process, MiB (after the style iterations). */
  peakRssMB?: number;
  /** The real-time style network's forward pass (full width, random weights), per size; with peers, onnxruntime's largest difference to ours. */
  /** gflop: the network's operations counted as direct convolutions; peak: the FMA peak on the threads in use (GFLOP/s). */
  fast?: { size: number; gflop: number; peak?: number; rows: (Timing & { gflops: number; executedGflop?: number })[]; peerDifference?: number }[];
  fastPeakRssMB?: number;
  /** One training step of the style network per backend, and PyTorch's with peers (or why it is missing). */
  fastTraining?: { batch: number; size: number; rows: Timing[]; peerMissing?: string };
  /** Style transfer at print sizes within a memory budget (`--sections print`), each in its own process. */
  print?: { readonly backend: string; readonly rows: PrintRow[] };
}

/** The roofline plot's panels: the VGG19 forward pass and, where profiled, the style iteration (none without the machine limits). */
export function rooflinePanels(r: BenchReport): RooflinePanel[] {
  if (!r.roofline || !r.layers) return [];
  const panels: RooflinePanel[] = [{ roofline: r.roofline, title: `VGG19 forward ${r.layers.size}x${r.layers.size}: ${r.roofline.contender} against this machine's roofline` }];
  if (r.styleRoofline && r.styleLayers) {
    const s = r.styleLayers.size;
    panels.push({ roofline: r.styleRoofline, title: `style iteration ${s}x${s} (forward to relu5_1, gradient back to the image): ${r.styleRoofline.contender}` });
  }
  return panels;
}

/** The CPU, its cores, the threads used and Node's version, for the report's first line. */
export function machineDescription(threads: number): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${cpu}, ${os.cpus().length} cores, ${threads} thread(s), Node ${process.version}`;
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const sections = new Set(o.sections);
  const stage = (stage: string) => o.onProgress?.({ kind: 'stage', stage });
  const backends = o.backends ?? availableBackends().filter((b) => b !== 'loops');
  const styleBackendNames = o.backends ?? [nativeBackend ? 'native' : 'ts'];
  const open = async (names: readonly string[]) => {
    const out: Backend[] = [];
    for (const n of names) {
      out.push(await openBackend(n));
      if (n === 'native' && o.bf16) out.push(await openBackend(n, { precision: 'bf16' }));
    }
    return out;
  };
  // The peer's module (onnx-proto, ~40 ms to import) only where --peers asks for it.
  const onnx = o.peers ? await import('./onnx-peer.js') : undefined;
  const vggBackends = await open(backends);
  const styleBackends = await open(styleBackendNames);
  const gpu = [...vggBackends, ...styleBackends].find((b) => b.name === 'webgpu');
  let weights: Vgg19Weights | undefined;
  let loadSeconds: number | undefined;
  if (o.weightsFile) {
    stage('loading weights');
    const t0 = performance.now();
    // The classifier only where a section runs it: a style-only bench then holds what stylize holds.
    weights = await loadWeightsFile(o.weightsFile, { classifier: sections.has('vgg') || sections.has('layers') });
    loadSeconds = (performance.now() - t0) / 1000;
  } else if (['vgg', 'style', 'layers', 'fast'].some((x) => sections.has(x as BenchSection))) {
    weights = randomVgg19Weights(1);
  }
  const threads = nativeBackend ? nativeBackend.addon.threads() : 1;
  stage('machine: FMA peak and memory bandwidth');
  const before = measureMachine();
  const report: BenchReport = { machine: machineDescription(threads), limits: before, gpu: gpu?.description, weights: weights?.source ?? 'none (no section needs them)', loadSeconds, repeat: o.repeat, warmup: o.warmup };
  // What is held against the machine's limits is worked out after the timings, once the limits have
  // been probed again (bestLimits): the sections below record their times only.
  let stageTimings: { contender: string; timings: StageTiming[] } | undefined;
  const each = (what: string) => (n: string, r: number, of: number) => stage(`${what}: ${n} ${r}/${of}`);
  if (sections.has('case')) {
    report.courseCase = await runCheck({ backends: backends.filter((b) => b !== 'loops'), repeat: o.repeat, onStep: (st) => stage(`course case: ${st}`) });
  }
  if (sections.has('vgg') && weights) {
    const runners = vggBackends.map((b) => forwardRunner(weights, b));
    if (onnx) runners.push(await onnx.onnxRunner(weights, 224, 'prob', threads));
    const flops = vgg19ForwardFlops(weights, 224);
    const rows = await timeInterleaved(runners, o.repeat, o.warmup, each('VGG19 forward'));
    report.vgg19Forward = { size: 224, gflop: flops / 1e9, rows: rows.map((r) => ({ ...r, gflops: flops / (r.medianMs * 1e6) })) };
  }
  if (sections.has('style') && weights) {
    report.styleIteration = [];
    for (const size of o.styleSizes) {
      const runners = styleBackends.map((b) => styleIterationRunner(weights, b, size));
      if (onnx) runners.push(await onnx.onnxRunner(weights, size, 'relu5_1', threads));
      report.styleIteration.push({ size, rows: await timeInterleaved(runners, o.repeat, o.warmup, each(`style iteration ${size}`)) });
    }
    report.peakRssMB = process.resourceUsage().maxRSS / 1024;
    // What a user waits for per step, after the peak above (the network's): a full L-BFGS history
    // holds 2 x history doubles per value of the image, 1.3 GB at 512 px.
    report.stylizeStep = [];
    for (const size of o.styleSizes) {
      stage(`stylize step ${size}: filling the L-BFGS history`);
      const runners = styleBackends.map((b) => stylizeStepRunner(weights, b, size, DEFAULT_LBFGS_HISTORY));
      const rows = await timeInterleaved(runners, o.repeat, o.warmup, each(`stylize step ${size}`));
      report.stylizeStep.push({ size, history: DEFAULT_LBFGS_HISTORY, rows: rows.map((r, i) => ({ ...r, optimizerMs: median(runners[i]!.optimizerMs.slice(o.warmup)) })) });
    }
  }
  if (sections.has('layers') && weights) {
    // A device backend's host time per layer is only its queueing: CPU backends only.
    const cpu = vggBackends.filter((b) => b.name !== 'webgpu');
    if (cpu.length === 0) throw new PasticheError('--sections layers times CPU backends (webgpu queues its work; per-layer host times mean nothing there)');
    const profile = await profileLayers(weights, cpu, 224, o.repeat, o.warmup, each('layers'));
    if (onnx) {
      stage('layers: onnxruntime');
      profile.ms['onnxruntime'] = await onnx.onnxLayerTimes(weights, 224, threads, o.repeat, o.warmup, layerRows(weights, 224).rowOf);
    }
    report.layers = profile;
    const native = cpu.find((b): b is NativeBackend => b.name === 'native');
    if (before && native) {
      stage('layers: Winograd stages');
      stageTimings = { contender: runnerName(native), timings: timeWinogradStages(weights, profile.size, native, o.repeat, o.warmup) };
    }
    const size = o.styleSizes[0]!;
    report.styleLayers = await profileStyleIteration(weights, cpu, size, o.repeat, o.warmup, each(`style iteration ${size} layers`));
  }
  if (sections.has('fast')) {
    const net = randomTransformerWeights(32, 1);
    report.fast = [];
    for (const size of o.fastSizes ?? [256, 512, 1024]) {
      const x = new Tensor([1, 3, size, size], fillUniform(new Float32Array(3 * size * size), uniformRng(5), 0, 255));
      const executed = new Map<string, number>();
      const runners: Runner[] = vggBackends.map((b) => {
        const model = new TransformerNet(net, b);
        // Against the CPU's peak: the CPU backends only.
        if (b.name !== 'webgpu') executed.set(runnerName(b), model.forwardWork(size) / 1e9);
        return { name: runnerName(b), run: async () => (await model.forward(x).toHost()).recycle() };
      });
      let peerDifference: number | undefined;
      if (onnx) {
        const peer = await onnx.transformerOnnxSession(net, x, threads);
        // The same network: the largest difference to the first backend's output, relative to its range.
        const [theirs, ours] = [await peer.run(), await new TransformerNet(net, vggBackends[0]!).forward(x).toHost()];
        let [lo, hi, worst] = [Infinity, -Infinity, 0];
        for (let i = 0; i < ours.size; i++) [lo, hi, worst] = [Math.min(lo, ours.data[i]!), Math.max(hi, ours.data[i]!), Math.max(worst, Math.abs(ours.data[i]! - theirs[i]!))];
        peerDifference = worst / (hi - lo);
        runners.push(peer.runner);
      }
      const flops = transformerForwardFlops(net.width, size);
      const rows = await timeInterleaved(runners, o.repeat, o.warmup, each(`style network ${size}`));
      report.fast.push({ size, gflop: flops / 1e9, rows: rows.map((r) => ({ ...r, gflops: flops / (r.medianMs * 1e6), executedGflop: executed.get(r.name) })), peerDifference });
    }
    const { batch, size } = o.trainStep ?? { batch: 4, size: 256 };
    const runners = vggBackends.map((b) => trainStepRunner(weights!, b, batch, size));
    const peer = o.peers ? await torchTrainStepPeer(threads, batch, size) : undefined;
    if (peer && 'runner' in peer) runners.push(peer.runner);
    try {
      report.fastTraining = { batch, size, rows: await timeInterleaved(runners, o.repeat, o.warmup, each(`training step ${batch}x${size}`)), peerMissing: peer && 'missing' in peer ? peer.missing : undefined };
    } finally {
      if (peer && 'close' in peer) peer.close();
    }
    report.fastPeakRssMB = process.resourceUsage().maxRSS / 1024;
  }
  if (sections.has('print')) {
    const backend = styleBackendNames[0]!;
    const rows = await benchPrintSizes({ sizes: o.printSizes ?? DEFAULT_PRINT_SIZES, weightsFile: o.weightsFile, backend, iterations: o.printIterations ?? 2, maxMemory: o.maxMemory, onProgress: o.onProgress });
    report.print = { backend, rows };
  }
  stage('machine: FMA peak and memory bandwidth, again');
  const after = before && measureMachine();
  if (!before || !after) return report;
  const limits = bestLimits(before, after);
  report.limits = limits;
  report.probes = { before, after, shortfall: probeShortfall(before, after, threads) };
  const peak = activePeak(limits, threads) ?? Math.max(...limits.peaks.map((p) => p.gflops));
  // The machine floor of a pass, from native's products (the limits are measured by native too).
  const floor = (w: Vgg19Weights, size: number, until: string, iteration: boolean, zeroInputs?: ReadonlyMap<string, number>) =>
    nativeBackend ? passFloor(floorLayers(w, size, nativeBackend, until, iteration, zeroInputs), peak, limits) : undefined;
  // The share of the floor's speed a row reaches: the CPU's fp32 rows only (the limits are the CPU's fp32 ones).
  const cpuFp32 = new Set(['onnxruntime', ...[...vggBackends, ...styleBackends].filter((b) => b.name !== 'webgpu' && runnerName(b) === b.name).map((b) => b.name)]);
  const ofFloor = (f: PassFloor | undefined, r: Timing) => (f && cpuFp32.has(r.name) ? f.ms / r.medianMs : undefined);
  if (report.vgg19Forward && weights) {
    // Its fc layers as native runs them on the bench's image: the weight rows of the non-zero inputs.
    const zeros = nativeBackend ? fcZeroInputs(new Vgg19(weights, nativeBackend), weights, 224, randomImage(224)) : undefined;
    const f = floor(weights, 224, 'prob', false, zeros);
    report.vgg19Forward = { ...report.vgg19Forward, rows: report.vgg19Forward.rows.map((r) => ({ ...r, ofFloor: ofFloor(f, r) })), floor: f };
  }
  if (report.styleIteration && weights) {
    report.styleIteration = report.styleIteration.map(({ size, rows }) => {
      const [iteration, forward] = [floor(weights, size, 'relu5_1', true), floor(weights, size, 'relu5_1', false)];
      // onnxruntime runs the forward pass only: its time against that pass's floor.
      const rowsOf = rows.map((r) => ({ ...r, ofFloor: ofFloor(r.name === 'onnxruntime' ? forward : iteration, r) }));
      return { size, rows: rowsOf, floor: iteration && forward && { iteration, forward } };
    });
  }
  const contender = report.layers && runnerName(vggBackends.find((b) => b.name !== 'webgpu')!);
  if (report.layers && contender) report.roofline = roofline(report.layers, contender, peak, limits);
  if (stageTimings) report.winogradStages = winogradStages(stageTimings.contender, report.layers!.size, stageTimings.timings, peak, limits);
  if (report.styleLayers && contender) report.styleRoofline = roofline(report.styleLayers, contender, peak, limits);
  for (const f of report.fast ?? []) f.peak = activePeak(limits, threads);
  return report;
}

export const DEFAULT_PRINT_SIZES: readonly PrintSize[] = [{ width: 1024, height: 1024 }, { width: 2048, height: 2048 }, { width: 4000, height: 3000 }];
