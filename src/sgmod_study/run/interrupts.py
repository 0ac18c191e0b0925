"""SIGTERM and SIGINT stop a run cleanly: after the current step, with last.ckpt written, one line
and exit code 143 or 130 (``cli.run_reporting_errors`` prints it).

How this works with Lightning (2.6): while ``trainer.fit``/``test`` run, Lightning's own SIGTERM
handler (``trainer/connectors/signal_connector.py``) sets ``trainer.received_sigterm``; its loops
then raise ``SIGTERMException`` at the end of the current batch, where the loop state is whole (a
checkpoint taken there resumes exactly), under DDP after broadcasting the stop so that every rank
stops at the same step; ``call._call_and_handle_interrupt`` calls the callbacks' ``on_exception``
(``ResumableCheckpoint`` writes last.ckpt there) and re-raises. We keep that machinery, and:

- SIGTERMException is a ``SystemExit`` with no code: a preempted run exited 0. ``StopOnSignal.run``
  turns it into ``Interrupted``.
- SIGINT takes the same path: Lightning turns the KeyboardInterrupt (raised mid-step, anywhere)
  into exit 1 without a checkpoint; our handler sets the same flag instead. Under DDP the ranks
  first agree after each step whether any of them had a signal (one small all-reduce), so that
  a signal to one rank (``kill -INT``) stops all of them after the same step.
- Outside Lightning's training and test loops (building the model, loading data, the sanity
  check, between fit and test) nothing would look at the flag: there the signal stops the run at
  once, and nothing is lost that a checkpoint would keep.
- A second SIGINT ends the process at once. A repeated SIGTERM is ignored: Lightning forwards
  SIGTERM to DDP ranks that may have had it already from their process group, and the senders of
  SIGTERM (a sweep's guard, SLURM) follow with SIGKILL anyway.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

T = TypeVar("T")
SIGNALS = (signal.SIGTERM, signal.SIGINT)

# Lightning logs "Received SIGTERM: 15" for every SIGTERM; our one line says more
logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)


class Interrupted(Exception):
    """The run was stopped by SIGTERM or SIGINT. Exit code 128 + the signal's number."""

    def __init__(self, signum: int, details: str = "") -> None:
        self.signum = signum
        super().__init__(f"interrupted ({signal.Signals(signum).name}){details}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopOnSignal(L.Callback):
    """Installs the SIGTERM and SIGINT handlers (as a context manager) and knows whether Lightning's
    loops run (as a callback of the trainer)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._trainer: L.Trainer | None = None  # set while a training or test loop runs
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # only there can handlers be set
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def run(self, fit_or_test: Callable[..., T], *args, **kwargs) -> T:
        """``trainer.fit(...)`` or ``trainer.test(...)``; a signal during it raises ``Interrupted``."""
        try:
            result = fit_or_test(*args, **kwargs)
        except SIGTERMException:  # also on a DDP rank that only had the stop broadcast to it
            raise Interrupted(self.received or signal.SIGTERM) from None
        if self.received is not None:  # came after the loops' last look at the flag
            raise Interrupted(self.received)
        return result

    def on_train_start(self, trainer, pl_module) -> None:
        self._looping(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        self._looping(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._trainer = None

    def on_test_end(self, trainer, pl_module) -> None:
        self._trainer = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._trainer = None

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        self._agree(trainer)

    def on_validation_batch_end(self, trainer, *args, **kwargs) -> None:
        self._agree(trainer)

    def on_test_batch_end(self, trainer, *args, **kwargs) -> None:
        self._agree(trainer)

    def _agree(self, trainer: L.Trainer) -> None:
        """Under DDP: when any rank had a signal, every rank stops after this same step (a rank that
        stopped alone would leave the others waiting in their next collective)."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return
        signalled = torch.tensor([int(self.received is not None)], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(signalled, op=torch.distributed.ReduceOp.MAX)
        if signalled.item():
            self._stop_after_step(trainer)

    def _looping(self, trainer: L.Trainer) -> None:
        self._trainer = trainer
        if self.received is not None:  # came while Lightning set up its loop
            self._stop_after_step(trainer)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:
                os.write(2, b"interrupted again (SIGINT): stopped at once, without writing last.ckpt\n")
                os._exit(128 + signum)
            return
        self.received = signum
        if self._trainer is None:
            raise Interrupted(signum)
        if self._trainer.world_size == 1:  # under DDP the ranks agree on the step first (_agree)
            self._stop_after_step(self._trainer)

    @staticmethod
    def _stop_after_step(trainer: L.Trainer) -> None:
        # Lightning's flag for SIGTERM (it has no public setter): its loops end after the current
        # batch, DDP ranks included
        trainer._signal_connector.received_sigterm = True
