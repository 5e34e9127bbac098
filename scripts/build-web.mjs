// Bundles the browser page (src/web/classify-page.ts and the engine it imports) into dist/web/.
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

mkdirSync('dist/web', { recursive: true });
await build({
  entryPoints: ['src/web/classify-page.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  outfile: 'dist/web/classify-page.js',
  logLevel: 'warning',
});
copyFileSync('web/index.html', 'dist/web/index.html');
