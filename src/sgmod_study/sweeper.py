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
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
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
OWNER_ATTR = "sgmod:owner"  # host:pid of the sweeper process that runs the trial


# -- search space ------------------------------------------------------------------------------


def distribution(override: Override) -> BaseDistribution:
    """Optuna distribution of one sweep override in Hydra's grammar.

    ``interval(a, b)`` floats (``tag(log, ...)`` log scale, ``tag(int, ...)`` integers),
    ``range(start, stop[, step])`` with its stop excluded, ``choice(...)`` categorical.
    """
    sweep = override.value()
    log = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{override.input_line} is an empty range")
        if all(isinstance(v, int) for v in values):
            step = values[1] - values[0] if len(values) > 1 else 1
            return IntDistribution(values[0], values[-1], step=step)
        step = sweep.step
        return FloatDistribution(values[0], values[0] + step * (len(values) - 1), step=step)
    if isinstance(sweep, IntervalSweep):  # Hydra makes interval bounds floats; tag(int, ...) asks for ints
        if "int" in sweep.tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise ConfigError(f"{override.input_line}: not a sweep (use choice, range, interval or tag(log, interval))")


def search_space(params: Mapping[str, str], arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions of the sweep overrides in ``params`` and the command line; the fixed rest."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    space, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(lines):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


# -- the study -----------------------------------------------------------------------------------


def open_storage(storage: str | None, study_name: str, default_dir: Path):
    """A journal file under ``default_dir`` when no storage is given; an RDB URL otherwise."""
    if storage is not None and "://" in storage:
        return _rdb_storage(storage), storage
    path = Path(storage) if storage is not None else default_dir / f"{study_name}.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path))), str(path)


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    # Workers started together on an empty database race to create Optuna's tables; the loser
    # sees a duplicate-key error and simply finds the tables on its next try.
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


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
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.running: dict[int, RunningTrial] = {}  # by slot
        self.unwritten = False  # trials finished since the result files were last written
        self.figures_written = time.monotonic()
        self.grid_exhausted = False
        self.gpu_count = _gpu_count()

    def run(self) -> optuna.Study:
        orphaned = fail_orphaned_trials(self.study)
        if orphaned:
            print(f"[sweep] marked FAIL the trials {orphaned} left RUNNING by a killed sweep")
        self._enqueue_baselines()
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
        for params in self.settings.enqueue_trials:
            self.study.enqueue_trial(dict(params), skip_if_exists=True)

    def _start(self, slot: int) -> None:
        trial = self.study.ask(self.space)
        if self._surplus(trial):
            return
        extra = self.settings.custom_search_space(self.config, trial) if self.settings.custom_search_space else None
        folder = self.sweep_dir / f"trial_{trial.number:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            ENV_STORAGE: self.storage_name,
            ENV_STUDY: self.study.study_name,
            ENV_TRIAL_ID: str(trial._trial_id),
            ENV_PRUNER: json.dumps(self.settings.pruner or {}),
        }
        env.setdefault("OMP_NUM_THREADS", str(trial_threads(self.settings.n_jobs)))
        device = slot_device(slot, self.settings.trials_per_gpu, self.gpu_count)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        chosen = {**trial.params, **(extra or {})}
        overrides = [*self.fixed, *(f"{k}={v}" for k, v in chosen.items()), f"hydra.run.dir={folder}"]
        for key, value in (
            ("slot", slot),
            ("device", device or "cpu"),
            ("folder", str(folder)),
            ("command", " ".join(["python", str(self.entry_script), *overrides])),
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
        self._record(run.trial, values if len(values) > 1 else values[0])
        print(f"[sweep] trial {run.trial.number} finished: {values}")

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
        print(f"[sweep] trial {run.trial.number} FAILED: {reason} (log: {run.folder / 'trial.log'})")

    def _check_failure_rate(self) -> None:
        """Stop once more than max_failure_rate * n_trials trials have failed (0: at the first).

        Trials interrupted by a killed sweep are not failures of their configuration."""
        failed = [
            t
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if not t.user_attrs.get("interrupted")
        ]
        allowed = self.settings.max_failure_rate * self.settings.n_trials
        if len(failed) <= allowed:
            return
        for run in self.running.values():
            run.process.kill()
        write_results(self.study, self.sweep_dir)
        lines = [
            f"  trial {t.number}: {t.user_attrs.get('fail_reason', '?')} ({t.user_attrs.get('folder', '?')})"
            for t in failed
        ]
        raise SweepFailed(
            f"{len(failed)} trials failed, more than max_failure_rate={self.settings.max_failure_rate} x "
            f"n_trials={self.settings.n_trials} allows:\n" + "\n".join(lines)
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
    import warnings

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
