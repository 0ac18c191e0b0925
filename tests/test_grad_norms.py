"""The per-layer gradient norms the depth study's slopes are fitted to (GradNormMonitor)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sgmod_study.run.diagnostics import GradNormMonitor


class _Logger:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log_metrics(self, metrics, step) -> None:
        self.logged.update(metrics)


def _norms(
    grad_value: float, step: int = 0, steps: list[int] | None = None, model: nn.Module | None = None
) -> dict[str, float]:
    model = model or nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 10))
    for p in model.parameters():
        p.grad = torch.full_like(p, grad_value)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logger = _Logger()
    trainer = SimpleNamespace(global_step=step, optimizers=[optimizer], loggers=[logger])
    GradNormMonitor(every_n_steps=50, steps=steps).on_before_optimizer_step(trainer, model, optimizer)
    return logger.logged


@pytest.mark.parametrize("value", [1e-3, 1e-22, 1e-25, 1e-30])
def test_a_vanishing_gradient_keeps_its_norm_instead_of_underflowing_to_zero(value):
    # 256 x 256 equal elements: the norm is 256 * value; float32's squares underflow below about 1e-19
    norms = _norms(value)
    assert set(norms) == {"grad_norm/0", "grad_norm/1"}  # weights only (dim >= 2), one per layer
    assert norms["grad_norm/0"] == pytest.approx(256 * value, rel=1e-6, abs=0)
    assert norms["grad_norm/1"] == pytest.approx(2560**0.5 * value, rel=1e-6, abs=0)  # 10 x 256 elements


def test_norms_are_logged_only_every_n_steps():
    assert _norms(1.0, step=50) and not _norms(1.0, step=49)


def test_listed_steps_replace_every_n_steps():
    logged = [s for s in range(0, 1001, 50) if _norms(1.0, step=s, steps=[0, 50, 500])]
    assert logged == [0, 50, 500]  # not 100, 150, ... 1000
    assert _norms(1.0, step=7, steps=[7])


def test_a_spectrally_normalised_layer_is_named_as_the_layer():
    model = nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(4, 4)), nn.Linear(4, 2))
    assert set(_norms(1.0, model=model)) == {"grad_norm/0", "grad_norm/1"}
