"""The GAN task: a DCGAN trained with manual optimisation, measured by FID/KID.

``task`` config (conf/task/gan.yaml): loss (bce | hinge | wgan_gp), per-network learning
rates, discriminator steps per generator step, evaluation size, divergence thresholds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MinMetric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchvision.utils import make_grid, save_image

from sgmod_study.data import DatasetSpec
from sgmod_study.errors import ConfigError, TrainingDiverged, check_choice, check_positive
from sgmod_study.nn.feature_net import FrozenFeatures, load_feature_net
from sgmod_study.nn.models import Discriminator, Generator
from sgmod_study.tasks.checkpoints import read_checkpoint, rebuild_task
from sgmod_study.tasks.optim import build_optimizer

LOSSES = ("bce", "hinge", "wgan_gp")


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "bce":  # BCE(D(x), 1) + BCE(D(G(z)), 0), on logits
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()  # wgan_gp critic (penalty added separately)


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "bce":  # non-saturating: maximise log D(G(z))
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates.

    Needs double backward through every layer of D, the activation included.
    """
    mix = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    interpolates = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(interpolates).sum(), interpolates, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class PrecomputedFeatures(nn.Identity):
    """torchmetrics' "feature extractor" for features we computed already (once, for FID and KID)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


class GAN(L.LightningModule):
    """Logs train/d_loss, train/g_loss, train/d_real, train/d_fake (D's mean probability for
    bce, mean logit otherwise), val/fid, val/kid, val/fid_best, test/fid, test/kid, and a
    fixed-noise sample grid at each evaluation."""

    FINAL_METRICS = ("val/fid_best", "val/kid", "test/fid", "test/kid")
    # Every metric it logs: what optimized_metric and checkpoint.monitor may name (config_schema.py).
    LOGGED_METRICS = (
        "train/d_loss",
        "train/g_loss",
        "train/d_real",
        "train/d_fake",
        "val/d_real",
        "val/fid",
        "val/kid",
        "val/fid_best",
        "test/fid",
        "test/kid",
    )
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
        self.d_steps, self.gp_weight = task["d_steps"], task["gp_weight"]
        self.eval_samples, self.collapse_steps, self.collapse_loss = (
            task["eval_samples"],
            task["collapse_steps"],
            task["collapse_loss"],
        )
        for key in ("d_steps", "eval_samples", "grid_size", "kid_subset_size"):
            check_positive(f"task.{key}", task[key])
        self.latent_dim = generator.project.in_features
        fixed = torch.randn(task["grid_size"], self.latent_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("fixed_noise", fixed, persistent=False)
        kid_subset = min(task["kid_subset_size"], self.eval_samples)
        self.val_fid, self.test_fid = (self._fid(reset_real) for reset_real in (False, True))
        self.val_kid, self.test_kid = (self._kid(kid_subset, reset_real) for reset_real in (False, True))
        self.val_fid_best = MinMetric()
        self.val_fid_best.persistent(True)
        self._real_cached = False  # validation real features are computed once per run
        self._collapsed_for = 0
        self._rank_noise: torch.Generator | None = None

    def _fid(self, reset_real: bool) -> FrechetInceptionDistance:
        features = PrecomputedFeatures(self.features.num_features)
        return FrechetInceptionDistance(feature=features, reset_real_features=reset_real)

    def _kid(self, subset_size: int, reset_real: bool) -> KernelInceptionDistance:
        features = PrecomputedFeatures(self.features.num_features)
        return KernelInceptionDistance(feature=features, subset_size=subset_size, reset_real_features=reset_real)

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

    def _score(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits).mean() if self.loss == "bce" else logits.mean()

    def training_step(self, batch, batch_idx: int) -> None:
        real, _ = batch
        opt_g, opt_d = self.optimizers()
        fake = self.generator(self._noise(real.shape[0]))

        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake.detach())
        d_loss = discriminator_loss(self.loss, real_logits, fake_logits)
        if self.loss == "wgan_gp":
            d_loss = d_loss + self.gp_weight * gradient_penalty(self.discriminator, real, fake.detach())
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        logs = {
            "train/d_loss": d_loss,
            "train/d_real": self._score(real_logits),
            "train/d_fake": self._score(fake_logits),
        }

        g_loss = None
        if (batch_idx + 1) % self.d_steps == 0:
            # D's weights frozen meanwhile: their gradients here were never used (opt_d clears them
            # first), and under DDP a step that reached every parameter made each rank warn that
            # find_unused_parameters was not needed
            with self.toggled_optimizer(opt_g):
                g_loss = generator_loss(self.loss, self.discriminator(fake))
                opt_g.zero_grad()
                self.manual_backward(g_loss)
                opt_g.step()
            logs["train/g_loss"] = g_loss
        self.log_dict(logs, prog_bar=True)
        self._check_divergence(d_loss, g_loss)

    def _check_divergence(self, d_loss: torch.Tensor, g_loss: torch.Tensor | None) -> None:
        losses = [d_loss] if g_loss is None else [d_loss, g_loss]
        non_finite = not all(torch.isfinite(loss).item() for loss in losses)
        collapsing = self.loss != "wgan_gp" and d_loss.item() < self.collapse_loss
        self._collapsed_for = self._collapsed_for + 1 if collapsing else 0
        collapsed = bool(self.collapse_steps) and self._collapsed_for >= self.collapse_steps
        # every rank must stop together, or the others wait for it forever
        if self.trainer.strategy.reduce_boolean_decision(non_finite or collapsed, all=False):
            step = self.trainer.global_step
            if non_finite:
                g = "skipped" if g_loss is None else f"{g_loss.item():.4g}"
                raise TrainingDiverged(f"non-finite loss at step {step}: d_loss={d_loss.item():.4g} g_loss={g}")
            raise TrainingDiverged(
                f"discriminator collapsed at step {step}: d_loss < {self.collapse_loss} for "
                f"{self._collapsed_for} consecutive steps (task.collapse_steps={self.collapse_steps})"
            )

    # -- evaluation: FID/KID of eval_samples generated images against real images' features

    def validation_step(self, batch, batch_idx: int) -> None:
        real, _ = batch
        if not self.trainer.sanity_checking and not self._real_cached:
            self._update(self.val_fid, self.val_kid, real, real=True)
        self.log("val/d_real", self._score(self.discriminator(real)), sync_dist=True)

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
        features = self.features(images)
        fid.update(features, real=real)
        kid.update(features, real=real)

    @torch.no_grad()
    def _generated_quality(self, fid: FrechetInceptionDistance, kid: KernelInceptionDistance):
        per_rank = math.ceil(self.eval_samples / self.trainer.world_size)
        for n in _chunks(per_rank, 1000):
            self._update(fid, kid, self.generator(self._noise(n)), real=False)
        real_count = int(fid.real_features_num_samples) * self.trainer.world_size
        if real_count < kid.subset_size:
            raise ConfigError(
                f"task.kid_subset_size={kid.subset_size} is larger than the {real_count} real images "
                "evaluated; lower it"
            )
        fid_value, (kid_value, _) = fid.compute(), kid.compute()
        fid.reset()
        kid.reset()
        return fid_value, kid_value

    @torch.no_grad()
    def _log_samples(self) -> None:
        if not self.trainer.is_global_zero:
            return
        square = math.ceil(math.sqrt(len(self.fixed_noise)))
        grid = make_grid((self.generator(self.fixed_noise) + 1) / 2, nrow=square).clamp(0, 1)
        for logger in self.loggers:
            if hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image("samples", grid, global_step=self.global_step)
        folder = Path(self.trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"epoch{self.current_epoch:03d}.png")

    def configure_optimizers(self):
        optimizers = []
        for net, lr, act_cfg in (
            (self.generator, self.lr_g, self.activations["generator"]),
            (self.discriminator, self.lr_d, self.activations["discriminator"]),
        ):
            optimizers.append(build_optimizer(net, {**self.optimizer_cfg, "lr": lr}, act_cfg))
        return optimizers


def _chunks(total: int, size: int):
    while total > 0:
        yield min(size, total)
        total -= size


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
