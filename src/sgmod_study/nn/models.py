"""Image classifiers whose hidden activation and norm come from the config groups.

``model`` config: ``name`` (cnn | mlp | resnet) plus that model's options. Every hidden
layer gets ``norm_act`` from ``sgmod_study.nn.norms``, so activation and norm placement are
the same across models. Layer names (``stage1.act``, ``layer3.act`` ...) are what
TensorBoard shows for the per-layer gamma/beta and gradient norms.

``act`` and ``norm`` are entries of the config groups of those names, e.g.
``ConvNet(1, 28, 10, act={"name": "sgmod"}, norm={"name": "batch"})``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.nn.activations import build_activation
from sgmod_study.nn.init import initialize
from sgmod_study.nn.norms import conv_bias_needed, norm_act


def _check_int(key: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} is not allowed: it must be an integer >= {minimum}")


def _check_channels(key: str, channels) -> None:
    valid = isinstance(channels, Sequence) and not isinstance(channels, str) and len(channels) > 0
    if not valid or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        raise ConfigError(
            f"{key}={channels!r} is not allowed: it must be a non-empty list of integers >= 1, e.g. [32, 64]"
        )


def _check_dropout(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"model.dropout={value!r} is not allowed: it must be a number in [0, 1)")


def _named(*layers: tuple[str, nn.Module] | list) -> nn.Sequential:
    flat: list[tuple[str, nn.Module]] = []
    for layer in layers:
        flat.extend(layer if isinstance(layer, list) else [layer])
    return nn.Sequential(OrderedDict(flat))


class ConvNet(nn.Module):
    """Per stage: conv3x3 -> norm/act -> maxpool. Head: FC -> norm/act -> dropout -> FC."""

    OUTPUT_LAYERS = ("head.out",)  # gain 1 under model.init (sgmod_study.nn.init)

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        act: Mapping,
        norm: Mapping,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        _check_channels("model.channels", channels)
        _check_int("model.hidden", hidden)
        _check_dropout(dropout)
        final_size = image_size // 2 ** len(channels)
        if final_size < 1:
            raise ConfigError(
                f"model.channels={list(channels)} has {len(channels)} pooling stages, too many for "
                f"{image_size}x{image_size} images (they would shrink them to 0x0): at most "
                f"{image_size.bit_length() - 1} entries are allowed"
            )
        bias = conv_bias_needed(norm)
        stages, c_in = [], in_channels
        for i, c in enumerate(channels, 1):
            conv = ("conv", nn.Conv2d(c_in, c, 3, padding=1, bias=bias))
            stages.append((f"stage{i}", _named(conv, norm_act(norm, act, c, True), ("pool", nn.MaxPool2d(2)))))
            c_in = c
        self.features = _named(*stages)
        self.head = _named(
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(c_in * final_size**2, hidden, bias=bias)),
            norm_act(norm, act, hidden, False),
            ("dropout", nn.Dropout(dropout)),
            ("out", nn.Linear(hidden, num_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """``depth`` hidden layers of ``width``: Linear -> norm/act (-> dropout). For depth studies."""

    OUTPUT_LAYERS = ("net.out",)

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        act: Mapping,
        norm: Mapping,
        depth: int = 4,
        width: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_int("model.depth", depth)
        _check_int("model.width", width)
        _check_dropout(dropout)
        bias = conv_bias_needed(norm)
        layers, d_in = [("flatten", nn.Flatten())], in_channels * image_size**2
        for i in range(1, depth + 1):
            block = [("fc", nn.Linear(d_in, width, bias=bias)), norm_act(norm, act, width, False)]
            if dropout:
                block.append(("dropout", nn.Dropout(dropout)))
            layers.append((f"layer{i}", _named(*block)))
            d_in = width
        layers.append(("out", nn.Linear(width, num_classes)))
        self.net = _named(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016): x + conv(norm/act(conv(norm/act(x))))."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: Mapping, norm: Mapping) -> None:
        super().__init__()
        bias = conv_bias_needed(norm)
        self.pre1 = _named(norm_act(norm, act, c_in, True))
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
        self.pre2 = _named(norm_act(norm, act, c_out, True))
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias)
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pre1(x)
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.pre2(self.conv1(out)))
        return out + shortcut


class ResNet(nn.Module):
    """Small pre-activation ResNet for 28x28 / 32x32 inputs: stem, stages (stride 2 after the first), pool, FC."""

    OUTPUT_LAYERS = ("head.out",)

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        act: Mapping,
        norm: Mapping,
        channels: Sequence[int] = (32, 64, 128),
        blocks_per_stage: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_channels("model.channels", channels)
        _check_int("model.blocks_per_stage", blocks_per_stage)
        _check_dropout(dropout)
        stages, c_in = [("stem", nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False))], channels[0]
        for i, c in enumerate(channels, 1):
            blocks = [
                (f"block{j}", PreActBlock(c_in if j == 1 else c, c, 2 if (i > 1 and j == 1) else 1, act, norm))
                for j in range(1, blocks_per_stage + 1)
            ]
            stages.append((f"stage{i}", _named(*blocks)))
            c_in = c
        self.features = _named(*stages)
        self.head = _named(
            norm_act(norm, act, c_in, True),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("dropout", nn.Dropout(dropout)),
            ("out", nn.Linear(c_in, num_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


MODELS = {"cnn": ConvNet, "mlp": MLP, "resnet": ResNet}


def build_model(
    model_cfg: Mapping, act_cfg: Mapping, norm_cfg: Mapping, in_channels: int, image_size: int, num_classes: int
) -> nn.Module:
    """The classifier ``model_cfg`` names (a key of ``MODELS`` plus that model's options, and
    ``init``, a scheme of ``sgmod_study.nn.init``), e.g.
    ``build_model({"name": "resnet", "channels": [32, 64]}, {"name": "sgmod"}, {"name": "batch"}, 3, 32, 10)``."""
    options = dict(model_cfg)
    name = options.pop("name", None)
    scheme = options.pop("init", "default")
    check_choice("model", name, MODELS)
    try:
        model = MODELS[name](in_channels, image_size, num_classes, act_cfg, norm_cfg, **options)
    except TypeError as err:
        raise ConfigError(f"model={name} got an option it does not take: {err}") from None
    initialize(model, scheme, act_cfg, model.OUTPUT_LAYERS)
    return model


def _check_gan_size(image_size: int, width: int) -> None:
    _check_int("model.width", width)
    if image_size < 4 or image_size % 4:
        raise ConfigError(
            f"the DCGAN's two stride-2 layers need an image size divisible by 4; this dataset's is {image_size}"
        )


class Generator(nn.Module):
    """DCGAN generator for 28x28 (or 32x32) images.

    latent -> FC -> (2w, s/4, s/4) -> norm/act -> ConvT -> (w, s/2, s/2) -> norm/act -> ConvT -> tanh.
    """

    OUTPUT_LAYERS = ("body.up2",)

    def __init__(
        self, latent_dim: int, channels: int, image_size: int, act: Mapping, norm: Mapping, width: int = 64
    ) -> None:
        super().__init__()
        _check_int("model.latent_dim", latent_dim)
        _check_gan_size(image_size, width)
        self.start = (2 * width, image_size // 4, image_size // 4)
        bias = conv_bias_needed(norm)
        self.project = nn.Linear(latent_dim, 2 * width * (image_size // 4) ** 2, bias=bias)
        self.body = _named(
            ("block0", _named(norm_act(norm, act, 2 * width, True))),
            ("up1", nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=bias)),
            ("block1", _named(norm_act(norm, act, width, True))),
            ("up2", nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1)),
            ("out", nn.Tanh()),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(-1, *self.start))


class Discriminator(nn.Module):
    """DCGAN discriminator: strided conv -> act, strided conv -> norm/act, FC -> one logit.

    No norm on the first layer (DCGAN convention). ``spectral_norm`` wraps every weight layer.
    """

    OUTPUT_LAYERS = ("body.logit",)

    def __init__(
        self, channels: int, image_size: int, act: Mapping, norm: Mapping, width: int = 64, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        _check_gan_size(image_size, width)
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda layer: layer)
        bias = conv_bias_needed(norm)
        self.body = _named(
            ("conv1", wrap(nn.Conv2d(channels, width, 4, stride=2, padding=1))),
            ("act1", build_activation(act, width)),
            ("conv2", wrap(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=bias))),
            ("block2", _named(norm_act(norm, act, 2 * width, True))),
            ("flatten", nn.Flatten()),
            ("logit", wrap(nn.Linear(2 * width * (image_size // 4) ** 2, 1))),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images).squeeze(1)
