/**
 * The worker thread of the embedded queue: it loads the weights once and runs one job at a time
 * (run-work.ts, the same app/ use cases as the CLI), posting progress and previews. CPU-bound work
 * runs here so that the server's event loop keeps answering requests (a 512 px style iteration
 * holds the native backend for hundreds of milliseconds).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { paramShapes } from '../app/stylize.js';
import { getBackend } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { loadWeightsFile } from '../app/load-model.js';
import { resolveWeightsFile } from '../weights/weights-source.js';
import type { FromWorker, ToWorker } from './jobs.js';
import { runWork } from './run-work.js';

const port = parentPort!;
const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const message = (e: unknown) => (e instanceof PasticheError ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`);

let weights: Vgg19Weights | undefined;
try {
  const file = resolveWeightsFile((workerData as { weights?: string }).weights);
  weights = await loadWeightsFile(file);
  post({ type: 'ready', weightsFile: file, shapes: paramShapes(weights) });
} catch (e) {
  post({ type: 'ready', error: message(e) });
}

const backend = getBackend();
let current: { id: string; controller: AbortController } | undefined;

port.on('message', (m: ToWorker) => {
  if (m.type === 'cancel') {
    if (current?.id === m.id) current.controller.abort();
    return;
  }
  const { id, work } = m;
  const controller = new AbortController();
  current = { id, controller };
  (async () => {
    if (!weights) throw new PasticheError('no weights are loaded');
    const result = await runWork(work, weights, backend, {
      signal: controller.signal,
      onProgress: (progress) => post({ type: 'progress', id, progress }),
      onPreview: (png) => post({ type: 'preview', id, png }, [png.buffer as ArrayBuffer]),
    });
    post({ type: 'done', id, result });
  })()
    .catch((e: unknown) => post({ type: 'failed', id, error: message(e) }))
    .finally(() => (current = undefined));
});
