"""How a sweep stops on a signal: SIGTERM (a cluster's preemption, SLURM's ``--signal=TERM@<s>``
warning, ``kill``) and SIGINT (Ctrl-C) end the sweep loop with ``SweepInterrupted``; the
scheduler then stops its trials (each writes its last.ckpt), records them as interrupted with
their parameters queued again, removes its heartbeat file, and the command line exits 143 / 130.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # SLURM's preemption (and `--signal=TERM@<s>`), Ctrl-C


class SweepInterrupted(Exception):
    """The sweep got SIGTERM or SIGINT: its trials were stopped and queued again."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.name = signum, signal.Signals(signum).name
        self.study: optuna.Study | None = None  # set once the running trials are recorded

    def __reduce__(self):
        # a SLURM worker's result travels pickled to the submitting process: rebuild it from the
        # signal's number (the default would pass its name, which Signals() does not take)
        return (SweepInterrupted, (self.signum,))


def stop_on_signals():
    """SIGTERM and SIGINT raise SweepInterrupted in the sweep loop; any later one is ignored,
    so that recording the stopped trials is never cut short."""

    def interrupt(signum: int, frame) -> None:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise SweepInterrupted(signum)

    return _handling_signals(interrupt)


def ignoring_signals():
    """While the running trials are stopped and recorded: a second Ctrl-C must not cut it short."""
    return _handling_signals(signal.SIG_IGN)


@contextmanager
def _handling_signals(handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    previous = {each: signal.signal(each, handler) for each in STOP_SIGNALS}
    try:
        yield
    finally:
        for each, old in previous.items():
            signal.signal(each, old)
