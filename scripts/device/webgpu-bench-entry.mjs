// The webgpu side of the GPU comparison: VGG19 forward at 224 and a style iteration at 512 on
// random weights, median of N runs after a warm-up, results read back each run. Bundled by
// prepare.sh into one file so that only it, Node and the webgpu package travel to the GPU machine.
import { forwardRunner, styleIterationRunner, timeInterleaved } from '../../dist/src/app/bench.js';
import { closeBackends, openWebGpu } from '../../dist/src/backends/index.js';
import { randomVgg19Weights } from '../../dist/src/model/vgg19-params.js';

const repeat = Number(process.argv[2] ?? 10);
const warmup = Number(process.argv[3] ?? 3);
const styleSize = Number(process.argv[4] ?? 512);
const weights = randomVgg19Weights(1);
const out = {};
for (const precision of ['fp32', 'fp16']) {
  const gpu = await openWebGpu(precision);
  out.adapter = gpu.description;
  const [fwd] = await timeInterleaved([forwardRunner(weights, gpu)], repeat, warmup);
  const [style] = await timeInterleaved([styleIterationRunner(weights, gpu, styleSize)], repeat, warmup);
  out[precision] = { vgg19_forward_224: fwd, [`style_iteration_${styleSize}`]: style, allocatedMiB: gpu.pool.allocatedBytes / 2 ** 20 };
}
console.log(JSON.stringify(out));
await closeBackends();
