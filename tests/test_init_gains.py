"""scripts/init_gains.py: the numbers behind the init gains, on a small MLP (no training)."""

from __future__ import annotations

import pytest

from init_gains import configs, measure
from sgmod_study.nn.init import activation_gain

ACTS = configs()


def test_sigmoids_slope_compensated_gain_loses_fewer_decades_than_pytorchs_table_gain_but_saturates_units():
    ours, table = (
        measure(ACTS["sigmoid"], activation_gain(ACTS["sigmoid"]), depth=8),
        measure(ACTS["sigmoid"], 1.0, depth=8),
    )
    assert activation_gain(ACTS["sigmoid"]) == pytest.approx(20 / 3)
    assert table["decades"] > ours["decades"] + 2  # gain 1: the gradient vanishes far faster
    assert ours["saturated"] > 0.1 and table["saturated"] < 0.01
    assert ours["std1"] == pytest.approx(20 / 3, rel=0.05) and table["std1"] == pytest.approx(1.0, rel=0.05)


def test_sgmod_at_1_0_is_measured_exactly_as_sigmoid_and_relu_has_no_saturation_share():
    assert measure(ACTS["sgmod_own_lr"], 1.0, depth=4) == measure(ACTS["sigmoid"], 1.0, depth=4)
    assert measure(ACTS["relu"], activation_gain(ACTS["relu"]), depth=4)["saturated"] is None
