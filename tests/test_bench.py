"""The op and step benchmarks at CI size: the JSON they write has the fields and ratios promised."""

import json
import subprocess
import sys

import pytest

from benchmarks import step
from helpers.runs import CONF, ROOT
from sgmod_study.nn.sgmod_op import FUSED_MIN_ELEMENTS


@pytest.fixture(scope="module")
def op_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "scripts/benchmark.py", "op", "--size", "ci", "--out", str(out)]
    printed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    return json.loads((out / "op.json").read_text()), printed


def test_op_benchmark_measures_every_variant_in_both_dtypes_at_each_size(op_result):
    result, printed = op_result
    assert result["benchmark"] == "op" and result["device"] == "cpu" and result["size"] == "ci"
    assert result["fused_kernels"] == "compiled" and result["fused_min_elements"] == FUSED_MIN_ELEMENTS["cpu"]
    variants = ("sigmoid", "silu", "affine", "naive", "plain", "fused", "sgmod")
    rows = {(tuple(r["shape"]), r["variant"], r["dtype"]): r for r in result["results"]}
    shapes = [(8, 16, 8, 8), (4, 16, 64, 64), (64, 32)]
    assert set(rows) == {(s, v, d) for s in shapes for v in variants for d in ("float32", "bfloat16")}
    assert all(r["fwd_bwd_ms"] > 0 and r["peak_bytes"] is None for r in rows.values())  # no CUDA peak on a CPU
    conv = (8, 16, 8, 8)
    assert rows[conv, "sgmod", "float32"]["saved_bytes"] == 8 * 16 * 8 * 8 * 4  # one tensor, like sigmoid's output
    assert rows[conv, "fused", "bfloat16"]["saved_bytes"] == 8 * 16 * 8 * 8 * 2
    # the bandwidth: five input-sized transfers over the time, and its fraction of the measured limit
    row = rows[conv, "sgmod", "float32"]
    assert row["gbps"] == pytest.approx(5 * 8 * 16 * 8 * 8 * 4 / (row["fwd_bwd_ms"] / 1e3) / 1e9)
    limit = result["bandwidth_limit"]
    assert limit["gbps"] > 0 and limit["source"].startswith("measured")
    assert row["fraction_of_limit"] == pytest.approx(row["gbps"] / limit["gbps"])
    ratios = result["ratios"]
    expected = rows[conv, "sgmod", "float32"]["fwd_bwd_ms"] / rows[conv, "sigmoid", "float32"]["fwd_bwd_ms"]
    assert ratios["8x16x8x8_float32_sgmod_vs_sigmoid_time"] == pytest.approx(expected)
    expected = rows[conv, "sgmod", "bfloat16"]["fwd_bwd_ms"] / rows[conv, "plain", "bfloat16"]["fwd_bwd_ms"]
    assert ratios["8x16x8x8_bfloat16_sgmod_vs_plain_time"] == pytest.approx(expected)
    assert ratios["64x32_float32_sgmod_vs_sigmoid_saved"] == 1.0
    assert "4x16x64x64" in printed and result["machine"]["cpu_count"] >= 1


def test_op_benchmark_refuses_a_size_it_does_not_have(tmp_path):
    command = [sys.executable, "scripts/benchmark.py", "step", "--size", "models", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--size models is not a size of the step benchmark; its sizes: ci, full" in done.stderr


@pytest.mark.slow
def test_step_benchmark_times_both_loops_on_the_same_config():
    result = step.run(size="ci", device="cpu", config_dir=CONF)
    assert result["config"] == {
        "data": "digits",
        "batch_size": 64,
        "model": "cnn",
        "activation": "sgmod",
        "precision": "32-true",
    }
    loops = {r["loop"]: r for r in result["results"]}
    assert set(loops) == {"lightning", "plain"}
    assert all(len(r["samples_ms"]) == 2 and r["ms_per_step"] > 0 for r in loops.values())
    expected = loops["lightning"]["ms_per_step"] / loops["plain"]["ms_per_step"]
    assert result["ratios"]["lightning_vs_plain"] == pytest.approx(expected)
    assert "lightning_vs_plain" in step.format_table(result)


def test_step_benchmark_needs_the_config_folder(tmp_path):
    with pytest.raises(Exception, match="has no train.yaml"):
        step.run(size="ci", config_dir=tmp_path)
