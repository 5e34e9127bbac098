// After tsc: makes the CLI executable (npm links `bin` before `prepare` builds it, so it cannot
// set the mode itself, and `npx pastiche` in a fresh clone would be refused), and bundles the
// browser pages (src/web/*-page.ts and the engine they import) into dist/web/.
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

chmodSync('dist/src/cli/main.js', 0o755);
mkdirSync('dist/web', { recursive: true });
// The strict .pth reader inflates deflated zip entries with node:zlib; torch.save stores its
// entries uncompressed, so the browser pages get a stand-in that says so if one ever is.
const noZlib = {
  name: 'no-node-zlib',
  setup(b) {
    b.onResolve({ filter: /^node:zlib$/ }, () => ({ path: 'zlib', namespace: 'pastiche-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'pastiche-stub' }, () => ({
      contents: "export function inflateRawSync() { throw new Error('a compressed entry in a .pth file cannot be read in the browser (torch.save writes them uncompressed)'); }",
    }));
  },
};
await build({
  entryPoints: ['src/web/classify-page.ts', 'src/web/check-page.ts', 'src/web/studio-page.ts', 'src/web/live-page.ts'],
  plugins: [noZlib],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  outdir: 'dist/web',
  logLevel: 'warning',
});
for (const page of ['index.html', 'check.html', 'studio.html', 'live.html']) copyFileSync(`web/${page}`, `dist/web/${page}`);
