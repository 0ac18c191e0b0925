"""Sgmod study toolkit: the Sgmod activation, models, data and training for Lightning + Hydra.

As a library::

    from sgmod_study import Sgmod
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.BatchNorm2d(64), Sgmod(64))
    timm.create_model("resnet18", act_layer=Sgmod, num_classes=10)  # scalar gamma/beta per layer

The trained tasks (LightningModules) load from a run's checkpoint with
``Classifier.load_from_checkpoint(path)`` / ``GAN.load_from_checkpoint(path)``.

Every public name is imported on first use: the command lines import submodules of this package
(the error lines, the console) for ``--help`` and tab completion, which must not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sgmod_study.errors import ConfigError
    from sgmod_study.nn.activations import ACTIVATIONS, Sgmod, build_activation
    from sgmod_study.nn.models import MLP, MODELS, ConvNet, Discriminator, Generator, ResNet, build_model
    from sgmod_study.nn.norms import build_norm
    from sgmod_study.nn.sgmod_op import sgmod
    from sgmod_study.tasks.classifier import Classifier
    from sgmod_study.tasks.gan import GAN

_MODULE_OF = {
    **dict.fromkeys(("ACTIVATIONS", "Sgmod", "build_activation"), "sgmod_study.nn.activations"),
    "Classifier": "sgmod_study.tasks.classifier",
    "ConfigError": "sgmod_study.errors",
    "GAN": "sgmod_study.tasks.gan",
    **dict.fromkeys(
        ("MLP", "MODELS", "ConvNet", "Discriminator", "Generator", "ResNet", "build_model"), "sgmod_study.nn.models"
    ),
    "build_norm": "sgmod_study.nn.norms",
    "sgmod": "sgmod_study.nn.sgmod_op",
}

__all__ = [  # the keys of _MODULE_OF (a literal, so that linters and type checkers read it)
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


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'sgmod_study' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
