/** The backends Pastiche knows, by name. */
import { PasticheError } from '../errors.js';
import type { Backend, BackendName } from './backend.js';
import { loopsBackend } from './loops/loops-backend.js';
import { nativeAddon, nativeUnavailable } from './native/native-addon.js';
import { createNativeBackend, type NativeBackend } from './native/native-backend.js';
import { tsBackend } from './ts/ts-backend.js';

export type { Backend, BackendName } from './backend.js';

/** The native backend, when its addon loaded. */
export const nativeBackend: NativeBackend | undefined = nativeAddon ? createNativeBackend(nativeAddon) : undefined;

/** Why the native backend is not available (undefined when it is). */
export { nativeUnavailable };

const BACKENDS: Record<BackendName, Backend | undefined> = { loops: loopsBackend, ts: tsBackend, native: nativeBackend };

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

export function getBackend(name: string = DEFAULT_BACKEND): Backend {
  if (!(BACKEND_NAMES as string[]).includes(name)) {
    throw new PasticheError(`unknown backend '${name}' (choose one of: ${BACKEND_NAMES.join(', ')})`);
  }
  const b = BACKENDS[name as BackendName];
  if (!b) throw new PasticheError(`the ${name} backend is not available here: ${nativeUnavailable}`);
  return b;
}

/** Threads used by the native backend's pool (it has one per core by default). */
export function setThreads(n: number): void {
  nativeAddon?.threads(n);
}
