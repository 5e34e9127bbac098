import { existsSync } from 'fs';
const f = `/tmp/mat-debug-${process.pid}.log`;
const { onnxRunner } = await import('./dist/src/app/onnx-peer.js');
const { randomVgg19Weights } = await import('./dist/src/model/vgg19-params.js');
const w = randomVgg19Weights(1, 32);
const r = await onnxRunner(w, 32, 'pool1', 1);
console.log('after session', existsSync(f));
