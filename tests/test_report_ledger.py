"""The ledger every report ends with: each part's runs, failures, reruns, epochs, seeds, wall time
and machines, read from synthetic records with known values."""

from __future__ import annotations

from helpers.records import GAN, diverged_row, gan_row, write_parts
from sgmod_study.study.report import figures, ledger
from sgmod_study.study.report.document import write_report

CPU = {"cpu": "Test CPU", "cpu_count": 2, "cpu_capability": "AVX512"}
PLANNED = GAN.parts["grid_g_relu"].trials


def _grid_rows():
    """grid_g_relu: seeds 0-2 and 5 finished (seed 5's run collapsed), seed 3 diverged, one interrupted
    run of seed 4; 15 epochs; 600 s a run, the interrupted one 300 s; seed 5 on a CPU."""
    config = {"trainer.max_epochs": 15, "seed": 0}
    rows = [gan_row(s, 30.0, number=s, duration_s=600.0, config=config) for s in (0, 1, 2)]
    rows.append(gan_row(5, 80.0, number=5, collapsed=1, duration_s=600.0, config=config, machine=CPU))
    rows.append(diverged_row(3, number=3) | {"duration_s": 600.0})
    rows.append({"number": 4, "state": "FAIL", "interrupted": True, "params": {"seed": 4}, "duration_s": 300.0})
    rows.append({"number": 6, "state": "RUNNING", "params": {"seed": 6}})
    rows.append({"number": 7, "state": "WAITING", "params": {"seed": 4}})  # seed 4 queued to run again
    return rows


def test_a_parts_line_counts_results_failures_reruns_and_sums_the_wall_time_of_every_run():
    found = ledger.line("grid_g_relu", "grid", 15, _grid_rows())
    assert (found.results, found.failed, found.rerun) == (5, 2, 1)  # the running run is neither
    assert found.epochs == [15]
    assert found.seeds == [0, 1, 2, 3, 5]
    assert found.hours == (5 * 600 + 300) / 3600
    assert found.machines == ["Test CPU (2 cores, AVX512)", "Test GPU"]


def test_seeds_are_written_as_spans_of_consecutive_ones():
    assert ledger.spans([100, 101, 102, 103]) == "100-103"
    assert ledger.spans([7, 0, 1, 2, 5, 8]) == "0-2, 5, 7-8"
    assert ledger.spans([]) == "-"


def test_the_section_lists_every_part_of_the_study_with_its_machines_by_letter(tmp_path):
    record = write_parts(tmp_path / "gan", {"grid_g_relu": _grid_rows()})
    lines = ledger.render(ledger.compute(GAN, record), figures.Page(tmp_path / "f", {"ledger": 8}))
    assert lines[0] == "## 8. What ran"
    assert "and the machines: A = Test CPU (2 cores, AVX512); B = Test GPU." in lines[2]
    # seed 4's interrupted run has not run again yet: it counts, and the text does not say "ran again"
    assert f"| grid_g_relu | grid | 5 of {PLANNED} | 2 | 1 | 15 | 0-3, 5 | 0.9 | A, B |" in lines
    lost = "runs interrupted, crashed or lost (ended, but their machine stopped before their run folder was read"
    assert lost + " into the record), left without a result (their parameters run again" in lines[2]
    assert "| confirm_sweep_dcgan | confirm | 0 of 8 | 0 | 0 | - | - | 0.0 | - |" in lines
    assert len([x for x in lines if x.startswith("| ")]) == 1 + len(GAN.parts)  # the header and every part
    assert lines[-1] == f"In all 5 of {sum(p.trials for p in GAN.parts.values())} runs, 0.9 hours of runs."


def test_every_report_ends_with_the_ledger_numbered_after_the_studys_sections(tmp_path):
    record = write_parts(tmp_path / "gan", {"grid_g_relu": _grid_rows()})
    text = write_report(GAN, record, tmp_path / "gan.md")
    last = text.rsplit("\n## ", 1)[1]
    assert last.startswith(f"{len(GAN.sections) + 1}. What ran\n")
    assert f"| grid_g_relu | grid | 5 of {PLANNED} | 2 | 1 | 15 | 0-3, 5 | 0.9 | A, B |" in last
