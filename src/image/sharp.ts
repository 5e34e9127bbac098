/**
 * sharp (libvips), loaded when an image is first decoded or encoded: importing it takes ~0.17 s of
 * a command's start (`node --input-type=module -e "await import('sharp')"` 0.24-0.27 s against
 * 0.08 s for `node -e 0`), which `--help`, `weights`, `check` and `bench` need not pay.
 */
import { PasticheError } from '../errors.js';

type Sharp = (typeof import('sharp'))['default'];

let loading: Promise<Sharp> | undefined;

export function loadSharp(): Promise<Sharp> {
  // sharp's own message is a page of advice on installing it; one line says what broke and how to fix it.
  return (loading ??= import('sharp').then(
    (m) => m.default,
    (e: unknown) => {
      loading = undefined;
      const first = String((e as Error)?.message ?? e).split('\n')[0]!.replace(/[\s:.]+$/, '');
      throw new PasticheError(`images cannot be read or written: ${first}; reinstall Pastiche's dependencies (npm ci in its folder)`);
    },
  ));
}
