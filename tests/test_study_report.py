"""The study's report as a whole (sgmod_study.study.report.document) from synthetic records: written
from the records alone, its scope, its title, a user's activation, and no torch on its path. The
sections' own tests: test_report_contrasts.py, test_report_sweeps.py."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, fields

from helpers.records import FIXED, LEARNED, write_parts  # the learnable Sgmod better on every seed
from helpers.records import row as _row
from helpers.report_records import (
    BASELINE_PARAMS,
    classifier_study,
    sweep_row,
)
from sgmod_study.study.report import document
from sgmod_study.study.report.document import write_report
from sgmod_study.study.spec import Study, with_activation


def test_the_report_is_written_from_the_records_alone(tmp_path, monkeypatch):
    rows = [_row("sgmod", s, a, gamma=[1.1]) for s, a in enumerate(LEARNED)]
    rows += [_row("sgmod_fixed", s, a) for s, a in enumerate(FIXED)]
    record, study = write_parts(tmp_path / "study" / "classifier", {"controls": rows}), classifier_study()
    monkeypatch.chdir(tmp_path)  # the repository: the report's paths are relative to it
    text = write_report(study, record)
    assert (tmp_path / "docs" / "report" / "study.md").read_text() == text
    assert "| sgmod | 8 | 0.917" in text and "16 of 72 runs finished" in text  # mean 0.91775
    assert text.startswith("# The Sgmod study: status and results so far\n")  # most parts not run
    assert "from the records in `study/classifier/`" in text
    assert "| learnable vs fixed gamma/beta at (1, 0) | sgmod - sgmod_fixed | 8 | +0.49 [" in text
    assert "Machines: A = Test GPU." in text
    assert "TOST p: two one-sided tests that the difference lies within +-0.5 points" in text
    for figure in ("controls_test_acc", "gamma_beta_channels"):
        assert (tmp_path / "docs" / "report" / "study_figures" / f"{figure}.png").stat().st_size > 5000, figure
    assert "![channels](study_figures/gamma_beta_channels.png)" in text
    # the parts not run yet say so
    assert "| sweep_sgmod | 0 | - | - | - | - |" in text
    assert "## 5. Tuned against tuned, on fresh seeds\n\nNot run yet (no finished run in part confirm_sgmod" in text
    assert "## 4." not in text  # no sweep journal: no importances
    assert "\n\nScope: the runs are the 2-conv CNN with BatchNorm" in text  # the study's declared scope
    assert "so learnable gamma/beta doing no better than fixed ones was to be expected here." in text


def test_the_scope_paragraph_comes_from_the_study(tmp_path):
    @dataclass(frozen=True)
    class Scoped(Study):
        scope: str = ""

    base = classifier_study()
    scoped = Scoped(**({f.name: getattr(base, f.name) for f in fields(base)} | {"scope": "the 2-conv CNN only."}))
    record = write_parts(tmp_path / "record", {"controls": [_row("sgmod", 0, 0.9)]})
    lines = document.header(scoped, record, None)
    assert "Scope: the 2-conv CNN only." in lines
    assert lines.index("Scope: the 2-conv CNN only.") < next(i for i, x in enumerate(lines) if x.startswith("Machines"))


def test_the_report_is_titled_results_once_every_part_is_complete(tmp_path):
    study = classifier_study()
    parts = {name: [_row("relu", s, 0.9) for s in range(p.trials)] for name, p in study.parts.items()}
    assert document.is_complete(study, write_parts(tmp_path / "a", parts))
    parts["confirm_relu"][3] = {**parts["confirm_relu"][3], "state": "FAIL"}  # 9 of 10 finished
    assert not document.is_complete(study, write_parts(tmp_path / "b", parts))


def test_a_users_activation_gets_its_sweep_and_confirm_sections_against_the_baselines(tmp_path, monkeypatch):
    study = with_activation(classifier_study(), "myact", {})
    mine = [sweep_row(i, 0.92 + i / 1000, BASELINE_PARAMS) for i in range(4)]
    relu = [sweep_row(i, 0.91 + i / 1000, BASELINE_PARAMS) for i in range(3)]
    fresh = [{**_row("myact", 100 + s, a), "config": {"lr": 1}} for s, a in enumerate(LEARNED)]
    base = [{**_row("relu", 100 + s, a), "config": {"lr": 2}} for s, a in enumerate(FIXED)]
    record = write_parts(
        tmp_path / "study" / "classifier",
        {"sweep_myact": mine, "sweep_relu": relu, "confirm_myact": fresh, "confirm_relu": base},
    )
    monkeypatch.chdir(tmp_path)
    text = write_report(study, record)
    assert (tmp_path / "docs" / "report" / "classifier_myact.md").is_file()
    assert (tmp_path / "docs" / "report" / "classifier_myact_figures" / "expected_best.png").is_file()
    assert text.startswith("# The myact study: status and results so far\n")
    assert "`python scripts/study.py report classifier --activation myact`" in text
    assert "## 1. The sweeps" in text and "## 2. Tuned against tuned, on fresh seeds" in text
    # no importance (nothing of its own searched): the ledger comes third
    assert "## 3. What ran" in text and "## 4." not in text and "Controls" not in text
    assert "myact minus each baseline, expected best of 3 trials" in text and "relu +" in text
    assert "| sweep_sgmod | 0 | - | - | - | - |" in text  # a baseline not recorded yet
    assert "| myact - relu | GPU - GPU | 8 | +0.49 [" in text
    assert "| sweep_myact | 0.9230 | myact | 8 |" in text  # the winner's curse of its own sweep
    assert "![expected best](classifier_myact_figures/expected_best.png)" in text


# --- no torch on the report's path ---------------------------------------------------------------

TORCH_FREE = """
import json, sys
from pathlib import Path
from sgmod_study.study.record import Record
from sgmod_study.study.spec import load_study
from sgmod_study.study.report.document import write_report
folder = Path(sys.argv[1])
write_report(load_study("classifier"), Record(folder / "study" / "classifier"), folder / "docs/report/study.md")
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning")))
"""


def test_writing_the_report_imports_no_torch(tmp_path):
    rows = [_row("sgmod", s, a, gamma=[1.1]) for s, a in enumerate(LEARNED)]
    write_parts(
        tmp_path / "study" / "classifier", {"controls": rows, "sweep_relu": [sweep_row(0, 0.9, BASELINE_PARAMS)]}
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", TORCH_FREE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")]
    assert "matplotlib" in imported and not {"torch", "lightning"} & set(imported)
    assert (tmp_path / "docs" / "report" / "study.md").is_file()
