/** Progress bars on the terminal (stderr), silent when stderr is not a terminal or when quiet. */
import cliProgress from 'cli-progress';

export interface Progress {
  update(value: number, payload?: Record<string, string | number>): void;
  setTotal(total: number): void;
  stop(): void;
}

const silent: Progress = { update() {}, setTotal() {}, stop() {} };

/**
 * `format` uses cli-progress tokens ({bar} {percentage} {value} {total} {eta_formatted}) and the
 * payload keys passed to update().
 */
export function progressBar(total: number, format: string, quiet = false): Progress {
  if (quiet || !process.stderr.isTTY) return silent;
  const bar = new cliProgress.SingleBar(
    { format, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 50, fps: 10 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return {
    update: (v, payload) => bar.update(v, payload),
    setTotal: (t) => bar.setTotal(t),
    stop: () => bar.stop(),
  };
}

/** Shows `message` on the terminal while `work` runs (loading 576 MB of weights takes seconds). */
export async function withStatus<T>(message: string, quiet: boolean | undefined, work: () => Promise<T>): Promise<T> {
  const show = !quiet && process.stderr.isTTY;
  if (show) process.stderr.write(`${message}...`);
  try {
    return await work();
  } finally {
    if (show) process.stderr.write('\r\x1b[K');
  }
}
