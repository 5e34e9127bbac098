/**
 * The README's commands, run as a newcomer runs them (from the clone, with `./pastiche`): each must
 * succeed and print no warning, no foreign library's noise and no stack trace on stderr.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FIXTURES, TINY } from './helpers.js';
import { useSwiftShaderUnlessSet } from './webgpu-env.js';
import { tempDir } from './temp.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);
/** What a person would call a warning, or noise that is not ours. */
const NOISE = /\bwarn(ing)?\b|deprecat|XDG_RUNTIME_DIR|vulkan|internal error|^\s+at |\.cpp:\d+/im;

/** `./pastiche ...` lines of the README's sh blocks (after `&&`, without comments), with their VAR=value prefixes. */
function readmeCommands(): { line: string; env: Record<string, string>; args: string[] }[] {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const out: { line: string; env: Record<string, string>; args: string[] }[] = [];
  for (const block of readme.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const raw of block[1]!.split('\n')) {
      for (const part of raw.replace(/\s#.*$/, '').split('&&').map((s) => s.trim())) {
        const words = part.split(/\s+/);
        const env: Record<string, string> = {};
        while (words[0] && /^[A-Z_]+=/.test(words[0])) {
          const [k, v] = words.shift()!.split('=') as [string, string];
          env[k] = v;
        }
        if (words[0] === './pastiche') out.push({ line: part, env, args: words.slice(1) });
      }
    }
  }
  return out;
}

test('the README\'s commands run and print no warning (fetch aside: it needs the internet)', async () => {
  const commands = readmeCommands();
  assert.ok(commands.length >= 6, `found ${commands.length} commands`);
  // A folder like a newcomer's: the clone's test fixtures, a cat and a painting.
  const cwd = tempDir('pastiche-readme-');
  symlinkSync(join(REPO, 'test'), join(cwd, 'test'));
  copyFileSync(`${TINY}chelsea.png`, join(cwd, 'cat.jpg'));
  copyFileSync(`${FIXTURES}resize/gradient301x199.png`, join(cwd, 'starry-night.jpg'));
  // The real weights are not downloadable here: the tiny fixture stands in for the fetched file.
  const base: NodeJS.ProcessEnv = { ...process.env, PASTICHE_WEIGHTS: `${TINY}vgg19-tiny-old.mat`, XDG_CACHE_HOME: tempDir('pastiche-readme-cache-') };
  delete base['XDG_RUNTIME_DIR'];
  let ran = 0;
  for (const c of commands) {
    if (c.args[0] === 'weights' && c.args[1] === 'fetch') continue; // covered against local servers in download.test.ts
    if (c.args[0] === 'serve' || c.args[0] === 'web') continue; // servers run until stopped: serve.test.ts, studio.test.ts, web.test.ts
    const args = c.args.map((a) => (a === 'IMAGE' ? 'cat.jpg' : a));
    // What stylize prints does not depend on how long it runs: 3 iterations instead of 100-300.
    if (args[0] === 'stylize') args.push('--iterations', '3');
    const env = { ...base, ...c.env };
    if (c.env['VK_ICD_FILENAMES']) Object.assign(env, useSwiftShaderUnlessSet({ VK_ICD_FILENAMES: c.env['VK_ICD_FILENAMES'] }));
    delete env['XDG_RUNTIME_DIR'];
    let r: { stdout: string; stderr: string };
    try {
      r = await run(process.execPath, [join(REPO, 'pastiche'), ...args], { cwd, env, timeout: 240_000 });
    } catch (e) {
      assert.fail(`${c.line} failed: ${(e as { stderr?: string }).stderr ?? e}`);
    }
    assert.doesNotMatch(r.stderr, NOISE, `${c.line} printed:\n${r.stderr}`);
    ran++;
  }
  assert.ok(ran >= 5);
});

test('npm itself prints no warning in this project (e.g. an unknown key in .npmrc)', async () => {
  const { stdout, stderr } = await run('npm', ['pkg', 'get', 'name'], { cwd: REPO });
  assert.equal(stdout.trim(), '"pastiche"');
  assert.equal(stderr, '');
});
