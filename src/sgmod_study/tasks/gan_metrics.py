"""The GAN's evaluation machinery: the feature sets of one evaluation (gathered across ranks), the
generator's sampling mode, its own seeded noise, and the fixed-noise sample grid. The metrics
themselves are pure functions in gan_quality.py.

Evaluation never draws from the global random number generator: the training run's noise and
shuffles come from it, so evaluating more or less often would otherwise change training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchvision.utils import make_grid, save_image

from sgmod_study.tasks.gan_quality import QUALITY_KEYS, quality

SAMPLE_MODES = ("train", "eval")
STAGES = ("val", "test")


class FeatureSet(Metric):
    """The feature net's features and class logits of the images of one evaluation; under DDP
    ``compute`` returns every rank's, concatenated."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self.add_state("logits", default=[], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, logits: torch.Tensor) -> None:
        self.features.append(features)
        self.logits.append(logits)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.features), dim_zero_cat(self.logits)

    def local_count(self) -> int:
        """Images this rank added (before any synchronisation)."""
        return sum(len(f) for f in self.features)


def stage_quality(real: FeatureSet, fake: FeatureSet, kid_subset_size: int, seed: int) -> dict[str, float]:
    """QUALITY_KEYS of one evaluation; ``fake`` is reset for the next one."""
    real_features, _ = real.compute()
    fake_features, fake_logits = fake.compute()
    fake.reset()
    return quality(
        real_features.double(), fake_features.double(), fake_logits, kid_subset_size=kid_subset_size, seed=seed
    )


def prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{key}": values[key] for key in QUALITY_KEYS}


def eval_noise(seed: int, stage: str, rank: int, device: torch.device) -> torch.Generator:
    """The noise of one evaluation: its own generator, the same latents at every evaluation of a
    stage (epochs compare on equal terms), different ones per stage and per DDP rank."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + STAGES.index(stage) * 10_007 + rank)
    return generator


@contextmanager
def sampling_mode(generator: nn.Module, mode: str) -> Iterator[None]:
    """``generator`` in ``mode`` while it samples: "train" (BatchNorm's batch statistics, what the
    discriminator saw in training) or "eval" (its running statistics). Its buffers (the running
    statistics a train-mode forward would update) and its mode are restored afterwards, so
    sampling never changes the model that trains on."""
    was_training = generator.training
    saved = [buffer.clone() for buffer in generator.buffers()]
    generator.train(mode == "train")
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(generator.buffers(), saved, strict=True):
                buffer.copy_(value)
        generator.train(was_training)


def chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def sample_grid(images: torch.Tensor) -> torch.Tensor:
    """Generated images (tanh range) as one square grid in [0, 1]."""
    square = math.ceil(math.sqrt(len(images)))
    return make_grid((images + 1) / 2, nrow=square).clamp(0, 1)


def publish_sample_grid(grid: torch.Tensor, loggers: Iterable, step: int, path: Path) -> None:
    """The grid to every logger that shows images (TensorBoard), and to ``path`` (a PNG)."""
    for logger in loggers:
        if hasattr(logger.experiment, "add_image"):
            logger.experiment.add_image("samples", grid, global_step=step)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
