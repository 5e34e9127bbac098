// npm's install step: build the native backend with node-gyp. A failed build never fails the
// install: Pastiche then runs on the `ts` backend and says so once.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as path from 'node:path';

if (process.env.PASTICHE_SKIP_NATIVE) {
  console.log('pastiche: PASTICHE_SKIP_NATIVE is set, not building the native backend');
  process.exit(0);
}
const require = createRequire(import.meta.url);
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  // npm ships node-gyp beside itself
  gyp = path.join(path.dirname(process.env.npm_execpath ?? ''), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
}
const r = spawnSync(process.execPath, [gyp, 'rebuild'], { stdio: 'inherit' });
if (r.status !== 0) {
  console.warn('pastiche: the native backend could not be built; Pastiche will use the ts backend (slower).');
}
process.exit(0);
