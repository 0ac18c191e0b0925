"""The GAN task: a DCGAN trained with manual optimisation, measured by FID/KID.

``task`` config (conf/task/gan.yaml): loss (bce | hinge | wgan_gp), per-network learning
rates, discriminator steps per generator step, evaluation size, divergence thresholds.
The losses are in gan_losses.py, FID/KID and the sample grid in gan_metrics.py, the
divergence check in gan_divergence.py.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import nn
from torchmetrics import MinMetric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from sgmod_study.data import DatasetSpec
from sgmod_study.errors import ConfigError, check_choice, check_positive
from sgmod_study.nn.feature_net import FrozenFeatures, load_feature_net
from sgmod_study.nn.models import Discriminator, Generator
from sgmod_study.tasks.checkpoints import read_checkpoint, rebuild_task
from sgmod_study.tasks.gan_divergence import DivergenceCheck
from sgmod_study.tasks.gan_losses import (
    LOSSES,
    discriminator_loss,
    discriminator_score,
    generator_loss,
    gradient_penalty,
)
from sgmod_study.tasks.gan_metrics import (
    PrecomputedFeatures,  # noqa: F401 (scripts/fid_sanity.py imports it from here)
    build_fid,
    build_kid,
    chunks,
    compute_quality,
    publish_sample_grid,
    sample_grid,
    update_quality,
)
from sgmod_study.tasks.optim import build_optimizer


class GAN(L.LightningModule):
    """Logs train/d_loss, train/g_loss, train/d_real, train/d_fake (D's mean probability for
    bce, mean logit otherwise), val/fid, val/kid, val/fid_best, test/fid, test/kid, and a
    fixed-noise sample grid at each evaluation."""

    FINAL_METRICS = ("val/fid_best", "val/kid", "test/fid", "test/kid")
    OPTIMIZER_NAMES = ("generator", "discriminator")  # configure_optimizers' order; names the lr-* curves
    DDP_FIND_UNUSED_PARAMETERS = True  # the discriminator step leaves the generator without gradients

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        features: FrozenFeatures,
        optimizer: Mapping,
        activations: Mapping[str, Mapping],
        task: Mapping,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator, self.features = generator, discriminator, features
        self.optimizer_cfg, self.activations = optimizer, activations
        self.loss = task["loss"]
        check_choice("task.loss", self.loss, LOSSES)
        self.lr_g = task["lr_g"] or optimizer["lr"]
        self.lr_d = task["lr_d"] or optimizer["lr"]
        self.d_steps, self.gp_weight, self.eval_samples = task["d_steps"], task["gp_weight"], task["eval_samples"]
        self.check_divergence = DivergenceCheck(self.loss, task["collapse_steps"], task["collapse_loss"])
        for key in ("d_steps", "eval_samples", "grid_size", "kid_subset_size"):
            check_positive(f"task.{key}", task[key])
        self.latent_dim = generator.project.in_features
        fixed = torch.randn(task["grid_size"], self.latent_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("fixed_noise", fixed, persistent=False)
        self._add_quality_metrics(min(task["kid_subset_size"], self.eval_samples))
        self._real_cached = False  # validation real features are computed once per run
        self._rank_noise: torch.Generator | None = None

    def _add_quality_metrics(self, kid_subset: int) -> None:
        """val_fid, test_fid, val_kid, test_kid, val_fid_best: their names are state_dict keys."""
        n = self.features.num_features
        self.val_fid, self.test_fid = (build_fid(n, reset_real) for reset_real in (False, True))
        self.val_kid, self.test_kid = (build_kid(n, kid_subset, reset_real) for reset_real in (False, True))
        self.val_fid_best = MinMetric()
        self.val_fid_best.persistent(True)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, map_location: Any = "cpu", strict: bool = True) -> GAN:
        """The GAN of a run's checkpoint, rebuilt from the run's config saved in it, with its trained
        weights (on the CPU unless ``map_location`` says otherwise); see ``Classifier.load_from_checkpoint``."""
        checkpoint = read_checkpoint(str(checkpoint_path), map_location)
        return rebuild_task(checkpoint, str(checkpoint_path), {"gan": build_gan}, strict)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def _noise(self, n: int) -> torch.Tensor:
        """``n`` latent vectors. Under DDP each rank draws its own: every rank is seeded alike,
        so the global generator would give them all the same noise (the same fake batch on each
        rank, and each evaluated fake image counted world-size times by FID/KID). A single
        process draws from the global generator, as it always did."""
        if self.trainer.world_size == 1:
            return torch.randn(n, self.latent_dim, device=self.device)
        if self._rank_noise is None:
            self._rank_noise = torch.Generator(device=self.device)
            self._rank_noise.manual_seed(torch.initial_seed() + self.global_rank)
        return torch.randn(n, self.latent_dim, device=self.device, generator=self._rank_noise)

    # -- training: a discriminator step every batch, a generator step every d_steps batches

    def training_step(self, batch, batch_idx: int) -> None:
        real, _ = batch
        opt_g, opt_d = self.optimizers()
        fake = self.generator(self._noise(real.shape[0]))
        logs = self._discriminator_step(opt_d, real, fake.detach())
        g_loss = None
        if (batch_idx + 1) % self.d_steps == 0:
            g_loss = logs["train/g_loss"] = self._generator_step(opt_g, fake)
        self.log_dict(logs, prog_bar=True)
        self.check_divergence(logs["train/d_loss"], g_loss, self.trainer)

    def _discriminator_step(self, opt_d: LightningOptimizer, real: torch.Tensor, fake: torch.Tensor) -> dict:
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        d_loss = discriminator_loss(self.loss, real_logits, fake_logits)
        if self.loss == "wgan_gp":
            d_loss = d_loss + self.gp_weight * gradient_penalty(self.discriminator, real, fake)
        self._step(opt_d, d_loss)
        return {
            "train/d_loss": d_loss,
            "train/d_real": discriminator_score(self.loss, real_logits),
            "train/d_fake": discriminator_score(self.loss, fake_logits),
        }

    def _generator_step(self, opt_g: LightningOptimizer, fake: torch.Tensor) -> torch.Tensor:
        # D's weights frozen meanwhile: their gradients here were never used (opt_d clears them
        # first), and under DDP a step that reached every parameter made each rank warn that
        # find_unused_parameters was not needed
        with self.toggled_optimizer(opt_g):
            g_loss = generator_loss(self.loss, self.discriminator(fake))
            self._step(opt_g, g_loss)
        return g_loss

    def _step(self, optimizer: LightningOptimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    # -- evaluation: FID/KID of eval_samples generated images against real images' features

    def validation_step(self, batch, batch_idx: int) -> None:
        real, _ = batch
        if not self.trainer.sanity_checking and not self._real_cached:
            self._update(self.val_fid, self.val_kid, real, real=True)
        self.log("val/d_real", discriminator_score(self.loss, self.discriminator(real)), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._real_cached = True
        fid, kid = self._generated_quality(self.val_fid, self.val_kid)
        self.val_fid_best(fid)
        self.log_dict({"val/fid": fid, "val/kid": kid, "val/fid_best": self.val_fid_best.compute()}, prog_bar=True)
        self._log_samples()

    def test_step(self, batch, batch_idx: int) -> None:
        self._update(self.test_fid, self.test_kid, batch[0], real=True)

    def on_test_epoch_end(self) -> None:
        fid, kid = self._generated_quality(self.test_fid, self.test_kid)
        self.log_dict({"test/fid": fid, "test/kid": kid})

    def _update(self, fid: FrechetInceptionDistance, kid: KernelInceptionDistance, images, real: bool) -> None:
        update_quality(fid, kid, self.features(images), real)

    @torch.no_grad()
    def _generated_quality(self, fid: FrechetInceptionDistance, kid: KernelInceptionDistance):
        per_rank = math.ceil(self.eval_samples / self.trainer.world_size)
        for n in chunks(per_rank):
            self._update(fid, kid, self.generator(self._noise(n)), real=False)
        return compute_quality(fid, kid, self.trainer.world_size)

    @torch.no_grad()
    def _log_samples(self) -> None:
        if not self.trainer.is_global_zero:
            return
        grid = sample_grid(self.generator(self.fixed_noise))
        folder = Path(self.trainer.default_root_dir) / "samples"
        publish_sample_grid(grid, self.loggers, self.global_step, folder, self.current_epoch)

    def configure_optimizers(self):
        optimizers = []
        for net, lr, act_cfg in (
            (self.generator, self.lr_g, self.activations["generator"]),
            (self.discriminator, self.lr_d, self.activations["discriminator"]),
        ):
            optimizers.append(build_optimizer(net, {**self.optimizer_cfg, "lr": lr}, act_cfg))
        return optimizers


def build_gan(c: Mapping, spec: DatasetSpec) -> GAN:
    """The GAN task from the resolved config ``c``."""
    model = c["model"]
    if model["name"] != "dcgan":
        raise ConfigError(f"task=gan needs model=dcgan or model=dcgan_baseline, got model={model['name']}")
    g_cfg, d_cfg = model["generator"], model["discriminator"]
    _check_gan_setup(c, spec)
    generator = Generator(
        model["latent_dim"], spec.channels, spec.image_size, g_cfg["activation"], g_cfg["norm"], model["width"]
    )
    discriminator = Discriminator(
        spec.channels, spec.image_size, d_cfg["activation"], d_cfg["norm"], model["width"], d_cfg["spectral_norm"]
    )
    activations = {"generator": g_cfg["activation"], "discriminator": d_cfg["activation"]}
    # the frozen feature net is in eval mode on purpose; Lightning would warn about it at fit start
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
    return GAN(generator, discriminator, FrozenFeatures(load_feature_net()), c["optimizer"], activations, c["task"])


def _check_gan_setup(c: Mapping, spec: DatasetSpec) -> None:
    """Combinations that cannot give a meaningful result fail before training."""
    if c["scheduler"]["name"] != "none":
        raise ConfigError(
            f"task=gan trains with constant learning rates: scheduler={c['scheduler']['name']} is not "
            "supported, use scheduler=none"
        )
    if c["trainer"].get("gradient_clip_val"):
        raise ConfigError(
            f"trainer.gradient_clip_val={c['trainer']['gradient_clip_val']} is not supported with "
            "task=gan (Lightning cannot clip manually optimised models); leave it null"
        )
    if c["task"]["loss"] == "wgan_gp" and c["model"]["discriminator"]["norm"]["name"] == "batch":
        raise ConfigError(
            "task.loss=wgan_gp with a batch-normalised discriminator: the gradient penalty is per sample, "
            "BatchNorm mixes samples; use model.discriminator.norm={name:layer} (or group/none)"
        )
    if spec.channels != 1:
        raise ConfigError(
            "task=gan measures FID/KID with a Fashion-MNIST feature net: use a 1-channel dataset "
            "(data=fashion_mnist or mnist)"
        )
