/**
 * Compiles generated WGSL once per variant and queues dispatches. Pipelines use explicit layouts
 * (binding 0: the parameter block, then the kernel's buffers in order), so a variant may declare a
 * buffer it does not touch; parameter blocks are cached by content, since a network asks for the
 * same few hundred shapes again and again.
 */
import type { Binding } from './wgsl/common.js';
import type { GpuContext } from './gpu-device.js';

export interface Dispatch {
  /** Identifies the generated code: same key, same WGSL. */
  readonly key: string;
  readonly code: () => string;
  readonly bindings: readonly Binding[];
  /** The u32 parameter values, in the order the shader's Params struct declares them. */
  readonly params: readonly number[];
  /** One buffer per binding, in the same order. */
  readonly buffers: readonly GPUBuffer[];
  readonly groups: readonly [number, number, number];
}

const COMPUTE_STAGE = 0x4; // GPUShaderStage.COMPUTE
const UNIFORM_USAGE = 0x40 | 0x08; // GPUBufferUsage.UNIFORM | COPY_DST
const MAX_GROUPS = 65535;

/** Workgroup counts for `threads` threads in groups of `size`, folded into 2-D above the 65535 limit. */
export function linearGroups(threads: number, size = 256): [number, number, number] {
  const groups = Math.max(1, Math.ceil(threads / size));
  const x = Math.min(groups, MAX_GROUPS);
  return [x, Math.ceil(groups / x), 1];
}

export class KernelRunner {
  private readonly pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly debug = typeof process !== 'undefined' && process.env?.PASTICHE_WEBGPU_DEBUG === '1';

  constructor(private readonly ctx: GpuContext) {}

  private pipeline(d: Dispatch): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
    let p = this.pipelines.get(d.key);
    if (p) return p;
    const device = this.ctx.device;
    if (this.debug) device.pushErrorScope('validation');
    const layout = device.createBindGroupLayout({
      entries: [
        { binding: 0, visibility: COMPUTE_STAGE, buffer: { type: 'uniform' } },
        ...d.bindings.map((b, i) => ({
          binding: i + 1,
          visibility: COMPUTE_STAGE,
          buffer: { type: b.write ? ('storage' as const) : ('read-only-storage' as const) },
        })),
      ],
    });
    const code = d.code();
    const module = device.createShaderModule({ code, label: d.key });
    const pipeline = device.createComputePipeline({
      label: d.key,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    if (this.debug) {
      void device.popErrorScope().then((e) => {
        if (e) process.stderr.write(`webgpu: kernel ${d.key}: ${e.message}\n${code}\n`);
      });
    }
    p = { pipeline, layout };
    this.pipelines.set(d.key, p);
    return p;
  }

  private uniform(params: readonly number[]): GPUBuffer {
    const key = params.join(',');
    let b = this.uniforms.get(key);
    if (b) return b;
    if (this.uniforms.size > 4096) {
      for (const old of this.uniforms.values()) old.destroy();
      this.uniforms.clear();
    }
    const data = new Uint32Array(Math.max(4, Math.ceil(params.length / 4) * 4));
    data.set(params.map((v) => v >>> 0));
    b = this.ctx.device.createBuffer({ size: data.byteLength, usage: UNIFORM_USAGE });
    this.ctx.device.queue.writeBuffer(b, 0, data);
    this.uniforms.set(key, b);
    return b;
  }

  /** Queues the dispatches in order, in one command buffer. */
  run(...dispatches: Dispatch[]): void {
    const device = this.ctx.device;
    const encoder = device.createCommandEncoder();
    for (const d of dispatches) {
      const { pipeline, layout } = this.pipeline(d);
      const bindGroup = device.createBindGroup({
        layout,
        entries: [
          { binding: 0, resource: { buffer: this.uniform(d.params) } },
          ...d.buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
        ],
      });
      // One pass per dispatch: passes are ordered, so each sees the previous one's writes.
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...d.groups);
      pass.end();
    }
    device.queue.submit([encoder.finish()]);
  }
}

/** f32 parameters travel in the u32 block as their bits. */
export function f32Bits(v: number): number {
  const f = new Float32Array([v]);
  return new Uint32Array(f.buffer)[0]!;
}
