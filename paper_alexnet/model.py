"""§3, Fig. 2: the paper's network, two towers that meet only at conv3, fc6, fc7 and fc8.

    tower A (GPU 1)                    tower B (GPU 2)                    sees
    conv1   48 → ReLU → LRN → pool     conv1   48 → ReLU → LRN → pool     the image
    conv2  128 → ReLU → LRN → pool     conv2  128 → ReLU → LRN → pool     own tower's conv1
    conv3  192 → ReLU                  conv3  192 → ReLU                  BOTH towers' conv2
    conv4  192 → ReLU                  conv4  192 → ReLU                  own tower's conv3
    conv5  128 → ReLU → pool           conv5  128 → ReLU → pool           own tower's conv4
    fc6   2048 → ReLU → dropout        fc6   2048 → ReLU → dropout        BOTH towers' pool5
    fc7   2048 → ReLU → dropout        fc7   2048 → ReLU → dropout        BOTH towers' fc6
                    fc8 1000 (one layer, on tower A's device)             BOTH towers' fc7

fc8 is a single 4096 → 1000 layer (the same function as two halves whose outputs are summed, with
one bias). Choices the paper leaves open (docs/model.md): conv1 sees a 224 crop with Alex's 3-pixel
right/bottom zero padding, or a 227 crop (docs/paper.md §2); the LRN convention (§3.3, lrn.py);
dropout is inverted (×2 at train time, identity at test; the paper ×0.5 at test; §4.2); N(0, 0.01)
init (§5). Ablations (§3.2–§3.4, §4.2, §7) are ModelConfig values; `architecture(cfg)` is the table
they give.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from paper_alexnet.config import ConfigError, ModelConfig
from paper_alexnet.lrn import LocalResponseNorm
from paper_alexnet.placement import resolve_devices

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
# kernel, stride, symmetric padding (Fig. 2); conv1's padding is config.conv1_padding, applied
# to the image before the towers (see conv1_padding below).
GEOMETRY = {"conv1": (11, 4, 0), "conv2": (5, 1, 2), "conv3": (3, 1, 1), "conv4": (3, 1, 1),
            "conv5": (3, 1, 1)}
# Kernels / units PER TOWER. §3.2's one-GPU control halves conv1-4 but keeps conv5 and the FC
# layers full size; the course notes (docs/paper.md §10) use the full widths in one tower.
WIDTHS = {
    "two_towers": dict(conv1=48, conv2=128, conv3=192, conv4=192, conv5=128, fc6=2048, fc7=2048),
    "one_tower_half": dict(conv1=48, conv2=128, conv3=192, conv4=192, conv5=256, fc6=4096,
                           fc7=4096),
    "one_tower": dict(conv1=96, conv2=256, conv3=384, conv4=384, conv5=256, fc6=4096, fc7=4096),
}
NORMALISED = ("conv1", "conv2")                # §3.3: LRN after the ReLU of conv1 and conv2
POOLED = ("conv1", "conv2", "conv5")           # §3.4: max pooling after conv1, conv2, conv5
CROSSING = ("conv3", "fc6", "fc7", "fc8")      # §3.2: the layers that see both towers
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")   # §5: bias 1 here, 0 elsewhere


@dataclass(frozen=True)
class Layer:
    """One row of Fig. 2 for a given config; the numbers are those of ONE tower's copy."""
    name: str
    kind: str            # "conv" or "fc"
    in_features: int     # input channels (conv) or inputs (fc)
    out_features: int    # kernels (conv) or units (fc)
    kernel: int          # 0 for fc
    stride: int
    padding: int         # symmetric padding of conv2-conv5 (conv1: see conv1_padding)
    towers: int          # copies: 2 in the towers' layers, 1 for fc8 or a single tower
    crosses: bool        # its input is gathered from both towers (§3.2)
    removed: bool        # §7 ablation: replaced by a parameter-free layer of the same geometry
    size: int            # output side before the pooling that follows (0 for fc)
    pooled: int          # output side after it (== size where no pooling follows)
    then: tuple          # what follows, in order: "act", "lrn", "pool"

    @property
    def params(self) -> int:
        if self.removed:
            return 0
        fan_in = self.in_features * (self.kernel ** 2 if self.kind == "conv" else 1)
        return (fan_in + 1) * self.out_features

    @property
    def macs(self) -> int:
        """Multiply-adds per image of one copy (its weights only: ReLU, LRN, pooling not counted)."""
        if self.removed:
            return 0
        if self.kind == "fc":
            return self.in_features * self.out_features
        return self.size ** 2 * self.kernel ** 2 * self.in_features * self.out_features


def conv1_padding(mode: str, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zeros around the image before conv1 (docs/paper.md §2).

    "alex": Alex's code sizes conv outputs with ceil, i.e. it pads right and bottom just enough for
    the last 11×11 stride-4 window: 3 px for 224 (→ 55), 0 for 227 (→ 55). "none": Caffe (227 → 55,
    224 → 54). "1": the course notes (224 → 54). "2": torchvision (224 → 55).
    """
    if mode == "alex":
        return 0, (11 - width) % 4, 0, (11 - height) % 4
    p = 0 if mode == "none" else int(mode)
    return p, p, p, p


def architecture(config: ModelConfig) -> list[Layer]:
    """conv1 … fc8 for a config: widths, which layers cross, spatial sizes (the summary's table).

    A removed layer (§7) becomes a parameter-free layer of the same geometry: the identity for
    conv2–conv5 (stride 1, 'same' padding), an 11×11 stride-4 average for conv1 (so conv2 sees the
    image, on conv1's 55×55 grid). Its ReLU and LRN go with it; the pooling after it stays, so the
    sizes stay 55 → 27 → 13 → 6; the next layer takes the channels the removed one received. Removing
    conv3 keeps the crossing where it was: conv4 then takes both towers' conv2 output (256 channels).
    """
    widths = WIDTHS[config.layout]
    towers = 2 if config.layout == "two_towers" else 1
    z = 3 if config.pooling == "overlapping" else 2          # §3.4: z=3, s=2 (or z=2, s=2)
    pad = conv1_padding(config.conv1_padding, config.input_size, config.input_size)
    size, channels = config.input_size + pad[2] + pad[3], config.in_channels
    layers = []
    for name in CONVS:
        kernel, stride, padding = GEOMETRY[name]
        removed = config.removed_layer == name
        crosses = name in CROSSING and towers == 2
        in_features = channels * (towers if crosses else 1)
        out_features = in_features if removed else widths[name]
        size = (size + 2 * padding - kernel) // stride + 1
        if size < (z if name in POOLED else 1):
            raise ConfigError(f"model.input_size: {config.input_size} leaves {name} a {size}×{size} "
                              f"output, too small for the network; use 224 or 227")
        pooled = (size - z) // 2 + 1 if name in POOLED else size
        then = () if removed else ("act",)
        if name in NORMALISED and not removed and config.lrn != "off":
            then += ("lrn",)
        then += ("pool",) if name in POOLED else ()
        layers.append(Layer(name, "conv", in_features, out_features, kernel, stride, padding, towers,
                            crosses, removed, size, pooled, then))
        channels, size = out_features, pooled
    features = channels * size * size * towers               # 9216 in the paper
    for name in ("fc6", "fc7"):
        layers.append(Layer(name, "fc", features, widths[name], 0, 1, 0, towers, towers == 2,
                            False, 0, 0, ("act",)))
        features = widths[name] * towers
    layers.append(Layer("fc8", "fc", features, config.num_classes, 0, 1, 0, 1, towers == 2, False,
                        0, 0, ()))
    return layers


def _move(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to `device` if needed; asynchronous towards a GPU, blocking towards the CPU (an async
    device→host copy could be read before it lands)."""
    if x.device == device:
        return x
    return x.to(device, non_blocking=device.type == "cuda")


class Tower(nn.Module):
    """One column of Fig. 2 (one of the paper's GPUs): conv1 … conv5, its half of fc6 and fc7, and
    its own LRN layers (the normalisation window never spans towers, §3.3)."""

    def __init__(self, layers: list[Layer], config: ModelConfig):
        super().__init__()
        self.lrn = nn.ModuleDict()      # the layer each follows -> its LRN (conv1, conv2)
        for layer in layers:
            if layer.removed:
                module = nn.AvgPool2d(11, 4) if layer.name == "conv1" else nn.Identity()
            elif layer.kind == "conv":   # skip torch's default init: init_weights does §5's
                module = skip_init(nn.Conv2d, layer.in_features, layer.out_features,
                                   layer.kernel, layer.stride, layer.padding)
            else:
                module = skip_init(nn.Linear, layer.in_features, layer.out_features)
            setattr(self, layer.name, module)
            if "lrn" in layer.then:
                self.lrn[layer.name] = LocalResponseNorm(config.lrn, config.lrn_impl)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class AlexNet(nn.Module):
    """The network of §3 (Fig. 2): `AlexNet()` is the paper's, 60,965,224 parameters, on the CPU.

    Like any module it is built on the CPU unless `devices` names a placement (placement.py);
    `build(config)` places it where `config.devices` says. Logits come back on `output_device`;
    inputs may live anywhere (they are copied to `input_device` first)."""

    def __init__(self, config: ModelConfig = ModelConfig(), devices=None):
        super().__init__()
        if config.arch != "alexnet":
            raise ConfigError(f"model.arch: AlexNet cannot build {config.arch!r}; use "
                              f"paper_alexnet.model.build(config)")
        if config.init_bias != 0.0 or tuple(config.tanh_scale) != (1.0, 1.0):
            raise ConfigError("model.init_bias and model.tanh_scale belong to the Figure 1 net "
                              "(model.arch=cifar10_4layer); AlexNet's biases are set by "
                              "model.init and its tanh is plain")
        self.config = config
        self.layers = {layer.name: layer for layer in architecture(config)}
        tower_layers = [layer for layer in self.layers.values() if layer.name != "fc8"]
        self.tower_a = Tower(tower_layers, config)
        self.tower_b = Tower(tower_layers, config) if self.layers["conv1"].towers == 2 else None
        fc8 = self.layers["fc8"]
        self.fc8 = skip_init(nn.Linear, fc8.in_features, fc8.out_features)
        self.act = nn.ReLU() if config.activation == "relu" else nn.Tanh()     # §3.1
        self.pool = nn.MaxPool2d(3 if config.pooling == "overlapping" else 2, 2)   # §3.4
        self.dropout = nn.Dropout(config.dropout)    # §4.2, inverted: ×1/(1-p) in training
        init_weights(self, config.init)
        self.place(("cpu",) if devices is None else devices)

    # ------------------------------------------------------------------ placement (§3.2)
    def place(self, devices) -> "AlexNet":
        """Put tower A (and fc8) on the first device, tower B on the second (placement.py)."""
        device_a, device_b = resolve_devices(devices)
        self.tower_a.to(device_a)
        self.fc8.to(device_a)
        if self.tower_b is not None:
            self.tower_b.to(device_b)
        return self

    @property
    def towers(self) -> list[Tower]:
        return [self.tower_a] if self.tower_b is None else [self.tower_a, self.tower_b]

    @property
    def input_device(self) -> torch.device:
        return self.tower_a.device

    @property
    def output_device(self) -> torch.device:
        return self.fc8.weight.device

    # ------------------------------------------------------------------ the forward pass (Fig. 2)
    def conv_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """conv1 … pool5: one (N, 128, 6, 6) tensor per tower, each on its tower's device."""
        x = F.pad(_move(x, self.input_device), self._conv1_pad(x))  # (N, 3, 227, 227) Alex's pad
        h = [_move(x, tower.device) for tower in self.towers]  # the image, on every tower
        h = self._layer("conv1", h)              # (N, 48, 27, 27)  conv1 → ReLU → LRN → pool
        h = self._layer("conv2", h)              # (N, 128, 13, 13) conv2 → ReLU → LRN → pool
        h = self._layer("conv3", self._cross(h))  # (N, 192, 13, 13) ← CROSS 1: both towers' conv2
        h = self._layer("conv4", h)              # (N, 192, 13, 13) own tower only
        h = self._layer("conv5", h)              # (N, 128, 6, 6)   own tower only, then pool
        return h

    def _hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """fc7 activations per tower (after ReLU, before fc7's dropout)."""
        h = self.conv_features(x)
        h = self._layer("fc6", self._cross(h))   # (N, 2048) ← CROSS 2: both towers' pool5 (9216)
        h = [self.dropout(t) for t in h]         # §4.2 dropout on fc6's output
        h = self._layer("fc7", self._cross(h))   # (N, 2048) ← CROSS 3: both towers' fc6 (4096)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = [self.dropout(t) for t in self._hidden(x)]    # §4.2 dropout on fc7's output
        return self.fc8(self._gather(h, self.output_device))  # (N, 1000) ← CROSS 4: both fc7s

    def fc7_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4096) fc7 activations, tower A's units first, on output_device (§6.1, Fig. 4).
        Call in eval mode: in training mode fc6's output is dropped out on the way."""
        return self._gather(self._hidden(x), self.output_device)

    # ------------------------------------------------------------------ helpers of the forward
    def _conv1_pad(self, x: torch.Tensor) -> tuple[int, int, int, int]:
        return conv1_padding(self.config.conv1_padding, x.shape[-2], x.shape[-1])

    def _gather(self, h: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """Both towers' activations side by side on `device` (tower A's channels first)."""
        if len(h) == 1:
            return h[0]
        return torch.cat([_move(t, device) for t in h], dim=1)

    def _cross(self, h: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every tower gets every tower's activations, on its own device (a crossing, §3.2)."""
        return [self._gather(h, tower.device) for tower in self.towers]

    def _layer(self, name: str, h: list[torch.Tensor]) -> list[torch.Tensor]:
        """Layer `name` of each tower on that tower's input, then its ReLU / LRN / pooling."""
        spec = self.layers[name]
        out = []
        for tower, x in zip(self.towers, h):
            x = getattr(tower, name)(x.flatten(1) if spec.kind == "fc" else x)
            if "act" in spec.then:
                x = self.act(x)
            if "lrn" in spec.then:
                x = tower.lrn[name](x)
            if "pool" in spec.then:
                x = self.pool(x)
            out.append(x)
        return out


def parametrised_layers(model: AlexNet):
    """(name, module) of every layer with weights: each tower's conv1 … fc7, then fc8."""
    for tower in model.towers:
        for name, layer in model.layers.items():
            if name != "fc8" and not layer.removed:
                yield name, getattr(tower, name)
    yield "fc8", model.fc8


def init_weights(model: AlexNet, scheme: str = "paper") -> None:
    """§5: weights ~ N(0, 0.01) everywhere; bias 1 in conv2, conv4, conv5, fc6, fc7, else 0.
    "caffe" (bvlc_alexnet): std 0.005 in fc6 and fc7, bias 0.1 where the paper puts 1."""
    fc_std, bias_one = {"paper": (0.01, 1.0), "caffe": (0.005, 0.1)}[scheme]   # model.init
    with torch.no_grad():
        for name, module in parametrised_layers(model):
            module.weight.normal_(0.0, fc_std if name in ("fc6", "fc7") else 0.01)
            module.bias.fill_(bias_one if name in BIAS_ONE else 0.0)


def build(config: ModelConfig, devices=None) -> nn.Module:
    """The network `config.arch` names, AlexNet or the four-layer CIFAR-10 net of Figure 1, placed
    on `devices` (default: `config.devices`, whose default "auto" takes the GPUs there are)."""
    devices = config.devices if devices is None else devices
    if config.arch == "cifar10_4layer":
        from paper_alexnet.cifar_net import Figure1Net   # lazy: owned by the experiments
        device, _ = resolve_devices(devices)
        return Figure1Net(config).to(device)
    return AlexNet(config, devices)
