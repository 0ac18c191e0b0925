"""Optuna sweeps in which every trial is a fresh ``python src/train.py`` process.

Why not hydra-optuna-sweeper: its PyPI release pins optuna < 3 (whose RDB storage fails with
SQLAlchemy 2), runs trials in the sweeper's process (no pruning, DDP relaunches the whole sweep,
one crash ends the sweep) and waits for a whole batch of n_jobs trials before starting the next.
Here the sweeper asks Optuna for a trial, starts a process for it as soon as a slot is free,
and tells Optuna the outcome when the process exits:

- exit 0 with a finite value in ``<trial dir>/result.json`` -> COMPLETE
- exit 4 (``TrialPruned`` in the child's ``OptunaPruning`` callback) -> PRUNED, last reported value
- anything else (bad config 2, divergence 3, crash, kill, timeout, NaN) -> FAIL, reason recorded

The study lives in ``storage`` (default: a journal file under outputs/optuna/, safe for several
local processes), so running the same command again resumes it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import OverrideParseException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sgmod_study.errors import EXIT_CONFIG, EXIT_DIVERGED, EXIT_PRUNED, ConfigError

RESULT_FILE = "result.json"
# Environment of a trial process: how its pruning callback re-attaches to the study.
ENV_STORAGE, ENV_STUDY, ENV_TRIAL_ID, ENV_PRUNER = (
    "SGMOD_OPTUNA_STORAGE",
    "SGMOD_OPTUNA_STUDY",
    "SGMOD_OPTUNA_TRIAL_ID",
    "SGMOD_OPTUNA_PRUNER",
)
ENV_TRIAL_NUMBER = "SGMOD_OPTUNA_TRIAL_NUMBER"  # the trial's name in TensorBoard's HParams table
OWNER_ATTR = "sgmod:owner"  # host:pid of the sweeper process that runs the trial


# -- search space ------------------------------------------------------------------------------


def distribution(override: Override) -> BaseDistribution:
    """Optuna distribution of one sweep override in Hydra's grammar.

    ``interval(a, b)`` floats (``tag(log, ...)`` log scale, ``tag(int, ...)`` integers),
    ``range(start, stop[, step])`` with its stop excluded, ``choice(...)`` categorical.
    A value Optuna would refuse is refused here, in one line naming the parameter.
    """
    sweep = override.value()
    line = override.input_line
    log = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(sweep, RangeSweep):
        return _range_distribution(override, sweep)
    if isinstance(sweep, IntervalSweep):  # Hydra makes interval bounds floats; tag(int, ...) asks for ints
        as_int = "int" in sweep.tags
        low, high = (int(sweep.start), int(sweep.end)) if as_int else (float(sweep.start), float(sweep.end))
        if low > high:
            raise ConfigError(
                f"{line} is not allowed: low {low} > high {high}; allowed: interval(low, high) with low <= high"
            )
        if log and low <= 0:  # for tag(int, ...) too: int(0.5) is 0
            raise ConfigError(
                f"{line} is not allowed: a log interval needs low > 0 (low {low}); "
                "allowed: tag(log, interval(low, high)) with 0 < low <= high"
            )
        return IntDistribution(low, high, log=log) if as_int else FloatDistribution(low, high, log=log)
    raise ConfigError(
        f"{line} is not a sweep; allowed: choice(...), range(start, stop, step), interval(low, high), "
        "tag(log, interval(low, high)), tag(int, interval(low, high))"
    )


def _range_distribution(override: Override, sweep: RangeSweep) -> BaseDistribution:
    step = sweep.step
    if not step > 0 or not sweep.start < sweep.stop:
        raise ConfigError(
            f"{override.input_line} is not allowed: start {sweep.start}, stop {sweep.stop}, step {step}; "
            "allowed: range(start, stop[, step]) with start < stop and step > 0 (stop excluded)"
        )
    values = list(override.sweep_iterator())
    if all(isinstance(v, int) for v in values):
        return IntDistribution(values[0], values[-1], step=step)
    return FloatDistribution(values[0], values[0] + step * (len(values) - 1), step=step)


def search_space(params: Mapping[str, str], arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions of the sweep overrides in ``params`` and the command line; the fixed rest."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    space, fixed = {}, []
    for override in _parse(lines):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def _parse(lines: Sequence[str]) -> list[Override]:
    parser = OverridesParser.create()
    overrides = []
    for line in lines:  # one at a time, so that an error names its line
        try:
            overrides.extend(parser.parse_overrides([line]))
        except OverrideParseException as err:
            reasons = [r for r in str(err).splitlines()[1:] if not r.startswith("See https")]
            detail = reasons[0].split(": ", 1)[-1] if reasons else "not Hydra's override grammar"
            raise ConfigError(
                f"{line} cannot be parsed ({detail}); allowed: key=value, choice(a, b, ...) with at least one value, "
                "range(start, stop, step), interval(low, high), tag(log, interval(low, high))"
            ) from None
    return overrides


def probe_overrides(space: Mapping[str, BaseDistribution], fixed: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """Override lists of trial configs that together give every searched parameter its bounds and
    each of its choices: first all at their first value, then one parameter changed at a time.
    Each comes with the searched overrides that make it new, to name in an error."""
    values = {key: _probe_values(d) for key, d in space.items()}
    first = [f"{key}={vs[0]}" for key, vs in values.items()]
    probes = [([*fixed, *first], first)]
    for i, (key, vs) in enumerate(values.items()):
        for v in vs[1:]:
            changed = f"{key}={v}"
            probes.append(([*fixed, *first[:i], changed, *first[i + 1 :]], [changed]))
    return probes


def _probe_values(d: BaseDistribution) -> list:
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    return [d.low] if d.low == d.high else [d.low, d.high]


# -- the study -----------------------------------------------------------------------------------


STUDY_NAME = re.compile(r"[A-Za-z0-9_=,.-]+")


def check_study_name(name) -> None:
    """The default journal is <storage folder>/<study_name>.journal: no name may leave that folder."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name) or name.startswith(".") or ".." in name:
        raise ConfigError(
            f"hydra.sweeper.study_name={name!r} is not allowed: use letters, digits and _ - . = , only, "
            "not starting with '.' and without '..' (it names the file outputs/optuna/<study_name>.journal)"
        )


def open_storage(storage: str | None, study_name: str, default_dir: Path):
    """A journal file under ``default_dir`` when no storage is given; an RDB URL otherwise."""
    if storage is not None and "://" in storage:
        return _rdb_storage(storage), storage
    check_study_name(study_name)
    path = Path(storage) if storage is not None else default_dir / f"{study_name}.journal"
    shown = str(path) if storage is not None else f"null (default {path})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        open(path, "ab").close()
        repair_journal(path)
    except OSError as err:
        reason = f"{path.parent} is a file" if isinstance(err, FileExistsError) else err.strerror or str(err)
        raise ConfigError(
            f"hydra.sweeper.storage={shown} cannot be used: {reason}; allowed: a journal file "
            "in a folder you can write to, or a database URL such as postgresql+psycopg2://user:password@host/db"
        ) from None
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path))), str(path)


def repair_journal(path: Path) -> None:
    """Move a cut last line (a crash or a full disk while a record was written) out of the journal.

    Optuna 5's JournalFileBackend.read_logs skips a last line without its newline (another process
    may still be writing it), and append_logs then writes the next record right after those bytes:
    the glued line is invalid JSON, so that record is lost (a new trial's: ask() fails with an
    AttributeError), and once any line follows it read_logs raises JSONDecodeError at every later
    start of the study. Under the journal's own lock nobody is writing, so such a tail is a cut
    record: its bytes go to ``<journal>.torn-<time>``, every complete line stays.
    """
    from optuna.storages.journal import JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    with get_lock_file(JournalFileSymlinkLock(str(path))):
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        _check_journal_lines(path, data[:end])
        tail = data[end:]
        if not tail:
            return
        if _json_object(tail):  # cut just before its newline: the record itself is whole
            with open(path, "ab") as f:
                f.write(b"\n")
            return
        side = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        side.write_bytes(tail)
        os.truncate(path, end)
    kept = data.count(b"\n", 0, end)
    print(
        f"[sweep] {path}: its last line was cut ({len(tail)} bytes, a crash while writing): moved to {side}; "
        f"the {kept} complete records are kept"
    )


def _check_journal_lines(path: Path, complete: bytes) -> None:
    lines = complete.split(b"\n")[:-1]
    for number, line in enumerate(lines, start=1):
        if not _json_object(line):
            raise ConfigError(
                f"hydra.sweeper.storage={path}: line {number} of {len(lines)} is not a journal record (the file is "
                "corrupted there, and Optuna cannot read the study past it); remove that line by hand "
                "(what it recorded is lost) or use another study_name"
            )


def _json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


# Seconds between the tries to open a database: workers started together on an empty database
# race to create Optuna's tables, and a server may still be starting.
RDB_RETRY_S = (0.5, 1.0, 1.5, 2.0)


def _rdb_storage(url: str) -> optuna.storages.RDBStorage:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    shown = hide_password(url)
    allowed = "allowed: a journal file path, or a SQLAlchemy URL such as postgresql+psycopg2://user:password@host/db"
    for wait in (*RDB_RETRY_S, None):
        try:
            return optuna.storages.RDBStorage(url)
        except ImportError as err:
            missing = getattr(err.__cause__, "name", None) or "its driver"
            raise ConfigError(
                f"hydra.sweeper.storage={shown} needs the database driver {missing}, which is not installed: "
                "pip install -e '.[sweep]' (the sweep extra brings psycopg2 for PostgreSQL)"
            ) from None
        except (ArgumentError, ValueError) as err:  # unknown scheme or driver, bad URL
            raise ConfigError(
                f"hydra.sweeper.storage={shown} is not a usable URL ({_one_line(err, url)}); {allowed}"
            ) from None
        except SQLAlchemyError as err:
            if wait is None:
                raise ConfigError(
                    f"hydra.sweeper.storage={shown} cannot be opened after {len(RDB_RETRY_S) + 1} tries "
                    f"({_one_line(err, url)})"
                ) from None
            time.sleep(wait)
    raise AssertionError("unreachable")


def hide_password(url: str) -> str:
    """``scheme://user:***@host/db``: URLs are printed and stored in logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _one_line(err: BaseException, url: str) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    password = re.search(r"://[^:/@]*:([^@]*)@", url)
    return text.replace(password.group(1), "***") if password and password.group(1) else text


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose sweeper process (on this host) is gone: a killed sweep."""
    host = socket.gethostname()
    orphaned = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = str(trial.system_attrs.get(OWNER_ATTR, "")).partition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "its sweeper process was killed")
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            orphaned.append(trial.number)
    return orphaned


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Settings that say how a trial runs or logs, not what it computes: a study may go on with others.
HOW_NOT_WHAT = (
    "output_dir",
    "ckpt_path",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.accelerator",
    "data.on_device",
    "data.num_workers",
    "data.data_dir",
    "data.system_dir",
    "data.download",
    "speed.",
    "diagnostics.",
    "logger.",
)
SETUP_ATTR = "fixed_setup"  # the study's user attribute that records it


def fixed_setup(config: Mapping, searched: Sequence[str]) -> dict:
    """What every trial of a study shares: the trial config's flat entries, less the searched ones
    (a searched config group, e.g. ``activation``, takes all its keys) and the HOW_NOT_WHAT ones."""
    from sgmod_study.diagnostics import flatten_config

    def is_searched(key: str) -> bool:
        return any(key == s or key.startswith(f"{s}.") for s in searched)

    flat = flatten_config(config)
    return {k: v for k, v in sorted(flat.items()) if not is_searched(k) and not k.startswith(HOW_NOT_WHAT)}


def check_fixed_setup(study: optuna.Study, setup: Mapping | None) -> None:
    """Record the fixed setup in a new study; refuse to add trials run under another one, which
    would silently mix two experiments in one study, its best trial and its tables."""
    if setup is None:
        return
    recorded = study.user_attrs.get(SETUP_ATTR)
    if recorded is None:
        study.set_user_attr(SETUP_ATTR, dict(setup))
        return
    # only keys both know: a setting added to the configs later (with a default that keeps the old
    # behaviour, the project's rule) must not lock every committed study
    differ = sorted(k for k in set(recorded) & set(setup) if recorded[k] != setup[k])
    if differ:
        shown = "; ".join(f"{k}={recorded[k]} there, {setup[k]} here" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ConfigError(
            f"hydra.sweeper.study_name={study.study_name} was run under another fixed setup ({shown}{more}): "
            "its trials and these would mix; use another hydra.sweeper.study_name, or the study's settings"
        )


# Importances and plots are rewritten at most this often while a sweep runs (always at its end).
FIGURES_EVERY_S = 60.0


# -- running trials ------------------------------------------------------------------------------


@dataclass
class SweepSettings:
    study_name: str
    direction: str | list[str] = "minimize"
    n_trials: int = 20
    n_jobs: int = 1
    storage: str | None = None
    sampler: optuna.samplers.BaseSampler | None = None
    pruner: Mapping | None = None  # a Hydra `_target_` config, rebuilt in every trial process
    max_failure_rate: float = 0.0
    enqueue_trials: list[Mapping] = field(default_factory=list)
    trial_timeout: float | None = None
    trials_per_gpu: int = 1
    custom_search_space: Callable | None = None  # fn(cfg, trial) -> dict of extra overrides
    fixed_setup: Mapping | None = None  # the trials' fixed configuration (see fixed_setup()); None: unchecked
    metric_names: list[str] | None = None  # the optimized metrics, named in the study (optuna-dashboard)

    def __post_init__(self) -> None:
        check_settings(self)


DIRECTIONS = ("minimize", "maximize")


def check_settings(s: SweepSettings) -> None:
    """Every sweeper setting before anything runs, each bad one as one line (exit 2)."""
    _check_whole("n_trials", s.n_trials, "the finished trials the study should have")
    _check_whole("n_jobs", s.n_jobs, "trials running at once")
    _check_whole("trials_per_gpu", s.trials_per_gpu, "trials sharing one GPU")
    rate = s.max_failure_rate
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise ConfigError(
            f"hydra.sweeper.max_failure_rate={rate!r} is not allowed: it must be a number from 0 to 1 "
            "(the share of a run's trials that may fail before the sweep stops)"
        )
    timeout = s.trial_timeout
    if timeout is not None and (not _is_number(timeout) or not timeout > 0):
        raise ConfigError(
            f"hydra.sweeper.trial_timeout={timeout!r} is not allowed: it must be null (no limit) or seconds > 0"
        )
    directions = s.direction if isinstance(s.direction, list) else [s.direction]
    if not directions or any(d not in DIRECTIONS for d in directions):
        raise ConfigError(
            f"hydra.sweeper.direction={s.direction!r} is not allowed: it must be minimize or maximize, "
            "or a list of them (one per optimized_metric)"
        )
    check_study_name(s.study_name)


def check_directions(direction, optimized_metric) -> None:
    """One direction per optimized metric (a single direction for a single metric)."""
    metrics = list(optimized_metric) if isinstance(optimized_metric, (list, tuple)) else [optimized_metric]
    directions = direction if isinstance(direction, list) else [direction]
    if len(directions) != len(metrics):
        raise ConfigError(
            f"hydra.sweeper.direction={direction!r} is not allowed with optimized_metric={optimized_metric!r}: "
            f"it needs one direction (minimize or maximize) per metric, {len(metrics)} here"
        )


def check_workers(workers) -> None:
    _check_whole("workers", workers, "sweep workers started through the Hydra launcher")


def _check_whole(name: str, value, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"hydra.sweeper.{name}={value!r} is not allowed: it must be a whole number >= 1 ({meaning})")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class RunningTrial:
    trial: optuna.Trial
    process: subprocess.Popen
    folder: Path
    started: float


def _die_with_parent() -> None:
    # A sweeper killed with SIGKILL must not leave its trials running (Linux only).
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def slot_device(slot: int, trials_per_gpu: int, gpu_count: int) -> str | None:
    """The CUDA_VISIBLE_DEVICES of a slot: GPU slot // trials_per_gpu, or None on a CPU machine."""
    if gpu_count == 0:
        return None
    return str((slot // max(1, trials_per_gpu)) % gpu_count)


def trial_threads(n_jobs: int) -> int:
    """CPU threads per trial process: the cores shared out among the trials that run at once.
    With a thread per core each, 2 trials on 2 cores ran at 0.48x the throughput of one at a
    time (docs/benchmarks.md). An OMP_NUM_THREADS set by the user wins."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, n_jobs))


class Sweep:
    """Keeps ``n_jobs`` trial processes running until the study has ``n_trials`` finished trials."""

    def __init__(
        self,
        settings: SweepSettings,
        space: Mapping[str, BaseDistribution],
        fixed: Sequence[str],
        sweep_dir: Path,
        entry_script: Path,
        config=None,
    ) -> None:
        self.settings, self.space, self.fixed, self.config = settings, dict(space), list(fixed), config
        self.sweep_dir, self.entry_script = sweep_dir, entry_script
        self.storage, self.storage_name = open_storage(
            settings.storage, settings.study_name, Path("outputs") / "optuna"
        )
        directions = settings.direction if isinstance(settings.direction, list) else None
        self.study = optuna.create_study(
            study_name=settings.study_name,
            storage=self.storage,
            sampler=settings.sampler,
            direction=None if directions else settings.direction,
            directions=directions,
            load_if_exists=True,
        )
        if settings.metric_names and self.study.metric_names is None:
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2, unchanged through 5.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(list(settings.metric_names))  # not "Objective 0" in the dashboard
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.running: dict[int, RunningTrial] = {}  # by slot
        self.unwritten = False  # trials finished since the result files were last written
        self.figures_written = time.monotonic()
        self.grid_exhausted = False
        self.gpu_count = _gpu_count()
        self.failed: list[int] = []  # numbers of the trials this process told FAIL (not interruptions)
        self.to_run = settings.n_trials  # finished trials this run has to add; set when it starts

    def run(self) -> optuna.Study:
        check_fixed_setup(self.study, self.settings.fixed_setup)
        orphaned = fail_orphaned_trials(self.study)
        if orphaned:
            print(f"[sweep] marked FAIL the trials {orphaned} left RUNNING by a killed sweep")
        self._enqueue_baselines()
        self.to_run = max(0, self.settings.n_trials - count(self.study, *FINISHED))
        while True:
            self._collect_finished()
            self._check_failure_rate()
            finished = count(self.study, *FINISHED)
            if (finished >= self.settings.n_trials or self.grid_exhausted) and not self.running:
                break
            in_flight = count(self.study, TrialState.RUNNING)  # every worker's, for a shared study
            free = [slot for slot in range(self.settings.n_jobs) if slot not in self.running]
            wanted = 0 if self.grid_exhausted else self.settings.n_trials - finished - in_flight
            for slot in free[: max(0, wanted)]:
                self._start(slot)
            if self.unwritten:  # after the freed slots are busy again
                self._write_results()
            if not self.running and finished < self.settings.n_trials and in_flight:
                time.sleep(1.0)  # other workers run the last trials
                continue
            time.sleep(0.2)
        return self.study

    def _enqueue_baselines(self) -> None:
        """Enqueue each configuration unless it has a trial that ran, runs or waits to run.

        Not Optuna's skip_if_exists: that counts a FAIL trial too, so a baseline whose trial was
        killed with its sweep (or failed and then got fixed) would never run again."""
        live = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
        trials = self.study.get_trials(deepcopy=False, states=live)
        for params in self.settings.enqueue_trials:
            if not any(t.system_attrs.get("fixed_params", t.params) == dict(params) for t in trials):
                self.study.enqueue_trial(dict(params))

    def _start(self, slot: int) -> None:
        trial = self.study.ask(self.space)
        if self._surplus(trial):
            return
        extra = self.settings.custom_search_space(self.config, trial) if self.settings.custom_search_space else None
        folder = (self.sweep_dir / f"trial_{trial.number:04d}").resolve()  # valid from any working directory
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            ENV_STORAGE: self.storage_name,
            ENV_STUDY: self.study.study_name,
            ENV_TRIAL_ID: str(trial._trial_id),
            ENV_TRIAL_NUMBER: str(trial.number),
            ENV_PRUNER: json.dumps(self.settings.pruner or {}),
        }
        env.setdefault("OMP_NUM_THREADS", str(trial_threads(self.settings.n_jobs)))
        device = slot_device(slot, self.settings.trials_per_gpu, self.gpu_count)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        chosen = [*self.fixed, *(f"{k}={v}" for k, v in {**trial.params, **(extra or {})}.items())]
        overrides = [*chosen, f"hydra.run.dir={folder}"]
        for key, value in (
            ("slot", slot),
            ("device", device or "cpu"),
            ("folder", str(folder)),
            # pastes as it is, and trains into a fresh run folder, not next to the trial's checkpoints
            ("command", shlex.join(["python", str(self.entry_script), *chosen])),
        ):
            trial.set_user_attr(key, value)
        self.study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, self.owner)
        log = open(folder / "trial.log", "w")
        process = subprocess.Popen(
            [sys.executable, str(self.entry_script), *overrides],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.running[slot] = RunningTrial(trial, process, folder, time.monotonic())
        print(f"[sweep] trial {trial.number} started on slot {slot} ({device or 'cpu'}): {trial.params}")

    def _surplus(self, trial: optuna.Trial) -> bool:
        """Another worker of a shared study asked at the same moment and the study needs one trial
        fewer than the two of us started: the later-numbered trial gives way."""
        ahead = [
            t
            for t in self.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if t.number < trial.number
        ]
        if len(ahead) < self.settings.n_trials:
            return False
        trial.set_user_attr("fail_reason", "not needed: the study had n_trials trials when it started")
        trial.set_user_attr("interrupted", True)
        self._record(trial, state=TrialState.FAIL)
        return True

    def _collect_finished(self) -> None:
        for slot, run in list(self.running.items()):
            timeout = self.settings.trial_timeout
            if run.process.poll() is None:
                if timeout and time.monotonic() - run.started > timeout:
                    run.process.kill()
                    run.process.wait()
                    self._fail(run, f"timed out after {timeout:g} s")
                    del self.running[slot]
                continue
            self._tell(run)
            del self.running[slot]
            self.unwritten = True

    def _write_results(self) -> None:
        """The tables after every finished trial; importances and plots (seconds of work that
        would keep k short trials per GPU waiting) at most every FIGURES_EVERY_S, and at the end."""
        figures = time.monotonic() - self.figures_written >= FIGURES_EVERY_S
        write_results(self.study, self.sweep_dir, figures=figures)
        if figures:
            self.figures_written = time.monotonic()
        self.unwritten = False

    def _tell(self, run: RunningTrial) -> None:
        code = run.process.returncode
        if code == EXIT_PRUNED:
            self._record(run.trial, state=TrialState.PRUNED)
            print(f"[sweep] trial {run.trial.number} pruned")
            return
        if code != 0:
            self._fail(run, _exit_reason(code, run.folder))
            return
        values = _result_values(run.folder)
        if values is None or any(not math.isfinite(v) for v in values):
            self._fail(run, f"objective is not a finite number: {values}")
            return
        for name, value in _result_metrics(run.folder).items():  # test metrics too, for Optuna's own tools
            run.trial.set_user_attr(name, value)
        self._record(run.trial, values if len(values) > 1 else values[0])
        print(f"[sweep] trial {run.trial.number} finished: {named_values(self.study, values)}")

    def _record(self, trial: optuna.Trial, values=None, state: TrialState | None = None) -> None:
        try:
            self.study.tell(trial, values, state=state)
        except RuntimeError as err:
            # GridSampler calls study.stop() once its grid is covered, which Optuna only allows
            # inside study.optimize; the trial is stored all the same (tell's finally clause).
            if "Study.stop" not in str(err):
                raise
            self.grid_exhausted = True

    def _fail(self, run: RunningTrial, reason: str) -> None:
        run.trial.set_user_attr("fail_reason", reason)
        self._record(run.trial, state=TrialState.FAIL)
        self.failed.append(run.trial.number)
        print(f"[sweep] trial {run.trial.number} FAILED: {reason} (log: {run.folder / 'trial.log'})")

    def _check_failure_rate(self) -> None:
        """Stop once more than max_failure_rate x the trials this run has to finish have failed in
        this run (0: at the first). Failures of earlier runs do not count: their causes may be
        fixed, and the study must be able to go on; trials interrupted by a killed sweep never count."""
        allowed = self.settings.max_failure_rate * self.to_run
        if len(self.failed) <= allowed:
            return
        for run in self.running.values():
            run.process.kill()
        write_results(self.study, self.sweep_dir)
        failed = [t for t in self.study.get_trials(deepcopy=False) if t.number in self.failed]
        lines = [
            f"  trial {t.number}: {t.user_attrs.get('fail_reason', '?')} ({t.user_attrs.get('folder', '?')})"
            for t in failed
        ]
        raise SweepFailed(
            f"{len(failed)} trials failed in this run, more than max_failure_rate={self.settings.max_failure_rate} x "
            f"{self.to_run} trials to run allows:\n" + "\n".join(lines) + "\nto go on: fix the cause and run the "
            "same command again (the study resumes where it stopped), or raise hydra.sweeper.max_failure_rate"
        )


def run_worker(config, *, settings: SweepSettings, space, fixed, sweep_dir: Path, entry_script: Path) -> optuna.Study:
    """One sweep worker: in the sweeper's own process, or as a job of a Hydra launcher."""
    return Sweep(settings, space, fixed, sweep_dir, entry_script, config).run()


def run_workers(launcher, workers: int, fixed: Sequence[str]) -> optuna.Study:
    """Start ``workers`` sweep workers as jobs of a Hydra launcher (SLURM through submitit, or its
    local executor) and wait for them; they share the study through its storage. A job composes
    its config from the fixed command-line overrides (the launcher adds only Hydra's own)."""
    from hydra.core.utils import JobStatus

    returns = launcher.launch([[*fixed, f"+sweep_worker={i}"] for i in range(workers)], initial_job_idx=0)
    failed = [(i, r._return_value) for i, r in enumerate(returns) if r.status != JobStatus.COMPLETED]
    if failed:
        raise SweepFailed("sweep workers failed: " + "; ".join(f"worker {i}: {err!r}" for i, err in failed))
    return returns[0].return_value


class SweepFailed(RuntimeError):
    """Too many failed trials; the message lists them and where their logs are."""


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def _exit_reason(code: int, folder: Path) -> str:
    known = {EXIT_CONFIG: "bad configuration", EXIT_DIVERGED: "training diverged"}
    reason = known.get(code, f"killed by signal {-code}" if code < 0 else f"exited with code {code}")
    last = _last_line(folder / "trial.log")
    return f"{reason}: {last}" if last else reason


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _result_metrics(folder: Path) -> dict[str, float]:
    try:
        metrics = json.loads((folder / RESULT_FILE).read_text()).get("metrics") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {name: float(v) for name, v in metrics.items() if isinstance(v, int | float)}


def named_values(study: optuna.Study, values: Sequence[float]) -> str:
    """``val/acc_best=0.9191`` (each objective by its name), the way a user reads a result."""
    names = study.metric_names or [f"objective {i}" for i in range(len(values))]
    return "  ".join(f"{name}={value:.4f}" for name, value in zip(names, values, strict=True))


def best_summary(study: optuna.Study) -> str:
    """The sweep's last line: its best trial (each of the Pareto front's, for several objectives)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "[sweep] no trial has finished: no best trial"
    best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    lines = [
        f"[sweep] best trial {t.number} of {len(complete)} finished: {named_values(study, t.values)}\n"
        f"        {' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in t.params.items())}\n"
        f"        folder: {t.user_attrs.get('folder', '?')}\n"
        f"        again:  {t.user_attrs.get('command', '?')}"
        for t in best
    ]
    return "\n".join(lines)


def _result_values(folder: Path) -> list[float] | None:
    try:
        value = json.loads((folder / RESULT_FILE).read_text())["value"]
    except (OSError, ValueError, KeyError):
        return None
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


# -- inside a trial process ----------------------------------------------------------------------


class OptunaPruning(L.Callback):
    """Lightning callback: report the optimized metric after each validation; stop if pruned.

    Not optuna-integration's PyTorchLightningPruningCallback: that one needs the Trial object
    in the training process and, under DDP, an RDB storage; this one re-attaches to the study
    from the environment the sweeper set (any storage) and decides on rank zero for all ranks.
    """

    def __init__(self, monitor: str) -> None:
        from hydra.utils import instantiate

        self.monitor = monitor
        pruner_cfg = json.loads(os.environ.get(ENV_PRUNER) or "{}")
        pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
        storage, _ = open_storage(os.environ[ENV_STORAGE], os.environ[ENV_STUDY], Path("."))
        study = optuna.load_study(study_name=os.environ[ENV_STUDY], storage=storage, pruner=pruner)
        self.trial = optuna.trial.Trial(study, int(os.environ[ENV_TRIAL_ID]))
        self.enabled = len(study.directions) == 1  # Optuna cannot prune multi-objective trials

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.enabled or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        prune = False
        if trainer.is_global_zero:
            value = float(trainer.callback_metrics[self.monitor])
            self.trial.report(value, step=trainer.current_epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}")


def pruning_callback(optimized_metric: str) -> OptunaPruning | None:
    """The pruning callback when this process runs a sweep's trial, else None."""
    return OptunaPruning(optimized_metric) if ENV_TRIAL_ID in os.environ else None


# -- results -------------------------------------------------------------------------------------


def write_results(study: optuna.Study, sweep_dir: Path, figures: bool = True) -> None:
    """trials.csv (every trial: params, value, state, duration, slot, folder, failure reason),
    best.json (the best trial, or the Pareto front for several objectives), best_config.yaml
    (the best trial's full config), and with ``figures`` importances.json and the plots."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    attrs = ("slot", "device", "fail_reason", "folder")
    with open(sweep_dir / "trials.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["number", "state", "values", "duration_s", "datetime_start", "datetime_complete", *params, *attrs]
        )
        for t in trials:
            duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.values is None else ";".join(map(str, t.values)),
                    duration,
                    t.datetime_start,
                    t.datetime_complete or "",
                    *(t.params.get(p, "") for p in params),
                    *(t.user_attrs.get(a, "") for a in attrs),
                ]
            )
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return
    best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    summary = [
        {
            "number": t.number,
            "values": t.values,
            "params": t.params,
            "folder": t.user_attrs.get("folder"),
            "command": t.user_attrs.get("command"),
        }
        for t in best
    ]
    (sweep_dir / "best.json").write_text(json.dumps(summary if len(summary) > 1 else summary[0], indent=2))
    config = Path(best[0].user_attrs.get("folder", "")) / ".hydra" / "config.yaml"
    if config.is_file():
        shutil.copyfile(config, sweep_dir / "best_config.yaml")
    if figures:
        write_importances(study, sweep_dir)
        write_plots(study, sweep_dir)


def write_importances(study: optuna.Study, sweep_dir: Path) -> None:
    """importances.json: each parameter's share of the objective's variance (Optuna's fANOVA)."""
    if len(study.directions) > 1 or len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):  # e.g. a single distinct parameter value so far
        return
    (sweep_dir / "importances.json").write_text(json.dumps(importances, indent=2))


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[str]:
    """Optuna's plots as PNG files in <sweep>/plots/ and as figures in <sweep>/tensorboard/.

    A plot that needs more finished trials than there are yet is skipped until there are.
    """

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots
    from torch.utils.tensorboard import SummaryWriter

    plots = (
        {"pareto_front": optuna_plots.plot_pareto_front}
        if len(study.directions) > 1
        else {
            "optimization_history": optuna_plots.plot_optimization_history,
            "param_importances": optuna_plots.plot_param_importances,
            "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
        }
    )
    gamma_beta = ["activation.gamma_init", "activation.beta_init"]
    if len(study.directions) == 1 and all(p in study.best_trial.params for p in gamma_beta):
        plots["gamma_beta_contour"] = lambda s: optuna_plots.plot_contour(s, params=gamma_beta)
    folder = sweep_dir / "plots"
    folder.mkdir(exist_ok=True)
    written = []
    step = len(study.get_trials(deepcopy=False, states=FINISHED))
    with SummaryWriter(str(sweep_dir / "tensorboard")) as writer, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name, plot in plots.items():
            try:
                figure = _figure(plot(study))
            except (ValueError, RuntimeError, ZeroDivisionError):  # too few trials for this plot yet
                continue
            figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            writer.add_figure(f"sweep/{name}", figure, global_step=step)  # closes the figure
            written.append(name)
    plt.close("all")
    return written


def _figure(axes):
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def sgmod_lr_mult_space(cfg, trial: optuna.Trial) -> dict:
    """A ``custom_search_space`` example: tune gamma/beta's learning-rate multiplier, but only
    when the activation is Sgmod (conditional spaces do not fit Hydra's override grammar)."""
    if cfg.activation.name != "sgmod":
        return {}
    return {"activation.lr_mult": trial.suggest_float("activation.lr_mult", 0.1, 10.0, log=True)}


class CompleteGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, except that a failed cell is run again.

    Optuna's counts a FAIL trial as a visited cell (and stops once every cell was visited), so a
    grid experiment resumed after a crash or a kill would end with holes. Here only COMPLETE and
    PRUNED trials visit a cell; the trials beyond the grid size go to the cells still missing.
    """

    def _get_unvisited_grid_ids(self, study: optuna.Study) -> list[int]:
        done, running = set(), set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if "grid_id" not in t.system_attrs or not self._same_search_space(t.system_attrs["search_space"]):
                continue
            if t.state in FINISHED:
                done.add(t.system_attrs["grid_id"])
            elif t.state == TrialState.RUNNING:
                running.add(t.system_attrs["grid_id"])
        missing = set(range(self._n_min_trials)) - done
        return sorted(missing - running or missing)
