"""Samplers of this sweeper's own (hydra/sweeper/sampler=grid), and the probes that try a
configured sampler and pruner before the sweep starts."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.trial import TrialState

from sgmod_study.sweeper.storage import has_result


class CompleteGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, except that a failed cell is run again.

    Optuna's counts a FAIL trial as a visited cell (and stops once every cell was visited), so a
    grid experiment resumed after a crash or a kill would end with holes. Here only COMPLETE and
    PRUNED trials visit a cell, and diverged ones (a result: storage.diverged); the trials beyond
    the grid size go to the cells still missing.
    """

    def covered(self, study: optuna.Study) -> bool:
        """Every cell has its result: a resumed sweep has nothing left to run."""
        return not self._get_unvisited_grid_ids(study)

    def _get_unvisited_grid_ids(self, study: optuna.Study) -> list[int]:
        done, running = set(), set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if "grid_id" not in t.system_attrs or not self._same_search_space(t.system_attrs["search_space"]):
                continue
            if has_result(t):
                done.add(t.system_attrs["grid_id"])
            elif t.state == TrialState.RUNNING:
                running.add(t.system_attrs["grid_id"])
        missing = set(range(self._n_min_trials)) - done
        return sorted(missing - running or missing)


# Trials the probe asks for: past TPE's 5 and GP's 10 random start-up trials, into the model.
PROBE_TRIALS = 12


def probe_sampler(sampler: optuna.samplers.BaseSampler, space, directions: list[str]) -> None:
    """Run ``sampler`` for PROBE_TRIALS trials of ``space`` on a throw-away in-memory study: many
    options (and a missing package, such as cmaes for CmaEsSampler) only fail when the sampler
    first samples, which would otherwise be the first trial of the real sweep. (optimize, not
    ask and tell: a grid sampler stops the study once its grid is covered, which Optuna allows
    only inside optimize.)"""

    def objective(trial: optuna.Trial) -> list[float]:
        for name, distribution in space.items():
            trial._suggest(name, distribution)
        return [float(trial.number % 3)] * len(directions)

    with _quietly():
        study = optuna.create_study(sampler=sampler, directions=directions)
        study.optimize(objective, n_trials=PROBE_TRIALS)


def probe_pruner(pruner: optuna.pruners.BasePruner) -> None:
    """A pruner's first decision on a throw-away study: its options fail there, not in a trial."""
    with _quietly():
        study = optuna.create_study(pruner=pruner)
    for _ in range(3):
        trial = study.ask()
        for step in (1, 2):
            trial.report(1.0 / step, step)
        trial.should_prune()
        study.tell(trial, 0.5)


@contextmanager
def _quietly() -> Iterator[None]:
    """Neither Optuna's info lines nor its experimental warnings: the probe is not the sweep."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
