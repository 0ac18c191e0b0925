"""The Hydra side of ``sgmod_study.sweeper``: config schema and the Sweeper plugin class.

Registered as ``hydra/sweeper=sgmod_optuna`` so it never clashes with hydra-optuna-sweeper's
``optuna``. The schema follows that plugin's (sampler, direction, storage, study_name,
n_trials, n_jobs, max_failure_rate, params, custom_search_space) plus pruner, enqueue_trials,
trial_timeout, time_limit, trials_per_gpu, workers and the heartbeat's timing.
"""

import importlib
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from sgmod_study.paths import OPTUNA_DIR


@dataclass
class SgmodOptunaSweeperConf:
    _target_: str = "hydra_plugins.sgmod_sweeper.sgmod_sweeper.SgmodOptunaSweeper"
    _recursive_: bool = False  # sampler and pruner stay configs: the pruner is rebuilt in each trial
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: Any = "minimize"  # or maximize, or a list of them for several objectives
    storage: Optional[str] = None  # None: outputs/optuna/<study_name>.journal; or a journal path / RDB URL
    study_name: Optional[str] = None
    n_trials: int = 20  # finished (complete + pruned) trials the study should have
    n_jobs: int = 1  # trials running at once
    max_failure_rate: float = 0.0  # the sweep stops once more than this x n_trials trials failed
    params: Optional[Dict[str, str]] = None
    # "module.function": fn(cfg, trial) -> dict of extra overrides (or None after trial.suggest_*)
    custom_search_space: Optional[str] = None
    enqueue_trials: List[Any] = field(default_factory=list)
    trial_timeout: Optional[float] = None  # seconds
    # seconds for the whole sweep (a session's or a job allocation's end): a trial starts only if it
    # is expected to end within it (1.25 x the median duration of the worker's finished trials); at the
    # limit the running ones are stopped (interrupted: new trials take their place next time)
    time_limit: Optional[float] = None
    trials_per_gpu: int = 1  # one-GPU trials sharing a GPU; trials of trainer.devices=k > 1 GPUs never share
    # >1: start this many sweep workers as jobs of the configured Hydra launcher (e.g.
    # hydra/launcher=slurm, one worker per node, each running n_jobs trials); they share `storage`
    workers: int = 1
    # a worker shows every heartbeat_interval s that it lives; one silent for heartbeat_grace s
    # counts as gone, and the other workers fail its running trials
    heartbeat_interval: int = 10
    heartbeat_grace: int = 60


def _sampler(target: str, **defaults: Any) -> Dict[str, Any]:
    return {"_target_": target, **defaults}


# Every sampler is seeded: a sweep run again draws the same points (seed=null: a fresh draw each time).
SAMPLERS = {
    "tpe": _sampler("optuna.samplers.TPESampler", seed=0, n_startup_trials=5),
    "random": _sampler("optuna.samplers.RandomSampler", seed=0),
    "cmaes": _sampler("optuna.samplers.CmaEsSampler", seed=0),
    "gp": _sampler("optuna.samplers.GPSampler", seed=0),
    # scrambled Sobol points; the fixed seed keeps one sequence across resumes and workers (with
    # seed=None every process would draw its own scrambling, and a resumed study loses the even cover)
    "qmc": _sampler("optuna.samplers.QMCSampler", seed=0, scramble=True),
    "nsgaii": _sampler("optuna.samplers.NSGAIISampler", seed=0),
    # its search space: the choice() params; the seed orders the cells
    "grid": _sampler("sgmod_study.sweeper.samplers.CompleteGridSampler", seed=0),
}
PRUNERS = {
    "none": {"_target_": "optuna.pruners.NopPruner"},
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3, "n_warmup_steps": 1},
    "successive_halving": {"_target_": "optuna.pruners.SuccessiveHalvingPruner"},
    "hyperband": {"_target_": "optuna.pruners.HyperbandPruner"},
}

store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="sgmod_optuna", node=SgmodOptunaSweeperConf, provider="sgmod_study")
for name, node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="sgmod_study")
for name, node in PRUNERS.items():
    store.store(group="hydra/sweeper/pruner", name=name, node=node, provider="sgmod_study")


class SgmodOptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, **settings: Any) -> None:
        self.sampler_cfg, self.pruner_cfg, self.settings = sampler, pruner, settings
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def sweep(self, arguments: List[str]) -> None:
        from sgmod_study.run.console import run_log

        sweep_dir = Path(self.config.hydra.sweep.dir)
        # Optuna's experimental warnings and [I ...] lines go to <sweep>/sweep.log only
        with run_log(sweep_dir / "sweep.log"):
            self._sweep(arguments, sweep_dir)

    def _sweep(self, arguments: List[str], sweep_dir: Path) -> None:
        from sgmod_study.errors import EXIT_CONFIG, ConfigError, exit_with
        from sgmod_study.sweeper.devices import trial_gpus
        from sgmod_study.sweeper.fixed_setup import fixed_setup
        from sgmod_study.sweeper.results import best_summary, write_results
        from sgmod_study.sweeper.scheduler import SweepFailed
        from sgmod_study.sweeper.settings import check_workers
        from sgmod_study.sweeper.signals import SweepInterrupted
        from sgmod_study.sweeper.space import search_space
        from sgmod_study.sweeper.storage import open_storage

        try:
            check_workers(self.settings["workers"])
            space, fixed = search_space(self.settings["params"] or {}, arguments)
            settings = self._settings(space)
            config = self._check_trial_configs(space, fixed, sweep_dir)
            settings.fixed_setup = fixed_setup(config, list(space))
            settings.gpus_per_trial = trial_gpus(config["trainer"])
            if self.settings["workers"] > 1:  # before the jobs are submitted; a worker opens it itself
                open_storage(settings.storage, settings.study_name, OPTUNA_DIR)
            study = self._run(settings, space, fixed, sweep_dir)
        except ConfigError as err:
            exit_with("error", err, EXIT_CONFIG)
        except SweepFailed as err:
            exit_with("sweep stopped", err, 1)
        except (SweepInterrupted, KeyboardInterrupt) as stop:
            _exit_interrupted(stop, sweep_dir)
        write_results(study, sweep_dir)
        print(best_summary(study))

    def _run(self, settings: Any, space: Dict[str, Any], fixed: List[str], sweep_dir: Path) -> Any:
        from sgmod_study.sweeper.scheduler import run_worker
        from sgmod_study.sweeper.workers import run_workers

        worker = partial(
            run_worker,
            settings=settings,
            space=space,
            fixed=fixed,
            sweep_dir=sweep_dir,
            entry_script=Path(sys.argv[0]).resolve(),
        )
        # a launcher of its own (SLURM, submitit_local) gets every worker, one too: run here, a
        # SLURM sweep's trials would train on the machine the command was typed on (a login node)
        if self.settings["workers"] > 1 or _own_launcher(self.config):
            launcher = Plugins.instance().instantiate_launcher(
                hydra_context=self.hydra_context, task_function=worker, config=self.config
            )
            return run_workers(launcher, self.settings["workers"], fixed, settings)
        return worker(self.config)

    def _check_trial_configs(self, space: Dict[str, Any], fixed: List[str], sweep_dir: Path) -> Dict[str, Any]:
        """Compose trial configs as each trial process will, before the first one trains: the fixed
        overrides with every searched parameter at its bounds and at each of its choices (a choice
        may select another config group). Unknown keys, wrong types and, through the config schema's
        check_config, values the run would refuse, all stop the sweep here with one line.
        Returns the first of them (its fixed part identifies the study)."""
        from sgmod_study.config.schema import check_config
        from sgmod_study.errors import ConfigError
        from sgmod_study.sweeper.space import probe_overrides

        composed = []
        for overrides, searched in probe_overrides(space, fixed):
            where = f"(in the trial config with {' '.join(searched)})" if searched else "(in the trials' config)"
            try:
                composed.append(self._compose(overrides, sweep_dir))
                check_config(composed[-1])
            except ConfigError as err:
                raise ConfigError(f"{err} {where}") from None
        return composed[0]

    def _compose(self, overrides: List[str], sweep_dir: Path) -> Dict[str, Any]:
        """The resolved job config of a trial with these overrides (Hydra's errors as ConfigError)."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from sgmod_study.config.schema import hydra_error_line
        from sgmod_study.errors import ConfigError

        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(cfg):
                del cfg["hydra"]
                cfg.output_dir = str(sweep_dir / "trial_NNNN")  # ${hydra:runtime.output_dir} outside a run
            return OmegaConf.to_container(cfg, resolve=True)
        except (HydraException, OmegaConfBaseException) as err:
            raise ConfigError(hydra_error_line(err)) from None

    def _settings(self, space: Dict[str, Any]) -> Any:
        from sgmod_study.errors import ConfigError
        from sgmod_study.sweeper.samplers import probe_sampler
        from sgmod_study.sweeper.settings import SweepSettings, check_directions

        s = self.settings
        searched = sorted(k for k in space if k in ("trainer.devices", "trainer.accelerator", "trainer"))
        if searched:
            raise ConfigError(
                f"{searched[0]} cannot be searched: the sweeper gives each trial its GPUs by it; fix it for the sweep"
            )
        sampler_cfg = _group_config("sampler", self.sampler_cfg, SAMPLERS)
        if sampler_cfg["_target_"].endswith("GridSampler"):
            not_choices = [k for k, d in space.items() if not hasattr(d, "choices")]
            if not_choices:
                raise ConfigError(
                    f"hydra/sweeper/sampler=grid needs choice(...) parameters; not choices: {not_choices}"
                )
            sampler_cfg["search_space"] = {k: list(d.choices) for k, d in space.items()}
        direction = s["direction"]
        direction = OmegaConf.to_container(direction) if OmegaConf.is_list(direction) else direction
        metrics = _plain(self.config.get("optimized_metric"))
        check_directions(direction, metrics)
        directions = direction if isinstance(direction, list) else [direction]
        _probe("sampler", sampler_cfg, lambda sampler: probe_sampler(sampler, space, directions))
        return SweepSettings(
            study_name=s["study_name"] or self.config.hydra.job.name,
            direction=direction,
            n_trials=s["n_trials"],
            n_jobs=s["n_jobs"],
            storage=s["storage"],
            sampler=_build("sampler", sampler_cfg),
            pruner=_pruner(self.pruner_cfg),
            max_failure_rate=s["max_failure_rate"],
            enqueue_trials=_enqueue_trials(s["enqueue_trials"]),
            trial_timeout=s["trial_timeout"],
            time_limit=s["time_limit"],
            trials_per_gpu=s["trials_per_gpu"],
            custom_search_space=_method("custom_search_space", s["custom_search_space"]),
            heartbeat_interval=s["heartbeat_interval"],
            heartbeat_grace=s["heartbeat_grace"],
            metric_names=None if metrics is None else list(metrics) if isinstance(metrics, list) else [metrics],
        )


def _build(key: str, cfg: Dict[str, Any]) -> Any:
    from sgmod_study.errors import ConfigError

    try:
        return instantiate(cfg)
    except Exception as err:  # Hydra's InstantiationException around the class's own error
        raise ConfigError(f"hydra.sweeper.{key}={cfg!r} cannot be built: {_one_line(err)}") from None


def _pruner(cfg: Any) -> Dict[str, Any]:
    """The pruner's config, rebuilt in every trial process: built and tried once here, so that a
    bad one stops the sweep before its first trial instead of failing every trial."""
    from sgmod_study.sweeper.samplers import probe_pruner

    plain = _group_config("pruner", cfg, PRUNERS)
    _probe("pruner", plain, probe_pruner)
    return plain


def _group_config(key: str, cfg: Any, options: Dict[str, Any]) -> Dict[str, Any]:
    """The sampler's or pruner's config; a plain value (``hydra.sweeper.sampler=foo``, where the
    group is meant: ``hydra/sweeper/sampler=foo``) is one error naming the options."""
    from sgmod_study.errors import ConfigError

    if not OmegaConf.is_dict(cfg):
        raise ConfigError(
            f"hydra.sweeper.{key}={_plain(cfg)!r} is not allowed: choose one with hydra/sweeper/{key}=<name> "
            f"({', '.join(options)}); set its options with hydra.sweeper.{key}.<option>=<value>"
        )
    plain = OmegaConf.to_container(cfg, resolve=True)
    _check_counts(key, plain)
    return plain


def _check_counts(key: str, cfg: Dict[str, Any]) -> None:
    """Options whose default is a whole number (n_startup_trials, n_warmup_steps, ...) must be whole
    numbers >= 0: Optuna takes a negative count without a word and a word fails only mid-sweep."""
    import inspect

    from hydra.utils import get_class

    from sgmod_study.errors import ConfigError

    try:
        parameters = inspect.signature(get_class(cfg["_target_"])).parameters
    except Exception:  # an unknown class: _build says so
        return
    for name, value in cfg.items():
        default = parameters[name].default if name in parameters else None
        whole = isinstance(default, int) and not isinstance(default, bool)
        if whole and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"hydra.sweeper.{key}.{name}={value!r} is not allowed: it must be a whole number >= 0")


def _probe(key: str, cfg: Dict[str, Any], attempt: Any) -> None:
    """Build a fresh copy of the sampler or pruner and try it (samplers.probe_*): one line for what fails."""
    from sgmod_study.errors import ConfigError

    built = _build(key, cfg)
    try:
        attempt(built)
    except Exception as err:
        raise ConfigError(f"hydra.sweeper.{key}={cfg!r} cannot be used: {_one_line(err)}") from None


def _exit_interrupted(stop: BaseException, sweep_dir: Path) -> None:
    """SIGTERM or Ctrl-C: the running trials were stopped and queued again (scheduler.Sweep.run);
    one line on how to resume, and 143 / 130, never 0: a preempted sweep is no finished one."""
    import os
    import signal

    from sgmod_study.errors import EXIT_SIGINT, EXIT_SIGTERM
    from sgmod_study.run.cli import RESUME_COMMAND_ENV, command_line
    from sgmod_study.sweeper.results import write_results

    signum = getattr(stop, "signum", signal.SIGINT)
    study = getattr(stop, "study", None)
    if study is not None:
        write_results(study, sweep_dir, figures=False)
    again = os.environ.get(RESUME_COMMAND_ENV) or command_line()
    print(
        f"interrupted ({signal.Signals(signum).name}): the running trials were stopped and run again next time; "
        f"resume with: {again}",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)


def _enqueue_trials(trials: Any) -> List[Dict[str, Any]]:
    from sgmod_study.errors import ConfigError

    plain = _plain(trials)
    if not isinstance(plain, list) or not all(isinstance(t, dict) for t in plain):
        raise ConfigError(
            f"hydra.sweeper.enqueue_trials={plain!r} is not allowed: it must be a list of {{parameter: value}} mappings"
        )
    return plain


def _method(key: str, path: Optional[str]) -> Any:
    """``module.function`` (importlib, not Hydra's get_method, which also logs its error on stderr)."""
    from sgmod_study.errors import ConfigError

    if not path:
        return None
    module, _, name = path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"hydra.sweeper.{key}={path!r} cannot be imported ({_one_line(err)}); allowed: module.function"
        ) from None
    if not callable(function):
        raise ConfigError(f"hydra.sweeper.{key}={path!r} is not a function; allowed: module.function")
    return function


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _one_line(err: BaseException) -> str:
    text = str(err).split("Config search path")[0]  # Hydra appends its search path to a missing option
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__


BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def _own_launcher(config: DictConfig) -> bool:
    """Whether the sweep names a launcher other than Hydra's basic one (hydra/launcher=slurm ...)."""
    return OmegaConf.select(config, "hydra.launcher._target_", default=BASIC_LAUNCHER) != BASIC_LAUNCHER
