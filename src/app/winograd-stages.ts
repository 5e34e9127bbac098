/**
 * Where native's Winograd convolutions spend their time, stage by stage: the input transform (with
 * its padded copies), the GEMMs over the transformed tiles, the output transform. The GEMMs are
 * held against the FMA peak, the transforms against the memory bandwidth (the marks: the
 * GEMM stage at 70% of the peak, the transforms at 60% of the bandwidth). The addon times each
 * stage of every tile block (winograd_stages in native/src/winograd.cc); this runs VGG19's 3x3
 * layers one at a time on random inputs of their shapes. A `fused` layer ran the three stages one
 * tile row at a time on each thread (V and M in cache): its stage times are thread time over the
 * threads, and its bytes are counted as the others' are, though V and M no longer reach memory.
 */
import type { NativeBackend } from '../backends/native/native-backend.js';
import { vgg19LayerCosts } from '../model/layer-costs.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { NCHW16C } from '../tensor/channel-blocked.js';
import { Tensor } from '../tensor/tensor.js';
import { fillUniform, uniformRng } from '../util/random.js';
import { roofBandwidth, type MachineLimits } from './machine.js';

/** One layer's stages as timed: milliseconds per call, the GEMMs' GFLOP and each transform's MB. */
export interface StageTiming {
  readonly layer: string;
  /** F(4x4,3x3) or F(6x6,3x3). */
  readonly algorithm: string;
  readonly inputMs: number;
  readonly gemmMs: number;
  readonly outputMs: number;
  readonly gflop: number;
  readonly inputMB: number;
  readonly outputMB: number;
}

export interface StageRow {
  readonly layer: string;
  readonly algorithm: string;
  /** Milliseconds per call; GB/s or GFLOP/s; the fraction of the bandwidth or of the peak. */
  readonly input: { readonly ms: number; readonly gbs: number; readonly fraction: number };
  readonly gemm: { readonly ms: number; readonly gflops: number; readonly fraction: number };
  readonly output: { readonly ms: number; readonly gbs: number; readonly fraction: number };
}

export interface WinogradStageProfile {
  readonly contender: string;
  readonly size: number;
  readonly peak: number;
  readonly bandwidth: number;
  readonly rows: readonly StageRow[];
}

/**
 * Times each Winograd layer's stages on `backend` (VGG19's 3x3 layers at `size`, random inputs),
 * in the layouts a classification pass hands them: nChw16c in after a channel-blocked layer, and
 * out (Conv2dForwardParams.ownLayout).
 */
export function timeWinogradStages(weights: Vgg19Weights, size: number, backend: NativeBackend, repeat: number, warmup: number): StageTiming[] {
  const out: StageTiming[] = [];
  let blockedIn = false; // whether the layer before wrote nChw16c (conv1_1's direct kernel does, too)
  for (const c of vgg19LayerCosts(weights, size)) {
    const p = weights.layers.get(c.name);
    if (p?.kind !== 'conv') continue;
    const shape = [1, ...c.input];
    const params = { pad: p.pad, stride: p.stride, ownLayout: true };
    const work = backend.conv2dWork(shape, p.w.shape, params);
    // Uniform random values: read as NCHW or as nChw16c, they are as random.
    const x = new Tensor(shape, fillUniform(new Float32Array(shape.reduce((a, b) => a * b, 1)), uniformRng(3), 0, 1), blockedIn ? NCHW16C : undefined);
    const first = backend.conv2d(x, p.w, p.b, params, true);
    blockedIn = first.layout === NCHW16C;
    first.recycle();
    if (!work.algorithm.startsWith('winograd')) continue;
    for (let i = 0; i < warmup; i++) backend.conv2d(x, p.w, p.b, params, true).recycle();
    backend.addon.winogradStages(true);
    const runs = Math.max(1, repeat);
    for (let i = 0; i < runs; i++) backend.conv2d(x, p.w, p.b, params, true).recycle();
    const [inputMs, gemmMs, outputMs, gflop, inputMB, outputMB, fusedTiles] = [...backend.addon.winogradStages(true)].map((v) => v / runs) as [number, number, number, number, number, number, number];
    // As the addon ran it: the three stages in one pass per tile row (nChw16c in and out, small weights).
    const algorithm = fusedTiles > 0 ? `${work.algorithm} fused` : work.algorithm;
    out.push({ layer: c.name, algorithm, inputMs, gemmMs, outputMs, gflop, inputMB, outputMB });
  }
  return out;
}

/** The timed stages against the machine: the GEMMs against `peak`, the transforms against the bandwidth roof. */
export function winogradStages(contender: string, size: number, timings: readonly StageTiming[], peak: number, limits: MachineLimits): WinogradStageProfile {
  const bandwidth = roofBandwidth(limits);
  const rate = (amount: number, ms: number) => amount / (ms / 1e3);
  const gbs = (mb: number, ms: number) => rate(mb, ms) / 1e3;
  const rows = timings.map((t) => ({
    layer: t.layer,
    algorithm: t.algorithm,
    input: { ms: t.inputMs, gbs: gbs(t.inputMB, t.inputMs), fraction: gbs(t.inputMB, t.inputMs) / bandwidth },
    gemm: { ms: t.gemmMs, gflops: rate(t.gflop, t.gemmMs), fraction: rate(t.gflop, t.gemmMs) / peak },
    output: { ms: t.outputMs, gbs: gbs(t.outputMB, t.outputMs), fraction: gbs(t.outputMB, t.outputMs) / bandwidth },
  }));
  return { contender, size, peak, bandwidth, rows };
}
