/** `pastiche check`: the course's grading on a reduced case, and numpy-identical test data. */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHECK_OPS, checkCaseData, runCheck } from '../src/app/check.js';
import { NumpyRandomState } from '../src/util/random.js';

test('NumpyRandomState reproduces np.random.seed(1234); np.random.rand()', () => {
  // Values printed by numpy 2.4: np.random.seed(1234); np.random.rand(5)
  const expected = [0.1915194503788923, 0.6221087710398319, 0.4377277390071145, 0.7853585837137692, 0.7799758081188035];
  const rng = new NumpyRandomState(1234);
  for (const e of expected) assert.equal(rng.random(), e);
});

test('the course case data has the course shapes', () => {
  const d = checkCaseData();
  assert.deepEqual([...d.x.shape], [1, 256, 24, 40]);
  assert.deepEqual([...d.w.shape], [256, 3, 3, 256]);
  assert.deepEqual([...d.b.shape], [256]);
  assert.deepEqual([...d.dy.shape], [1, 256, 24, 40]);
  assert.equal(d.x.data[0], Math.fround(0.1915194503788923));
});

test('check grades ts against loops on every op (reduced case) and all pass', async () => {
  const steps: string[] = [];
  const rows = await runCheck({ backends: ['ts'], repeat: 1, size: { c: 8, cout: 6, h: 6, w: 10 }, onStep: (s) => steps.push(s) });
  assert.deepEqual(rows.map((r) => r.op), [...CHECK_OPS]);
  for (const r of rows) {
    assert.equal(r.backend, 'ts');
    assert.ok(r.pass, `${r.op}: mse ${r.mse} rel ${r.maxRelErr}`);
    assert.ok(r.maxRelErr < 1e-5);
    assert.ok(r.ms > 0 && r.loopsMs > 0 && Math.abs(r.speedup - r.loopsMs / r.ms) < 1e-9);
  }
  assert.equal(steps.length, 8);
});
