/**
 * What this machine can do at most, measured now: the fp32 FMA peak per instruction set and thread
 * count, and the memory bandwidth (a read stream, STREAM's triad). `pastiche bench` prints it first
 * so that a reader can tell a faster VM from a faster kernel (these VMs differ by 2x between
 * sessions). Measured by the native addon, in C++; unavailable without it.
 */
import * as os from 'node:os';
import { nativeBackend } from '../backends/index.js';
import type { NativeIsa } from '../backends/native/native-addon.js';

export interface MachinePeak {
  readonly isa: NativeIsa;
  readonly threads: number;
  readonly gflops: number;
}

export interface MachineLimits {
  /** fp32 FMA throughput, 12 independent chains per thread (fewer measure latency, not throughput). */
  readonly peaks: readonly MachinePeak[];
  /** Sum of a 256 MiB array on every core, GB/s. */
  readonly readGBs: number;
  /** a = b + s * c over three 128 MiB arrays on every core, GB/s counted as STREAM does (3 arrays). */
  readonly triadGBs: number;
}

/** Measures the limits (about 2 s); undefined without the native addon. */
export function measureMachine(): MachineLimits | undefined {
  const addon = nativeBackend?.addon;
  if (!addon) return undefined;
  const isaBefore = addon.isa();
  const threadsBefore = addon.threads();
  const cores = os.availableParallelism();
  const sets: NativeIsa[] = [...(addon.cpuHasAvx512 ? (['avx512'] as const) : []), ...(addon.cpuHasAvx2 ? (['avx2'] as const) : []), 'portable'];
  const peaks: MachinePeak[] = [];
  try {
    for (const isa of sets) {
      addon.isa(isa);
      for (const threads of [...new Set([1, cores])]) {
        addon.threads(threads);
        peaks.push({ isa, threads, gflops: addon.probeMachine('fma', 5_000_000) });
      }
    }
    addon.isa(isaBefore);
    addon.threads(cores);
    return { peaks, readGBs: addon.probeMachine('read', 64 << 20), triadGBs: addon.probeMachine('triad', 32 << 20) };
  } finally {
    addon.isa(isaBefore);
    addon.threads(threadsBefore);
  }
}

/**
 * Each limit's better reading of two probes. A VM whose host lends its cores to others now and then
 * only ever reads low, for seconds at a time (five `bench --sections machine` in a row on a 2-core
 * EPYC VM: the 2-thread AVX2 peak at 177-184 GFLOP/s four times, 113 once, every FMA probe of that
 * run low together), so bench probes before and after its timings and keeps the better of each.
 */
export function bestLimits(a: MachineLimits, b: MachineLimits): MachineLimits {
  const peaks = a.peaks.map((p) => ({ ...p, gflops: Math.max(p.gflops, b.peaks.find((q) => q.isa === p.isa && q.threads === p.threads)?.gflops ?? 0) }));
  return { peaks, readGBs: Math.max(a.readGBs, b.readGBs), triadGBs: Math.max(a.triadGBs, b.triadGBs) };
}

/**
 * How far the worse of two probes fell short of the better, 0..1, in what the bench holds its times
 * against: the FMA peak on `threads` threads with the active instruction set, and the bandwidth roof.
 * (Between two quiet probes in one process, on a 2-core EPYC VM: up to 9% on either.)
 */
export function probeShortfall(a: MachineLimits, b: MachineLimits, threads: number): number {
  const short = (x: number | undefined, y: number | undefined) => (x && y ? 1 - Math.min(x, y) / Math.max(x, y) : 0);
  return Math.max(short(activePeak(a, threads), activePeak(b, threads)), short(roofBandwidth(a), roofBandwidth(b)));
}

/** The best peak on `threads` threads with the instruction set the backend uses now. */
export function activePeak(m: MachineLimits, threads: number): number | undefined {
  const isa = nativeBackend?.addon.isa();
  return m.peaks.find((p) => p.isa === isa && p.threads === threads)?.gflops;
}

/**
 * The bandwidth roof: the better of the read and triad streams. A roof must be an upper bound, and
 * the fully connected layers are pure reads (held against triad alone they reached 121-138% of it).
 */
export function roofBandwidth(m: MachineLimits): number {
  return Math.max(m.readGBs, m.triadGBs);
}
