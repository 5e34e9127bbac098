/**
 * Finding a WebGPU device: the browser's `navigator.gpu`, or in Node Google's Dawn through the npm
 * package `webgpu`. Every way this can fail ends in one PasticheError line that says what is
 * missing, never a hang or a crash.
 */
import { PasticheError } from '../../errors.js';

export interface GpuContext {
  /**
   * The GPU object itself: in Node, Dawn's instance lives only while this is referenced (and the
   * process does not exit while it is: see closeGpu).
   */
  gpu?: GPU;
  readonly device: GPUDevice;
  /** "vendor architecture (description)", for reports. */
  readonly adapterName: string;
  /** A CPU implementation (SwiftShader, lavapipe): correct but not fast. */
  readonly isSoftware: boolean;
  /** The adapter can run WGSL's f16 type (`shader-f16`). */
  readonly hasF16: boolean;
  /** Set once the device is lost or reports an error (out of memory): every later call fails with this. */
  lostReason?: string;
}

/** The SwiftShader Vulkan driver that Debian's chromium package ships (WebGPU without a GPU). */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

const NO_ADAPTER_HINT =
  `on a machine without a GPU, install Debian's chromium and libvulkan1 and set ` +
  `VK_ICD_FILENAMES=${SWIFTSHADER_ICD} (SwiftShader: correct, slow)`;

async function nodeGpu(): Promise<GPU> {
  let mod: { create(flags: string[]): GPU; globals: Record<string, unknown> };
  try {
    // A variable specifier keeps bundlers from pulling the Node-only package into the web bundle.
    const name = 'webgpu';
    mod = (await import(name)) as typeof mod;
  } catch (e) {
    throw new PasticheError(`the webgpu backend needs the npm package 'webgpu' in Node (${(e as Error).message.split('\n')[0]})`);
  }
  // Dawn's classes (GPUBufferUsage, ...) are globals in a browser; make them so here.
  for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  return mod.create([]);
}

/**
 * Runs Dawn's start-up (in Node) with what native libraries print set aside: without a GPU the
 * Vulkan loader and Dawn write several lines of their own to stderr even when all goes well. Node
 * installs one that uses the native addon (backends/index.ts); in a browser there is nothing to hide.
 */
type Quieter = <T>(work: () => Promise<T>) => Promise<T>;
let quietly: Quieter = (work) => work();

export function setNativeStartupQuieter(q: Quieter): void {
  quietly = q;
}

let pending: Promise<GpuContext> | undefined;

/** The one device of this process (made on first use; adapters are single-use, devices costly). */
export function gpuContext(): Promise<GpuContext> {
  pending ??= openDevice().catch((e: unknown) => {
    pending = undefined;
    throw e;
  });
  return pending;
}

/**
 * Destroys the device and lets Dawn go, so that a Node process can exit; later calls to
 * gpuContext() open a new one.
 */
export async function closeGpu(): Promise<void> {
  const p = pending;
  pending = undefined;
  if (!p) return;
  const ctx = await p.catch(() => undefined);
  if (!ctx) return;
  ctx.lostReason ??= 'the WebGPU device was closed';
  ctx.device.destroy();
  ctx.gpu = undefined;
}

async function openDevice(): Promise<GpuContext> {
  const browserGpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!browserGpu && typeof (globalThis as { window?: unknown }).window !== 'undefined') {
    throw new PasticheError('this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, or enable WebGPU in Firefox or Safari');
  }
  const start = async () => {
    const gpu = browserGpu ?? (await nodeGpu());
    const adapter = await withTimeout(gpu.requestAdapter({ powerPreference: 'high-performance' }), 'requestAdapter');
    if (!adapter) throw new PasticheError(`no WebGPU adapter found: ${browserGpu ? 'this browser has WebGPU but no usable GPU' : NO_ADAPTER_HINT}`);
    const hasF16 = adapter.features.has('shader-f16');
    // The default limits (128 MiB per binding) are below VGG19's fc6 weights (411 MB): ask for all.
    const device = await withTimeout(
      adapter.requestDevice({
        requiredFeatures: hasF16 ? ['shader-f16'] : [],
        requiredLimits: {
          maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
          maxBufferSize: adapter.limits.maxBufferSize,
          maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
          maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
        },
      }),
      'requestDevice',
    );
    return { gpu, adapter, device, hasF16 };
  };
  const { gpu, adapter, device, hasF16 } = browserGpu ? await start() : await quietly(start);
  const info = adapter.info;
  const parts = [info.vendor, info.architecture].filter(Boolean).join(' ');
  const adapterName = (parts || 'unknown adapter') + (info.description ? ` (${info.description})` : '');
  const isSoftware = /swiftshader|llvmpipe|lavapipe|cpu/i.test(`${parts} ${info.description} ${info.device}`);
  const ctx: GpuContext = { gpu, device, adapterName, isSoftware, hasF16 };
  void device.lost.then((l) => {
    ctx.lostReason = `the WebGPU device was lost (${l.reason}${l.message ? `: ${l.message}` : ''})`;
  });
  device.addEventListener('uncapturederror', (ev) => {
    ctx.lostReason ??= `WebGPU error: ${(ev as GPUUncapturedErrorEvent).error.message.split('\n')[0]}`;
  });
  return ctx;
}

/** Dawn answers quickly when it has a driver; a broken driver must not hang the CLI. */
async function withTimeout<T>(p: Promise<T>, what: string, ms = 20000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PasticheError(`WebGPU ${what} did not answer in ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
