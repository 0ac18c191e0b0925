"""A Sgmod layer's final gamma and beta as a study's record keeps them: per channel, or, for a wide
layer, their summary.

A run's ``sgmod_final.json`` lists every channel's gamma and beta and the norm of the next layer's
weights that read it (``next_weight_norm``). The committed per-run table keeps those lists for a
layer of at most ``CHANNELS_KEPT`` channels (the classifier CNN's widest Sgmod layer has 128, the
DCGAN's fewer). A wider layer keeps its ``summary`` instead. The depth study's MLP has 256 channels
per layer, up to 32 layers: about 0.5 MB per run as lists. Readers call ``summary``, which gives the
same numbers from either form."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

CHANNELS_KEPT = 128
LISTS = ("gamma", "beta", "next_weight_norm")  # per channel


def summary(values: Mapping) -> dict[str, float]:
    """Means and extremes over a layer's channels; ``gamma_w_mean``: gamma times the next layer's
    incoming weight norm (gamma itself where that norm is unknown); ``centred_mean``: beta + gamma / 2."""
    if "summary" in values:
        return values["summary"]
    gamma, beta = values["gamma"], values["beta"]
    seen = values.get("next_weight_norm") or [1.0] * len(gamma)
    return {
        "channels": len(gamma),
        "gamma_mean": statistics.fmean(gamma),
        "gamma_min": min(gamma),
        "gamma_max": max(gamma),
        "beta_mean": statistics.fmean(beta),
        "beta_min": min(beta),
        "beta_max": max(beta),
        "centred_mean": statistics.fmean(b + g / 2 for g, b in zip(gamma, beta, strict=True)),
        "gamma_w_mean": statistics.fmean(g * w for g, w in zip(gamma, seen, strict=True)),
    }


def has_channels(values: Mapping) -> bool:
    """Whether the record kept this layer's per-channel values."""
    return "gamma" in values


def for_record(final: Mapping | None) -> dict | None:
    """A run's ``sgmod_final.json`` as its record row keeps it: wide layers as their summary."""
    if not final:
        return None
    layers = {name: _layer(values) for name, values in (final.get("layers") or {}).items()}
    return {**final, "layers": layers}


def _layer(values: Mapping) -> dict:
    if len(values.get("gamma") or ()) <= CHANNELS_KEPT:
        return dict(values)
    kept = {key: value for key, value in values.items() if key not in LISTS}
    rounded = {
        key: value if isinstance(value, int) else float(f"{value:.6g}") for key, value in summary(values).items()
    }
    return kept | {"summary": rounded}
