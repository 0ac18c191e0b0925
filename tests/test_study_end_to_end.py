"""A declared study as a user runs it, for real: a tiny study on digits with the MLP goes run ->
record -> report through scripts/study.py, and then an activation the study has not run goes
through the same comparison with --activation, reusing the study's baseline records."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.runs import ROOT

pytestmark = pytest.mark.slow  # scripts/study.py runs real sweeps: src/train.py trains every trial

TINY_STUDY = """
question: relu against tanh, tuned, on a tiny budget
description: an MLP on digits, one epoch
report: docs/report/tiny.md
setup: {data: digits, model: mlp, trainer: cpu, trainer.max_epochs: 1, trainer.enable_model_summary: false}
parts:
  sweep_relu: {kind: sweep, overrides: [hparams_search=baseline_classifier, activation=relu], trials: 2}
  sweep_tanh: {kind: sweep, overrides: [hparams_search=baseline_classifier, activation=tanh], trials: 2}
  confirm_relu:
    {kind: confirm, of: sweep_relu, overrides: [experiment=study_confirm, activation=relu], seeds: [100, 101]}
  confirm_tanh:
    {kind: confirm, of: sweep_tanh, overrides: [experiment=study_confirm, activation=tanh], seeds: [100, 101]}
contrasts:
  sweeps: [{variant: sweep_tanh, reference: sweep_relu}]
  confirm: [{variant: confirm_tanh, reference: confirm_relu}]
sections: {sweeps: [sweep_tanh, sweep_relu], confirm: [confirm_tanh, confirm_relu]}
bring_your_own:
  sweep: {overrides: [hparams_search=baseline_classifier], trials: 2}
  confirm: {overrides: [experiment=study_confirm], seeds: [100, 101]}
  baselines: [relu, tanh]
"""


def study_cli(repo, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "scripts/study.py", *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    """A working folder laid out like the repository (its code and configs linked), holding the
    declared tiny study, with every part run once: four slots, so parts run side by side."""
    repo = tmp_path_factory.mktemp("repo")
    for name in ("src", "scripts"):
        (repo / name).symlink_to(ROOT / name)
    (repo / "conf").mkdir()
    for entry in (ROOT / "conf").iterdir():
        if entry.name != "study":
            (repo / "conf" / entry.name).symlink_to(entry)
    (repo / "conf" / "study").mkdir()
    (repo / "conf" / "study" / "tiny.yaml").write_text(TINY_STUDY)
    result = study_cli(repo, "run", "tiny", "all", "hydra.sweeper.n_jobs=4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return repo, result.stdout


def rows(repo, study, part):
    return [json.loads(line) for line in (repo / "study" / study / part / "runs.jsonl").read_text().splitlines()]


def test_a_declared_study_runs_to_its_record_and_its_report(tiny_repo):
    repo, output = tiny_repo
    for part in ("sweep_relu", "sweep_tanh", "confirm_relu", "confirm_tanh"):
        finished = [r for r in rows(repo, "tiny", part) if r["state"] == "COMPLETE"]
        assert len(finished) == 2 and all(r["metrics"]["test/acc"] > 0 for r in finished), part
    seeds = sorted(r["params"]["seed"] for r in rows(repo, "tiny", "confirm_relu"))
    assert seeds == [100, 101]  # the declared fresh seeds
    best = max(rows(repo, "tiny", "sweep_relu"), key=lambda r: r["values"][0])
    assert {r["config"]["optimizer"]["lr"] for r in rows(repo, "tiny", "confirm_relu")} == {
        best["params"]["optimizer.lr"]
    }  # the confirm retrains the sweep's best configuration
    assert "[study] sweep_relu: starting, 2 trial(s) at once" in output  # both sweeps at once on 4 slots
    assert "[study] sweep_tanh: starting, 2 trial(s) at once" in output
    listing = study_cli(repo, "list", "tiny")
    assert listing.returncode == 0 and "  confirm_tanh confirm    2/2   2 complete" in listing.stdout
    report = study_cli(repo, "report", "tiny")
    assert report.returncode == 0, report.stderr
    text = (repo / "docs" / "report" / "tiny.md").read_text()
    assert "tanh - relu" in text and "sweep_tanh" in text


def test_your_own_activation_is_compared_with_the_studys_baselines_and_reuses_their_records(tiny_repo):
    repo, _ = tiny_repo
    baselines = {part: (repo / "study" / "tiny" / part / "study.journal").read_bytes() for part in ("sweep_relu",)}
    result = study_cli(repo, "run", "tiny", "all", "--activation", "elu", "hydra.sweeper.n_jobs=4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len([r for r in rows(repo, "tiny", "sweep_elu") if r["state"] == "COMPLETE"]) == 2
    assert sorted(r["params"]["seed"] for r in rows(repo, "tiny", "confirm_elu")) == [100, 101]
    assert "sweep_relu: starting" not in result.stdout  # the baselines' records are reused, not rerun
    assert (repo / "study" / "tiny" / "sweep_relu" / "study.journal").read_bytes() == baselines["sweep_relu"]
    report = study_cli(repo, "report", "tiny", "--activation", "elu")
    assert report.returncode == 0, report.stderr
    text = (repo / "docs" / "report" / "tiny_elu.md").read_text()
    assert "elu - relu" in text and "elu - tanh" in text
    # another fixed setup cannot reuse them: one line, exit 2, before anything runs
    refused = study_cli(repo, "run", "tiny", "all", "--activation", "selu", "trainer.max_epochs=2")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("error: --activation selu: sweep_relu's record was made under another fixed")
    assert "trainer.max_epochs=1 there, 2 here" in refused.stderr
    assert not (repo / "study" / "tiny" / "sweep_selu").exists()
