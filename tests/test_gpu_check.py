"""scripts/gpu_check.py: its --dry-run runs every step on the CPU and writes the JSON and table."""

import json
import subprocess
import sys

import pytest

import gpu_check
from helpers.runs import ROOT


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    command = [sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return done, out


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_writes_json_and_markdown(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((out / "gpu_check.json").read_text())
    assert record["dry_run"] is True and record["device"] == "cpu (dry run)"
    steps = record["steps"]
    assert list(steps) == ["op", "trials", "sweep", "ddp", "tests"]
    assert all(entry["status"] == "ok" and entry["seconds"] > 0 for entry in steps.values())
    shapes = {tuple(r["shape"]) for r in steps["op"]["rows"]}
    assert shapes == {(8, 16, 8, 8), (4, 16, 64, 64), (64, 32)}
    assert list(steps["trials"]["runs"]) == ["plain", "channels_last"]
    assert all(run["metrics"]["test/acc"] >= 0 for run in steps["trials"]["runs"].values())
    last = steps["trials"]["runs"]["channels_last"]["overrides"]
    assert {"data.on_device=true", "trainer.precision=bf16-mixed", "speed.channels_last=true"} <= set(last)
    assert [v["variant"] for v in steps["sweep"]["variants"]] == ["1_per_gpu", "2_per_gpu"]
    assert all(v["finished"] == 1 and v["trials_per_hour"] > 0 for v in steps["sweep"]["variants"])
    assert "trainer=ddp_cpu" in steps["ddp"]["overrides"]
    assert "skipped" in steps["tests"]["summary"] and "failed" not in steps["tests"]["summary"]
    table = (out / "gpu_check.md").read_text()
    assert "# GPU check: cpu (dry run)" in table and "| 2 | " in table and "## ddp" in table


def test_a_failed_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(s, out):
        raise ValueError("no such device")

    monkeypatch.setitem(gpu_check.STEPS, "op", broken)
    monkeypatch.setitem(gpu_check.STEPS, "ddp", lambda s, out: {"overrides": ["x"], "wall_s": 1.0, "metrics": {}})
    record = gpu_check.run_check(True, tmp_path, ["op", "ddp"])
    assert record["steps"]["op"]["status"] == "failed"
    assert record["steps"]["op"]["error"] == "ValueError: no such device"
    assert record["steps"]["ddp"]["status"] == "ok"
    assert "failed: `ValueError: no such device`" in (tmp_path / "gpu_check.md").read_text()


def test_a_check_run_in_parts_keeps_the_earlier_steps_of_the_same_device(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.STEPS, "ddp", lambda s, out: {"overrides": ["x"], "wall_s": 1.0, "metrics": {}})
    monkeypatch.setitem(gpu_check.STEPS, "tests", lambda s, out: {"summary": "3 passed", "exit_code": 0})
    gpu_check.run_check(True, tmp_path, ["ddp"])
    record = gpu_check.run_check(True, tmp_path, ["tests"])
    assert list(record["steps"]) == ["ddp", "tests"]
    assert record["steps"]["ddp"]["wall_s"] == 1.0 and record["steps"]["ddp"]["date"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "## ddp" in table and "`pytest -m gpu`: 3 passed" in table

    other = json.loads((tmp_path / "gpu_check.json").read_text())
    (tmp_path / "gpu_check.json").write_text(json.dumps({**other, "device": "NVIDIA H100"}))
    record = gpu_check.run_check(True, tmp_path, ["tests"])
    assert list(record["steps"]) == ["tests"]  # another device's steps are not mixed in


def test_the_crossover_is_the_smallest_size_from_which_fused_always_wins():
    def rows(shape, plain, fused):
        return [
            {"shape": list(shape), "dtype": d, "variant": v, "fwd_bwd_ms": ms}
            for d in ("float32", "bfloat16")
            for v, ms in (("plain", plain), ("fused", fused))
        ]

    measured = rows((256, 128), 1.0, 2.0) + rows((64, 64, 8, 8), 1.0, 0.9) + rows((256, 64, 28, 28), 5.0, 2.0)
    assert gpu_check.crossover(measured) == {"float32": 64 * 64 * 8 * 8, "bfloat16": 64 * 64 * 8 * 8}
    assert gpu_check.crossover(rows((256, 64, 28, 28), 1.0, 2.0)) == {"float32": None, "bfloat16": None}


def test_the_op_section_says_where_the_compiled_kernels_win_in_words():
    entry = {
        "bandwidth_limit": {"gbps": 4814.0, "source": "a test"},
        "fused_min_elements": 1 << 27,
        "fused_beats_plain_from": {"float32": 262144, "bfloat16": None},
        "rows": [],
    }
    sentence = gpu_check._op_section(entry)[0]
    assert sentence.endswith(
        "the compiled kernels beat the plain expression in float32 from 262144 elements; "
        "in bfloat16 at none of the sizes measured."
    )


def test_without_cuda_the_full_check_refuses_and_names_the_dry_run():
    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "no CUDA device is visible; --dry-run runs the check's steps at tiny sizes on the CPU" in done.stderr
