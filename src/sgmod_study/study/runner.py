"""Running a study's parts: each part is one resumable ``python src/train.py -m`` sweep whose
Optuna journal is the part's record. ``run STUDY all`` runs the parts that do not depend on each
other side by side while the machine has free trial slots, those of the primary contrasts first
(``run STUDY a,b`` runs parts a and b, started in that order), stops them all at ``--time-limit``,
and refreshes each part's ``runs.jsonl`` while it runs (its ended trials) and as it ends."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.paths import STUDY_RUNS, TRAIN_SCRIPT
from sgmod_study.run.cli import RESUME_COMMAND_ENV, command_line
from sgmod_study.study.choose import confirm_overrides
from sgmod_study.study.export import export
from sgmod_study.study.record import (
    JOURNAL,
    MACHINE_FILE,
    Record,
    expected_run_minutes,
    has_result,
    is_lost,
    run_minutes_by_part,
    summary,
)
from sgmod_study.study.spec import Part, Study
from sgmod_study.sweeper.scheduler import expected_duration

ALL = "all"  # `run STUDY all`: every unfinished part
# After --time-limit the sweeps stop their trials and write their tables; past this many seconds
# more they are terminated.
STOP_GRACE_S = 120.0
POLL_S = 1.0
# While a part runs, its runs.jsonl gains the rows of its ended trials this often: a record
# committed mid-part then holds them (a run folder does not outlive the machine it ran on).
ROWS_EVERY_S = 60.0
N_JOBS = "hydra.sweeper.n_jobs="


def sweep_command(study: Study, part: Part, record: Record, overrides: Sequence[str], lost: int = 0) -> list[str]:
    """The ``python src/train.py -m ...`` that runs (or resumes) ``part`` in the repository (the
    working folder): its paths are relative to it where they can be, so the record holds no
    machine's path. ``lost``: the part's lost runs (``requeue_lost``), which its sweep runs again on
    top of its trials (the sweeper counts their first trials as ended)."""
    journal = _relative(record.folder / part.name / JOURNAL)
    return [
        sys.executable,
        str(TRAIN_SCRIPT),
        "-m",
        *study.setup_overrides(),
        *part.overrides,
        *(_confirm_overrides(part, record) if part.kind == "confirm" else ()),
        f"hydra.sweeper.n_trials={part.trials + lost}",
        f"hydra.sweeper.study_name={part.name}",
        f"hydra.sweeper.storage={journal}",
        f"hydra.sweep.dir={STUDY_RUNS / study.record / part.name}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]


def _confirm_overrides(part: Part, record: Record) -> list[str]:
    seeds = ",".join(str(s) for s in part.seeds)
    return [*confirm_overrides(record.load(part.of), part), f"hydra.sweeper.params.seed='choice({seeds})'"]


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:  # a record outside the repository (--record DIR): its absolute path
        return path.resolve()


def check_ready(study: Study, part: Part, record: Record) -> None:
    """A confirm part retrains its sweep's choice only once that sweep is complete: a choice from
    part of a sweep would be fixed into the confirm study's setup and could not change later."""
    if part.of is None:
        return
    done, needed = record.finished(part.of), study.parts[part.of].trials
    if done < needed:
        raise ConfigError(
            f"part={part.name} retrains the {part.pick} configuration of {part.of}, which has {done} of its "
            f"{needed} trials: finish it first (scripts/study.py run {study.record} {part.of})"
        )


def check_time_limit(time_limit: float | None) -> None:
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ConfigError(f"--time-limit={time_limit:g} is not allowed: it must be a number of seconds > 0")


@dataclass
class Launch:
    """A part's sweep while it runs."""

    part: Part
    process: subprocess.Popen
    jobs: int
    console: tuple[threading.Thread, ...] = ()  # show the sweep's lines until it ends
    journal_seen: int = 0  # the journal's modification time (ns) when its rows were last refreshed


def run(
    study: Study,
    record: Record,
    names: str,
    overrides: Sequence[str] = (),
    time_limit: float | None = None,
) -> int:
    """Run the parts ``names`` of ``study`` (comma-separated, started in that order as trial slots
    free up; or ``all``: every unfinished part) until they are complete or ``time_limit`` seconds
    have passed; returns the first non-zero exit code of a sweep."""
    check_time_limit(time_limit)
    if names == ALL:
        todo = by_priority(study, unfinished(study, record))
        if not todo:
            print(f"[study] {study.name}: every part is complete; the report: scripts/study.py report {study.record}")
            return 0
        return run_parts(study, record, todo, overrides, time_limit)
    todo = []
    for part in named_parts(study, names):
        done = record.finished(part.name)
        if done >= part.trials:
            print(f"[study] {part.name} is complete ({done} of {part.trials} trials): nothing to run")
        else:
            todo.append(part)
    for part in todo:
        if part.of not in {p.name for p in todo}:  # one named with its sweep waits for it instead
            check_ready(study, part, record)
    return run_parts(study, record, todo, overrides, time_limit) if todo else 0


def named_parts(study: Study, names: str) -> list[Part]:
    """The parts of ``names`` ("a,b,c"), each once, in the order given."""
    chosen = list(dict.fromkeys(names.split(",")))
    if ALL in chosen:
        raise ConfigError(f"part={names!r} is not allowed: {ALL} runs every unfinished part, so it stands alone")
    for name in chosen:
        check_choice("part", name, [*study.parts, ALL])
    return [study.part(name) for name in chosen]


def by_priority(study: Study, parts: Sequence[Part]) -> list[Part]:
    """``all``'s order: first the parts the primary contrasts need (theirs and the sweeps they
    retrain), confirm parts before the rest, so that a study cut short has answered its named
    questions rather than opened new ones; otherwise the study file's order."""
    needed = primary_parts(study)
    return sorted(parts, key=lambda p: (p.name not in needed, p.kind != "confirm"))


def starts_next(study: Study, record: Record, shown: int = 4) -> str | None:
    """The parts ``run STUDY all`` would start now, in its order (those whose sweep is complete);
    None when every part is complete or waits for one."""
    ready = [p.name for p in by_priority(study, unfinished(study, record)) if sweep_complete(study, record, p)]
    if not ready:
        return None
    more = f" and {len(ready) - shown} more" if len(ready) > shown else ""
    return f"next, `run {study.name} all` starts (the primary contrasts' parts first): {', '.join(ready[:shown])}{more}"


def unfinished(study: Study, record: Record) -> list[Part]:
    """The parts a run of ``study`` trains that have trials left, in the study file's order."""
    return [p for p in own_parts(study).values() if record.finished(p.name) < p.trials]


def sweep_complete(study: Study, record: Record, part: Part) -> bool:
    """Whether ``part`` can start: it retrains no sweep, or that sweep has all its trials."""
    return part.of is None or record.finished(part.of) >= study.parts[part.of].trials


def primary_parts(study: Study) -> set[str]:
    """The parts the primary contrasts compare (or compare within), and every part those retrain."""
    named = set()
    for contrast in itertools.chain.from_iterable(study.contrasts.values()):
        if contrast.primary:
            for side in (contrast.variant, contrast.reference, contrast.part):
                named.update([side] if isinstance(side, str) else side or ())
    needed, todo = set(), [n for n in named if n in study.parts]
    while todo:
        name = todo.pop()
        needed.add(name)
        if study.parts[name].of is not None and study.parts[name].of not in needed:
            todo.append(study.parts[name].of)
    return needed


def own_parts(study: Study) -> dict[str, Part]:
    """The parts a run of ``study`` trains: for a user's own activation only its sweep and confirm
    (the baselines' records are reused)."""
    if study.activation is None:
        return study.parts
    return {n: p for n, p in study.parts.items() if n.endswith(f"_{study.activation}")}


def slots(overrides: Sequence[str]) -> int:
    """The trials the machine runs at once: the sweep's ``hydra.sweeper.n_jobs`` (1 if not given)."""
    given = [o.removeprefix(N_JOBS) for o in overrides if o.startswith(N_JOBS)]
    try:
        return max(1, int(given[-1])) if given else 1
    except ValueError:
        raise ConfigError(f"{N_JOBS}{given[-1]} is not allowed: it must be a whole number >= 1") from None


def run_parts(
    study: Study,
    record: Record,
    parts: Sequence[Part],
    overrides: Sequence[str],
    time_limit: float | None,
) -> int:
    """Start each part whose sweep it depends on is complete while trial slots are free, giving it
    as many slots as it has trials left; when one ends, refresh its record and fill the slots
    again. Stops starting parts after the first one that fails."""
    from sgmod_study.study.reuse import check_setups

    for part in parts:
        record.check_writable(part.name)
    check_setups(study, record, parts, overrides)
    deadline = None if time_limit is None else time.monotonic() + time_limit
    total = slots(overrides)
    kept = [o for o in overrides if not o.startswith(N_JOBS)]
    waiting, running, code, out_of_time, held_back = list(parts), [], 0, False, False
    with forwarding_signals(running):
        while waiting or running:
            if code == 0 and not (out_of_time or _past(deadline)):
                started, too_late = _start_ready(study, record, waiting, running, total, kept, deadline)
                running += started  # in place: forwarding_signals reads this list
                held_back = held_back or too_late
            if not running:
                break
            ended = _wait_for_one(record, running, deadline)
            running.remove(ended)
            code = code or _finish(record, ended)
            # a sweep that ended short of its trials without an error stopped at its time limit: its
            # next trial would not have ended in time, so no other part starts either
            out_of_time = out_of_time or (deadline is not None and record.finished(ended.part.name) < ended.part.trials)
    if waiting and code == 0:
        left = ", ".join(p.name for p in waiting)
        timed_out = out_of_time or held_back or _past(deadline)
        reason = "time limit reached" if timed_out else "their sweeps are not complete"
        print(f"[study] {study.name}: not started ({reason}): {left}; they run next time")
    return code


def _start_ready(study, record, waiting, running, total, overrides, deadline) -> tuple[list[Launch], bool]:
    """The parts started now, and whether one was held back because its run would not end in time."""
    started, too_late = [], False
    free = total - sum(launch.jobs for launch in running)
    expected = {} if deadline is None else expected_run_minutes(run_minutes_by_part(study, record))
    for part in list(waiting):
        if free <= 0:
            break
        if not sweep_complete(study, record, part):
            continue  # its sweep is still running (or unfinished): it starts when that one is complete
        if not _ends_in_time(expected.get(part.name), deadline):
            too_late = True
            continue
        jobs = min(free, part.trials - record.finished(part.name))
        started.append(_start(study, record, part, jobs, overrides, deadline))
        waiting.remove(part)
        free -= jobs
    return started, too_late


def _ends_in_time(expected_minutes: float | None, deadline: float | None) -> bool:
    """Whether a run of a part, expected to take ``expected_minutes`` (None: no run finished yet), ends
    before the deadline. The sweep itself starts a trial only if it ends in time, but only once it has
    a trial length of its own to go by: a part not run yet would start one blind, only to have it
    stopped at the deadline."""
    if deadline is None or expected_minutes is None:
        return True
    return time.monotonic() + expected_duration([60 * expected_minutes]) <= deadline


def _start(study, record, part, jobs, overrides, deadline) -> Launch:
    from sgmod_study.study.record import machine
    from sgmod_study.tasks.checkpoints import write_atomic

    sweep_dir = STUDY_RUNS / study.record / part.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(machine()).encode()
    write_atomic(sweep_dir / MACHINE_FILE, lambda f: f.write(text))
    limit = [] if deadline is None else [f"hydra.sweeper.time_limit={max(deadline - time.monotonic(), 1.0):.0f}"]
    lost = requeue_lost(record, part.name)
    command = sweep_command(study, part, record, [*overrides, f"{N_JOBS}{jobs}", *limit], lost)
    print(f"[study] {part.name}: starting, {jobs} trial(s) at once")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", RESUME_COMMAND_ENV: command_line()}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    console = tuple(
        threading.Thread(target=_show, args=(stream, part.name, shown), daemon=True)
        for stream, shown in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))
    )
    for thread in console:
        thread.start()
    return Launch(part, process, jobs, console)


def requeue_lost(record: Record, name: str) -> int:
    """Queue the parameters of part ``name``'s lost runs (``record.is_lost``) to run again, each once:
    not where a trial with the same parameters waits, runs, or has a result in the record. Returns
    the number of lost runs the part holds."""
    from optuna.trial import TrialState

    from sgmod_study.sweeper.liveness import REQUEUED_ATTR

    if not record.has_journal(name):
        return 0
    # a record committed before its machine was lost may have no row at all for such a trial: the
    # export adds Optuna's view of every trial that ended since, whose folder is not here
    rows = export(record, name, new_only=True)
    lost = [row for row in rows if is_lost(row)]
    if not lost:
        return 0
    study = record.load(name, write=True)
    live = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    covered = [row["params"] for row in rows if has_result(row)]
    covered += [t.system_attrs.get("fixed_params", t.params) for t in live]
    for row in lost:
        if row["params"] not in covered:
            study.enqueue_trial(row["params"], user_attrs={REQUEUED_ATTR: row["number"]})
            covered.append(row["params"])
            print(
                f"[study] {name}: trial {row['number']} ended, but its machine stopped before its run folder was "
                "read into the record, and the folder went with it; its parameters run again"
            )
    return len(lost)


def _show(stream, name: str, shown) -> None:
    """A sweep's lines, each marked with its part (parts side by side share one console), to this
    process's stdout or stderr as the sweep wrote them."""
    for line in iter(stream.readline, b""):
        shown.write(f"{name} | {line.decode(errors='replace')}")
        shown.flush()


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _wait_for_one(record: Record, running: Sequence[Launch], deadline: float | None) -> Launch:
    """The first launch to end; meanwhile the rows of ended trials go to the running parts' records
    every ROWS_EVERY_S; past the deadline plus the grace, every sweep is terminated."""
    warned, rows_due = False, time.monotonic() + ROWS_EVERY_S
    while True:
        for launch in running:
            if launch.process.poll() is not None:
                return launch
        if time.monotonic() >= rows_due:
            rows_due = time.monotonic() + ROWS_EVERY_S
            for launch in running:
                _refresh_rows(record, launch)
        if deadline is not None and time.monotonic() >= deadline + STOP_GRACE_S:
            if not warned:
                print("[study] time limit reached; stopping the sweeps (they resume next time)")
                for launch in running:
                    launch.process.terminate()
                warned = True
        time.sleep(POLL_S)


def _refresh_rows(record: Record, launch: Launch) -> None:
    """The rows of the trials that ended since the part's journal was last read, if it changed."""
    name, journal = launch.part.name, record.folder / launch.part.name / JOURNAL
    if not journal.is_file():
        return  # no trial has started yet
    try:
        changed = journal.stat().st_mtime_ns
        if changed != launch.journal_seen:
            launch.journal_seen = changed
            export(record, name, samples=launch.part.kind == "confirm", new_only=True)
    except Exception as err:  # noqa: BLE001 - never stop the sweeps over it: the part's end refreshes the rows again
        print(f"[study] {name}: runs.jsonl not refreshed while the part runs ({type(err).__name__}: {err})")


def _finish(record: Record, launch: Launch) -> int:
    """Mark trials the ended sweep left RUNNING as interrupted (queued again) and refresh the
    part's runs.jsonl; the sweep's exit code."""
    from sgmod_study.sweeper.liveness import fail_orphaned_trials

    code, name = launch.process.wait(), launch.part.name
    for thread in launch.console:
        thread.join(timeout=5)  # its last lines before the part's summary
    if not record.has_journal(name):
        return code  # the sweep stopped before its first trial (it printed why)
    interrupted = fail_orphaned_trials(record.load(name, write=True))
    if interrupted:
        print(f"[study] {name}: trials {interrupted} were interrupted; their points run again next time")
    rows = export(record, name, samples=launch.part.kind == "confirm")
    print(f"[study] {name}: {summary(rows)}; record in {record.folder / name}")
    done = record.finished(name)
    if code == 0 and done < launch.part.trials:
        print(f"[study] {name}: {done} of {launch.part.trials} trials finished; run it again to go on")
    return code


@contextmanager
def forwarding_signals(running: Sequence[Launch]) -> Iterator[None]:
    """SIGTERM and SIGINT to this process go to every running sweep, which stops its trials and
    records them as interrupted; this one waits for them and then refreshes the records."""

    def forward(signum: int, frame) -> None:
        for launch in running:
            if launch.process.poll() is None:
                launch.process.send_signal(signum)

    previous = {each: signal.signal(each, forward) for each in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
