"""Where a study lives and how it is opened: a journal file (the default, repaired after a
crash) or a database URL; the study itself, created or resumed."""

from __future__ import annotations

import json
import os
import re
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sgmod_study.errors import ConfigError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # n_trials counts these and the diverged (has_result)

# How the scheduler's fail_reason of a trial that exited 3 starts. Such a trial is a result of its
# parameters (as a COMPLETE one is), not an accident: it is not run again, neither as an enqueued
# baseline nor as a grid cell (interrupted trials are: liveness.requeue). Running it again would
# only diverge again, or, where it is a matter of chance, keep the point that happened not to.
DIVERGED = "training diverged"


def diverged(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and str(trial.user_attrs.get("fail_reason", "")).startswith(DIVERGED)


def has_result(trial: FrozenTrial) -> bool:
    """Finished, pruned or diverged: what n_trials counts (a diverged run is a result, not run again)."""
    return trial.state in FINISHED or diverged(trial)


def count_results(study: optuna.Study) -> int:
    return sum(has_result(t) for t in study.get_trials(deepcopy=False))


STUDY_NAME = re.compile(r"[A-Za-z0-9_=,.-]+")


def check_study_name(name) -> None:
    """The default journal is <storage folder>/<study_name>.journal: no name may leave that folder."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name) or name.startswith(".") or ".." in name:
        raise ConfigError(
            f"hydra.sweeper.study_name={name!r} is not allowed: use letters, digits and _ - . = , only, "
            "not starting with '.' and without '..' (it names the file outputs/optuna/<study_name>.journal)"
        )


def open_storage(storage: str | None, study_name: str, default_dir: Path, heartbeat: tuple[int, int] | None = None):
    """A journal file under ``default_dir`` when no storage is given; an RDB URL otherwise.

    ``heartbeat`` (interval, grace period in whole seconds) turns on Optuna's own heartbeat of
    an RDB storage, which a sweep worker records for its running trials (liveness.py)."""
    if storage is not None and "://" in storage:
        return _rdb_storage(storage, heartbeat), storage
    check_study_name(study_name)
    path = Path(storage) if storage is not None else default_dir / f"{study_name}.journal"
    shown = str(path) if storage is not None else f"null (default {path})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        open(path, "ab").close()
        repair_journal(path)
    except OSError as err:
        reason = f"{path.parent} is a file" if isinstance(err, FileExistsError) else err.strerror or str(err)
        raise ConfigError(
            f"hydra.sweeper.storage={shown} cannot be used: {reason}; allowed: a journal file "
            "in a folder you can write to, or a database URL such as postgresql+psycopg2://user:password@host/db"
        ) from None
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path))), str(path)


def repair_journal(path: Path) -> None:
    """Move a cut last line (a crash or a full disk while a record was written) out of the journal.

    Optuna 5's JournalFileBackend.read_logs skips a last line without its newline (another process
    may still be writing it), and append_logs then writes the next record right after those bytes:
    the glued line is invalid JSON, so that record is lost (a new trial's: ask() fails with an
    AttributeError), and once any line follows it read_logs raises JSONDecodeError at every later
    start of the study. Under the journal's own lock nobody is writing, so such a tail is a cut
    record: its bytes go to ``<journal>.torn-<time>``, every complete line stays.
    """
    from optuna.storages.journal import JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    with get_lock_file(JournalFileSymlinkLock(str(path))):
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        _check_journal_lines(path, data[:end])
        tail = data[end:]
        if not tail:
            return
        if _json_object(tail):  # cut just before its newline: the record itself is whole
            with open(path, "ab") as f:
                f.write(b"\n")
            return
        side = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        side.write_bytes(tail)
        os.truncate(path, end)
    kept = data.count(b"\n", 0, end)
    print(
        f"[sweep] {path}: its last line was cut ({len(tail)} bytes, a crash while writing): moved to {side}; "
        f"the {kept} complete records are kept"
    )


def _check_journal_lines(path: Path, complete: bytes) -> None:
    lines = complete.split(b"\n")[:-1]
    number = _first_bad_line(lines)
    if number is not None:
        raise ConfigError(
            f"hydra.sweeper.storage={path}: line {number} of {len(lines)} is not a journal record (the file is "
            "corrupted there, and Optuna cannot read the study past it); remove that line by hand "
            "(what it recorded is lost) or use another study_name"
        )


def _first_bad_line(lines: list[bytes]) -> int | None:
    """The number (from 1) of the first line that is not a journal record, or None."""
    return next((number for number, line in enumerate(lines, start=1) if not _json_object(line)), None)


def _json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


# Seconds between the tries to open a database: workers started together on an empty database
# race to create Optuna's tables, and a server may still be starting.
RDB_RETRY_S = (0.5, 1.0, 1.5, 2.0)


def is_journal(storage) -> bool:
    return isinstance(storage, optuna.storages.JournalStorage)


def _rdb_storage(url: str, heartbeat: tuple[int, int] | None = None) -> optuna.storages.RDBStorage:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    interval, grace = heartbeat or (None, None)
    shown = hide_password(url)
    allowed = "allowed: a journal file path, or a SQLAlchemy URL such as postgresql+psycopg2://user:password@host/db"
    for wait in (*RDB_RETRY_S, None):
        try:
            with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.9, unchanged
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=interval, grace_period=grace)
        except ImportError as err:
            missing = getattr(err.__cause__, "name", None) or "its driver"
            raise ConfigError(
                f"hydra.sweeper.storage={shown} needs the database driver {missing}, which is not installed: "
                "pip install -e '.[sweep]' (the sweep extra brings psycopg2 for PostgreSQL)"
            ) from None
        except (ArgumentError, ValueError) as err:  # unknown scheme or driver, bad URL
            raise ConfigError(
                f"hydra.sweeper.storage={shown} is not a usable URL ({_one_line(err, url)}); {allowed}"
            ) from None
        except SQLAlchemyError as err:
            if wait is None:
                raise ConfigError(
                    f"hydra.sweeper.storage={shown} cannot be opened after {len(RDB_RETRY_S) + 1} tries "
                    f"({_one_line(err, url)})"
                ) from None
            time.sleep(wait)
    raise AssertionError("unreachable")


def hide_password(url: str) -> str:
    """``scheme://user:***@host/db``: URLs are printed and stored in logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _one_line(err: BaseException, url: str) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    password = re.search(r"://[^:/@]*:([^@]*)@", url)
    return text.replace(password.group(1), "***") if password and password.group(1) else text


def open_study(storage, study_name: str, sampler, direction, metric_names) -> optuna.Study:
    """Create the study, or resume it; name its metrics once (optuna-dashboard shows them)."""
    directions = direction if isinstance(direction, list) else None
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        direction=None if directions else direction,
        directions=directions,
        load_if_exists=True,
    )
    if metric_names and study.metric_names is None:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, unchanged through 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metric_names))  # not "Objective 0" in the dashboard
    return study


@contextmanager
def study_lock(storage, study_name: str) -> Iterator[None]:
    """Hold this while reading the study to decide what to add to it (asking for a trial,
    enqueueing the baselines): the workers of one study do it one at a time. ``storage`` as
    open_storage returned it (the study's own is wrapped in Optuna's cache).

    Two workers that enqueued the baselines at the same moment both found none queued and ran
    each baseline twice. A sampler reads the study, then writes what it chose: QMC its next Sobol index (a read and a
    write, not atomic, as Optuna says in QMCSampler._find_sample_id), a grid its cell. Two workers
    asking at the same moment drew the same point (PostgreSQL, SLURM worker jobs: 4 trials, 2
    distinct). A journal file: a lock file beside it (``<journal>.ask.lock``, Optuna's own NFS-safe
    symlink lock, freed after 30 s if its holder died). PostgreSQL: an advisory lock, freed with
    its holder's connection. Others (in memory; SQLite, one machine) ask as Optuna does."""
    with _study_lock(storage, study_name):
        yield


def _study_lock(storage, study_name: str):
    backend = getattr(storage, "_backend", None)
    if isinstance(backend, optuna.storages.journal.JournalFileBackend):
        from optuna.storages.journal import JournalFileSymlinkLock
        from optuna.storages.journal._file import get_lock_file

        return get_lock_file(JournalFileSymlinkLock(backend._file_path + ".ask"))
    engine = getattr(storage, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        return _advisory_lock(engine, zlib.crc32(f"sgmod_study ask {study_name}".encode()))
    return nullcontext()


@contextmanager
def _advisory_lock(engine, key: int) -> Iterator[None]:
    from sqlalchemy import text

    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def open_journal_read_only(path: Path) -> optuna.storages.JournalStorage:
    """A journal file's study for reading only: no lock, no repair, nothing written, so it works
    on a read-only mount. A cut last line (a crash mid-write) is skipped, as Optuna skips it; a
    corrupted line before it is an error naming the file and the line."""
    data = Path(path).read_bytes()
    lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
    number = _first_bad_line(lines)
    if number is not None:
        raise ConfigError(
            f"{path}: line {number} of {len(lines)} is not a journal record (the file is corrupted there); "
            f"restore it (git checkout -- {path}) or remove that line (what it recorded is lost)"
        )
    return optuna.storages.JournalStorage(_ReadOnlyJournal([json.loads(line) for line in lines]))


class _ReadOnlyJournal(optuna.storages.journal.BaseJournalBackend):
    """Journal records already read; appending to them is refused."""

    def __init__(self, logs: list[dict]) -> None:
        self._logs = logs

    def read_logs(self, log_number_from: int) -> list[dict]:
        return self._logs[log_number_from:]

    def append_logs(self, logs: list[dict]) -> None:
        raise OSError("this journal was opened read-only")
