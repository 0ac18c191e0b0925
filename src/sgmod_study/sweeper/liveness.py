"""Which RUNNING trials belong to a sweep worker that is gone, on any host, while the sweep runs.

A worker marks every trial it starts with its owner id (host:pid) and keeps showing that it lives:

- RDB storage: Optuna's own heartbeat, one per running trial (``record_heartbeat``, stamped by
  the database's clock); a trial without one for ``grace`` seconds is stale.
- journal file: one heartbeat file per worker, ``<journal>.heartbeats/<host:pid>``, rewritten
  every ``interval`` seconds with a new count. Another worker judges it by its own clock: a file
  that has not changed (or is missing) for ``grace`` seconds of watching means its worker is
  gone, whatever the hosts' clocks say.

On the owner's own host a pid that no longer exists is enough, at once. A gone worker's trials
are marked FAIL (``interrupted``: not counted as failures) and the sweep goes on without them.
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

OWNER_ATTR = "sgmod:owner"  # system attribute of a trial: host:pid of the sweep worker that runs it
REQUEUED_ATTR = "requeued_from"  # user attribute of a trial: the number of the interrupted trial it runs again


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def mark_interrupted(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """FAIL with ``reason``, as an interruption, and queue its parameters again (``requeue``);
    False if the trial had finished meanwhile (its worker told its outcome, or another worker
    marked it first)."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    requeue(study, storage.get_trial(trial_id))
    return True


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue an interrupted trial's parameters as the next trial to run, as Optuna's
    RetryFailedTrialCallback does for a trial that died of its worker: a sampler moves on, so a
    quasi-random or TPE point that was cut off would otherwise never be trained. A grid cell
    (``grid_id``) is not queued: the grid sampler runs its missing cells again by itself."""
    if not trial.params or "grid_id" in trial.system_attrs:
        return
    study.enqueue_trial(trial.params, user_attrs={REQUEUED_ATTR: trial.number})


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose sweeper process on this host is gone (a killed sweep),
    and those without an owner (a sweep that died between asking for a trial and marking it)."""
    orphaned = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = _owner(trial)
        gone = not owner or _dead_here(owner)
        if gone and mark_interrupted(study, trial._trial_id, "its sweeper process was killed"):
            orphaned.append(trial.number)
    return orphaned


def _owner(trial: FrozenTrial) -> str:
    return str(trial.system_attrs.get(OWNER_ATTR, ""))


def _dead_here(owner: str) -> bool:
    host, _, pid = owner.partition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Liveness:
    """One worker's heartbeat and its watch over the other workers' trials.

    The heartbeat runs in a thread of its own, as Optuna's does: the sweep loop can be busy for
    a while (ending a timed-out trial's tree, the first plots, which import matplotlib and torch)
    without its trials being taken for orphans."""

    def __init__(self, study: optuna.Study, owner: str, interval: float, grace: float) -> None:
        self.study, self.owner, self.interval, self.grace = study, owner, interval, grace
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.ownerless: dict[int, float] = {}  # trial id: when this worker first saw it RUNNING without an owner

    def start(self, trial_ids: Callable[[], list[int]]) -> None:
        """Beat now, before any trial carries our owner id, then every ``interval`` seconds for
        the trials ``trial_ids()`` names (ours that run)."""
        self._beat(trial_ids())
        self.thread = threading.Thread(target=self._keep_beating, args=(trial_ids,), daemon=True)
        self.thread.start()

    def _keep_beating(self, trial_ids: Callable[[], list[int]]) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self._beat(trial_ids())
            except Exception as err:  # a storage hiccup: the next beat may get through
                print(f"[sweep] heartbeat failed ({type(err).__name__}: {err}); trying again in {self.interval:g} s")

    def started(self, trial_id: int) -> None:
        """A trial of ours has started: mark it with our owner id (and its first heartbeat)."""
        self.study._storage.set_trial_system_attr(trial_id, OWNER_ATTR, self.owner)

    def orphans(self) -> list[tuple[FrozenTrial, str]]:
        """The RUNNING trials of gone workers (never ours), each with why its worker counts as gone."""
        found = []
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = _owner(trial)
            if owner == self.owner:
                continue
            if not owner:
                if self._ownerless_too_long(trial):
                    found.append((trial, "no sweep worker ran it (one died between asking for it and starting it)"))
            elif _dead_here(owner):
                found.append((trial, f"its sweep worker {owner} was killed"))
            elif self._silent(trial, owner):
                found.append((trial, f"its sweep worker {owner} is gone (no heartbeat for {self.grace:g} s)"))
        return found

    def _ownerless_too_long(self, trial: FrozenTrial) -> bool:
        """A worker marks a trial as its own right after asking for it: one still without an owner
        after ``grace`` seconds (by its start time, or of this worker's watching where the hosts'
        clocks may differ) was left by a worker that died in between."""
        now = time.monotonic()
        first_seen = self.ownerless.setdefault(trial._trial_id, now)
        started = trial.datetime_start
        age = (datetime.datetime.now() - started).total_seconds() if started else 0.0
        return max(age, now - first_seen) >= self.grace

    def close(self) -> None:
        """This worker ends: no more heartbeats."""
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()

    def _beat(self, trial_ids: list[int]) -> None:
        raise NotImplementedError

    def _silent(self, trial: FrozenTrial, owner: str) -> bool:
        raise NotImplementedError


class RdbLiveness(Liveness):
    """Optuna's heartbeat of an RDB storage (opened with heartbeat_interval and grace_period)."""

    def started(self, trial_id: int) -> None:
        super().started(trial_id)
        self.study._storage.record_heartbeat(trial_id)

    def _beat(self, trial_ids: list[int]) -> None:
        for trial_id in trial_ids:
            self.study._storage.record_heartbeat(trial_id)

    def orphans(self) -> list[tuple[FrozenTrial, str]]:
        # once per look: the stale trials' ids (a database query), for _silent
        self.stale = set(self.study._storage._get_stale_trial_ids(self.study._study_id))
        return super().orphans()

    def _silent(self, trial: FrozenTrial, owner: str) -> bool:
        return trial._trial_id in self.stale


class JournalLiveness(Liveness):
    """A heartbeat file per worker next to the journal (see the module's docstring)."""

    def __init__(self, study: optuna.Study, owner: str, interval: float, grace: float, journal: Path) -> None:
        super().__init__(study, owner, interval, grace)
        self.folder = Path(f"{journal}.heartbeats")
        self.count = 0
        self.seen: dict[str, tuple[str | None, float]] = {}  # owner: (its file's text, when it last changed)
        self.gone: set[str] = set()

    def _beat(self, trial_ids: list[int]) -> None:
        self.count += 1
        self.folder.mkdir(exist_ok=True)
        temporary = self.folder / f".{self.owner}.tmp"
        temporary.write_text(f"{self.count}\n")
        os.replace(temporary, self.folder / self.owner)  # a reader sees the old count or the new one

    def _silent(self, trial: FrozenTrial, owner: str) -> bool:
        if owner in self.gone:
            return True
        try:
            text = (self.folder / owner).read_text()
        except OSError:
            text = None
        now = time.monotonic()
        last = self.seen.get(owner)
        if last is None or last[0] != text:
            self.seen[owner] = (text, now)
            return False
        if now - last[1] < self.grace:
            return False
        self.gone.add(owner)
        (self.folder / owner).unlink(missing_ok=True)  # no one beats there again
        return True

    def close(self) -> None:
        super().close()
        (self.folder / self.owner).unlink(missing_ok=True)
        try:
            self.folder.rmdir()  # the last worker out leaves nothing next to the journal
        except OSError:
            pass  # another worker still beats there


def liveness(study: optuna.Study, owner: str, interval: float, grace: float, journal: Path | None) -> Liveness:
    """The heartbeat that fits the study's storage: a journal's files, or Optuna's own."""
    if journal is not None:
        return JournalLiveness(study, owner, interval, grace, journal)
    return RdbLiveness(study, owner, interval, grace)
