"""PyTorch's side of the GPU comparison for the real-time style network (issue 15): a forward pass
of the full-width TransformerNet (random weights) at 512 and 1024, and one training step (batch 4
of 256x256, VGG19 loss to relu5_1, every gradient, Adam: train-step-peer.py's step), on CUDA in
fp32 with TF32 off (like our WGSL). Prints one JSON object. Run on the GPU machine only.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..'))
from torch_transformer import TransformerNet  # noqa: E402

peer = __import__('train-step-peer')


def timed(fn, repeat, warmup, device):
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append((time.perf_counter() - t0) * 1000)
    return {'medianMs': statistics.median(runs), 'runs': runs}


def main():
    a = argparse.ArgumentParser()
    a.add_argument('--repeat', type=int, default=10)
    a.add_argument('--warmup', type=int, default=3)
    a.add_argument('--sizes', default='512,1024')
    a.add_argument('--train', default='4x256')
    a.add_argument('--device', default='cuda')
    o = a.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = {'device': torch.cuda.get_device_name(0) if o.device == 'cuda' else 'cpu', 'torch': torch.__version__}
    net = TransformerNet(32).to(o.device).eval()
    for size in (int(s) for s in o.sizes.split(',')):
        x = torch.rand(1, 3, size, size, device=o.device) * 255

        def forward():
            with torch.no_grad():
                net(x).cpu()

        out[f'transformer_forward_{size}'] = timed(forward, o.repeat, o.warmup, o.device)
    batch, size = (int(v) for v in o.train.split('x'))
    out[f'train_step_{batch}x{size}'] = timed(peer.training_step(batch, size, o.device), max(3, o.repeat // 3), 1, o.device)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
