// Bundles the browser pages (src/web/*-page.ts and the engine they import) into dist/web/.
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

mkdirSync('dist/web', { recursive: true });
await build({
  entryPoints: ['src/web/classify-page.ts', 'src/web/check-page.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  outdir: 'dist/web',
  logLevel: 'warning',
});
for (const page of ['index.html', 'check.html']) copyFileSync(`web/${page}`, `dist/web/${page}`);
