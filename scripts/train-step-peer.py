#!/usr/bin/python3
"""PyTorch's time for one real-time style training step, as `pastiche bench --sections fast --peers`
times ours: a TransformerNet (pytorch/examples' layers, width 32), a batch of crops, VGG19 (the
same layers as ours, random weights: timing only) to relu5_1, content loss at relu4_2, Gram style
losses at relu1_1..relu5_1, TV, backward to every parameter of the network, an Adam step.

Benchmarking only; Pastiche never needs Python. The bench starts it and then, for each timed run,
writes a line to its stdin; it answers with a line when the step is done (so its runs interleave
with ours). Arguments: threads batch size. scripts/device/torch_transformer_bench.py imports
training_step for the same step on CUDA.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_transformer import TransformerNet  # noqa: E402

BLOCKS = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)]
STYLE = ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1']


def training_step(batch, size, device='cpu'):
    """A function that runs one step (the caller synchronises a GPU)."""
    torch.manual_seed(0)
    convs, cin = [], 3
    for b, (n, c) in enumerate(BLOCKS, 1):
        for j in range(1, n + 1):
            convs.append((f'relu{b}_{j}', (torch.randn(c, cin, 3, 3) * (2 / (9 * cin)) ** 0.5).to(device), torch.zeros(c, device=device)))
            cin = c
        convs.append((f'pool{b}', None, None))

    def features(x):
        out, h = {}, x
        for name, w, b in convs:
            h = F.max_pool2d(h, 2, 2) if w is None else torch.relu(F.conv2d(h, w, b, padding=1))
            out[name] = h
            if name == 'relu5_1':
                break
        return out

    def gram(f):
        n, c, h, w = f.shape
        m = f.reshape(n, c, h * w)
        return m @ m.transpose(1, 2)

    net = TransformerNet(32).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    mean = torch.tensor([123.68, 116.78, 103.94], device=device).reshape(1, 3, 1, 1)
    x = torch.rand(batch, 3, size, size, device=device) * 255
    with torch.no_grad():
        style = {k: gram(v) for k, v in features(torch.rand(1, 3, size, size, device=device) * 255 - mean).items() if k in STYLE}

    def step():
        opt.zero_grad()
        y = net(x)
        with torch.no_grad():
            p = features(x - mean)['relu4_2']
        f = features(y - mean)
        loss = ((f['relu4_2'] - p) ** 2).sum() / (2 * p.numel())
        for k in STYLE:
            _, c, h, w = f[k].shape
            loss = loss + ((gram(f[k]) - style[k]) ** 2).sum() / (4 * batch * c * c * (h * w) ** 2)
        loss = loss + 1e-3 * (((y[:, :, 1:] - y[:, :, :-1]) ** 2).sum() + ((y[..., 1:] - y[..., :-1]) ** 2).sum()) / batch
        loss.backward()
        opt.step()

    return step


if __name__ == '__main__':
    threads, batch, size = (int(a) for a in sys.argv[1:4])
    torch.set_num_threads(threads)
    step = training_step(batch, size)
    print('ready', flush=True)
    for line in sys.stdin:
        step()
        print('done', flush=True)
