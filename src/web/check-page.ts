/**
 * check.html: the browser's `pastiche check`. Every WGSL kernel, run by this browser on its GPU,
 * against the course's four loops on random shapes; a table of relative errors.
 */
import { loopsBackend } from '../backends/loops/loops-backend.js';
import { gpuContext } from '../backends/webgpu/gpu-device.js';
import { createWebGpuBackend } from '../backends/webgpu/webgpu-backend.js';
import { runKernelSuite, type SuiteRow } from '../app/kernel-suite.js';

declare global {
  interface Window {
    pasticheCheck?: { adapter: string; rows: SuiteRow[] };
    pasticheCheckError?: string;
  }
}

const status = document.getElementById('status')!;
const body = document.getElementById('rows')!;

async function main(): Promise<void> {
  const ctx = await gpuContext();
  const gpu = createWebGpuBackend(ctx);
  status.textContent = `running on ${ctx.adapterName}…`;
  const rows = await runKernelSuite(gpu, loopsBackend, 1e-4, (r) => {
    const tr = document.createElement('tr');
    for (const text of [r.op, r.relErr.toExponential(2), r.pass ? 'pass' : 'FAIL']) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  });
  const failed = rows.filter((r) => !r.pass).length;
  status.textContent = `${rows.length - failed} of ${rows.length} ops equal the four loops (relative error < 1e-4) on ${ctx.adapterName}`;
  window.pasticheCheck = { adapter: ctx.adapterName, rows };
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  status.textContent = `error: ${msg}`;
  window.pasticheCheckError = msg;
});
