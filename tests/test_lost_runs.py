"""A run that ended while its machine was being lost: Optuna's journal has its result, but its run
folder went with the machine before the record read it. The record counts it as lost (not a result),
the next run of its part queues its parameters once, and the part ends whole."""

from __future__ import annotations

import json
import shutil

from optuna.trial import TrialState

from helpers.runs import CONF
from helpers.sweeps import run_sweep
from sgmod_study.study import runner
from sgmod_study.study.export import export
from sgmod_study.study.record import Record, has_result, is_lost, summary
from sgmod_study.study.report import ledger
from sgmod_study.study.spec import load_study
from sgmod_study.sweeper.liveness import REQUEUED_ATTR
from sgmod_study.sweeper.samplers import CompleteGridSampler

CELLS = [0.1, 0.2, 0.3]


def _grid_part(tmp_path, n_trials):
    """Part "g" of a record in tmp_path/record: a grid over x, its stub trials run in-process."""
    journal = tmp_path / "record" / "g" / "study.journal"
    journal.parent.mkdir(parents=True, exist_ok=True)
    sampler = CompleteGridSampler({"x": CELLS}, seed=0)
    run_sweep(tmp_path, study_name="g", storage=str(journal), n_trials=n_trials, sampler=sampler)
    return Record(tmp_path / "record")


def _lose(tmp_path, record: Record, number: int) -> None:
    """Trial ``number`` as a machine lost mid-session leaves it: its run folder gone, and its row
    Optuna's view only."""
    shutil.rmtree(tmp_path / "sweep" / f"trial_{number:04d}")
    path = record.folder / "g" / "runs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    keep = ("number", "state", "values", "params", "duration_s", "fail_reason", "interrupted", "device")
    rows[number] = {key: rows[number][key] for key in keep}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_lost_run_is_no_result_its_parameters_run_once_more_and_the_part_ends_whole(tmp_path, capsys):
    record = _grid_part(tmp_path, n_trials=3)
    export(record, "g")
    assert record.finished("g") == 3
    _lose(tmp_path, record, 1)
    lost_x = record.rows("g")[1]["params"]["x"]
    assert [is_lost(r) for r in record.rows("g")] == [False, True, False]
    assert record.finished("g") == 2 and summary(record.rows("g")) == "2 complete, 1 lost"
    # the next launch queues its parameters, once, and has the sweep run one trial more
    assert runner.requeue_lost(record, "g") == 1
    assert runner.requeue_lost(record, "g") == 1  # already queued: not twice
    waiting = record.load("g").get_trials(states=(TrialState.WAITING,))
    assert [(t.system_attrs["fixed_params"], t.user_attrs[REQUEUED_ATTR]) for t in waiting] == [({"x": lost_x}, 1)]
    assert "trial 1 ended, but its machine stopped before its run folder was read" in capsys.readouterr().out
    depth = load_study("depth", CONF / "study")
    command = runner.sweep_command(depth, depth.parts["none_default"], record, [], lost=1)
    assert "hydra.sweeper.n_trials=193" in command  # its 192 trials, and the lost one once more
    # the sweep (the grid already covered) runs the queued trial only
    _grid_part(tmp_path, n_trials=4)
    rows = export(record, "g")
    assert [(r["number"], r["state"], r["params"]["x"], has_result(r)) for r in rows] == [
        (0, "COMPLETE", rows[0]["params"]["x"], True),
        (1, "COMPLETE", lost_x, False),
        (2, "COMPLETE", rows[2]["params"]["x"], True),
        (3, "COMPLETE", lost_x, True),
    ]
    assert sorted(r["params"]["x"] for r in rows if has_result(r)) == CELLS
    assert record.finished("g") == 3
    assert runner.requeue_lost(record, "g") == 1  # its parameters have a result now: nothing queued
    assert not record.load("g").get_trials(states=(TrialState.WAITING,))
    # the report's ledger: 3 results of 3, the lost one counted with the runs left without a result
    line = ledger.line("g", "grid", 3, rows)
    assert (line.results, line.rerun) == (3, 1)


def test_a_row_read_from_its_run_folder_or_left_without_a_result_is_not_lost():
    optuna_view = {"number": 0, "values": [0.5], "params": {}}
    assert not is_lost({**optuna_view, "state": "COMPLETE", "config": {}})
    assert not is_lost({**optuna_view, "state": "FAIL", "fail_reason": "its sweep worker was killed"})
    diverged = {**optuna_view, "state": "FAIL", "fail_reason": "training diverged: the loss is nan"}
    assert is_lost(diverged) and not is_lost({**diverged, "config": {}})


def test_a_lost_run_in_a_grid_not_yet_covered_runs_again_beside_the_cells_left(tmp_path):
    record = _grid_part(tmp_path, n_trials=2)  # 2 of the 3 cells
    export(record, "g")
    _lose(tmp_path, record, 0)
    path = record.folder / "g" / "runs.jsonl"  # the record was committed before trial 0's row was written
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[1:]))
    assert runner.requeue_lost(record, "g") == 1
    _grid_part(tmp_path, n_trials=3 + 1)
    rows = export(record, "g")
    assert len(rows) == 4 and sorted(r["params"]["x"] for r in rows if has_result(r)) == CELLS
    assert record.finished("g") == 3
