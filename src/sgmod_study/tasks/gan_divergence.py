"""Stops a GAN run that diverged (``TrainingDiverged``, exit code 3) instead of burning its budget:
a non-finite loss, or a discriminator loss below ``task.collapse_loss`` for ``task.collapse_steps``
consecutive steps (bce and hinge only; 0 steps disables it)."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer

from sgmod_study.errors import TrainingDiverged


class DivergenceCheck:
    """Called after every training step with its losses (``g_loss`` None when G skipped the step)."""

    def __init__(self, loss: str, collapse_steps: int, collapse_loss: float) -> None:
        self.watch_collapse = loss != "wgan_gp"  # a WGAN critic's loss has no floor to collapse to
        self.collapse_steps, self.collapse_loss = collapse_steps, collapse_loss
        self.collapsed_for = 0

    def __call__(self, d_loss: torch.Tensor, g_loss: torch.Tensor | None, trainer: Trainer) -> None:
        losses = [d_loss] if g_loss is None else [d_loss, g_loss]
        non_finite = not all(torch.isfinite(loss).item() for loss in losses)
        collapsed = self._collapsed(d_loss)
        # every rank must stop together, or the others wait for it forever
        if trainer.strategy.reduce_boolean_decision(non_finite or collapsed, all=False):
            step = trainer.global_step
            if non_finite:
                g = "skipped" if g_loss is None else f"{g_loss.item():.4g}"
                raise TrainingDiverged(f"non-finite loss at step {step}: d_loss={d_loss.item():.4g} g_loss={g}")
            raise TrainingDiverged(
                f"discriminator collapsed at step {step}: d_loss < {self.collapse_loss} for "
                f"{self.collapsed_for} consecutive steps (task.collapse_steps={self.collapse_steps})"
            )

    def _collapsed(self, d_loss: torch.Tensor) -> bool:
        collapsing = self.watch_collapse and d_loss.item() < self.collapse_loss
        self.collapsed_for = self.collapsed_for + 1 if collapsing else 0
        return bool(self.collapse_steps) and self.collapsed_for >= self.collapse_steps
