/**
 * The live page: a trained style network (pytorch/examples' .pth or Pastiche's .safetensors, read
 * here) on WebGPU, on a picture or on the webcam's frames, with the frames per second. The same
 * engine as `pastiche stylize --model`; only the file access and the pixels are the browser's.
 */
import { gpuContext } from '../backends/webgpu/gpu-device.js';
import { createWebGpuBackend, type WebGpuBackend } from '../backends/webgpu/webgpu-backend.js';
import { rgbToTensor, tensorToRgb, type RgbImage } from '../image/rgb.js';
import { TransformerNet } from '../model/transformer/transformer-net.js';
import { parseTransformerModel } from '../weights/transformer-parse.js';
import { decodeImage } from './browser-image.js';

/** What the page reports, also on `window.pasticheLive` for scripts and tests. */
export interface LiveState {
  readonly adapter: string;
  readonly source: 'picture' | 'webcam';
  /** Frames stylized since the source started. */
  readonly frames: number;
  /** Over the last (up to) 10 frames. */
  readonly fps: number;
  readonly lastMs: number;
  readonly width: number;
  readonly height: number;
  /** The last output's RGB values (a picture's only: a webcam's change every frame). */
  readonly output?: number[];
}

const ZERO_MEAN = [0, 0, 0] as const;
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const say = (text: string) => ($('status').textContent = text);

let backend: WebGpuBackend | undefined;
let adapter = '';
let model: { file: File; net: TransformerNet } | undefined;
let stopWebcam: (() => void) | undefined;

async function network(): Promise<TransformerNet> {
  const file = $<HTMLInputElement>('model').files?.[0];
  if (!file) throw new Error('choose a style model (.pth from pytorch/examples, or .safetensors from pastiche train-style)');
  if (!backend) {
    say('opening the GPU…');
    const ctx = await gpuContext();
    backend = createWebGpuBackend(ctx, 'fp32');
    adapter = ctx.adapterName + (ctx.isSoftware ? ' (a CPU implementation of WebGPU)' : '');
  }
  if (model?.file !== file) {
    say(`reading ${file.name}…`);
    model = { file, net: new TransformerNet(parseTransformerModel(new Uint8Array(await file.arrayBuffer()), file.name), backend) };
  }
  return model.net;
}

/** width x height scaled so that the longest side is at most `longest`, both multiples of 4 (the network's grid). */
function fit(width: number, height: number, longest: number): { width: number; height: number } {
  const s = Math.min(1, longest / Math.max(width, height));
  return { width: Math.max(12, Math.round((width * s) / 4) * 4), height: Math.max(12, Math.round((height * s) / 4) * 4) };
}

async function stylizeRgb(net: TransformerNet, rgb: RgbImage): Promise<RgbImage> {
  const y = await net.forward(rgbToTensor(rgb, ZERO_MEAN)).toHost();
  const out = tensorToRgb(y, ZERO_MEAN);
  y.dispose();
  return out;
}

function draw(img: RgbImage): void {
  const canvas = $<HTMLCanvasElement>('output');
  [canvas.width, canvas.height] = [img.width, img.height];
  const rgba = new Uint8ClampedArray(img.width * img.height * 4);
  for (let i = 0, j = 0; j < img.data.length; i += 4, j += 3) [rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]] = [img.data[j]!, img.data[j + 1]!, img.data[j + 2]!, 255];
  canvas.getContext('2d')!.putImageData(new ImageData(rgba, img.width, img.height), 0, 0);
}

/** The longest side chosen, or Infinity for the picture as it is. */
function chosenSize(): number {
  const v = $<HTMLSelectElement>('size').value;
  return v === 'original' ? Infinity : Number(v);
}

async function stylizePicture(): Promise<LiveState> {
  stopWebcam?.();
  const file = $<HTMLInputElement>('picture').files?.[0];
  if (!file) throw new Error('choose a picture');
  const net = await network();
  let rgb = await decodeImage(file);
  const size = fit(rgb.width, rgb.height, chosenSize());
  if (size.width !== rgb.width || size.height !== rgb.height) rgb = await scaled(rgb, size.width, size.height);
  say('stylizing (the first pass compiles the kernels)…');
  const t0 = performance.now();
  const out = await stylizeRgb(net, rgb);
  const ms = performance.now() - t0;
  draw(out);
  say(`${out.width}x${out.height} in ${ms.toFixed(0)} ms on ${adapter}`);
  return { adapter, source: 'picture', frames: 1, fps: 1000 / ms, lastMs: ms, width: out.width, height: out.height, output: Array.from(out.data) };
}

/** An RGB image resized by the canvas (the browser's own smoothing). */
async function scaled(rgb: RgbImage, width: number, height: number): Promise<RgbImage> {
  const src = new OffscreenCanvas(rgb.width, rgb.height);
  const rgba = new Uint8ClampedArray(rgb.width * rgb.height * 4);
  for (let i = 0, j = 0; j < rgb.data.length; i += 4, j += 3) [rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]] = [rgb.data[j]!, rgb.data[j + 1]!, rgb.data[j + 2]!, 255];
  src.getContext('2d')!.putImageData(new ImageData(rgba, rgb.width, rgb.height), 0, 0);
  return frameRgb(src, width, height);
}

/** A drawable (a video frame, a canvas) as RGB at width x height. */
function frameRgb(source: CanvasImageSource, width: number, height: number): RgbImage {
  const canvas = new OffscreenCanvas(width, height);
  const g = canvas.getContext('2d', { willReadFrequently: true })!;
  g.drawImage(source, 0, 0, width, height);
  const rgba = g.getImageData(0, 0, width, height).data;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) [data[j], data[j + 1], data[j + 2]] = [rgba[i]!, rgba[i + 1]!, rgba[i + 2]!];
  return { width, height, data };
}

/** The webcam, frame after frame, until stopped (another source, the Stop button, an error). */
async function runWebcam(onFrame: (s: LiveState) => void): Promise<void> {
  stopWebcam?.();
  const net = await network();
  if (!navigator.mediaDevices?.getUserMedia) throw new Error('this browser gives no camera access here (getUserMedia needs https or localhost)');
  say('asking for the camera…');
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  const video = $<HTMLVideoElement>('video');
  video.srcObject = stream;
  await video.play();
  let running = true;
  stopWebcam = () => {
    running = false;
    for (const t of stream.getTracks()) t.stop();
    stopWebcam = undefined;
  };
  const times: number[] = [];
  let frames = 0;
  while (running) {
    const size = fit(video.videoWidth || 320, video.videoHeight || 240, chosenSize());
    const t0 = performance.now();
    const out = await stylizeRgb(net, frameRgb(video, size.width, size.height));
    if (!running) break;
    draw(out);
    const now = performance.now();
    times.push(now);
    if (times.length > 10) times.shift();
    frames++;
    const fps = times.length > 1 ? ((times.length - 1) * 1000) / (now - times[0]!) : 1000 / (now - t0);
    say(`webcam ${size.width}x${size.height}: ${fps.toFixed(1)} frames/s (${(now - t0).toFixed(0)} ms a frame) on ${adapter}`);
    onFrame({ adapter, source: 'webcam', frames, fps, lastMs: now - t0, width: out.width, height: out.height });
    await new Promise((r) => setTimeout(r, 0));
  }
}

declare global {
  interface Window {
    pasticheLive?: LiveState;
    pasticheError?: string;
  }
}

function fail(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  stopWebcam?.();
  say(`error: ${msg}`);
  window.pasticheError = msg;
}

$('stylize').addEventListener('click', () => {
  window.pasticheError = undefined;
  stylizePicture().then((s) => (window.pasticheLive = s), fail);
});
$('webcam').addEventListener('click', () => {
  window.pasticheError = undefined;
  runWebcam((s) => (window.pasticheLive = s)).catch(fail);
});
$('stop').addEventListener('click', () => {
  stopWebcam?.();
  say('stopped');
});
say(navigator.gpu ? 'ready: choose a style model, then a picture or the webcam' : 'this browser has no WebGPU (navigator.gpu is missing)');
