/** The command line on webgpu: classify and dump on the GPU, --backend auto, and the errors. */
import * as assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { readNpy } from '../src/tensor/npy.js';
import { readMatBlob } from '../src/weights/mat/mat-blob.js';
import { readMatFile } from '../src/weights/mat/mat-file.js';
import { TINY, assertClose, runCli } from './helpers.js';
import { useSwiftShaderUnlessSet } from './webgpu-env.js';
import { tempDir } from './temp.js';

const dir = tempDir('pastiche-webgpu-cli-');
const WEIGHTS = `${TINY}vgg19-tiny-old.mat`;
const IMAGE = `${TINY}chelsea.png`;
const env = useSwiftShaderUnlessSet({ ...process.env });

const pastiche = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => runCli(args, { env: { ...env, ...extraEnv }, timeout: 120_000 });

test('classify --backend webgpu prints the same top-5 as PyTorch and says which adapter ran it; --dump reads back', async () => {
  const out = join(dir, 'prob.npy');
  const { code, stdout, stderr } = await pastiche(['classify', IMAGE, '--weights', WEIGHTS, '--backend', 'webgpu', '--dump', `prob=${out}`]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /id = 185, prob = 0\.3752/);
  assert.match(stderr, /backend: webgpu on .+; forward pass: [\d.]+ ms/);
  assertClose((await readNpy(out)).reshape([1, 1000]), await readNpy(`${TINY}ref-old/prob.npy`), 1e-4, 'dumped prob');
});

test('--backend auto takes the CPU when the only WebGPU adapter is a CPU implementation', async () => {
  const { code, stderr } = await pastiche(['classify', IMAGE, '--weights', WEIGHTS, '--backend', 'auto']);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /backend: (native|ts); forward pass/);
});

test('no WebGPU adapter: one clear line and exit code 1, no stack trace', async () => {
  const { code, stderr } = await pastiche(['classify', IMAGE, '--weights', WEIGHTS, '--backend', 'webgpu'], { VK_ICD_FILENAMES: join(dir, 'no-such-driver.json') });
  assert.equal(code, 1);
  // Only our line: Dawn's and the Vulkan loader's own output is set aside while WebGPU starts.
  assert.match(stderr, /^pastiche: no WebGPU adapter found: .*VK_ICD_FILENAMES[^\n]*\n$/);
});

// Every command opens the device through the same gpuContext(); check --precision fp16 too (not run
// here: its course case takes a minute on SwiftShader).
test('on SwiftShader, without XDG_RUNTIME_DIR, -b webgpu, -b auto and --precision fp16 print only our own lines', async () => {
  const bare = { ...env };
  delete bare['XDG_RUNTIME_DIR'];
  const run = (args: string[]) => runCli(args, { env: bare, timeout: 120_000 });
  const foreign = /XDG_RUNTIME_DIR|Vulkan|Warning|\.cpp|While initializing/;
  for (const args of [['-b', 'webgpu'], ['-b', 'auto'], ['-b', 'webgpu', '--precision', 'fp16']]) {
    const r = await run(['classify', IMAGE, '-w', WEIGHTS, ...args, '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '', `${args.join(' ')} printed:\n${r.stderr}`);
  }
  // PASTICHE_DEBUG shows what was set aside.
  const debug = await runCli(['classify', IMAGE, '-w', WEIGHTS, '-b', 'webgpu', '-q'], { env: { ...bare, PASTICHE_DEBUG: '1' }, timeout: 120_000 });
  assert.equal(debug.code, 0, debug.stderr);
  assert.match(debug.stderr, foreign);
});

test('--precision fp16 needs the webgpu backend', async () => {
  const { code, stderr } = await pastiche(['classify', IMAGE, '--weights', WEIGHTS, '--backend', 'ts', '--precision', 'fp16']);
  assert.equal(code, 1);
  assert.match(stderr, /--precision fp16 needs the webgpu backend \(got ts\)/);
});

test('the browser MAT reader (Blob + DecompressionStream) reads what the file reader reads', async () => {
  const { readFile } = await import('node:fs/promises');
  for (const f of ['vgg19-tiny-old-z.mat', 'vgg19-tiny-new.mat']) {
    const bytes = await readFile(`${TINY}${f}`);
    const a = (await readMatBlob(new Blob([bytes]), f)).variables;
    const b = (await readMatFile(`${TINY}${f}`)).variables;
    assert.deepEqual([...a.keys()], [...b.keys()]);
    assert.deepEqual(a.get('layers'), b.get('layers'), f);
  }
  const truncated = new Blob([(await readFile(`${TINY}vgg19-tiny-old-z.mat`)).subarray(0, 5000)]);
  await assert.rejects(readMatBlob(truncated, 'cut.mat'), /cut.mat: (truncated|corrupt)/);
});
