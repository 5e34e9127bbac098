/** A bounded, seeded fuzz run in every `npm test` (the long one: scripts/fuzz.mjs --minutes N). */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIXTURES } from './helpers.js';
import { fuzz } from './fuzz.js';

test('mutated .mat, .pth, .caffemodel, .h5, .safetensors, .npy, PNG and JPEG inputs end in a result or a one-line PasticheError, in bounded memory', async () => {
  const report = await fuzz({ seed: 20261130, trials: 600, budgetMs: 40_000, maxArrayBuffersMB: 512 }, FIXTURES);
  assert.deepEqual(report.findings, []);
  assert.ok(report.tried >= 200, `only ${report.tried} inputs in the time budget`);
  // The mutations reach past the first check: several distinct refusals per format, and some survivors.
  for (const kind of ['mat', 'weights', 'npy', 'image'] as const) {
    assert.ok(Object.keys(report.outcomes[kind]).length >= 3, `${kind}: ${JSON.stringify(report.outcomes[kind])}`);
  }
});
