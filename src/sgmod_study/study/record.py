"""Where a study's parts are recorded, and reading those records (no torch, no training).

A part's record is ``<record>/<study>/<part>/``: ``study.journal``, the Optuna storage itself
(``optuna.load_study`` reads it, the next ``run`` continues it), and ``runs.jsonl``, one line per
trial with its configuration, seed, metrics, final gamma/beta and the machine it ran on. The run
folders (checkpoints, TensorBoard events) go to ``outputs/study/<study>/<part>/`` and are not
committed; ``runs.jsonl`` keeps the rows of trials whose folders are on another machine.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from sgmod_study.errors import ConfigError
from sgmod_study.study.spec import Study
from sgmod_study.sweeper.storage import DIVERGED, open_journal_read_only, open_storage

JOURNAL = "study.journal"
RUNS_FILE = "runs.jsonl"
MACHINE_FILE = "machine.json"


class RecordNotWritable(OSError):
    """A part's record folder cannot be written (a read-only mount, no permission, a full disk)."""


@dataclass(frozen=True)
class Record:
    """A study's records: ``folder/<part>/``. A part not recorded there is read from ``shared``
    (the repository's record of the same study): a user's own records reuse its baselines."""

    folder: Path
    shared: Path | None = None

    def part_dir(self, part: str) -> Path:
        own = self.folder / part
        if self.shared is not None and not own.exists() and (self.shared / part).exists():
            return self.shared / part
        return own

    def rows(self, part: str) -> list[dict]:
        return read_rows(self.part_dir(part) / RUNS_FILE)

    def finished(self, part: str) -> int:
        """Trials of ``part`` with a result in its record: finished (COMPLETE) or diverged (a result
        too: the sweeper never runs one again); a lost one (``is_lost``) does not count."""
        return sum(has_result(row) for row in self.rows(part))

    def has_journal(self, part: str) -> bool:
        return (self.part_dir(part) / JOURNAL).is_file()

    def load(self, part: str, write: bool = False) -> optuna.Study:
        """Part ``part``'s Optuna study; read-only (no lock, nothing written) unless ``write``."""
        journal = self.part_dir(part) / JOURNAL
        if not journal.is_file():
            raise ConfigError(f"part={part} has no record yet ({journal}); run it first")
        storage = open_storage(str(journal), part, journal.parent)[0] if write else open_journal_read_only(journal)
        return optuna.load_study(study_name=part, storage=storage)

    def check_writable(self, part: str) -> None:
        """Fail before a sweep starts if it could not write the part's record (its journal, runs.jsonl)."""
        folder = self.folder / part
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
            if (folder / JOURNAL).is_file():
                open(folder / JOURNAL, "ab").close()  # appends nothing: only asks for write access
        except OSError as err:
            raise RecordNotWritable(
                f"part={part}: its record {folder} cannot be written ({err.strerror or err}); running a part "
                "needs a writable record folder (list and report only read it; --record DIR puts it elsewhere)"
            ) from None


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


def is_diverged(row: Mapping) -> bool:
    """A run that stopped because its training diverged (the sweeper's fail reason says so)."""
    return row["state"] == "FAIL" and str(row.get("fail_reason") or "").startswith(DIVERGED)


def ended(row: Mapping) -> bool:
    """Finished (COMPLETE) or diverged, as Optuna's record has it: what the sweeper counts."""
    return row["state"] == "COMPLETE" or is_diverged(row)


def is_lost(row: Mapping) -> bool:
    """A run that ended but whose details never reached the record: its machine stopped (a killed
    session, a lost node) after Optuna recorded its end and before its run folder was read into
    ``runs.jsonl``, and the folder went with the machine. The row has Optuna's view only (no
    configuration, metrics or curves). Not a result: its parameters run again (runner.requeue_lost)."""
    return ended(row) and "config" not in row


def has_result(row: Mapping) -> bool:
    """A run with a result in the record: it ended, and its details are here."""
    return ended(row) and not is_lost(row)


def complete(rows: Sequence[Mapping]) -> list[Mapping]:
    """The rows of finished runs that have their metrics."""
    return [r for r in rows if r["state"] == "COMPLETE" and r.get("metrics")]


def summary(rows: Sequence[Mapping]) -> str:
    """How many runs ended how: complete, diverged (a result), fail, interrupted, ..."""
    states = [_outcome(row) for row in rows]
    return ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states))) or "no trials yet"


def _outcome(row: Mapping) -> str:
    if row.get("interrupted"):
        return "INTERRUPTED"
    if is_lost(row):
        return "LOST"
    return "DIVERGED" if is_diverged(row) else row["state"]


def run_minutes(rows: Sequence[Mapping]) -> list[float]:
    """How long each finished run took, in minutes, as recorded (under whatever ran beside it)."""
    return [float(r["duration_s"]) / 60 for r in complete(rows) if r.get("duration_s")]


def run_minutes_by_part(study: Study, record: Record) -> dict[str, list[float]]:
    """Each part's ``run_minutes``."""
    return {name: run_minutes(record.rows(name)) for name in study.parts}


def expected_run_minutes(timed: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """How long a run of each part should take, in minutes, from ``run_minutes_by_part``: the median
    of the part's own recorded runs, else of the whole study's (the machine that runs it next may be
    faster or slower); empty before the study's first finished run."""
    everything = [m for minutes in timed.values() for m in minutes]
    if not everything:
        return {}
    return {name: statistics.median(minutes or everything) for name, minutes in timed.items()}


def time_left(study: Study, record: Record) -> str:
    """The runs ``study`` has left and the run-hours they should take (``expected_run_minutes``)."""
    left = {name: max(part.trials - record.finished(name), 0) for name, part in study.parts.items()}
    timed = run_minutes_by_part(study, record)
    expected = expected_run_minutes(timed)
    total, planned = sum(left.values()), sum(part.trials for part in study.parts.values())
    if not total:
        return f"left: none of {planned} runs"
    if not expected:
        return f"left: {total} of {planned} runs (no finished run to time them by yet)"
    hours = sum(n * expected[name] for name, n in left.items()) / 60
    overall = statistics.median(m for minutes in timed.values() for m in minutes)
    return (
        f"left: {total} of {planned} runs, about {hours:.1f} run-hours at the median recorded run "
        f"({overall:.1f} min, on the machines that ran them; each part's own where it has one). "
        "Runs side by side share them: divide by their number for the wall time"
    )


def pace_here(study: Study, record: Record, here: str) -> str | None:
    """How fast this CPU (``here``, as ``cpu_here`` names it) ran its share of the study's finished
    runs against the same parts' runs on other CPUs, and the run-hours left at that pace; None where
    it ran none of them, or only runs with no other CPU's to compare. GPU runs are no yardstick: a
    GPU ran the classifier's runs ~10x faster, and with them in, a CPU as fast as the others read as 9x slower."""
    mine, others, ratios = {}, {}, []
    for name in study.parts:
        rows = [r for r in record.rows(name) if not is_gpu(r)]
        mine[name] = run_minutes([r for r in rows if machine_name(r) == here])
        others[name] = run_minutes([r for r in rows if machine_name(r) != here])
        if others[name]:
            ratios += [m / statistics.median(others[name]) for m in mine[name]]
    if not ratios:
        return None
    factor = statistics.median(ratios)
    elsewhere = [m for minutes in others.values() for m in minutes]
    hours = 0.0
    for name, part in study.parts.items():
        each = statistics.median(mine[name]) if mine[name] else factor * statistics.median(others[name] or elsewhere)
        hours += max(part.trials - record.finished(name), 0) * each / 60
    return (
        f"this machine, {here}, took {factor:.1f}x as long as the other CPUs over the same parts (the median of "
        f"its {len(ratios)} finished runs): about {hours:.1f} run-hours left at its pace"
    )


def cpu_here() -> str:
    """This machine's CPU as ``machine_name`` names a run's, read without torch: the vector
    extension as ATen picks it (AVX512 where the CPU has avx512vl/bw/dq, AVX2 where it has avx2;
    both with fma)."""
    info = _cpu()
    flags = set(info.pop("flags"))
    if {"avx512vl", "avx512bw", "avx512dq", "fma"} <= flags:
        info["cpu_capability"] = "AVX512"
    elif {"avx2", "fma"} <= flags:
        info["cpu_capability"] = "AVX2"
    return machine_name({"machine": info})


def _cpu() -> dict:
    """The CPU's model name, the cores this process may use, and the CPU's flags (/proc/cpuinfo)."""
    info = {"cpu": platform.processor() or platform.machine(), "cpu_count": len(os.sched_getaffinity(0)), "flags": []}
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return info
    for line in lines:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            info["cpu"] = value
        elif key == "flags":
            info["flags"] = value.split()
            break
    return info


def machine() -> dict:
    """Where a run happened: figures from different machines are compared only with this said."""
    info = {"host": socket.gethostname()} | _cpu()
    del info["flags"]
    import torch  # only a run (which imports it anyway) asks where it ran

    info["torch"] = torch.__version__
    # the widest vector extension ATen's CPU kernels use: CPUs under one model name differ (AVX2 or
    # AVX512), and with them the kernels' speed and their rounding
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_name(row: Mapping) -> str:
    """The machine of a row, as the report names it."""
    info = row.get("machine") or {}
    if info.get("gpu"):
        return info["gpu"]
    capability = f", {info['cpu_capability']}" if info.get("cpu_capability") else ""
    return f"{info.get('cpu', '?')} ({info.get('cpu_count', '?')} cores{capability})"


def is_gpu(row: Mapping) -> bool:
    return bool((row.get("machine") or {}).get("gpu"))
