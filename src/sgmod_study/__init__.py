"""Sgmod study toolkit: the Sgmod activation, models, data and training for Lightning + Hydra.

As a library::

    from sgmod_study import Sgmod
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.BatchNorm2d(64), Sgmod(64))
    timm.create_model("resnet18", act_layer=Sgmod, num_classes=10)  # scalar gamma/beta per layer

The trained tasks (LightningModules) load from a run's checkpoint with
``Classifier.load_from_checkpoint(path)`` / ``GAN.load_from_checkpoint(path)``; they are imported
on first use, so that ``import sgmod_study`` does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sgmod_study.activations import ACTIVATIONS, Sgmod, build_activation
from sgmod_study.errors import ConfigError
from sgmod_study.models import MLP, MODELS, ConvNet, Discriminator, Generator, ResNet, build_model
from sgmod_study.norms import build_norm
from sgmod_study.sgmod_op import sgmod

if TYPE_CHECKING:
    from sgmod_study.classifier import Classifier
    from sgmod_study.gan import GAN

_LIGHTNING_MODULES = {"Classifier": "sgmod_study.classifier", "GAN": "sgmod_study.gan"}

__all__ = [
    "ACTIVATIONS",
    "GAN",
    "MLP",
    "MODELS",
    "Classifier",
    "ConfigError",
    "ConvNet",
    "Discriminator",
    "Generator",
    "ResNet",
    "Sgmod",
    "build_activation",
    "build_model",
    "build_norm",
    "sgmod",
]


def __getattr__(name: str) -> type:
    if name in _LIGHTNING_MODULES:
        return getattr(importlib.import_module(_LIGHTNING_MODULES[name]), name)
    raise AttributeError(f"module 'sgmod_study' has no attribute {name!r}")
