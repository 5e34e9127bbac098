/**
 * The worker thread of the embedded queue: it loads the weights once and runs one job at a time
 * through the same app/ use cases as the CLI, posting progress and previews. CPU-bound work runs
 * here so that the server's event loop keeps answering requests (a 512 px style iteration holds
 * the native backend for hundreds of milliseconds).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { classifyImage } from '../app/classify.js';
import { runStylize, paramShapes } from '../app/stylize.js';
import { getBackend } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import { encodeRgb, tensorToRgb } from '../image/tensor-image.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { Vgg19 } from '../model/vgg19.js';
import { loadMatConvNetVgg19 } from '../weights/load-vgg19.js';
import { resolveWeightsFile } from '../weights/weights-source.js';
import type { FromWorker, ToWorker, Work } from './jobs.js';

const port = parentPort!;
const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const message = (e: unknown) => (e instanceof PasticheError ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`);

let weights: Vgg19Weights | undefined;
try {
  const file = resolveWeightsFile((workerData as { weights?: string }).weights);
  weights = await loadMatConvNetVgg19(file);
  post({ type: 'ready', weightsFile: file, shapes: paramShapes(weights) });
} catch (e) {
  post({ type: 'ready', error: message(e) });
}

const backend = getBackend();
let current: { id: string; controller: AbortController } | undefined;
let classifier: Vgg19 | undefined;

async function run(id: string, work: Work): Promise<void> {
  if (!weights) throw new PasticheError('no weights are loaded');
  const controller = new AbortController();
  current = { id, controller };
  try {
    if (work.kind === 'classify') {
      classifier ??= new Vgg19(weights, backend);
      const r = await classifyImage(classifier, work.image, { top: work.top });
      post({ type: 'done', id, result: { kind: 'classify', top: r.top } });
      return;
    }
    const t0 = performance.now();
    const result = await runStylize({
      ...work.settings,
      content: work.content,
      styles: work.styles,
      output: work.output,
      weights,
      backend,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.kind !== 'iteration') return;
        const seconds = (performance.now() - t0) / 1000;
        post({ type: 'progress', id, progress: { iteration: p.iteration, of: p.of, content: p.content, style: p.style, tv: p.tv, total: p.total, seconds, etaSeconds: (seconds / p.iteration) * (p.of - p.iteration) } });
        if (p.iteration === 1 || p.iteration % work.previewEvery === 0) {
          void encodeRgb(tensorToRgb(p.image, weights!.meanPixel), 'png').then((png) => {
            const bytes = new Uint8Array(png);
            post({ type: 'preview', id, png: bytes }, [bytes.buffer as ArrayBuffer]);
          });
        }
      },
    });
    post({ type: 'done', id, result: { kind: 'stylize', width: result.rgb.width, height: result.rgb.height, bestLoss: result.bestLoss, iterations: result.iterations, interrupted: result.interrupted } });
  } finally {
    current = undefined;
  }
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'cancel') {
    if (current?.id === m.id) current.controller.abort();
    return;
  }
  run(m.id, m.work).catch((e: unknown) => post({ type: 'failed', id: m.id, error: message(e) }));
});
