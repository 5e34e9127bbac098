/** Pastiche's library API. */
export { PasticheError } from './errors.js';
export { Tensor, type Shape, type DeviceStorage } from './tensor/tensor.js';
export { readNpy, writeNpy, parseNpy, formatNpy } from './tensor/npy.js';
export type { Backend, BackendName, Conv2dParams, Pool2dParams } from './backends/backend.js';
export { getBackend, openBackend, openWebGpu, closeBackends, backendLabel, BACKEND_NAMES, DEFAULT_BACKEND, type Precision } from './backends/index.js';
export type { WebGpuBackend } from './backends/webgpu/webgpu-backend.js';
export type { Layer, BackwardOptions } from './layers/layer.js';
export { ConvolutionalLayer } from './layers/convolutional-layer.js';
export { FullyConnectedLayer } from './layers/fully-connected-layer.js';
export { MaxPoolingLayer, ReLULayer, FlattenLayer } from './layers/simple-layers.js';
export { SoftmaxLossLayer } from './layers/softmax-loss-layer.js';
export { Vgg19, type ForwardOptions, type ForwardResult } from './model/vgg19.js';
export { VGG19_LAYERS, type LayerSpec } from './model/vgg19-table.js';
export { readMatFile } from './weights/mat/mat-file.js';
export type { MatValue } from './weights/mat/mat-types.js';
export { loadMatConvNetVgg19, loadVgg19Weights, detectFormat } from './weights/load-vgg19.js';
export { vgg19FromMat } from './weights/matconvnet.js';
export { randomVgg19Weights, type Vgg19Weights } from './model/vgg19-params.js';
export { PUBLISHED, cachedWeightsPath, resolveWeightsFile } from './weights/weights-source.js';
export { download } from './weights/download.js';
export { readRgb, rgbToTensor, loadClassifierInput } from './image/preprocess.js';
export { resizeBilinearPil } from './image/pil-resize.js';
export { classifyImage, readClassifierImage, runClassify, parseDump, topK, type Classification, type ClassifyRun, type Dump, type Prediction } from './app/classify.js';
export { loadModel } from './app/load-model.js';
export { runCheck, comparePrecision, type CheckRow, type PrecisionComparison } from './app/check.js';
export { startWebServer } from './server/web-server.js';
export { readMatBlob } from './weights/mat/mat-blob.js';
export { forwardRunner, styleIterationRunner, timeInterleaved, vgg19ForwardFlops } from './app/bench.js';
export { stylize, runStylize, snapshotName, checkStylizeFiles, type StylizeOptions, type StylizeJob } from './app/stylize-job.js';
export {
  stylizeImages,
  buildTargets,
  evaluate,
  parseLayers,
  estimateMemoryBytes,
  DEFAULT_CONTENT_LAYERS,
  DEFAULT_STYLE_LAYERS,
  type StylizeImagesOptions,
  type StylizeSettings,
  type StylizeResult,
  type IterationReport,
} from './app/stylize.js';
export { STYLE_PRESETS, PRESET_NAMES, parseStylizeSettings, type StylizeFields } from './app/stylize-request.js';
export { fanOut, jsonLinesLog, type Progress, type OnProgress } from './app/progress.js';
export { abortOnSignals } from './app/signals.js';
export { contentLoss, styleLoss, tvLoss, gram } from './style/losses.js';
export { Adam, Lbfgs, type Optimizer } from './style/optimizers.js';
export { tensorToRgb, resizeTensorBilinear, keepOriginalColors, type RgbImage } from './image/rgb.js';
export { writeRgb, encodeRgb } from './image/tensor-image.js';
export {
  TransformerNet,
  initialTransformerWeights,
  randomTransformerWeights,
  transformerFromStateDict,
  transformerStateDict,
  type TransformerWeights,
  type Upsample,
} from './model/transformer/transformer-net.js';
export { loadTransformerModel, saveTransformerModel, loadTrainingCheckpoint, saveTrainingCheckpoint } from './weights/transformer-file.js';
export { parseTransformerModel } from './weights/transformer-parse.js';
export { stylizeWithNetwork, runFastStylize, type FastStylizeJob } from './app/fast-stylize.js';
export { StyleTrainer, trainStyle, trainingCrop, type ContentSource, type TrainSettings, type TrainLosses, type TrainGradients, type TrainStyleOptions, type TrainStyleResult } from './app/train-style.js';
export { runTrainStyle, listContentImages, type TrainStyleJob } from './app/train-style-job.js';
export { TRAIN_PRESETS, TRAIN_PRESET_NAMES, parseTrainSettings, type TrainFields } from './app/train-request.js';
