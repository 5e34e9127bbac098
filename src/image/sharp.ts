/**
 * sharp (libvips), loaded when an image is first decoded or encoded: importing it takes ~0.17 s of
 * a command's start (`node --input-type=module -e "await import('sharp')"` 0.24-0.27 s against
 * 0.08 s for `node -e 0`), which `--help`, `weights`, `check` and `bench` need not pay.
 */
type Sharp = (typeof import('sharp'))['default'];

let loading: Promise<Sharp> | undefined;

export function loadSharp(): Promise<Sharp> {
  return (loading ??= import('sharp').then((m) => m.default));
}
