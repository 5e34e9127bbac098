/**
 * The browser page: VGG19 on the GPU through WebGPU, with a weights file and an image the user
 * picks. The same engine as the CLI (model, layers, the webgpu backend, the MAT reader); only the
 * file access (Blob, DecompressionStream) and the image decoding (canvas) are the browser's.
 */
import { createWebGpuBackend, type WebGpuBackend } from '../backends/webgpu/webgpu-backend.js';
import { gpuContext } from '../backends/webgpu/gpu-device.js';
import { topK, type Prediction } from '../app/top-k.js';
import { resizeBilinearPil } from '../image/pil-resize.js';
import { rgbToTensor } from '../image/rgb.js';
import { Vgg19 } from '../model/vgg19.js';
import { VGG19_INPUT_SIZE } from '../model/vgg19-table.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { decodeImage } from './browser-image.js';
import { vgg19FromBlob } from './browser-weights.js';

/** What the page shows, also left on `window.pasticheResult` for scripts and tests. */
export interface PageResult {
  readonly adapter: string;
  readonly precision: string;
  readonly top: Prediction[];
  readonly prob: number[];
  /** The first forward pass (it also compiles the kernels) and a second one. */
  readonly firstMs: number;
  readonly forwardMs: number;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function say(text: string): void {
  $('status').textContent = text;
}

let cached: { file: File; weights: Vgg19Weights } | undefined;
const backends = new Map<'fp32' | 'fp16', WebGpuBackend>();
/** The model per backend, so that a second click reuses its buffers (it releases its last pass's). */
const models = new Map<WebGpuBackend, Vgg19>();

async function classify(): Promise<PageResult> {
  const weightsFile = $<HTMLInputElement>('weights').files?.[0];
  const imageFile = $<HTMLInputElement>('image').files?.[0];
  if (!weightsFile) throw new Error('choose a weights file (imagenet-vgg-verydeep-19.mat)');
  if (!imageFile) throw new Error('choose an image');
  const precision = $<HTMLSelectElement>('precision').value === 'fp16' ? 'fp16' : 'fp32';
  if (cached?.file !== weightsFile) {
    say(`reading ${weightsFile.name} (${(weightsFile.size / 2 ** 20).toFixed(0)} MiB)…`);
    cached = { file: weightsFile, weights: await vgg19FromBlob(weightsFile, weightsFile.name) };
  }
  const weights = cached.weights;
  say('opening the GPU…');
  const ctx = await gpuContext();
  // One backend per precision for the page's life: it holds the uploaded weights and the buffer pool.
  let backend = backends.get(precision);
  if (!backend) backends.set(precision, (backend = createWebGpuBackend(ctx, precision)));
  const x = rgbToTensor(resizeBilinearPil(await decodeImage(imageFile), VGG19_INPUT_SIZE, VGG19_INPUT_SIZE), weights.meanPixel);
  let model = models.get(backend);
  if (!model || model.weights !== weights) models.set(backend, (model = new Vgg19(weights, backend)));
  const net = model;
  const pass = async () => {
    const t0 = performance.now();
    const { output } = net.forward(x);
    await output.toHost();
    output.dispose();
    return { output, ms: performance.now() - t0 };
  };
  say('classifying (the first pass compiles the kernels)…');
  const first = await pass();
  const second = await pass();
  const prob = second.output.data;
  return {
    adapter: ctx.adapterName + (ctx.isSoftware ? ' (a CPU implementation of WebGPU)' : ''),
    precision: backend.precision,
    top: topK(prob, weights.classes, 5),
    prob: Array.from(prob),
    firstMs: first.ms,
    forwardMs: second.ms,
  };
}

function show(r: PageResult): void {
  const rows = r.top.map((p, i) => `<tr><td>${i + 1}</td><td>${p.index}</td><td>${p.prob.toFixed(6)}</td><td>${escapeHtml(p.label)}</td></tr>`);
  $('result').innerHTML = `<table><thead><tr><th>#</th><th>id</th><th>prob</th><th>class</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
  say(`forward pass ${r.forwardMs.toFixed(1)} ms (first ${r.firstMs.toFixed(0)} ms, with kernel compilation) on ${r.adapter}, ${r.precision}`);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

declare global {
  interface Window {
    pasticheResult?: PageResult;
    pasticheError?: string;
  }
}

$('run').addEventListener('click', () => {
  window.pasticheResult = undefined;
  window.pasticheError = undefined;
  $<HTMLButtonElement>('run').disabled = true;
  classify()
    .then((r) => {
      show(r);
      window.pasticheResult = r;
    })
    .catch((e: unknown) => {
      const msg = e instanceof Error ? e.message : String(e);
      say(`error: ${msg}`);
      window.pasticheError = msg;
    })
    .finally(() => {
      $<HTMLButtonElement>('run').disabled = false;
    });
});
say(navigator.gpu ? 'ready: choose the weights and an image' : 'this browser has no WebGPU (navigator.gpu is missing)');
