"""PyTorch's side of the GPU comparison (issue 5): VGG19 forward at 224, batch 1, and one style
iteration at 512 (forward to relu5_1 keeping relu1_1, relu2_1, relu3_1, relu4_1, relu4_2, relu5_1,
then backward to the image), on CUDA, in fp32 (TF32 off, like our WGSL) and with TF32 and cuDNN's
autotuner on. Random weights (the timing does not depend on them). Prints one JSON object.

Run on the GPU machine only; PyTorch is not a dependency of Pastiche.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

CFG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M']
NAMES = []


def vgg19():
    layers, cin, block, idx = [], 3, 1, 1
    for v in CFG:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2))
            NAMES.append(f'pool{block}')
            block, idx = block + 1, 1
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            NAMES.extend([f'conv{block}_{idx}', f'relu{block}_{idx}'])
            cin, idx = v, idx + 1
    features = nn.Sequential(*layers)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000), nn.Softmax(dim=1))
    return features, classifier


def timed(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        runs.append((time.perf_counter() - t0) * 1000)
    return {'median_ms': statistics.median(runs), 'runs_ms': runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--repeat', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--style-size', type=int, default=512)
    a = ap.parse_args()
    dev = torch.device('cuda')
    features, classifier = vgg19()
    features, classifier = features.to(dev).eval(), classifier.to(dev).eval()
    for p in list(features.parameters()) + list(classifier.parameters()):
        p.requires_grad_(False)
    keep = {'relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu4_2', 'relu5_1'}
    last = NAMES.index('relu5_1')

    def forward():
        with torch.no_grad():
            x = torch.randn(1, 3, 224, 224, device=dev) * 60
            return classifier(features(x)).cpu()  # one read-back, as our bench does

    x512 = (torch.randn(1, 3, a.style_size, a.style_size, device=dev) * 60).requires_grad_(True)
    grads = {}

    def style_iteration():
        h, outs = x512, []
        for i, layer in enumerate(features[: last + 1]):
            h = layer(h)
            if NAMES[i] in keep:
                outs.append(h)
        if not grads:
            for i, o in enumerate(outs):
                grads[i] = torch.randn_like(o) * 1e-3
        torch.autograd.backward(outs, [grads[i] for i in range(len(outs))])
        g = x512.grad.cpu()
        x512.grad = None
        return g

    out = {'device': torch.cuda.get_device_name(0), 'torch': torch.__version__}
    for mode in ('fp32', 'tf32+cudnn.benchmark'):
        torch.backends.cuda.matmul.allow_tf32 = mode != 'fp32'
        torch.backends.cudnn.allow_tf32 = mode != 'fp32'
        torch.backends.cudnn.benchmark = mode != 'fp32'
        out[mode] = {
            'vgg19_forward_224': timed(forward, a.repeat, a.warmup),
            f'style_iteration_{a.style_size}': timed(style_iteration, a.repeat, a.warmup),
        }
    print(json.dumps(out))


if __name__ == '__main__':
    main()
