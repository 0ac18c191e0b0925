"""The GAN task: a DCGAN trained with manual optimisation, measured at every evaluation.

``task`` config (conf/task/gan.yaml): loss (bce | hinge | wgan_gp), per-network learning
rates, discriminator steps per generator step, the generator's sampling mode, the evaluation
seed, divergence thresholds. The losses are in gan_losses.py, the metrics in gan_quality.py,
the evaluation machinery in gan_metrics.py, the divergence check in gan_divergence.py.

Which number counts: the final epoch's. Each evaluation compares as many generated images as
there are real ones (5k validation images each epoch, the 10k test images at the end), and the
test measures the final weights, not the best epoch's: a run that was good at epoch 2 and
unstable afterwards is scored by where it ended. The best epoch's FID/KID are kept as secondary
values (val/fid_best, val/kid_best, val/best_epoch), selected on the validation set.
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

from sgmod_study.data import DatasetSpec
from sgmod_study.errors import ConfigError, check_choice, check_positive
from sgmod_study.nn.feature_net import FrozenFeatures, load_feature_net
from sgmod_study.nn.init import initialize
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
    SAMPLE_MODES,
    FeatureSet,
    chunks,
    eval_noise,
    prefixed,
    publish_sample_grid,
    sample_grid,
    sampling_mode,
    stage_quality,
)
from sgmod_study.tasks.gan_quality import QUALITY_KEYS
from sgmod_study.tasks.optim import build_optimizer
from sgmod_study.tasks.step_logging import values_written_this_step

BEST_KEYS = ("val/fid_best", "val/kid_best", "val/best_epoch")


def _final_metrics() -> tuple[str, ...]:
    stages = ("val", "test", *(f"test_{mode}_mode" for mode in SAMPLE_MODES))
    return (*(f"{stage}/{key}" for stage in stages for key in QUALITY_KEYS), *BEST_KEYS)


class GAN(L.LightningModule):
    """Logs train/d_loss, train/g_loss, train/d_real, train/d_fake (D's mean probability for
    bce, mean logit otherwise); at each evaluation val/<key> for every key of QUALITY_KEYS (FID,
    KID and its standard error, precision, recall, classes covered, class entropy, collapsed) and
    the best epoch's val/fid_best, val/kid_best, val/best_epoch; at the test test/<key> from the
    generator in ``task.sample_mode`` and test_<other>_mode/<key> from the other mode; and a
    fixed-noise sample grid at each evaluation. ``evaluations`` lists every evaluation's values
    (result.json carries it)."""

    FINAL_METRICS = _final_metrics()
    TEST_CHECKPOINT = "last"  # the final weights are tested (see the module docstring)
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
        sample_batch: int = 256,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator, self.features = generator, discriminator, features
        self.optimizer_cfg, self.activations = optimizer, activations
        self.loss = task["loss"]
        check_choice("task.loss", self.loss, LOSSES)
        check_choice("task.sample_mode", task["sample_mode"], SAMPLE_MODES)
        self.sample_mode, self.eval_seed, self.sample_batch = task["sample_mode"], task["eval_seed"], sample_batch
        self.lr_g = task["lr_g"] or optimizer["lr"]
        self.lr_d = task["lr_d"] or optimizer["lr"]
        self.d_steps, self.gp_weight, self.kid_subset_size = task["d_steps"], task["gp_weight"], task["kid_subset_size"]
        self.check_divergence = DivergenceCheck(self.loss, task["collapse_steps"], task["collapse_loss"])
        for key in ("d_steps", "grid_size", "kid_subset_size"):
            check_positive(f"task.{key}", task[key])
        self.latent_dim = generator.project.in_features
        fixed = torch.randn(task["grid_size"], self.latent_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("fixed_noise", fixed, persistent=False)
        self.val_real, self.val_fake, self.test_real, self.test_fake = (FeatureSet() for _ in range(4))
        self._real_cached = False  # the validation images' features are computed once per run
        self._rank_noise: torch.Generator | None = None
        self.evaluations: list[dict] = []  # one entry per validation: result.json's "evaluations"
        self.best: dict[str, float] = {}

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, map_location: Any = "cpu", strict: bool = True) -> GAN:
        """The GAN of a run's checkpoint, rebuilt from the run's config saved in it, with its trained
        weights (on the CPU unless ``map_location`` says otherwise); see ``Classifier.load_from_checkpoint``."""
        checkpoint = read_checkpoint(str(checkpoint_path), map_location)
        return rebuild_task(checkpoint, str(checkpoint_path), {"gan": build_gan}, strict)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gan_evaluations"] = {"evaluations": self.evaluations, "best": self.best}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("gan_evaluations", {})
        self.evaluations, self.best = list(saved.get("evaluations", [])), dict(saved.get("best", {}))

    def _noise(self, n: int) -> torch.Tensor:
        """``n`` latent vectors for training. Under DDP each rank draws its own: every rank is seeded
        alike, so the global generator would give them all the same noise (the same fake batch on
        each rank). A single process draws from the global generator."""
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
        if values_written_this_step(self.trainer):
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

    # -- evaluation: as many generated images as real ones, in the features of the frozen net

    def validation_step(self, batch, batch_idx: int) -> None:
        real, _ = batch
        if not self.trainer.sanity_checking and not self._real_cached:
            self._add(self.val_real, real)
        self.log("val/d_real", discriminator_score(self.loss, self.discriminator(real)), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._real_cached = True
        values = prefixed("val", self._quality("val", self.val_real, self.val_fake, self.sample_mode))
        self._update_best(values)
        self.evaluations.append({"epoch": self.current_epoch + 1, "step": self.global_step, **values})
        self.log_dict({**values, **self.best}, prog_bar=False)
        self._log_samples(f"epoch{self.current_epoch:03d}.png")

    def on_test_epoch_start(self) -> None:
        self.test_real.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        self._add(self.test_real, batch[0])

    def on_test_epoch_end(self) -> None:
        other = next(mode for mode in SAMPLE_MODES if mode != self.sample_mode)
        values = prefixed("test", self._quality("test", self.test_real, self.test_fake, self.sample_mode))
        values |= prefixed(f"test_{other}_mode", self._quality("test", self.test_real, self.test_fake, other))
        self.log_dict(values)
        self._log_samples("final.png")

    def _add(self, feature_set: FeatureSet, images: torch.Tensor) -> None:
        features = self.features(images)
        feature_set.update(features, self.features.classify(features))

    @torch.no_grad()
    def _quality(self, stage: str, real: FeatureSet, fake: FeatureSet, mode: str) -> dict[str, float]:
        """The metrics of ``fake``, filled with as many generated images as this rank holds real ones."""
        noise = eval_noise(self.eval_seed, stage, self.global_rank, self.device)
        with sampling_mode(self.generator, mode):
            for n in chunks(real.local_count(), self.sample_batch):
                z = torch.randn(n, self.latent_dim, device=self.device, generator=noise)
                self._add(fake, self.generator(z))
        return stage_quality(real, fake, self.kid_subset_size, self.eval_seed)

    def _update_best(self, values: Mapping[str, float]) -> None:
        if values["val/fid"] < self.best.get("val/fid_best", math.inf):
            epoch = float(self.current_epoch + 1)
            self.best = {"val/fid_best": values["val/fid"], "val/kid_best": values["val/kid"], "val/best_epoch": epoch}

    @torch.no_grad()
    def _log_samples(self, name: str) -> None:
        if not self.trainer.is_global_zero:
            return
        with sampling_mode(self.generator, self.sample_mode):
            grid = sample_grid(self.generator(self.fixed_noise))
        path = Path(self.trainer.default_root_dir) / "samples" / name
        publish_sample_grid(grid, self.loggers, self.global_step, path)

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
    initialize(generator, model.get("init", "default"), g_cfg["activation"], Generator.OUTPUT_LAYERS)
    initialize(discriminator, model.get("init", "default"), d_cfg["activation"], Discriminator.OUTPUT_LAYERS)
    activations = {"generator": g_cfg["activation"], "discriminator": d_cfg["activation"]}
    # the frozen feature net is in eval mode on purpose; Lightning would warn about it at fit start
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
    features = FrozenFeatures(load_feature_net())
    return GAN(generator, discriminator, features, c["optimizer"], activations, c["task"], c["data"]["batch_size"])


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
    _check_decoupled_decay(c)
    if spec.channels != 1:
        raise ConfigError(
            "task=gan measures FID/KID with a Fashion-MNIST feature net: use a 1-channel dataset "
            "(data=fashion_mnist or mnist)"
        )


def _check_decoupled_decay(c: Mapping) -> None:
    """Weight decay in a GAN only decoupled (AdamW): Adam's, RMSprop's and SGD's add an L2 term to
    the gradient, which Adam's per-parameter scaling then distorts (Loshchilov and Hutter 2019)."""
    optimizer = c["optimizer"]
    if optimizer["name"] == "adamw":
        return
    decays = {"optimizer.weight_decay": optimizer.get("weight_decay", 0.0)}
    for net in ("generator", "discriminator"):
        decays[f"model.{net}.activation.weight_decay"] = c["model"][net]["activation"].get("weight_decay", 0.0)
    for key, value in decays.items():
        if value:
            raise ConfigError(
                f"{key}={value:g} with optimizer={optimizer['name']} is coupled L2 (added to the gradient), "
                "not allowed with task=gan: use optimizer=adamw (decoupled weight decay) or set it to 0"
            )
