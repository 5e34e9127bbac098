/** The backends Pastiche knows, by name. */
import * as os from 'node:os';
import { PasticheError } from '../errors.js';
import type { Backend, BackendName } from './backend.js';
import { loopsBackend } from './loops/loops-backend.js';
import { nativeAddon, nativeUnavailable } from './native/native-addon.js';
import { createNativeBackend, type NativeBackend } from './native/native-backend.js';
import { tsBackend } from './ts/ts-backend.js';
import { closeGpu, gpuContext, setNativeStartupQuieter } from './webgpu/gpu-device.js';
import { createWebGpuBackend, type WebGpuBackend } from './webgpu/webgpu-backend.js';

export type { Backend, BackendName } from './backend.js';

// Dawn's and the Vulkan loader's own lines (XDG_RUNTIME_DIR, driver warnings, source paths) are
// kept off the terminal while WebGPU starts; PASTICHE_DEBUG=1 shows them after.
if (nativeAddon) {
  const addon = nativeAddon;
  setNativeStartupQuieter(async (work) => {
    const capturing = addon.captureStderr(true);
    try {
      return await work();
    } finally {
      if (capturing) {
        const text = addon.captureStderr(false);
        if (process.env['PASTICHE_DEBUG'] && text) process.stderr.write(text);
      }
    }
  });
}

/** The native backend, when its addon loaded. */
export const nativeBackend: NativeBackend | undefined = nativeAddon ? createNativeBackend(nativeAddon) : undefined;

/** Why the native backend is not available (undefined when it is). */
export { nativeUnavailable };

const BACKENDS: Record<BackendName, Backend | undefined> = { loops: loopsBackend, ts: tsBackend, native: nativeBackend, webgpu: undefined };

/** Every backend name, available or not (for help texts and option choices). */
export const BACKEND_NAMES = Object.keys(BACKENDS) as BackendName[];

/** The backends that can run here. */
export function availableBackends(): BackendName[] {
  return BACKEND_NAMES.filter((n) => BACKENDS[n] !== undefined);
}

/** The backend used when none is named: native where its addon loaded, else ts. */
export const DEFAULT_BACKEND: BackendName = nativeBackend ? 'native' : 'ts';

let noticeShown = false;

/**
 * Says once, in one line on stderr, that the fast backend is missing; the CLI calls this when it
 * falls back to the default.
 */
export function noticeFallback(): void {
  if (nativeBackend || noticeShown) return;
  noticeShown = true;
  process.stderr.write(`pastiche: native backend unavailable (${nativeUnavailable}); using ts\n`);
}

/**
 * A backend by name, synchronously: the CPU backends, or webgpu once openBackend('webgpu') has
 * set it up (WebGPU devices are created asynchronously).
 */
export function getBackend(name: string = DEFAULT_BACKEND): Backend {
  if (!(BACKEND_NAMES as string[]).includes(name)) {
    throw new PasticheError(`unknown backend '${name}' (choose one of: ${BACKEND_NAMES.join(', ')}, auto)`);
  }
  if (name === 'webgpu') {
    if (!webgpu) throw new PasticheError("the webgpu backend must be opened first: await openBackend('webgpu')");
    return webgpu;
  }
  const b = BACKENDS[name as BackendName];
  if (!b) throw new PasticheError(`the ${name} backend is not available here: ${nativeUnavailable}`);
  return b;
}

/** fp16: webgpu's half-precision storage; bf16: native's bfloat16 GEMM operands (AVX512-BF16). */
export type Precision = 'fp32' | 'fp16' | 'bf16';

let nativeBf16: NativeBackend | undefined;

/** The native backend with bf16 products (made on first use; refused in one line where the CPU cannot). */
export function nativeBf16Backend(): NativeBackend {
  if (!nativeAddon) throw new PasticheError(`--precision bf16 needs the native backend, which is not available here: ${nativeUnavailable}`);
  return (nativeBf16 ??= createNativeBackend(nativeAddon, 'bf16'));
}

let webgpu: WebGpuBackend | undefined;
const webgpuByPrecision = new Map<'fp32' | 'fp16', WebGpuBackend>();

/** The webgpu backend on this process's one device (made on first use). */
export async function openWebGpu(precision: 'fp32' | 'fp16' = 'fp32'): Promise<WebGpuBackend> {
  let be = webgpuByPrecision.get(precision);
  if (!be) {
    be = createWebGpuBackend(await gpuContext(), precision);
    webgpuByPrecision.set(precision, be);
  }
  if (precision === 'fp32') webgpu = be;
  return be;
}

/**
 * Any backend by name, including webgpu and 'auto': a GPU through WebGPU when there is a real one
 * (not a CPU implementation of WebGPU), else the default CPU backend.
 */
export async function openBackend(name: string = DEFAULT_BACKEND, options: { precision?: Precision } = {}): Promise<Backend> {
  if (options.precision === 'fp16' && name !== 'webgpu' && name !== 'auto') {
    throw new PasticheError(`--precision fp16 needs the webgpu backend (got ${name})`);
  }
  if (options.precision === 'bf16') {
    if (name !== 'native' && name !== 'auto') throw new PasticheError(`--precision bf16 needs the native backend (got ${name})`);
    return nativeBf16Backend();
  }
  if (name === 'webgpu') return openWebGpu(options.precision);
  if (name === 'auto') {
    try {
      const gpu = await openWebGpu(options.precision);
      if (!gpu.isSoftware) return gpu;
    } catch {
      // no usable GPU: fall through to the CPU
    }
    if (options.precision === 'fp16') throw new PasticheError('--precision fp16 needs a GPU (none found for --backend auto)');
    noticeFallback();
    return getBackend(DEFAULT_BACKEND);
  }
  return getBackend(name);
}

/** A backend's name for reports: webgpu says which adapter it runs on. */
export function backendLabel(be: Backend): string {
  if (be.name === 'native' && (be as NativeBackend).precision === 'bf16') return 'native bf16';
  if (be.name !== 'webgpu') return be.name;
  const g = be as WebGpuBackend;
  return `webgpu${g.precision === 'fp32' ? '' : ` ${g.precision}`} on ${g.adapterName}${g.isSoftware ? ' (a CPU implementation)' : ''}`;
}

/** Lets the GPU go (Node cannot exit while Dawn holds a device); webgpu can be opened again later. */
export async function closeBackends(): Promise<void> {
  webgpu = undefined;
  webgpuByPrecision.clear();
  await closeGpu();
}

/**
 * Sets the native backend's thread count, bounded by the cores this process may use (more only
 * add start-up time and memory: every thread has a stack and scratch buffers). Returns the count
 * used and, when the request was lowered, why.
 */
export function setThreads(n: number): { threads: number; lowered?: string } {
  const cores = os.availableParallelism();
  const threads = Math.max(1, Math.min(Math.floor(n), cores));
  nativeAddon?.threads(threads);
  return { threads, lowered: threads < n ? `--threads ${n} is more than the ${cores} core(s) here; using ${threads}` : undefined };
}
