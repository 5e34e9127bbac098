/**
 * Studio's "Run in this browser": the same engine as `pastiche stylize` (app/stylize.ts, the VGG19
 * model, the webgpu backend) runs the optimisation on this machine's GPU through WebGPU; the server
 * is not asked for anything but, if the user chose none, the weights file. The options are parsed by
 * the same parseStylizeSettings as the CLI's flags and the API's JSON.
 */
import { createWebGpuBackend, type WebGpuBackend } from '../backends/webgpu/webgpu-backend.js';
import { gpuContext } from '../backends/webgpu/gpu-device.js';
import type { IterationProgress } from '../app/progress.js';
import { stylizeImages, type StylizeResult } from '../app/stylize.js';
import { parseStylizeSettings, type StylizeFields } from '../app/stylize-request.js';
import { tensorToRgb, type RgbImage } from '../image/rgb.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { decodeImage } from './browser-image.js';
import { fetchWeights, vgg19FromBlob } from './browser-weights.js';

export interface BrowserRun {
  readonly content: File;
  readonly styles: readonly File[];
  /** The request's fields, as the API takes them (preset, size, iterations, styleBlend, ...). */
  readonly fields: StylizeFields;
  /** A .mat file the user picked; absent: the server's (/api/weights). */
  readonly weightsFile?: File;
  /** The server's weights URL (with the page's token). */
  readonly weightsUrl: string;
  readonly signal: AbortSignal;
  /** What is happening before the first iteration: downloading, reading, compiling. */
  readonly onStatus: (text: string) => void;
  /** After every step; `pixels()` gives the image at this step, during the call only. */
  readonly onIteration: (p: IterationProgress, pixels: () => RgbImage) => void;
}

/** The weights stay parsed, and the backend open (its uploaded weights and buffer pool), between runs. */
let cached: { key: string; weights: Vgg19Weights } | undefined;
let backend: WebGpuBackend | undefined;
let adapter = '';

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

async function weightsFor(run: BrowserRun): Promise<Vgg19Weights> {
  const f = run.weightsFile;
  const key = f ? `${f.name}:${f.size}:${f.lastModified}` : run.weightsUrl;
  if (cached?.key === key) return cached.weights;
  let blob: Blob;
  let name: string;
  if (f) {
    [blob, name] = [f, f.name];
  } else {
    let shown = 0;
    ({ blob, name } = await fetchWeights(run.weightsUrl, (got, of) => {
      // A few updates a second, not one per network chunk.
      if (performance.now() - shown < 200) return;
      shown = performance.now();
      run.onStatus(`downloading the weights from the server: ${mib(got)}${of ? ` of ${mib(of)}` : ''} MiB`);
    }));
  }
  run.onStatus(`reading ${name} (${mib(blob.size)} MiB)…`);
  cached = { key, weights: await vgg19FromBlob(blob, name) };
  return cached.weights;
}

/** Runs one stylization in this page; the result has the best image's pixels and the GPU's name. */
export async function stylizeInBrowser(run: BrowserRun): Promise<StylizeResult & { adapter: string }> {
  const settings = parseStylizeSettings(run.fields, run.styles.length);
  if (settings.init.kind === 'file') throw new Error("init: 'content', 'noise' or 'blend' in the browser");
  run.onStatus('opening the GPU…');
  const ctx = await gpuContext();
  adapter = ctx.adapterName + (ctx.isSoftware ? ' (a CPU implementation of WebGPU)' : '');
  backend ??= createWebGpuBackend(ctx, 'fp32');
  const weights = await weightsFor(run);
  const [content, ...styles] = await Promise.all([run.content, ...run.styles].map((f) => decodeImage(f)));
  run.onStatus(`starting on ${adapter} (the first iteration compiles the kernels)…`);
  // The GPU's memory is not known to a page: the backend refuses a buffer beyond the device's limits.
  const result = await stylizeImages({
    ...settings,
    content: content!,
    styles,
    weights,
    backend,
    signal: run.signal,
    onProgress: (p) => {
      if (p.kind === 'iteration') run.onIteration(p, () => tensorToRgb(p.image, weights.meanPixel));
    },
  });
  return { ...result, adapter };
}
