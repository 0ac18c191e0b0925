"""The op and step benchmarks at CI size: the JSON they write has the fields and ratios promised."""

import json
import subprocess
import sys

import pytest

from benchmarks import step
from conftest import CONF, ROOT


@pytest.fixture(scope="module")
def op_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "scripts/benchmark.py", "op", "--size", "ci", "--out", str(out)]
    printed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    return json.loads((out / "op.json").read_text()), printed


def test_op_benchmark_measures_every_variant_in_both_dtypes(op_result):
    result, printed = op_result
    assert result["benchmark"] == "op" and result["device"] == "cpu" and result["shape"] == [8, 16, 8, 8]
    assert result["fused_kernels"] == "compiled"
    rows = {(r["variant"], r["dtype"]): r for r in result["results"]}
    assert set(rows) == {(v, d) for v in ("sigmoid", "silu", "naive", "sgmod") for d in ("float32", "bfloat16")}
    assert all(r["fwd_bwd_ms"] > 0 and r["peak_bytes"] is None for r in rows.values())  # no CUDA peak on a CPU
    assert rows["sgmod", "float32"]["saved_bytes"] == 8 * 16 * 8 * 8 * 4  # x only, like sigmoid's output
    assert rows["sgmod", "bfloat16"]["saved_bytes"] == 8 * 16 * 8 * 8 * 2
    ratios = result["ratios"]
    time_ratio = rows["sgmod", "float32"]["fwd_bwd_ms"] / rows["sigmoid", "float32"]["fwd_bwd_ms"]
    assert ratios["sgmod_vs_sigmoid_time_float32"] == pytest.approx(time_ratio)
    assert ratios["sgmod_vs_sigmoid_saved_float32"] == 1.0
    assert "sgmod_vs_naive_time_bfloat16" in printed and result["machine"]["cpu_count"] >= 1


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
