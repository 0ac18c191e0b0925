"""The Sgmod study as named parts, each a resumable Optuna sweep with a committed record.

    python scripts/study.py run controls [overrides...]   # train (resumes what is recorded)
    python scripts/study.py run all [overrides...]        # every part in order, skipping finished ones
    python scripts/study.py export controls               # refresh the per-run table only
    python scripts/study.py list                          # the parts and how far each is

Each part's record lives in ``study/<part>/`` (committed, text, small): ``study.journal``, the
Optuna storage itself (``optuna.load_study`` reads it, the next ``run`` continues it), and
``runs.jsonl``, one line per trial with its configuration, seed, metrics, final gamma/beta and
the machine it ran on. The run folders (checkpoints, TensorBoard events) go to
``outputs/study/<part>/`` and are not committed; ``runs.jsonl`` keeps the rows of trials whose
folders are on another machine, so a study moved between machines loses nothing.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from sgmod_study.checkpoints import write_atomic
from sgmod_study.diagnostics import SGMOD_FINAL_FILE
from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.report import read_scalars
from sgmod_study.sweeper.liveness import fail_orphaned_trials
from sgmod_study.sweeper.storage import open_journal_read_only, open_storage
from sgmod_study.trial_contract import RESULT_FILE

RECORD_DIR = Path("study")
RUNS_DIR = Path("outputs") / "study"
RUNS_FILE = "runs.jsonl"
MACHINE_FILE = "machine.json"
# The full default budget: 10 epochs of 215 AdamW steps; under the cosine schedule gamma/beta
# can travel about 1.2 at lr 1e-3, enough for (1, 0) -> (2, -1).
FULL = ("trainer.max_epochs=10",)
# A baseline sweep's trials: two searched dimensions need fewer points than Sgmod's six.
BASELINE_TRIALS = 32
# After --time-limit the sweep stops its trials and writes its tables; past this many seconds more
# it is terminated.
STOP_GRACE_S = 120.0
# Config entries a run's row keeps (the rest is in the run folder's .hydra/config.yaml).
ROW_KEYS = ("activation", "optimizer", "norm", "seed", "trainer.max_epochs", "model.name", "data.name")
# TensorBoard curves a row keeps (per epoch, or every diagnostics.every_n_steps for sgmod/ and grad_norm/).
CURVES = ("val/acc", "val/loss", "train/loss", "train/acc", "sgmod/", "grad_norm/")


@dataclass(frozen=True)
class Part:
    name: str
    overrides: tuple[str, ...]
    question: str
    trials: int  # finished trials that complete the part (its hydra.sweeper.n_trials)
    best_of: str | None = None  # a sweep part whose chosen configuration this part retrains
    pick: str = "best"  # which configuration of best_of: "best" trial or the "recommended" default


PARTS = {
    p.name: p
    for p in (
        Part(
            "controls",
            ("experiment=study_controls", *FULL),
            "learnable vs fixed gamma/beta, slope vs centring, sigmoid, tanh, relu; 9 variants x 8 seeds",
            trials=72,
        ),
        Part(
            "sweep_sgmod",
            ("hparams_search=sgmod_classifier", *FULL),
            "Sgmod over gamma/beta init, gamma/beta lr and wd, network lr and wd (64 Sobol points)",
            trials=64,
        ),
        *(
            Part(
                f"sweep_{name}",
                ("hparams_search=baseline_classifier", f"activation={name}", *FULL),
                f"{name} over the network's lr and wd ({BASELINE_TRIALS} Sobol points: two dimensions)",
                trials=BASELINE_TRIALS,
            )
            for name in ("sigmoid", "tanh", "relu")
        ),
        *(
            Part(
                f"confirm_{name}",
                ("experiment=study_confirm", f"activation={name}", *FULL),
                f"the best {name} configuration of sweep_{name}, retrained on 10 fresh seeds",
                trials=10,
                best_of=f"sweep_{name}",
            )
            for name in ("sgmod", "sigmoid", "tanh", "relu")
        ),
        Part(
            "confirm_tanh_cpu",
            ("experiment=study_confirm", "activation=tanh", *FULL, "trainer=cpu"),
            "confirm_tanh again on a CPU: tuned tanh against tuned Sgmod and sigmoid (CPU runs) on one kind of "
            "machine, and the GPU's effect paired by seed",
            trials=10,
            best_of="sweep_tanh",
        ),
        Part(
            "confirm_sgmod_default",
            ("experiment=study_confirm", "activation=sgmod", *FULL),
            "the recommended Sgmod default (rounded medians of sweep_sgmod's top quarter) on 10 fresh seeds",
            trials=10,
            best_of="sweep_sgmod",
            pick="recommended",
        ),
    )
}
ALL = "all"  # `run all`: every part in the order above


class RecordNotWritable(OSError):
    """A part's record folder cannot be written (a read-only mount, no permission, a full disk)."""


def part(name: str) -> Part:
    check_choice("part", name, PARTS)
    return PARTS[name]


def check_writable(name: str, root: Path = Path(".")) -> None:
    """Fail before a sweep starts if it could not write the part's record (its journal, runs.jsonl)."""
    folder = record_dir(name, root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        if (folder / "study.journal").is_file():
            open(folder / "study.journal", "ab").close()  # appends nothing: only asks for write access
    except OSError as err:
        raise RecordNotWritable(
            f"part={name}: its record {RECORD_DIR / name} cannot be written ({err.strerror or err}); "
            "running or exporting a part needs a writable study/ folder (list and report only read it)"
        ) from None


def finished(name: str, root: Path = Path(".")) -> int:
    """Finished (COMPLETE) trials of part ``name`` in its committed record."""
    return sum(row["state"] == "COMPLETE" for row in read_rows(record_dir(name, root) / RUNS_FILE))


def check_ready(p: Part, root: Path = Path(".")) -> None:
    """A confirm part retrains its sweep's choice only once that sweep is complete: a choice from
    part of a sweep would be fixed into the confirm study's setup and could not change later."""
    done = finished(p.best_of, root) if p.best_of else 0
    if p.best_of and done < PARTS[p.best_of].trials:
        raise ConfigError(
            f"part={p.name} retrains the {p.pick} configuration of {p.best_of}, which has "
            f"{done} of its {PARTS[p.best_of].trials} trials: "
            f"finish it first (scripts/study.py run {p.best_of})"
        )


def record_dir(name: str, root: Path = Path(".")) -> Path:
    return root / RECORD_DIR / name


def sweep_command(p: Part, overrides: Sequence[str], root: Path = Path(".")) -> list[str]:
    """The ``python src/train.py -m ...`` that runs (or resumes) part ``p``, in the folder ``root``:
    its paths are relative to the repository, so what the sweep records holds no machine's path."""
    return [
        sys.executable,
        str(Path("src") / "train.py"),
        "-m",
        *p.overrides,
        *(chosen_overrides(p, root) if p.best_of else ()),
        f"hydra.sweeper.study_name={p.name}",
        f"hydra.sweeper.storage={RECORD_DIR / p.name / 'study.journal'}",
        f"hydra.sweep.dir={RUNS_DIR / p.name}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]


def chosen_overrides(p: Part, root: Path = Path(".")) -> list[str]:
    return best_overrides(p.best_of, root) if p.pick == "best" else recommended_overrides(p.best_of, root)


def best_overrides(sweep: str, root: Path = Path(".")) -> list[str]:
    """The searched parameters of the best finished trial of part ``sweep``, as overrides."""
    finished = [r for r in read_rows(record_dir(sweep, root) / RUNS_FILE) if r["state"] == "COMPLETE"]
    if not finished:
        raise ConfigError(f"part={sweep} has no finished trial yet; run it first: scripts/study.py run {sweep}")
    best = max(finished, key=lambda row: row["values"][0])
    return [f"{key}={value}" for key, value in sorted(best["params"].items())]


def recommended_overrides(sweep: str, root: Path = Path("."), share: float = 0.25) -> list[str]:
    """A round default from the sweep's top ``share`` of finished trials (at least 3): each searched
    parameter's median (geometric for log-scale ones) rounded to one significant digit (beta to the
    nearest 0.5). Less tied to one lucky seed than the single best trial; the confirm part then
    measures it on fresh seeds like every other choice."""
    trials = load(sweep, root).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not trials:
        raise ConfigError(f"part={sweep} has no finished trial yet; run it first: scripts/study.py run {sweep}")
    top = top_trials(trials, share)
    return [f"{key}={rounded(typical(top, key), is_log(top[0], key)):g}" for key in sorted(top[0].params)]


def top_trials(trials: Sequence[optuna.trial.FrozenTrial], share: float = 0.25) -> list[optuna.trial.FrozenTrial]:
    """The best ``share`` of ``trials`` (finished ones), at least 3, best first."""
    ranked = sorted(trials, key=lambda t: t.values[0], reverse=True)
    return ranked[: max(3, round(share * len(ranked)))]


def is_log(trial: optuna.trial.FrozenTrial, key: str) -> bool:
    return bool(getattr(trial.distributions[key], "log", False))


def typical(trials: Sequence[optuna.trial.FrozenTrial], key: str) -> float:
    """The median of parameter ``key`` over ``trials``: geometric for a log-scale parameter."""
    import numpy as np

    values = np.array([t.params[key] for t in trials], dtype=float)
    if is_log(trials[0], key):
        return float(np.exp(np.median(np.log(values))))
    return float(np.median(values))


def rounded(value: float, log: bool) -> float:
    """A value a person would type: one significant digit on a log scale, else the nearest 0.5."""
    return float(f"{value:.1g}") if log else round(value * 2) / 2


def run(name: str, overrides: Sequence[str] = (), time_limit: float | None = None, root: Path = Path(".")) -> int:
    """Run part ``name`` (or every part, for ``all``) until its study is complete or ``time_limit``
    seconds have passed, then mark trials the stopped sweep left RUNNING as interrupted and
    refresh ``runs.jsonl``. The sweep gets the limit (``hydra.sweeper.time_limit``: it starts no
    trial it does not expect to finish in time); after ``STOP_GRACE_S`` more it is terminated."""
    check_choice("part", name, [*PARTS, ALL])
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ConfigError(f"--time-limit={time_limit:g} is not allowed: it must be a number of seconds > 0")
    if name == ALL:
        return run_all(overrides, time_limit, root)
    p = part(name)
    done = finished(name, root)
    if done >= p.trials:
        print(
            f"[study] {name} is complete ({done} of {p.trials} trials): nothing to run; "
            "its results: scripts/study.py report (docs/report/study.md)"
        )
        return 0
    check_ready(p, root)
    check_writable(name, root)
    sweep_dir = root / RUNS_DIR / p.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / MACHINE_FILE).write_text(json.dumps(machine()))
    limit = [] if time_limit is None else [f"hydra.sweeper.time_limit={max(time_limit, 1.0):.0f}"]
    process = subprocess.Popen(sweep_command(p, [*overrides, *limit], root), cwd=root)
    with forwarding_signals(process):
        try:
            code = process.wait(timeout=None if time_limit is None else time_limit + STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"[study] {name}: time limit of {time_limit:g} s reached; stopping the sweep (it resumes next time)")
            process.terminate()
            code = process.wait()
    if not (record_dir(name, root) / "study.journal").is_file():
        return code  # the sweep stopped before its first trial (it printed why)
    study = load(name, root, write=True)
    interrupted = fail_orphaned_trials(study)
    if interrupted:
        print(f"[study] {name}: trials {interrupted} were interrupted; new trials take their place next time")
    rows = export(name, root)
    print(f"[study] {name}: {summary(rows)}; record in {RECORD_DIR / name}")
    return code


@contextmanager
def forwarding_signals(process: subprocess.Popen) -> Iterator[None]:
    """SIGTERM and SIGINT to this process go to the sweep, which stops its trials and records them
    as interrupted; this one waits for it and then refreshes the record. (Ctrl-C in a terminal
    reaches both: the sweep ignores the second one while it stops.)"""

    def forward(signum: int, frame) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    previous = {each: signal.signal(each, forward) for each in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def run_all(overrides: Sequence[str] = (), time_limit: float | None = None, root: Path = Path(".")) -> int:
    """Every unfinished part in order (controls, sweeps, confirms) within one ``time_limit``;
    stops at the first part that ends without finishing (time limit, failures, a bad setup)."""
    start = time.monotonic()
    for name, p in PARTS.items():
        if finished(name, root) >= p.trials:
            continue
        left = None if time_limit is None else time_limit - (time.monotonic() - start)
        if left is not None and left <= 0:
            print(f"[study] all: time limit of {time_limit:g} s reached before part {name}")
            return 0
        code = run(name, overrides, left, root)
        if code != 0 or finished(name, root) < p.trials:
            return code
    print("[study] all: every part is complete; the report: scripts/study.py report")
    return 0


def load(name: str, root: Path = Path("."), write: bool = False) -> optuna.Study:
    """Part ``name``'s study; read-only (no lock, nothing written) unless ``write``."""
    journal = record_dir(name, root) / "study.journal"
    if not journal.is_file():
        raise ConfigError(
            f"part={name} has no record yet ({RECORD_DIR / name / 'study.journal'}); "
            f"run it first: scripts/study.py run {name}"
        )
    storage = open_storage(str(journal), name, journal.parent)[0] if write else open_journal_read_only(journal)
    return optuna.load_study(study_name=name, storage=storage)


def export(name: str, root: Path = Path(".")) -> list[dict]:
    """Refresh ``study/<name>/runs.jsonl`` from the study and the run folders on this machine."""
    part(name)
    study = load(name, root)
    check_writable(name, root)
    path = record_dir(name, root) / RUNS_FILE
    rows = {row["number"]: row for row in read_rows(path)}
    for trial in study.get_trials(deepcopy=False):
        rows[trial.number] = {**rows.get(trial.number, {}), **trial_row(trial, root)}
    ordered = [rows[n] for n in sorted(rows)]
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in ordered).encode()
    if not path.is_file() or path.read_bytes() != text:  # an unchanged record keeps its file as it is
        write_atomic(path, lambda f: f.write(text))  # the committed record: whole or not at all
    return ordered


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = enumerate(path.read_bytes().split(b"\n"), start=1)
    return [_row(line, path, number) for number, line in lines if line.strip()]


def _row(line: bytes, path: Path, number: int) -> dict:
    try:
        row = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        row = None
    if not isinstance(row, dict):
        raise ConfigError(
            f"{path}: line {number} is not a run's row (the file is corrupted there); "
            f"restore it from git (git checkout -- {path}) or remove that line"
        )
    return row


def run_folder(stored: str, root: Path = Path(".")) -> Path | None:
    """Where a trial's run folder is on this machine. A relative folder is under the repository; an
    absolute one from another machine, .../outputs/study/<part>/trial_NNNN, is this repository's
    outputs/study/<part>/trial_NNNN (the record moved, the run folders may have been copied along)."""
    if not stored:
        return None
    folder = Path(stored)
    if not folder.is_absolute():
        return root / folder
    if folder.parts[-4:-2] == RUNS_DIR.parts:
        return root.joinpath(*folder.parts[-4:])
    return folder


def trial_row(trial: optuna.trial.FrozenTrial, root: Path = Path(".")) -> dict:
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
    folder = run_folder(trial.user_attrs.get("folder", ""), root)
    if folder is None or not (folder / ".hydra" / "config.yaml").is_file():
        return row  # the folder is on another machine: the earlier row keeps what it read there
    row["config"] = _config_subset(folder / ".hydra" / "config.yaml")
    row["metrics"] = _json(folder / RESULT_FILE).get("metrics")
    row["sgmod"] = _json(folder / SGMOD_FINAL_FILE) or None
    row["machine"] = _json(folder.parent / MACHINE_FILE) or None
    row["curves"] = curves(folder / "tensorboard")
    return row


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
        for part_name in key.split("."):
            value = value.get(part_name) if isinstance(value, Mapping) else None
        subset[key] = value
    return subset


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def summary(rows: Sequence[Mapping]) -> str:
    states = ["INTERRUPTED" if row.get("interrupted") else row["state"] for row in rows]
    return ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states))) or "no trials yet"


def machine() -> dict:
    """Where a run happened: figures from different machines are compared only with this said."""
    info = {"host": socket.gethostname(), "cpu": platform.processor() or platform.machine()}
    info["cpu_count"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    info["torch"] = torch.__version__
    # the widest vector extension ATen's CPU kernels use: CPUs under one model name differ (AVX2 or
    # AVX512), and with them the kernels' speed and their rounding
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
