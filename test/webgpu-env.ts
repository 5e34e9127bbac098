/**
 * The webgpu tests' device. On machines without a GPU (CI, these 2-core boxes) Dawn runs on
 * SwiftShader, the Vulkan CPU driver that Debian's chromium ships: .ci/run installs it, and this
 * points Vulkan at it unless the environment already chose a driver. No adapter is a failure, not
 * a skip.
 */
import { existsSync } from 'node:fs';
import { after } from 'node:test';
import { closeBackends, openWebGpu } from '../src/backends/index.js';
import { SWIFTSHADER_ICD } from '../src/backends/webgpu/gpu-device.js';
import type { WebGpuBackend } from '../src/backends/webgpu/webgpu-backend.js';
import { tempDir } from './temp.js';

export function useSwiftShaderUnlessSet(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (!env['VK_ICD_FILENAMES'] && existsSync(SWIFTSHADER_ICD)) env['VK_ICD_FILENAMES'] = SWIFTSHADER_ICD;
  // SwiftShader's window-system probe complains on stderr without one (CI runs without a session).
  env['XDG_RUNTIME_DIR'] ??= tempDir('pastiche-xdg-');
  return env;
}

/** The process's webgpu backend (one device per test file), closed after the file's tests. */
export async function testGpu(precision: 'fp32' | 'fp16' = 'fp32'): Promise<WebGpuBackend> {
  useSwiftShaderUnlessSet();
  after(() => closeBackends());
  return openWebGpu(precision);
}
