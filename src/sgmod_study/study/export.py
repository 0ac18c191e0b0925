"""A part's per-run table, ``runs.jsonl``: each trial as Optuna saw it, plus what its run folder
holds (configuration, status, metrics, every evaluation, final gamma/beta: per channel, or a wide
layer's summary (``sgmod_layers``), the machine, learning curves) while the folder is on this
machine. Rows of folders that are elsewhere are kept as they were read there. With ``samples``,
each run's final sample grid (a GAN's) is copied into the record too, as
``<part>/samples/NNNN.png``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import optuna
import yaml

from sgmod_study.paths import STUDY_RUNS
from sgmod_study.study.record import MACHINE_FILE, RUNS_FILE, Record, read_rows
from sgmod_study.study.sgmod_layers import for_record
from sgmod_study.trial_contract import RESULT_FILE, SGMOD_FINAL_FILE

# Config entries a run's row keeps (the rest is in the run folder's .hydra/config.yaml).
ROW_KEYS = ("activation", "optimizer", "norm", "seed", "trainer.max_epochs", "model.name", "data.name", "model", "task")
# TensorBoard curves a row keeps (per epoch, or every diagnostics.every_n_steps for sgmod/ and grad_norm/).
CURVES = ("val/acc", "val/loss", "train/loss", "train/acc", "sgmod/", "grad_norm/", "val/fid", "val/kid")
CURVES += ("val_batch_stats/",)
SAMPLES = "samples"  # a run folder's sample grids, and the record's copies of the final ones
FINAL_GRID = "final.png"


def export(record: Record, part: str, samples: bool = False, new_only: bool = False) -> list[dict]:
    """Refresh ``<record>/<part>/runs.jsonl`` from the part's study and the run folders here (and
    with ``samples``, copy their final sample grids into the record). With ``new_only`` (while the
    part's sweep runs) only the trials that ended since the file was written are read: a running
    trial gets no row yet, and reading every run's TensorBoard events again would cost seconds each."""
    from sgmod_study.tasks.checkpoints import write_atomic

    study = record.load(part)
    record.check_writable(part)
    path = record.folder / part / RUNS_FILE
    rows = {row["number"]: row for row in read_rows(path)}
    for trial in study.get_trials(deepcopy=False):
        if new_only and (not trial.state.is_finished() or rows.get(trial.number, {}).get("state") == trial.state.name):
            continue
        rows[trial.number] = {**rows.get(trial.number, {}), **trial_row(trial)}
        if samples:
            rows[trial.number] |= _copied_grid(trial, record.folder / part)
    ordered = [rows[n] for n in sorted(rows)]
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in ordered).encode()
    if not path.is_file() or path.read_bytes() != text:  # an unchanged record keeps its file as it is
        write_atomic(path, lambda f: f.write(text))  # the committed record: whole or not at all
    return ordered


def run_folder(stored: str) -> Path | None:
    """Where a trial's run folder is on this machine. A relative folder is under the repository; an
    absolute one from another machine, .../outputs/study/.../trial_NNNN, is this repository's
    outputs/study/.../trial_NNNN (the record moved, the run folders may have been copied along)."""
    if not stored:
        return None
    folder = Path(stored)
    if not folder.is_absolute():
        return folder
    parts = folder.parts
    for start in range(len(parts) - 1):
        if parts[start : start + 2] == STUDY_RUNS.parts:
            return Path(*parts[start:])
    return folder


def trial_row(trial: optuna.trial.FrozenTrial) -> dict:
    """One trial as a row: Optuna's view, plus what its run folder holds when it is here."""
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "values": trial.values,
        "params": trial.params,
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "fail_reason": trial.user_attrs.get("fail_reason"),
        "interrupted": bool(trial.user_attrs.get("interrupted")),  # killed with its sweep: runs again
        "device": trial.user_attrs.get("device"),
    }
    folder = run_folder(trial.user_attrs.get("folder", ""))
    if folder is None or not (folder / ".hydra" / "config.yaml").is_file():
        return row  # the folder is on another machine: the earlier row keeps what it read there
    row["config"] = _config_subset(folder / ".hydra" / "config.yaml")
    result = _json(folder / RESULT_FILE)
    row["metrics"] = result.get("metrics")
    row["status"] = result.get("status")
    if "evaluations" in result:
        row["evaluations"] = result["evaluations"]
    row["sgmod"] = for_record(_json(folder / SGMOD_FINAL_FILE))
    row["machine"] = _json(folder.parent / MACHINE_FILE) or None
    row["curves"] = curves(folder / "tensorboard")
    return row


def _copied_grid(trial: optuna.trial.FrozenTrial, part_dir: Path) -> dict:
    """``{"samples": "samples/NNNN.png"}`` once the trial's final grid is in the record."""
    folder = run_folder(trial.user_attrs.get("folder", ""))
    source = folder / SAMPLES / FINAL_GRID if folder is not None else None
    copy = Path(SAMPLES) / f"{trial.number:04d}.png"
    if source is not None and source.is_file():
        (part_dir / SAMPLES).mkdir(exist_ok=True)
        shutil.copyfile(source, part_dir / copy)
    return {"samples": str(copy)} if (part_dir / copy).is_file() else {}


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the TensorBoard event files in ``log_dir``: {tag: [(step, value)]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return {tag: sorted(points) for tag, points in series.items()}


def curves(log_dir: Path) -> dict[str, list[list[float]]]:
    """The learning curves and gamma/beta trajectories of a run, rounded: [[step, value], ...]."""
    kept = {}
    for tag, points in read_scalars(log_dir).items():
        if tag.startswith(CURVES) and not tag.endswith("_std") and tag != "train/loss_step":
            kept[tag] = [[step, float(f"{value:.6g}")] for step, value in points]
    return kept


def _config_subset(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    subset = {}
    for key in ROW_KEYS:
        value = config
        for name in key.split("."):
            value = value.get(name) if isinstance(value, Mapping) else None
        subset[key] = value
    return subset


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
