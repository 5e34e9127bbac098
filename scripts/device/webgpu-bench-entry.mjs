// The webgpu side of the GPU comparison: VGG19 forward at 224 and a style iteration at 512 on
// random weights, the real-time style network's forward pass at 512 and 1024 and one training step
// (batch 4 of 256x256), median of N runs after a warm-up, results read back each run. Bundled by
// prepare.sh into one file so that only it, Node and the webgpu package travel to the GPU machine.
import { forwardRunner, styleIterationRunner, timeInterleaved } from '../../dist/src/app/bench.js';
import { trainStepRunner } from '../../dist/src/app/train-bench.js';
import { closeBackends, openWebGpu } from '../../dist/src/backends/index.js';
import { TransformerNet, randomTransformerWeights } from '../../dist/src/model/transformer/transformer-net.js';
import { randomVgg19Weights } from '../../dist/src/model/vgg19-params.js';
import { Tensor } from '../../dist/src/tensor/tensor.js';

const repeat = Number(process.argv[2] ?? 10);
const warmup = Number(process.argv[3] ?? 3);
const styleSize = Number(process.argv[4] ?? 512);
const fastSizes = (process.argv[5] ?? '512,1024').split(',').map(Number);
const [batch, trainSize] = (process.argv[6] ?? '4x256').split('x').map(Number);
const weights = randomVgg19Weights(1);
const out = {};
for (const precision of ['fp32', 'fp16']) {
  const gpu = await openWebGpu(precision);
  out.adapter = gpu.description;
  const [fwd] = await timeInterleaved([forwardRunner(weights, gpu)], repeat, warmup);
  const [style] = await timeInterleaved([styleIterationRunner(weights, gpu, styleSize)], repeat, warmup);
  out[precision] = { vgg19_forward_224: fwd, [`style_iteration_${styleSize}`]: style, allocatedMiB: gpu.pool.allocatedBytes / 2 ** 20 };
}
// The style network in fp32 (its training compares with PyTorch's fp32).
const gpu = await openWebGpu('fp32');
const net = new TransformerNet(randomTransformerWeights(32, 1), gpu);
for (const size of fastSizes) {
  const x = new Tensor([1, 3, size, size], Float32Array.from({ length: 3 * size * size }, (_, i) => (i * 37) % 256));
  const [t] = await timeInterleaved([{ name: 'webgpu', run: async () => (await net.forward(x).toHost()).dispose() }], repeat, warmup);
  out.fp32[`transformer_forward_${size}`] = t;
}
const [train] = await timeInterleaved([trainStepRunner(weights, gpu, batch, trainSize)], Math.max(3, Math.floor(repeat / 3)), 1);
out.fp32[`train_step_${batch}x${trainSize}`] = train;
console.log(JSON.stringify(out));
await closeBackends();
