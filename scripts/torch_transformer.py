"""pytorch/examples fast_neural_style's TransformerNet, rebuilt from the issue's description of that
project's model (reflection pad, conv, instance norm with affine weights, ReLU; five residual
blocks; nearest x2 upsampling), with the same parameter names: for the test fixtures
(test/fixtures/transformer/) and the training bench's PyTorch peer (train-step-peer.py).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(nn.Module):
    def __init__(self, cin, cout, k, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode='nearest', scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, c, Norm=lambda c: nn.InstanceNorm2d(c, affine=True)):
        super().__init__()
        self.conv1 = ConvLayer(c, c, 3, 1)
        self.in1 = Norm(c)
        self.conv2 = ConvLayer(c, c, 3, 1)
        self.in2 = Norm(c)

    def forward(self, x):
        y = F.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(y)) + x


class ConvTransposeLayer(nn.Module):
    """The course's (lengstrom/fast-style-transfer's) upsampling: a transposed 3x3 convolution of
    stride 2 that doubles the size exactly (padding 1, output padding 1)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        return self.conv_transpose(x)


class TransformerNet(nn.Module):
    def __init__(self, w=32, upsample='nearest', norm='instance'):
        super().__init__()
        Norm = (lambda c: nn.InstanceNorm2d(c, affine=True)) if norm == 'instance' else (lambda c: nn.BatchNorm2d(c, affine=True))
        self.conv1 = ConvLayer(3, w, 9, 1)
        self.in1 = Norm(w)
        self.conv2 = ConvLayer(w, 2 * w, 3, 2)
        self.in2 = Norm(2 * w)
        self.conv3 = ConvLayer(2 * w, 4 * w, 3, 2)
        self.in3 = Norm(4 * w)
        for i in range(1, 6):
            setattr(self, f'res{i}', ResidualBlock(4 * w, Norm))
        up = (lambda cin, cout: UpsampleConvLayer(cin, cout, 3, 1, upsample=2)) if upsample == 'nearest' else ConvTransposeLayer
        self.deconv1 = up(4 * w, 2 * w)
        self.in4 = Norm(2 * w)
        self.deconv2 = up(2 * w, w)
        self.in5 = Norm(w)
        self.deconv3 = ConvLayer(w, 3, 9, 1)

    def forward(self, x):
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f'res{i}')(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def perturb_vectors(net):
    """Norms' affine weights in 0.5..1.5 and every bias in -0.5..0.5, away from their 1 / 0
    defaults: a reader that drops or swaps them fails the fixtures."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if '.weight' in name and p.dim() == 1:
                p.uniform_(0.5, 1.5)
            elif p.dim() == 1:
                p.uniform_(-0.5, 0.5)
