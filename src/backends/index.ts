/** The backends Pastiche knows, by name. */
import { PasticheError } from '../errors.js';
import type { Backend, BackendName } from './backend.js';
import { loopsBackend } from './loops/loops-backend.js';
import { tsBackend } from './ts/ts-backend.js';

export type { Backend, BackendName } from './backend.js';

const BACKENDS: Record<BackendName, Backend> = { loops: loopsBackend, ts: tsBackend };

export const BACKEND_NAMES = Object.keys(BACKENDS) as BackendName[];

/** The backend used when none is named: the fastest one available. */
export const DEFAULT_BACKEND: BackendName = 'ts';

export function getBackend(name: string = DEFAULT_BACKEND): Backend {
  const b = (BACKENDS as Record<string, Backend | undefined>)[name];
  if (!b) throw new PasticheError(`unknown backend '${name}' (choose one of: ${BACKEND_NAMES.join(', ')})`);
  return b;
}
