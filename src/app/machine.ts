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
