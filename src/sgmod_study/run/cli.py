"""The command lines' error handling: every known failure is one line and its own exit code.

Shared by ``src/train.py`` and ``src/eval.py``: ``run_reporting_errors(run, cfg)`` inside the
``@hydra.main`` function, ``run_cli(main)`` around it.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sgmod_study.errors import (
    EXIT_CONFIG,
    EXIT_DISK,
    EXIT_DIVERGED,
    EXIT_PRUNED,
    ConfigError,
    TrainingDiverged,
    exit_with,
)

T = TypeVar("T")


def run_reporting_errors(run: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """``run(cfg)``; a known failure ends the process with one line on stderr and its exit code."""
    # the training libraries only once a run starts: --help and completion import this module too
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
    from optuna import TrialPruned

    from sgmod_study.config.schema import hydra_error_line
    from sgmod_study.run.interrupts import Interrupted

    try:
        return run(cfg)
    except ConfigError as err:
        exit_with("error", err, EXIT_CONFIG)
    except OmegaConfBaseException as err:  # an interpolation that cannot be resolved
        exit_with("error", hydra_error_line(err), EXIT_CONFIG)
    except MisconfigurationException as err:  # Lightning's word for a trainer setting this machine cannot run
        exit_with("error", "Lightning cannot run these settings: " + " ".join(str(err).split()), EXIT_CONFIG)
    except TrainingDiverged as err:
        exit_with("diverged", err, EXIT_DIVERGED)
    except TrialPruned as err:
        exit_with("pruned", err, EXIT_PRUNED)
    except Interrupted as err:
        if rank_zero_only.rank == 0:  # under DDP every rank stops; one says so
            print_line(str(err))
        raise SystemExit(err.exit_code) from None
    except (OSError, RuntimeError) as err:
        line = disk_error_line(err, Path(cfg.output_dir))
        if line is None:
            raise
        print_line(line)
        raise SystemExit(EXIT_DISK) from None


def run_script(main: Callable[[], object]) -> None:
    """``run_cli(main)``, with one line and its exit code also for what stops a run before
    ``run_reporting_errors`` runs or after it: an output folder that cannot be written (Hydra
    creates it and its .hydra/, then train.log is opened) and SIGTERM or SIGINT while starting."""
    previous = {signum: signal.signal(signum, _raise_signalled) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_cli(main)
    except _Signalled as err:
        name = signal.Signals(err.signum).name
        print_line(f"interrupted ({name}) while the run started or ended: no checkpoint written by it")
        raise SystemExit(128 + err.signum) from None
    except (OSError, RuntimeError) as err:
        if isinstance(err.__context__, SystemExit):  # its line is printed; closing train.log failed after it
            raise err.__context__ from None
        line = disk_error_line(err, _hydra_run_dir(err))
        if line is None:
            raise
        print_line(line)
        raise SystemExit(EXIT_DISK) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Signalled(BaseException):
    """SIGTERM or SIGINT outside a run's own handling (sgmod_study.run.interrupts)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum: int, frame) -> None:
    raise _Signalled(signum)


# What each errno says about a folder that cannot be written, and what to do.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNWRITABLE = {
    errno.EROFS: "it is on a read-only file system; choose another output folder with {option}=<folder>",
    errno.EACCES: "permission denied; choose an output folder you may write to with {option}=<folder>",
    errno.EPERM: "permission denied; choose an output folder you may write to with {option}=<folder>",
}


def disk_error_line(err: BaseException, output_dir: Path | None) -> str | None:
    """The one line for a full disk or an output folder that cannot be written, or None when ``err``
    is something else (a data file that cannot be read, for one)."""
    errno_ = errno.ENOSPC if _torch_writer_failed(err) else getattr(err, "errno", None)
    filename = getattr(err, "filename", None)
    path = Path(filename).absolute() if isinstance(filename, str) else None
    folder = output_dir
    if path is not None and (folder is None or not _related(path, folder)):
        folder = path if errno_ in _UNWRITABLE else path.parent
    if errno_ in _FULL:
        last = folder / "checkpoints" / "last.ckpt" if folder is not None else None
        then = "run the command again"
        if last is not None and last.is_file():
            resume = shlex.quote(f"ckpt_path={hydra_value(shown_path(last))}")
            then = f"resume with: python {shown_path(Path(sys.argv[0]))} {resume}"
        return (
            f"error: cannot write to {_shown(folder)}: no space left on its device; what was written before is "
            f"whole: free some space, then {then}"
        )
    if errno_ in _UNWRITABLE and (path is None or output_dir is None or _related(path, output_dir)):
        option = "hydra.sweep.dir" if "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:] else "hydra.run.dir"
        return f"error: cannot write to {_shown(folder)}: {_UNWRITABLE[errno_].format(option=option)}"
    return None


def print_line(text: str) -> None:
    """``text`` as one line on stderr (and in train.log, while its disk takes it)."""
    try:
        sys.stderr.write(text + "\n")  # one write: a failing log file must not split the line
        sys.stderr.flush()
    except OSError:  # console.run_log's copy to train.log failed: the console still gets the line
        console = getattr(sys.stderr, "console", sys.__stderr__)
        console.write(text + "\n")
        console.flush()


def _torch_writer_failed(err: BaseException) -> bool:
    """torch.save's zip writer reports a full disk as a RuntimeError without the errno."""
    return isinstance(err, RuntimeError) and any(
        text in str(err) for text in ("PytorchStreamWriter failed", "unexpected pos", "file write failed")
    )


def _related(path: Path, folder: Path) -> bool:
    """``path`` is ``folder``, in it, or one of the folders above it (created with it)."""
    folder = folder.absolute()
    return path == folder or folder in path.parents or path in folder.parents


# A sweep started by another command (scripts/study.py run) names that command, not its own, as the
# one that resumes it: the study command that started it sets this in the sweep's environment.
RESUME_COMMAND_ENV = "SGMOD_RESUME_COMMAND"


def command_line() -> str:
    """The command that started this process, as a person types it again (``python PATH args``)."""
    return shlex.join(["python", shown_path(Path(sys.argv[0])), *sys.argv[1:]])


def shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def hydra_value(path: Path | str) -> str:
    """A path as a Hydra override's value: as it is where Hydra reads it unquoted, else in quotes
    (Hydra reads non-ASCII letters, ``#&!;~(){}=`` and more only inside them)."""
    text = str(path)
    return text if re.fullmatch(r"[A-Za-z0-9_/.:+,@%-]+", text) else '"' + text.replace('"', '\\"') + '"'


def _shown(folder: Path | None) -> str:
    return shown_path(folder) if folder is not None else "the output folder"


def _hydra_run_dir(err: BaseException) -> Path | None:
    """The run folder Hydra was creating or writing when ``err`` was raised (a local of its run_job:
    Hydra resets its HydraConfig before the exception gets here)."""
    tb = err.__traceback__
    folder = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "run_job" and f"{os.sep}hydra{os.sep}" in frame.f_code.co_filename:
            folder = frame.f_locals.get("output_dir")
        tb = tb.tb_next
    return Path(folder).absolute() if isinstance(folder, str) else None


def run_cli(main: Callable[[], object]) -> None:
    """``main()``, with Hydra's own configuration errors (unknown group option or key, unparsable
    override, unresolvable interpolation) as one ``error:`` line and exit code 2 like ours."""
    # Hydra prints these itself, over several lines, and exits with 1, unless HYDRA_FULL_ERROR=1
    # makes it raise them. Sweep trials and DDP's extra ranks inherit the variable and run it too;
    # any other exception keeps its (now complete) traceback.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        from sgmod_study.config.schema import hydra_error_line

        exit_with("error", hydra_error_line(err) + _quoting_hint(err), EXIT_CONFIG)
    except (ValueError, TypeError) as err:
        if not _raised_inside_hydra(err):
            raise
        from sgmod_study.config.schema import hydra_error_line

        # e.g. `hparams_search=null`: Hydra's defaults list raises a plain ValueError for it
        hint = " (a config group cannot be set to null: leave the override out)" if "NoneType" in str(err) else ""
        exit_with("error", hydra_error_line(err) + hint, EXIT_CONFIG)


def _raised_inside_hydra(err: BaseException) -> bool:
    """Whether the innermost frame of ``err`` is Hydra's own code (composing the config), not a run's."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}hydra{os.sep}" in tb.tb_frame.f_code.co_filename


def _quoting_hint(err: BaseException) -> str:
    """For an override Hydra could not parse: how to quote it, where quoting is what it lacks."""
    if not isinstance(err, OverrideParseException):
        return ""
    key, equal, value = err.override.partition("=")
    if not equal:  # `hydra.run.dir=/tmp/a b` unquoted in the shell: Hydra got `hydra.run.dir=/tmp/a` and `b`
        whole = _split_path(err.override, sys.argv[1:])
        return f" (a path with spaces must be one shell argument: {shlex.quote(whole)})" if whole else ""
    # Hydra's grammar takes spaces inside an unquoted value, but not non-ASCII letters (café) nor,
    # among others, brackets after a space (`a b (1)`); a list or a dict is not a quoting matter
    unusual = not value.isascii() or any(char.isspace() for char in value)
    quote = next((q for q in "\"'" if q not in value), None)
    if not unusual or quote is None or value.lstrip()[:1] in ("[", "{"):
        return ""
    quoted = f"{key}={quote}{value.strip()}{quote}"
    if _parsed_value(quoted) != value.strip():
        return ""
    return f" (quote a value with spaces or non-ASCII characters for Hydra: {shlex.quote(quoted)})"


def _parsed_value(override: str) -> object:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).value()
    except OverrideParseException:
        return None


def _split_path(piece: str, argv: list[str]) -> str | None:
    """``hydra.run.dir=/tmp/a b`` when the shell split it and Hydra failed on ``b``; else None."""
    start = argv.index(piece) - 1 if piece in argv else -1
    if start < 0 or "/" not in argv[start].partition("=")[2]:  # no path right before the piece
        return None
    end = start + 1
    while end < len(argv) and "=" not in argv[end] and not argv[end].startswith("-"):
        end += 1  # the path's other pieces
    return " ".join(argv[start:end])
