"""A short run's fixed cost: where the time of a 5-step run goes, with ReLU and with Sgmod.

Every sweep trial is a fresh ``python src/train.py`` process, so what a process pays before and
around its few training steps is paid once per trial. Each variant below is such a process:
5 training steps, 5 validation and 5 test batches of the default CNN (progress bar off), the
variants taken in turn over several rounds and the fastest round counted (noise only adds):

- ``interpreter``: ``python -c pass``;
- ``imports``: ``python -c "import sgmod_study.run.training"`` (torch, Lightning, torchvision ...);
- ``data``: the imports plus reading the dataset into tensors;
- ``relu``, ``sgmod`` (the fused op, the compiler's cache warm), ``sgmod_reference``
  (``activation.impl=reference``: nothing compiled): the whole run;
- ``sgmod_cold``: the fused op with an empty compiler cache (``TORCHINDUCTOR_CACHE_DIR``), what
  the first trial on a machine pays.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine, run_checked

ROOT = Path(__file__).resolve().parents[2]
SIZES = {
    "ci": {"data": "digits", "steps": 2, "rounds": 1},
    "full": {"data": "fashion_mnist", "steps": 5, "rounds": 3},
}
RUNS = {"relu": ["activation=relu"], "sgmod": ["activation=sgmod"], "sgmod_reference": ["activation.impl=reference"]}


def run(size: str = "full", out_dir: Path | None = None) -> dict:
    spec = SIZES[size]
    out_dir = out_dir or Path(tempfile.mkdtemp(prefix="startup_"))
    cache = out_dir / "inductor_cache"  # warm: shared by every warm run of this benchmark
    commands = {
        "interpreter": [sys.executable, "-c", "pass"],
        "imports": [sys.executable, "-c", "import sgmod_study.run.training"],
        "data": [sys.executable, "-c", _DATA_SNIPPET.format(data=spec["data"])],
        **{name: _train_command(spec, overrides, out_dir / name) for name, overrides in RUNS.items()},
    }
    _timed(commands["sgmod"], cache)  # fills the warm cache
    best = dict.fromkeys([*commands, "sgmod_cold"], float("inf"))
    for i in range(spec["rounds"]):
        for name, command in commands.items():
            best[name] = min(best[name], _timed(command, cache))
        cold = out_dir / f"cold_cache_{i}"
        best["sgmod_cold"] = min(best["sgmod_cold"], _timed(commands["sgmod"], cold))
    return {
        "benchmark": "startup",
        "size": size,
        "config": {"data": spec["data"], "steps": spec["steps"], "model": "cnn"},
        "machine": machine(),
        "seconds": best,
        "ratios": {
            "sgmod_vs_relu_warm": best["sgmod"] / best["relu"],
            "sgmod_vs_relu_cold": best["sgmod_cold"] / best["relu"],
            "sgmod_reference_vs_relu": best["sgmod_reference"] / best["relu"],
        },
    }


_DATA_SNIPPET = (
    "import sgmod_study.run.training\n"
    "from hydra import compose, initialize_config_dir\n"
    "from omegaconf import OmegaConf\n"
    "from sgmod_study.data import ImageDataModule\n"
    f"with initialize_config_dir(config_dir={str(ROOT / 'conf')!r}, version_base='1.3'):\n"
    "    cfg = compose('train', overrides=['data={data}'])\n"
    "dm = ImageDataModule(**OmegaConf.to_container(cfg.data, resolve=True), seed=0)\n"
    "dm.prepare_data()\n"
    "dm.setup('fit')\n"
)


def _train_command(spec: dict, overrides: list[str], run_dir: Path) -> list[str]:
    steps = spec["steps"]
    return [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        f"data={spec['data']}",
        *overrides,
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={steps}",
        f"+trainer.limit_val_batches={steps}",
        f"+trainer.limit_test_batches={steps}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]


def _timed(command: list[str], cache: Path) -> float:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    run_checked(command, ROOT, env)
    return time.perf_counter() - started


def format_table(result: dict) -> str:
    s, cfg = result["seconds"], result["config"]
    lines = [
        f"a {cfg['steps']}-step run of the default {cfg['model']} on {cfg['data']}, fresh processes, fastest round",
        f"{'phase':<34}{'s':>8}",
        f"{'interpreter start':<34}{s['interpreter']:>8.2f}",
        f"{'+ imports (torch, Lightning ...)':<34}{s['imports']:>8.2f}",
        f"{'+ data read into tensors':<34}{s['data']:>8.2f}",
        f"{'whole run, relu':<34}{s['relu']:>8.2f}",
        f"{'whole run, sgmod (warm cache)':<34}{s['sgmod']:>8.2f}",
        f"{'whole run, sgmod (cold cache)':<34}{s['sgmod_cold']:>8.2f}",
        f"{'whole run, sgmod impl=reference':<34}{s['sgmod_reference']:>8.2f}",
    ]
    lines += [f"{name}: {value:.3f}" for name, value in result["ratios"].items()]
    return "\n".join(lines)
