"""What a run prints: the libraries' advertising and deprecation noise left out, and a copy of
the whole console output in ``<run>/<job name>.log`` (``train.log``; each DDP rank its own).

Hydra's own job log file is switched off (``hydra/job_logging: stdout`` in conf/train.yaml: the
``logging`` records, Lightning's among them, go to the console as plain lines): it only recorded
``logging`` calls, and this project prints, so its train.log stayed empty.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

# Lightning 2.6 prints these on every run; none says anything about the run.
NOISE = (
    "💡 Tip:",  # advertising for its cloud services (litlogger, litmodels)
    "was configured so 100% of the batches",  # limit_*_batches=1.0, the default, set explicitly
)


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
    """A text stream that writes to the console and to the run's log file."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        if not self.log.closed:  # a logging handler may keep this stream after the run
            self.log.write(text)
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
    earlier log; each DDP rank has a job name of its own)."""
    if path is None:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
        path = Path(hydra.runtime.output_dir) / f"{hydra.job.name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(stdout, log), _Tee(stderr, log)
        # the console handler of Hydra's job logging holds the stream it was configured with
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        streams = {h: h.stream for h in handlers if h.stream in (stdout, stderr)}
        for handler, stream in streams.items():
            handler.setStream(sys.stdout if stream is stdout else sys.stderr)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            for handler, stream in streams.items():
                handler.setStream(stream)
