"""The GAN's losses, on the discriminator's logits: non-saturating BCE, hinge, and WGAN-GP
(the critic loss plus its gradient penalty)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


def discriminator_score(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """What train/d_real, train/d_fake and val/d_real log: D's mean probability for bce, its mean
    logit otherwise (hinge and WGAN logits are no log-odds)."""
    return torch.sigmoid(logits).mean() if kind == "bce" else logits.mean()
