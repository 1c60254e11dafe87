"""§3.1, Figure 1: the small CIFAR-10 network on which ReLUs train six times faster than tanh.

The paper does not give this network ("a four-layer convolutional neural network"). What follows is
an INFERENCE: the closest of the author's published CIFAR-10 configs, cuda-convnet's
`layers-80sec.cfg` (docs/paper.md §9):

    conv1 5x5x32 pad 2 -> maxpool 3/2 -> conv2 5x5x32 pad 2 -> avgpool 3/2
    -> conv3 5x5x64 pad 2 -> avgpool 3/2 -> fc64 -> fc10

(three conv layers and two fully-connected ones: the paper's "four layers" may not count fc10, or
may describe a different net; we say so in docs/experiments.md). The activation after conv1-conv3
and fc64 is ReLU or tanh (`cfg.activation`), nothing else differs. Pooling uses cuda-convnet's
ceil arithmetic (32 -> 16 -> 8 -> 4), as the author's code does. Initialisation is the paper's
style (§5): zero-mean Gaussians with fixed standard deviations and constant biases; the stds are
those of layers-80sec (conv1 1e-4, conv2/conv3 0.01, fc64/fc10 0.1), biases 0.

Two factors of Figure 1 the paper leaves open are config keys (defaults: layers-80sec as above):
`model.init_bias` sets the hidden layers' initial bias (§5 gives ImageNet ReLUs positive biases
because that "accelerates the early stages of learning"; fc10's stays 0), and `model.tanh_scale`
= [a, b] makes the tanh unit a*tanh(b*x), as cuda-convnet's tanh neuron does (LeCun's scaled tanh:
[1.7159, 0.6667]).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from paper_alexnet.config import ConfigError, ModelConfig

# layers-80sec.cfg initW per layer (the author's code draws N(0, initW)); initB defaults to 0.
INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "fc64": 0.1, "fc10": 0.1}
HIDDEN = ("conv1", "conv2", "conv3", "fc64")      # the layers model.init_bias applies to


def _pooled(size: int) -> int:
    """Output side of a 3/2 pooling with the author's ceil arithmetic (32 -> 16)."""
    return math.ceil((size - 3) / 2) + 1


# (name, kernel, output channels, pooling after it) of the conv layers, then the fc widths.
CONVS = (("conv1", 5, 32, "maxpool"), ("conv2", 5, 32, "avgpool"), ("conv3", 5, 64, "avgpool"))
POOLS = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}


def layers(cfg: ModelConfig) -> list[dict]:
    """One row per layer: name, what it is, output shape (C, H, W) or (features,) after its
    pooling, parameters and multiply-adds per image (what `alexnet summary` prints for
    model.arch=cifar10_4layer). Arithmetic only; tests check it against the built network."""
    rows, channels, side = [], cfg.in_channels, cfg.input_size
    for name, kernel, width, pool in CONVS:
        macs = side * side * kernel * kernel * channels * width     # 'same' padding, stride 1
        params = kernel * kernel * channels * width + width
        side = _pooled(side)          # model.input_size >= 32 (config.py): 32 -> 15 -> 7 -> 3
        rows.append(dict(name=name, what=f"{kernel}×{kernel}/1 pad 2, {cfg.activation}, "
                         f"{pool} 3/2", output=(width, side, side), params=params, macs=macs))
        channels = width
    features = channels * side * side
    for name, width, then in (("fc64", 64, f", {cfg.activation}"), ("fc10", cfg.num_classes, "")):
        rows.append(dict(name=name, what=f"fully connected{then}", output=(width,),
                         params=features * width + width, macs=features * width))
        features = width
    return rows


class Figure1Net(nn.Module):
    """The Figure 1 network: `Figure1Net(ModelConfig(arch="cifar10_4layer", activation="tanh"))`."""

    def __init__(self, cfg: ModelConfig = ModelConfig(arch="cifar10_4layer", num_classes=10)):
        super().__init__()
        if len(cfg.tanh_scale) != 2 or 0.0 in cfg.tanh_scale:
            raise ConfigError(f"model.tanh_scale={list(cfg.tanh_scale)}: expected two non-zero "
                              "numbers [a, b] of a*tanh(b*x), e.g. [1.7159, 0.6667]",
                              "model.tanh_scale")
        if cfg.activation != "tanh" and tuple(cfg.tanh_scale) != (1.0, 1.0):
            raise ConfigError("model.tanh_scale applies to tanh units: set model.activation=tanh "
                              "or leave it at [1, 1]", "model.tanh_scale")
        self.activation = cfg.activation
        self.init_bias = cfg.init_bias
        self.tanh_a, self.tanh_b = (float(v) for v in cfg.tanh_scale)
        self.input_size = cfg.input_size
        conv_rows = layers(cfg)[:len(CONVS)]   # shapes; ConfigError for a too small input
        channels = cfg.in_channels
        for i, (name, kernel, width, pool) in enumerate(CONVS, 1):   # conv1, pool1, conv2, …
            setattr(self, name, nn.Conv2d(channels, width, kernel, padding=kernel // 2))
            setattr(self, f"pool{i}", POOLS[pool](3, 2, ceil_mode=True))
            channels = width
        self.fc64 = nn.Linear(math.prod(conv_rows[-1]["output"]), 64)
        self.fc10 = nn.Linear(64, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """§5 style: N(0, std) weights with the layers-80sec stds; biases model.init_bias in the
        hidden layers (default 0, as layers-80sec), 0 in fc10."""
        for name, std in INIT_STD.items():
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.constant_(layer.bias, self.init_bias if name in HIDDEN else 0.0)

    @property
    def input_device(self) -> torch.device:
        """Same interface as AlexNet: where inputs go, where logits come back (one device here)."""
        return self.conv1.weight.device

    @property
    def output_device(self) -> torch.device:
        return self.fc10.weight.device

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return torch.relu(x)
        if (self.tanh_a, self.tanh_b) == (1.0, 1.0):
            return torch.tanh(x)                       # §3.1's plain tanh, bit for bit
        return self.tanh_a * torch.tanh(self.tanh_b * x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (fc64), the analogue of AlexNet's fc7 (Figure 4)."""
        x = self.pool1(self._act(self.conv1(x)))       # (N, 32, 16, 16) for 32x32 input
        x = self.pool2(self._act(self.conv2(x)))       # (N, 32, 8, 8)
        x = self.pool3(self._act(self.conv3(x)))       # (N, 64, 4, 4)
        return self._act(self.fc64(torch.flatten(x, 1)))  # (N, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc10(self.features(x))             # (N, num_classes) logits; softmax in the loss
