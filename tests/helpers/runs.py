"""Training runs as the tests make them: the tiny preset, the composed config, ``src/train.py`` in a
subprocess, a GAN run of a few seconds, and the TensorBoard events a run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"

# The users' preset: `python src/train.py debug=tiny` (conf/debug/tiny.yaml), seconds on 2 CPU cores:
# scikit-learn's digits, 2 epochs, no progress bar or model summary, diagnostics every 5 steps, no checkpoint.
DEBUG_TINY = ["debug=tiny"]
# The same with checkpoints (best-epoch*.ckpt and last.ckpt), which most training tests resume,
# evaluate or check; the preset without them: DEBUG_TINY.
TINY = [*DEBUG_TINY, "trainer.enable_checkpointing=true"]


def compose_config(overrides: list[str], output_dir: Path):
    """conf/train.yaml composed with ``overrides``, as src/train.py would, writing to ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"output_dir={output_dir}"])


def run_train(args: list[str], run_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """python src/train.py <args> in a subprocess, output in run_dir."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def gan_overrides(data_dir: Path) -> list[str]:
    """A GAN run of a few seconds on the shipped sample."""
    return [
        "task=gan",
        f"data.data_dir={data_dir}",
        "data.system_dir=/nonexistent",
        "data.download=false",
        "data.batch_size=32",
        "data.val_size=64",
        "model.width=8",
        "model.latent_dim=16",
        "task.kid_subset_size=32",
        "task.grid_size=16",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1",
        "diagnostics.every_n_steps=1",
        "activation.impl=reference",  # no compile of the fused op in every process (test_sgmod_op.py tests it)
    ]


def read_events(log_dir: Path) -> dict:
    """Scalars {tag: [(step, value)]}, histogram tags and HParams entries of every event file in log_dir."""
    scalars, histograms, hparams = {}, set(), []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
        histograms.update(events.Tags()["histograms"])
        try:
            hparams_content = events.PluginTagToContent("hparams")
        except KeyError:  # this event file holds no HParams entry
            continue
        for tag, content in hparams_content.items():
            hparams.append((tag, plugin_data_pb2.HParamsPluginData.FromString(content)))
    return {"scalars": scalars, "histograms": histograms, "hparams": hparams}
