"""The GAN's evaluation: FID and KID of generated images against real ones, both on the features
of the shipped feature net (computed once per batch, shared by the two metrics), and the
fixed-noise sample grid."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchvision.utils import make_grid, save_image

from sgmod_study.errors import ConfigError

GENERATED_CHUNK = 1000  # generated images per feature-net batch


class PrecomputedFeatures(nn.Identity):
    """torchmetrics' "feature extractor" for features we computed already (once, for FID and KID)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def build_fid(num_features: int, reset_real: bool) -> FrechetInceptionDistance:
    return FrechetInceptionDistance(feature=PrecomputedFeatures(num_features), reset_real_features=reset_real)


def build_kid(num_features: int, subset_size: int, reset_real: bool) -> KernelInceptionDistance:
    features = PrecomputedFeatures(num_features)
    return KernelInceptionDistance(feature=features, subset_size=subset_size, reset_real_features=reset_real)


def update_quality(
    fid: FrechetInceptionDistance, kid: KernelInceptionDistance, features: torch.Tensor, real: bool
) -> None:
    fid.update(features, real=real)
    kid.update(features, real=real)


def compute_quality(
    fid: FrechetInceptionDistance, kid: KernelInceptionDistance, world_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """FID and KID (its mean) of the features they were given, then reset for the next evaluation
    (which keeps the real features of a metric built with ``reset_real=False``)."""
    real_count = int(fid.real_features_num_samples) * world_size
    if real_count < kid.subset_size:
        raise ConfigError(
            f"task.kid_subset_size={kid.subset_size} is larger than the {real_count} real images evaluated; lower it"
        )
    fid_value, (kid_value, _) = fid.compute(), kid.compute()
    fid.reset()
    kid.reset()
    return fid_value, kid_value


def chunks(total: int, size: int = GENERATED_CHUNK) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def sample_grid(images: torch.Tensor) -> torch.Tensor:
    """Generated images (tanh range) as one square grid in [0, 1]."""
    square = math.ceil(math.sqrt(len(images)))
    return make_grid((images + 1) / 2, nrow=square).clamp(0, 1)


def publish_sample_grid(grid: torch.Tensor, loggers: Iterable, step: int, folder: Path, epoch: int) -> None:
    """The grid to every logger that shows images (TensorBoard), and to ``folder``/epochNNN.png."""
    for logger in loggers:
        if hasattr(logger.experiment, "add_image"):
            logger.experiment.add_image("samples", grid, global_step=step)
    folder.mkdir(parents=True, exist_ok=True)
    save_image(grid, folder / f"epoch{epoch:03d}.png")
