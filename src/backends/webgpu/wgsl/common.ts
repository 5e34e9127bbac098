/** What every generated WGSL kernel shares: the parameter block, buffer declarations, indexing. */

/**
 * fp32: everything in f32. fp16: the GEMM operands are rounded to f16 before they are multiplied
 * (accumulation stays f32), like a reduced-precision accelerator; `fp16-native` keeps the tiles in
 * WGSL's f16 type (the adapter's `shader-f16`), plain `fp16` rounds in f32 registers with
 * pack2x16float, which gives the same numbers on any adapter.
 */
export type Precision = 'fp32' | 'fp16' | 'fp16-native';

export interface Binding {
  readonly name: string;
  readonly write: boolean;
  /** Element type (default f32). */
  readonly type?: 'f32' | 'i32';
}

/** Rounds to the nearest f16 (saturating at f16's largest finite value). */
export const Q_FN = `
fn q(v: f32) -> f32 {
  return unpack2x16float(pack2x16float(vec2<f32>(clamp(v, -65504.0, 65504.0), 0.0))).x;
}`;

/** A uniform block of u32 fields, bound at 0; f32 values travel as their bits (bitcast<f32>). */
export function paramsStruct(names: readonly string[]): string {
  return `struct Params {\n${names.map((n) => `  ${n}: u32,`).join('\n')}\n}\n@group(0) @binding(0) var<uniform> P: Params;`;
}

export function bindingDecls(bindings: readonly Binding[]): string {
  return bindings
    .map((b, i) => `@group(0) @binding(${i + 1}) var<storage, ${b.write ? 'read_write' : 'read'}> ${b.name}: array<${b.type ?? 'f32'}>;`)
    .join('\n');
}

/**
 * Elementwise kernels: one thread per element, the 1-D index spread over a 2-D dispatch; `helpers`
 * are WGSL functions the body calls.
 */
export function elementwiseShader(params: readonly string[], bindings: readonly Binding[], body: string, helpers = ''): string {
  return `${paramsStruct(['total', ...params])}
${bindingDecls(bindings)}
${helpers}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.total) { return; }
${body}
}
`;
}
