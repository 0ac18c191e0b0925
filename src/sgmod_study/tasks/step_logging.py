"""Whether a training step's per-step values reach the loggers.

Lightning writes a step's logged values only every ``trainer.log_every_n_steps`` batches, but
``self.log`` does its bookkeeping on every call: 1.3 ms of a 31 ms width-32 DCGAN step that
logs four values, 4%, on this project's CPU (measured 2026-12-06). Per-step values are therefore
logged only on the steps whose values are written, so TensorBoard gets the same points.
"""

from __future__ import annotations

from lightning import Trainer


def values_written_this_step(trainer: Trainer) -> bool:
    # Lightning's own LearningRateMonitor and DeviceStatsMonitor ask the same (private) question:
    # the public API has no name for it (lightning 2.6)
    return trainer.fast_dev_run or trainer._logger_connector.should_update_logs
