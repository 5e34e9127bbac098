/**
 * One training step of the real-time style network, timed (`bench --sections fast`): ours on each
 * backend, and PyTorch's on the same machine when Debian's python3-torch is there
 * (scripts/train-step-peer.py, kept running and asked for one step per timed run, so that its runs
 * interleave with ours like every other peer's).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../backends/backend.js';
import { initialTransformerWeights } from '../model/transformer/transformer-net.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { Tensor } from '../tensor/tensor.js';
import { fillUniform, uniformRng } from '../util/random.js';
import { runnerName, type Runner } from './bench.js';
import { TRAIN_PRESETS, parseTrainSettings, vggBlockWidths } from './train-request.js';
import { StyleTrainer } from './train-style.js';

/** A step as the course preset takes it (content relu4_2, style relu1_1..relu5_1, TV), on random pictures. */
export function trainStepRunner(vgg: Vgg19Weights, backend: Backend, batch: number, size: number): Runner {
  const settings = parseTrainSettings({ preset: 'course', size: String(size), batch: String(batch), iterations: '1' }, batch, undefined, vggBlockWidths(vgg));
  const rng = uniformRng(3);
  const style = { width: size, height: size, data: Uint8Array.from({ length: size * size * 3 }, () => Math.floor(256 * rng())) };
  const trainer = new StyleTrainer({ vgg, backend, net: initialTransformerWeights(TRAIN_PRESETS.course.width, 1), style, objective: settings, lr: settings.lr });
  const x = new Tensor([batch, 3, size, size], fillUniform(new Float32Array(batch * 3 * size * size), rng, 0, 255));
  return { name: runnerName(backend), run: () => trainer.step(x) };
}

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../../../scripts/train-step-peer.py', import.meta.url));

/**
 * PyTorch's step (same layers and losses; its own random weights: timing only), or why there is
 * none. `close()` ends the Python process.
 */
export async function torchTrainStepPeer(threads: number, batch: number, size: number): Promise<{ runner: Runner; close(): void } | { missing: string }> {
  if (!existsSync(PYTHON) || !existsSync(SCRIPT)) return { missing: `no ${existsSync(PYTHON) ? SCRIPT : PYTHON}` };
  const child = spawn(PYTHON, [SCRIPT, String(threads), String(batch), String(size)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const lines: string[] = [];
  let waiting: ((line: string | undefined) => void) | undefined;
  let exited = false;
  let buffer = '';
  child.stdout.on('data', (b: Buffer) => {
    buffer += b.toString();
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      lines.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
    if (waiting && lines.length) waiting(lines.shift());
  });
  child.on('exit', () => {
    exited = true;
    waiting?.(undefined);
  });
  child.on('error', () => undefined);
  /** The next line it writes; undefined once it has exited. */
  const next = () =>
    new Promise<string | undefined>((resolve) => {
      if (lines.length) return resolve(lines.shift());
      if (exited) return resolve(undefined);
      waiting = (l) => {
        waiting = undefined;
        resolve(l);
      };
    });
  if ((await next()) !== 'ready') {
    child.kill();
    const why = /No module named '?torch/.test(stderr) ? 'python3-torch is not installed' : (stderr.trim().split('\n').pop() ?? 'it did not start');
    return { missing: `PyTorch: ${why}` };
  }
  return {
    runner: {
      name: 'pytorch',
      run: async () => {
        child.stdin.write('step\n');
        if ((await next()) !== 'done') throw new Error(`the PyTorch peer stopped: ${stderr.trim().split('\n').pop() ?? ''}`);
      },
    },
    close: () => child.stdin.end(),
  };
}
