/**
 * Long work that stops cleanly: Ctrl-C (SIGINT) and SIGTERM, which a job runner sends, abort the
 * signal instead of killing the process, so that the use case can still write what it has. A
 * second signal while stopping is left to Node's default (the process ends).
 */
export function abortOnSignals(signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM']): { readonly signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const stop = () => controller.abort();
  for (const s of signals) process.once(s, stop);
  return {
    signal: controller.signal,
    dispose: () => {
      for (const s of signals) process.off(s, stop);
    },
  };
}
