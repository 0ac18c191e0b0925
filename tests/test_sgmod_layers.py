"""What a record row keeps of a run's final gamma/beta (sgmod_layers), and that the reports read
the same numbers from a wide layer's summary as from its channels."""

from __future__ import annotations

import json
import random

import pytest

from sgmod_study.study.report import gamma_by_layer, travel
from sgmod_study.study.sgmod_layers import CHANNELS_KEPT, for_record, summary

ACT = {"gamma_init": 1.0, "beta_init": 0.0, "learn_gamma": True, "learn_beta": True}


def _layer(channels: int, seed: int) -> dict:
    rng = random.Random(seed)
    return {
        "gamma": [rng.uniform(0.5, 2.5) for _ in range(channels)],
        "beta": [rng.uniform(-1.0, 0.5) for _ in range(channels)],
        "next_weight_norm": [rng.uniform(0.1, 3.0) for _ in range(channels)],
        "learn_gamma": True,
        "learn_beta": True,
        "next_layer": "net.layer2.fc",
        "norm_between": False,
    }


def _final(channels: int) -> dict:
    return {"activation_lr_sum": 2.0, "layers": {f"net.layer{k}.act": _layer(channels, k) for k in (1, 2, 3)}}


def test_a_layer_up_to_the_cap_keeps_its_channels_and_a_wider_one_only_its_summary():
    narrow, wide = for_record(_final(CHANNELS_KEPT)), for_record(_final(256))
    assert narrow == _final(CHANNELS_KEPT)
    layer = wide["layers"]["net.layer1.act"]
    assert not {"gamma", "beta", "next_weight_norm"} & set(layer)
    assert (layer["next_layer"], layer["learn_gamma"], wide["activation_lr_sum"]) == ("net.layer2.fc", True, 2.0)
    channels = _layer(256, 1)
    g, b, w = channels["gamma"], channels["beta"], channels["next_weight_norm"]
    assert layer["summary"]["channels"] == 256 and isinstance(layer["summary"]["channels"], int)
    assert layer["summary"]["gamma_max"] == pytest.approx(max(g), rel=1e-5)
    assert layer["summary"]["beta_min"] == pytest.approx(min(b), rel=1e-5)
    assert layer["summary"]["gamma_w_mean"] == pytest.approx(
        sum(x * y for x, y in zip(g, w, strict=True)) / 256, rel=1e-5
    )
    assert layer["summary"]["centred_mean"] == pytest.approx(
        sum(y + x / 2 for x, y in zip(g, b, strict=True)) / 256, rel=1e-5
    )
    # the point: a 256-channel layer's row is a small fraction of its lists
    assert len(json.dumps(wide)) < len(json.dumps(_final(256))) / 20
    assert for_record(None) is None and for_record({}) is None


def test_the_reports_read_the_same_numbers_from_a_summary_as_from_the_channels():
    full, kept = _final(256), for_record(_final(256))
    for name in full["layers"]:
        assert summary(kept["layers"][name]) == pytest.approx(summary(full["layers"][name]), rel=1e-5)
        assert travel.moved(kept["layers"][name], ACT) == pytest.approx(
            max(
                max(abs(g - 1.0) for g in full["layers"][name]["gamma"]),
                max(abs(b) for b in full["layers"][name]["beta"]),
            ),
            rel=1e-5,
        )
    rows = [{"sgmod": full}, {"sgmod": kept}]
    values = [gamma_by_layer.final_values(r) for r in rows]
    assert values[0]["gamma"] == pytest.approx(values[1]["gamma"], rel=1e-5)
    assert values[0]["beta"] == pytest.approx(values[1]["beta"], rel=1e-5)
    assert sorted(values[1]["gamma"]) == [1, 2, 3]


def test_the_channel_scatter_leaves_out_layers_kept_as_a_summary():
    narrow = {"sgmod": for_record(_final(8))}
    wide = {"sgmod": for_record(_final(256))}
    points = travel.channel_points({"a": [narrow], "b": [wide]})
    assert set(points) == {"net.layer1.act", "net.layer2.act", "net.layer3.act"}
    assert all(set(by_config) == {"a"} and len(by_config["a"]) == 8 for by_config in points.values())
