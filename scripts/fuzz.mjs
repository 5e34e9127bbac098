// The long fuzz run: `npm run build && node scripts/fuzz.mjs --minutes 10 [--seed N]`. The same
// fuzzer as the test suite's (test/fuzz.ts), for as long as asked; prints the inputs tried and the
// outcomes by class, and exits 1 if anything was not a result or a one-line PasticheError.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' }, seed: { type: 'string' } } });
const minutes = Number(values.minutes);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
if (!(minutes > 0) || !Number.isInteger(seed)) {
  console.error('usage: node scripts/fuzz.mjs --minutes N [--seed N]');
  process.exit(2);
}
const built = new URL('../dist/test/fuzz.js', import.meta.url);
if (!existsSync(built)) {
  console.error("fuzz: run 'npm run build' first (the fuzzer is compiled with the tests)");
  process.exit(2);
}
const { fuzz } = await import(built.href);
const fixtures = fileURLToPath(new URL('../test/fixtures/', import.meta.url));
const report = await fuzz({ seed, budgetMs: minutes * 60_000 }, fixtures);
console.log(`seed ${seed}: ${report.tried} inputs in ${report.seconds.toFixed(0)} s; peak array buffers ${report.peakArrayBuffersMB.toFixed(0)} MiB, peak RSS ${report.peakRssMB.toFixed(0)} MiB`);
for (const [kind, counts] of Object.entries(report.outcomes)) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  console.log(`\n${kind}: ${total} inputs, ${Object.keys(counts).length} outcome classes`);
  for (const [what, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(6)}  ${what}`);
}
console.log(`\nfindings: ${report.findings.length}`);
for (const f of report.findings) console.log(`  ${f}`);
process.exit(report.findings.length > 0 ? 1 : 0);
