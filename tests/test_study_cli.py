"""scripts/study.py as a user meets it: bad records and arguments give one line and an exit code,
list and report only read the record (a read-only mount works), a finished part runs nothing,
and the paths a record holds from another machine point into this repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from functools import cache, partial
from pathlib import Path

import pytest

from helpers.records import (
    CLASSIFIER,
    FIXED,
    LEARNED,
    fake_study,
    no_sweep,
    record_dir,
    record_of,
    row,
    sgmod_sweep,
    study_script,
    write_parts,
)
from helpers.records import study_cli as cli
from helpers.runs import ROOT
from sgmod_study.study import record as record_module
from sgmod_study.study.export import export, run_folder
from sgmod_study.study.report import importance


def _controls(repo, n_rows=None):
    """An unfinished controls record: 16 runs of two variants (no journal: nothing ran here)."""
    rows = [row("sgmod", s, a, gamma=[1.1]) for s, a in enumerate(LEARNED)]
    rows += [row("sgmod_fixed", s, a) for s, a in enumerate(FIXED)]
    folder = record_dir("controls", repo)
    folder.mkdir(parents=True)
    (folder / "runs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows[:n_rows]))


def _record(repo):
    """A small study record: the controls above and a 12-trial sweep_sgmod (enough for its figures)."""
    _controls(repo)
    top = [(2.0, -1.2, 1e-3, 0.93), (2.2, -0.9, 3e-3, 0.92), (8.0, 3.0, 9e-3, 0.91)]
    sgmod_sweep(repo, top + [(0.1 + i / 10, 4.0, 1e-4, 0.5 + i / 100) for i in range(9)])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- a corrupted record


def test_a_corrupted_row_is_one_line_naming_the_file_and_the_line(tmp_path, monkeypatch, capsys):
    _controls(tmp_path)
    path = record_dir("controls", tmp_path) / "runs.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + '{"number": 1, "state": "COMPL\n' + "".join(lines[2:]))
    expected = (
        "error: study/classifier/controls/runs.jsonl: line 2 is not a run's row (the file is corrupted there); "
        "restore it from git (git checkout -- study/classifier/controls/runs.jsonl) or remove that line\n"
    )
    for command in (["list"], ["report"], ["run", "classifier", "controls"]):
        assert cli(command, tmp_path, monkeypatch, capsys) == (2, "", expected), command


def test_a_corrupted_journal_line_is_one_line_naming_the_file_and_the_line(tmp_path, monkeypatch, capsys):
    _record(tmp_path)
    journal = record_dir("sweep_sgmod", tmp_path) / "study.journal"
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join([*lines[:3], b'{"op_code": 5, "tri', *lines[4:]]))
    code, out, err = cli(["report"], tmp_path, monkeypatch, capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"error: study/classifier/sweep_sgmod/study.journal: line 4 of {len(lines) - 1} is not a journal record (the "
        "file is corrupted there); restore it (git checkout -- study/classifier/sweep_sgmod/study.journal) or remove "
        "that line "
        "(what it recorded is lost)\n"
    )


# -- bad arguments (--time-limit, an unknown part): rows at the end of tests/test_bad_inputs.py


# -- a finished part


def test_a_finished_part_runs_nothing_and_changes_nothing(tmp_path, monkeypatch, capsys):
    for name, part in CLASSIFIER.parts.items():
        folder = record_dir(name, tmp_path)
        folder.mkdir(parents=True)
        rows = [
            {"number": i, "state": "COMPLETE", "values": [0.9], "params": {}, "config": {}} for i in range(part.trials)
        ]
        (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / "study.journal").write_text('{"op_code": 0, "study_name": "%s"}\n' % name)
    before = _files(tmp_path)
    no_sweep(monkeypatch)
    assert cli(["run", "classifier", "controls"], tmp_path, monkeypatch, capsys) == (
        0,
        "[study] controls is complete (72 of 72 trials): nothing to run\n",
        "",
    )
    assert cli(["run", "classifier", "all"], tmp_path, monkeypatch, capsys) == (
        0,
        "[study] classifier: every part is complete; the report: scripts/study.py report classifier\n",
        "",
    )
    assert _files(tmp_path) == before  # no outputs/, no machine.json, the record untouched


# -- paths from another machine


def test_a_stored_folder_is_found_in_this_repository():
    trial = "outputs/study/classifier/controls/trial_0003"
    assert run_folder(trial) == Path(trial)  # relative to the repository, where the commands run
    assert run_folder(f"/home/x/project/{trial}") == Path(trial)  # another machine's checkout
    old = "outputs/study/controls/trial_0003"  # recorded before studies had folders of their own
    assert run_folder(f"/home/x/project/{old}") == Path(old)
    assert run_folder("/data/elsewhere/run") == Path("/data/elsewhere/run")
    assert run_folder("") is None


def test_export_reads_run_folders_stored_relative_or_under_another_machines_path(tmp_path, monkeypatch):
    stored = [
        "/home/x/project/outputs/study/classifier/controls/trial_0000",
        "outputs/study/classifier/controls/trial_0001",
    ]
    fake_study(tmp_path, "controls", 2, stored)
    monkeypatch.chdir(tmp_path)  # the repository: the study's commands run there
    rows = export(record_of(tmp_path), "controls")
    assert [r["metrics"]["test/acc"] for r in rows] == [0.0, 0.1]


def test_export_leaves_an_unchanged_record_unwritten(tmp_path, monkeypatch):
    fake_study(tmp_path, "controls", 2)
    monkeypatch.chdir(tmp_path)
    path = record_dir("controls", tmp_path) / "runs.jsonl"
    export(record_of(tmp_path), "controls")
    written = path.stat().st_mtime_ns, path.read_bytes()
    export(record_of(tmp_path), "controls")
    assert (path.stat().st_mtime_ns, path.read_bytes()) == written


# -- a read-only record: a real read-only mount (a tmpfs), as root or in a user namespace


@cache
def _can_mount() -> bool:
    folder = tempfile.mkdtemp()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", folder], capture_output=True)
        if mounted.returncode == 0:
            subprocess.run(["umount", folder], check=True)
        return mounted.returncode == 0
    except OSError:  # no mount command
        return False
    finally:
        os.rmdir(folder)


@pytest.fixture
def read_only_record(tmp_path):
    """A repository folder whose study/ is a read-only tmpfs holding ``_record``; docs/ is writable."""
    if not _can_mount():
        pytest.skip("cannot mount a tmpfs here (test_a_read_only_record_in_a_user_namespace tries without root)")
    built, repo = tmp_path / "built", tmp_path / "repo"
    _record(built)
    (repo / "study").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(repo / "study")], check=True)
    try:
        shutil.copytree(built / "study", repo / "study", dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(repo / "study")], check=True)
        yield repo
    finally:
        subprocess.run(["umount", str(repo / "study")], check=True)


def test_list_and_report_only_read_the_record(read_only_record, monkeypatch, capsys):
    # the importances at 2 forests and 8 resamples, not 10 and 200: this test is about what the report
    # reads and writes, and their 420 forests took 28 s of its 31
    monkeypatch.setattr(importance, "compute", partial(importance.compute, seeds=2, rounds=8))
    before = _files(read_only_record / "study")
    code, out, err = cli(["list"], read_only_record, monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split()[:5] == ["controls", "grid", "16/72", "16", "complete"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = "".join(f"written: docs/report/{n}.md\n" for n in ("study", "depth", "gan", "norm"))  # every study
        assert cli(["report"], read_only_record, monkeypatch, capsys) == (0, written, "")
    # matplotlib's tight_layout warned about the slice plot's colorbar
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
    assert "## 4. What matters in the Sgmod sweep" in (read_only_record / "docs/report/study.md").read_text()
    assert (read_only_record / "docs/report/study_figures/sgmod_marginals.png").is_file()
    assert "## 1. Run length" in (read_only_record / "docs/report/gan.md").read_text()  # nothing run: said so
    assert _files(read_only_record / "study") == before


def test_run_and_export_on_a_read_only_record_stop_with_one_line(read_only_record, monkeypatch, capsys):
    no_sweep(monkeypatch)
    # all: its first part is the first named contrast's confirm part
    for name, first in (("controls", "controls"), ("all", "confirm_sgmod")):
        assert cli(["run", "classifier", name], read_only_record, monkeypatch, capsys) == (
            5,
            "",
            f"error: part={first}: its record study/classifier/{first} cannot be written (Read-only file system); "
            "running a part needs a writable record folder (list and report only read it; --record DIR puts it "
            "elsewhere)\n",
        ), name
    assert not (read_only_record / "outputs").exists()


def test_a_read_only_record_in_a_user_namespace(tmp_path):
    """Without root, the read-only tests above run again as root of a user namespace."""
    if _can_mount():
        pytest.skip("the read-only tests ran with a real mount")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command")
    pytest_args = [
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        __file__,
        "-k",
        "only_read_the_record or read_only_record_stop",
    ]
    namespace = ["unshare", "--user", "--map-root-user", "--mount"]
    if subprocess.run([*namespace, "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces are not allowed here")
    result = subprocess.run([*namespace, sys.executable, *pytest_args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout


# -- a record made under another fixed setup; records kept outside the repository


def test_a_part_recorded_under_another_fixed_setup_is_refused_before_its_sweep_starts(tmp_path, monkeypatch, capsys):
    import optuna

    study = fake_study(tmp_path, "sweep_relu", 1)
    setup = {"data.name": "fashion_mnist", "trainer.max_epochs": 3, "activation.name": "relu"}
    study.set_user_attr("fixed_setup", setup)
    no_sweep(monkeypatch)
    code, out, err = cli(["run", "classifier", "sweep_relu"], tmp_path, monkeypatch, capsys)
    assert (code, out) == (2, "")
    assert err == (
        "error: part=sweep_relu: its record study/classifier/sweep_relu was made under another fixed setup "
        "(trainer.max_epochs=3 there, 10 here): its trials and these would mix; run with the study's settings, "
        "or keep a new record elsewhere with --record DIR\n"
    )
    assert optuna.load_study(study_name="sweep_relu", storage=study._storage).user_attrs["fixed_setup"] == setup


def test_records_kept_elsewhere_are_listed_and_reported_there_and_read_the_baselines_from_the_repository(
    tmp_path, monkeypatch, capsys
):
    repo, mine = tmp_path / "repo", tmp_path / "mine"
    rows = [row("sgmod", s, a, gamma=[1.1]) for s, a in enumerate(LEARNED)]
    (mine / "classifier" / "controls").mkdir(parents=True)
    (mine / "classifier" / "controls" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sgmod_sweep(repo, [(1.0, 0.0, 1e-3, 0.9)] * 5)  # the repository's record of sweep_sgmod
    code, out, err = cli(["list", "classifier", "--record", str(mine)], repo, monkeypatch, capsys)
    assert (code, err) == (0, "")
    listed = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:]}
    assert listed["controls"] == "8/72" and listed["sweep_sgmod"] == "5/64"  # mine, and the repository's
    code, out, err = cli(["report", "classifier", "--record", str(mine)], repo, monkeypatch, capsys)
    assert (code, out, err) == (0, f"written: {mine / 'study.md'}\n", "")
    assert "| sgmod | 8 |" in (mine / "study.md").read_text()
    assert not (repo / "docs").exists()  # the repository's reports are left alone


def test_list_gives_the_run_hours_left_at_this_machines_pace_where_it_ran_some_of_them(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    fast, slow = {"cpu": "Fast", "cpu_count": 2}, {"cpu": "Slow", "cpu_count": 2, "cpu_capability": "AVX2"}

    def timed(seed, minutes, machine):
        return {**row("sgmod", seed, 0.9), "duration_s": 60.0 * minutes, "machine": machine}

    gpu = {**fast, "gpu": "Some GPU"}
    controls = [timed(0, 8, fast), timed(1, 10, fast), timed(2, 12, fast), timed(3, 25, slow), timed(4, 35, slow)]
    # GPU runs, here and in a part Slow never ran, are no yardstick for a CPU: with them, 1 min each, the
    # other machines' median would be 1 min and Slow 30x as slow
    gpu_runs = [timed(seed, 1, gpu) for seed in range(5, 12)]
    write_parts(record_of(repo).folder, {"controls": controls + gpu_runs, "sweep_relu": gpu_runs})
    monkeypatch.setattr(study_script(), "cpu_here", lambda: "Slow (2 cores, AVX2)")
    out = cli(["list", "classifier"], repo, monkeypatch, capsys)[1].splitlines()
    # Slow took 25/10 and 35/10 of the other CPU's median: 3.0x. The controls' 60 runs left at Slow's
    # own median there (30 min); every other part at 3.0 x the other CPU's median (10 min)
    planned = sum(part.trials for part in CLASSIFIER.parts.values())
    hours = ((72 - 12) * 30 + (planned - 72 - 7) * 30) / 60
    assert out[-2] == (
        "  this machine, Slow (2 cores, AVX2), took 3.0x as long as the other CPUs over the same parts (the "
        f"median of its 2 finished runs): about {hours:.1f} run-hours left at its pace"
    )
    assert out[-3].startswith(f"  left: {planned - 19} of {planned} runs, about ")
    # a machine that ran none of them, or ran every one of them (nothing to compare with): no such line
    monkeypatch.setattr(study_script(), "cpu_here", lambda: "Other (2 cores)")
    assert "this machine" not in cli(["list", "classifier"], repo, monkeypatch, capsys)[1]
    write_parts(record_of(repo).folder, {"controls": controls[3:]})
    monkeypatch.setattr(study_script(), "cpu_here", lambda: "Slow (2 cores, AVX2)")
    assert "this machine" not in cli(["list", "classifier"], repo, monkeypatch, capsys)[1]


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (["fma", "avx2", "avx512f", "avx512vl", "avx512bw", "avx512dq"], "Some CPU (2 cores, AVX512)"),
        (["fma", "avx2", "avx512f"], "Some CPU (2 cores, AVX2)"),  # AVX512 needs vl, bw and dq too
        (["sse4_2"], "Some CPU (2 cores)"),
    ],
)
def test_this_machine_is_named_as_its_runs_name_it_without_torch(monkeypatch, flags, name):
    monkeypatch.setattr(record_module, "_cpu", lambda: {"cpu": "Some CPU", "cpu_count": 2, "flags": flags})
    assert record_module.cpu_here() == name


def test_list_says_the_runs_left_and_their_run_hours_by_each_parts_median_run(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    minutes = [5, 7, 9, 30]
    timed = [{**row("sgmod", s, LEARNED[s]), "duration_s": 60.0 * m} for s, m in enumerate(minutes)]
    diverged = {**row("sgmod", 4, 0.1), "state": "FAIL", "fail_reason": "training diverged: nan", "duration_s": 6.0}
    stopped = {**row("sgmod", 5, 0.1), "state": "FAIL", "interrupted": True, "duration_s": 60.0}
    write_parts(record_of(repo).folder, {"controls": [*timed, diverged, stopped]})
    code, out, err = cli(["list", "classifier"], repo, monkeypatch, capsys)
    assert (code, err) == (0, "")
    controls = out.splitlines()[1]
    assert controls.split()[:3] == ["controls", "grid", "5/72"] and "4 complete, 1 diverged, 1 interrupted" in controls
    # the columns line up however long a part's name (confirm_sgmod_default_at_1_0 is 28 characters)
    parts = out.splitlines()[1:-2]
    assert len(parts) == len(CLASSIFIER.parts) and max(map(len, CLASSIFIER.parts)) > 22
    kinds = [part.kind for part in CLASSIFIER.parts.values()]
    assert len({line.index(f" {kind} ") for line, kind in zip(parts, kinds, strict=True)}) == 1
    planned = sum(part.trials for part in CLASSIFIER.parts.values())
    # controls: 67 left at its own median of 8 min (finished runs only); every other part at the study's, also 8
    left = planned - 5
    assert out.splitlines()[-2] == (
        f"  left: {left} of {planned} runs, about {left * 8 / 60:.1f} run-hours at the median recorded run (8.0 min, "
        "on the machines that ran them; each part's own where it has one). Runs side by side share them: divide by "
        "their number for the wall time"
    )
    # none timed yet: said so, with no guess
    # last, what `run classifier all` starts: the sweeps of the primary contrasts (their confirms wait)
    assert out.splitlines()[-1] == (
        "  next, `run classifier all` starts (the primary contrasts' parts first): sweep_sgmod, sweep_sigmoid, "
        "sweep_tanh, sweep_relu and 1 more"
    )
    write_parts(record_of(repo).folder, {"controls": []})
    assert cli(["list", "classifier"], repo, monkeypatch, capsys)[1].splitlines()[-2] == (
        f"  left: {planned} of {planned} runs (no finished run to time them by yet)"
    )
