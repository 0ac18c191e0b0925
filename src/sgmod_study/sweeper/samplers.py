"""Samplers of this sweeper's own (hydra/sweeper/sampler=grid)."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from sgmod_study.sweeper.storage import FINISHED


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
