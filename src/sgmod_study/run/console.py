"""What a run prints: only the toolkit's own lines and the warnings a user can act on. Library
lines that say nothing about the run are dropped (``NOISE``) or kept in the log file only
(``CHATTER``); the whole console output is copied into ``<run>/<job name>.log`` (``train.log``;
each DDP rank its own; the sweeper's process: ``<sweep>/sweep.log``).

Hydra's own job log file is switched off (``hydra/job_logging: stdout`` in conf/train.yaml: the
``logging`` records, Lightning's among them, go to the console as plain lines): it only recorded
``logging`` calls, and this project prints, so its train.log stayed empty.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

# Lightning 2.6 prints these on every run; none says anything about the run: dropped, not logged.
NOISE = (
    "💡 Tip:",  # advertising for its cloud services (litlogger, litmodels)
    "was configured so 100% of the batches",  # limit_*_batches=1.0, the default, set explicitly
)

# Library lines that say something about the run but nothing a user can act on: they go to the log
# file only. Each is a regex searched in one write to stdout or stderr: a Python warning (file:line:
# Category: message, then the source line) and a logging record are each written in one piece.
CHATTER = (
    # Optuna marks the samplers the sweeps use as experimental (QMCSampler, at every sweep's start)
    r"ExperimentalWarning: ",
    # Optuna's info lines ([I <time>] A new study created ..., Trial 3 finished ...): the sweeper
    # prints its own account of the trials
    r"^\[I \d{4}-\d\d-\d\d ",
    # Lightning, on small data (digits): fewer batches per epoch than trainer.log_every_n_steps; the
    # per-epoch curves are logged all the same
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # Lightning under DDP, for the GAN's FID and KID: torchmetrics has synchronised them already
    r"It is recommended to use `self\.log\('[^']+', \.\.\., sync_dist=True\)`",
    # Lightning under DDP at trainer.test(): its sampler pads the test set to a multiple of the
    # ranks, as every DDP test does (a few images counted twice)
    r"Using `DistributedSampler` with the dataloaders\. During `trainer\.test\(\)`",
    # Lightning on every DDP rank but the first: the same lines as rank 0's, once per rank
    r"^\[rank: [1-9]\d*\] ",
    r"^Initializing distributed: GLOBAL_RANK: [1-9]",
    # Optuna's importances when every trial scored alike (a tiny or broken sweep): they are written as equal
    r"Target and region quantiles select the same set of trials",
    # matplotlib, for a plot whose labels do not fit: the figure is written all the same
    r"[Tt]ight.layout not applied|constrained_layout not applied",
)
_CHATTER = re.compile("|".join(f"(?:{pattern})" for pattern in CHATTER), re.MULTILINE)


def is_chatter(text: str) -> bool:
    """Whether one write to the console is library chatter (see ``CHATTER``)."""
    return _CHATTER.search(text) is not None


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in str(record.msg) for text in NOISE)


_DROP_NOISE = _DropNoise()


def quiet_libraries() -> None:
    """Leave out the lines that every run would print and no user can act on (idempotent)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DROP_NOISE)
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.10+ deprecates, at every fit and test
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # torch.compile on a CPU-only machine warns that it found no CUDA runtime: expected there
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # the `lightning` package gives its logger a console handler of its own and lets records go on
    # to the root logger too: under Hydra's console handler every Lightning line came twice
    if logging.getLogger().handlers:
        umbrella = logging.getLogger("lightning")
        for handler in [h for h in umbrella.handlers if isinstance(h, logging.StreamHandler)]:
            umbrella.removeHandler(handler)


class _Tee:
    """A text stream that writes to the console and to the run's log file; chatter to the log only."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        if not self.log.closed:  # a logging handler may keep this stream after the run
            self.log.write(text)
            if is_chatter(text):
                return len(text)
        return self.console.write(text)

    def flush(self) -> None:
        if not self.log.closed:
            self.log.flush()
        self.console.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the console's
        return getattr(self.console, name)


@contextmanager
def run_log(path: Path | None = None) -> Iterator[None]:
    """Copy everything printed to stdout and stderr meanwhile into ``path``, by default the Hydra
    run's ``<output dir>/<job name>.log`` (appended: a run resumed into its folder keeps the
    earlier log; each DDP rank has a job name of its own); ``CHATTER`` goes there only."""
    if path is None:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
        path = Path(hydra.runtime.output_dir) / f"{hydra.job.name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(stdout, log), _Tee(stderr, log)
        streams = _point_handlers({stdout: sys.stdout, stderr: sys.stderr})
        try:
            yield
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            for handler, stream in streams.items():
                handler.setStream(stream)


def _point_handlers(tees: dict[TextIO, TextIO]) -> dict[logging.StreamHandler, TextIO]:
    """Point every logging handler that writes to ``stdout`` or ``stderr`` (Hydra's console
    handler, Optuna's) at its tee; returns the streams they had."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}
    streams = {h: h.stream for h in handlers if isinstance(h, logging.StreamHandler) and h.stream in tees}
    for handler, stream in streams.items():
        handler.setStream(tees[stream])
    return streams
