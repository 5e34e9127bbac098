// After tsc: makes the CLI executable (npm links `bin` before `prepare` builds it, so it cannot
// set the mode itself, and `npx pastiche` in a fresh clone would be refused), and bundles the
// browser pages (src/web/*-page.ts and the engine they import) into dist/web/.
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

chmodSync('dist/src/cli/main.js', 0o755);
mkdirSync('dist/web', { recursive: true });
await build({
  entryPoints: ['src/web/classify-page.ts', 'src/web/check-page.ts', 'src/web/studio-page.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  outdir: 'dist/web',
  logLevel: 'warning',
});
for (const page of ['index.html', 'check.html', 'studio.html']) copyFileSync(`web/${page}`, `dist/web/${page}`);
