/** The command line as a person uses it: output, --json, --dump, and one-line errors on bad input. */
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readNpy } from '../src/tensor/npy.js';
import { CLI, TINY, assertClose, runCli, type CliResult } from './helpers.js';
import { tempDir } from './temp.js';

const dir = tempDir('pastiche-cli-');
const emptyCache = tempDir('pastiche-cache-');
const WEIGHTS = `${TINY}vgg19-tiny-old.mat`;
const IMAGE = `${TINY}chelsea.png`;

/** The CLI with an empty weights cache and no PASTICHE_WEIGHTS unless `env` sets them. */
async function pastiche(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const base = { ...process.env, XDG_CACHE_HOME: emptyCache, ...env };
  delete (base as Record<string, string | undefined>)['PASTICHE_WEIGHTS'];
  Object.assign(base, env);
  return runCli(args, { env: base });
}

/** A failure: non-zero exit, exactly one line on stderr naming `what`, no stack trace. */
function assertOneLineError(r: CliResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, 'exit code');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at |internal error/);
}

test('the built CLI is executable, as npx pastiche and the bin link need', () => {
  assert.ok(statSync(CLI).mode & 0o111, `${CLI} is not executable`);
});

test('classify prints the course line and the top classes', async () => {
  const r = await pastiche(['classify', IMAGE, '--weights', WEIGHTS, '--top', '3']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Classification result: id = 185, prob = 0\.3752\d\d/);
  assert.match(r.stdout, /1\s+185\s+0\.3752\d\d\s+Norfolk terrier/);
  assert.match(r.stdout, /3\s+984\s+0\.0794\d\d\s+rapeseed/);
  assert.doesNotMatch(r.stdout, /978/);
  assert.match(r.stderr, /matconvnet, old;/);
});

test('classify --json prints one object per image; PASTICHE_WEIGHTS is honoured', async () => {
  const r = await pastiche(['classify', IMAGE, IMAGE, '--json', '-n', '2', '--backend', 'loops'], { PASTICHE_WEIGHTS: `${TINY}vgg19-tiny-new.mat` });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { image: string; top: { index: number; label: string; prob: number }[] });
  assert.equal(lines.length, 2);
  assert.equal(lines[0]!.image, IMAGE);
  assert.deepEqual(lines[0]!.top.map((t) => t.index), [185, 949]);
  assert.equal(lines[0]!.top[1]!.label, 'strawberry');
  assert.ok(Math.abs(lines[0]!.top[0]!.prob - 0.3752333) < 1e-5);
});

test('classify --dump writes activations as .npy equal to the references', async () => {
  const pool5 = join(dir, 'pool5.npy');
  const input = join(dir, 'input.npy');
  const prob = join(dir, 'prob.npy');
  const r = await pastiche(['classify', IMAGE, '-w', WEIGHTS, '--dump', `pool5=${pool5}`, '--dump', `input=${input}`, '--dump', `softmax=${prob}`]);
  assert.equal(r.code, 0, r.stderr);
  assertClose(await readNpy(pool5), await readNpy(`${TINY}ref-old/pool5.npy`), 1e-4, 'pool5');
  assertClose(await readNpy(input), await readNpy(`${TINY}ref-old/input.npy`), 1e-7, 'input');
  assertClose((await readNpy(prob)).reshape([1, 1000]), await readNpy(`${TINY}ref-old/prob.npy`), 1e-4, 'prob');
});

test('bad input gives one-line errors, a non-zero exit and no output file', async () => {
  const out = join(dir, 'never.npy');
  const dump = ['--dump', `pool5=${out}`];
  const notMat = join(dir, 'notes.mat');
  writeFileSync(notMat, 'hello, this is not a MAT-file at all'.repeat(10));
  const truncated = join(dir, 'truncated.mat');
  writeFileSync(truncated, readFileSync(WEIGHTS).subarray(0, 2_000_000));
  const badImage = join(dir, 'broken.jpg');
  writeFileSync(badImage, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
  const emptyImage = join(dir, 'empty.png');
  writeFileSync(emptyImage, '');
  const cases: [string[], RegExp][] = [
    [['classify', IMAGE, '-w', join(dir, 'missing.mat'), ...dump], /missing\.mat: no such file/],
    [['classify', IMAGE, '-w', notMat, ...dump], /notes\.mat: not a MATLAB level-5 \.mat file/],
    [['classify', IMAGE, '-w', truncated, ...dump], /truncated\.mat: truncated/],
    [['classify', IMAGE, '-w', IMAGE, ...dump], /chelsea\.png: not a VGG19 weights file Pastiche reads \(MatConvNet \.mat, torchvision \.pth, Keras \.h5, Caffe \.caffemodel, \.safetensors\)$/],
    [['classify', join(dir, 'nope.jpg'), '-w', WEIGHTS, ...dump], /nope\.jpg: no such file/],
    [['classify', badImage, '-w', WEIGHTS, ...dump], /broken\.jpg: cannot decode image/],
    [['classify', emptyImage, '-w', WEIGHTS, ...dump], /empty\.png: is empty/],
    [['classify', WEIGHTS, '-w', WEIGHTS, ...dump], /vgg19-tiny-old\.mat: cannot decode image/],
    [['classify', IMAGE, '-w', WEIGHTS, '--dump', `conv9_9=${out}`], /unknown layer 'conv9_9'/],
    [['classify', IMAGE, '-w', WEIGHTS, '--dump', `pool5=${join(dir, 'no-such-folder', 'x.npy')}`], /x\.npy: the folder .*no-such-folder does not exist/],
    [['classify', IMAGE, IMAGE, '-w', WEIGHTS, ...dump], /--dump works with one image/],
    [['classify', IMAGE, '-w', WEIGHTS, '--backend', 'gpu'], /invalid.*Allowed choices are loops, ts/],
    [['classify', IMAGE, '-w', WEIGHTS, '--top', '0'], /--top must be a positive whole number/],
    [['classify', IMAGE, ...dump], /no VGG19 weights found: run 'pastiche weights fetch'/],
  ];
  for (const [args, pattern] of cases) {
    assertOneLineError(await pastiche(args), pattern);
    assert.ok(!existsSync(out), `${args.join(' ')} left ${out}`);
  }
  assert.ok(!existsSync(join(dir, 'no-such-folder')));
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');
});

test('--help describes every command', async () => {
  const r = await pastiche(['--help']);
  for (const cmd of ['classify', 'weights', 'check']) assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`));
  const c = await pastiche(['classify', '--help']);
  for (const opt of ['--weights', '--top', '--json', '--backend', '--dump']) assert.match(c.stdout, new RegExp(opt));
});

test('commands load the image codec and the bench peer only when they use them', async () => {
  // A preload that lists, as the process exits, the CommonJS modules of sharp (its libvips binding)
  // and of the ONNX peer that were loaded.
  const preload = join(dir, 'loaded-modules.cjs');
  writeFileSync(preload, `process.on('exit', () => process.stderr.write('loaded: ' + JSON.stringify(Object.keys(require.cache)
    .filter((k) => /node_modules[\\\\/](sharp|@img|onnx-proto)[\\\\/]/.test(k))) + '\\n'));\n`);
  const loaded = async (args: string[]) => {
    const r = await pastiche(args, { NODE_OPTIONS: `--require ${preload}` });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(/loaded: (.*)/.exec(r.stderr)![1]!) as string[];
  };
  for (const args of [['--help'], ['bench', '--help'], ['weights', 'info', WEIGHTS]]) assert.deepEqual(await loaded(args), [], args.join(' '));
  // The same probe sees sharp where a command decodes an image.
  assert.ok((await loaded(['classify', IMAGE, '--weights', WEIGHTS])).some((k) => /sharp/.test(k)));
});

test('without a loadable sharp, image commands fail in one line and the others still run', async () => {
  // A module hook that refuses 'sharp' as a platform without its binary would.
  const hooks = join(dir, 'no-sharp-hooks.mjs');
  const register = join(dir, 'no-sharp.mjs');
  writeFileSync(hooks, `export async function resolve(specifier, context, next) {
  if (specifier === 'sharp') throw new Error('Could not load the "sharp" module using the test runtime\\nPossible solutions: ...');
  return next(specifier, context);
}\n`);
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(new URL(`file://${hooks}`).href)});\n`);
  const env = { NODE_OPTIONS: `--import ${register}` };
  const out = join(dir, 'no-sharp.png');
  assertOneLineError(await pastiche(['classify', IMAGE, '--weights', WEIGHTS], env), /^pastiche: images cannot be read or written: Could not load the "sharp" module using the test runtime; reinstall/);
  assertOneLineError(await pastiche(['stylize', IMAGE, IMAGE, '-o', out, '-i', '1', '-s', '32', '--weights', WEIGHTS], env), /images cannot be read or written/);
  assert.ok(!existsSync(out));
  const info = await pastiche(['weights', 'info', WEIGHTS], env);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /MatConvNet/);
});
