// npm's install step: build the native backend with node-gyp. A failed build never fails the
// install: Pastiche then runs on the `ts` backend and says so once.
// node-gyp and make print ~45 lines of progress that nobody needs on success: they are kept and
// shown only when the build fails (PASTICHE_VERBOSE_BUILD=1 shows them always).
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
const verbose = Boolean(process.env.PASTICHE_VERBOSE_BUILD);
const t0 = Date.now();
const r = spawnSync(process.execPath, [gyp, 'rebuild'], { stdio: verbose ? 'inherit' : 'pipe', encoding: 'utf8', maxBuffer: 64 << 20 });
if (r.status === 0) {
  console.log(`pastiche: built the native backend (C++, node-gyp) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
} else {
  if (!verbose) {
    const lines = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').filter((l) => !/^gyp (info|ERR!) /.test(l));
    console.warn(lines.slice(-30).join('\n'));
  }
  console.warn(`pastiche: the native backend could not be built (${r.error?.message ?? `node-gyp exited with ${r.status}`}); Pastiche will use the ts backend (slower).`);
}
process.exit(0);
