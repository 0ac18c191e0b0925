"""Per-step training values are logged only on the steps the loggers write (tasks/step_logging.py):
Lightning's ``self.log`` costs time on every call, and a value logged between writes is never seen."""

import lightning as L
import pytest

from helpers.runs import DEBUG_TINY, compose_config, gan_overrides, read_events
from sgmod_study.run.training import train

STEPS, EVERY = 7, 3  # one epoch of 7 batches, written after batches 3 and 6


@pytest.mark.slow
@pytest.mark.parametrize("task, tag", [("classifier", "train/loss_step"), ("gan", "train/d_loss")])
def test_a_per_step_value_is_logged_once_per_written_point(task, tag, tmp_path, fashion_sample_dir, monkeypatch):
    calls = []
    log = L.LightningModule.log

    def counting(self, name, *args, **kwargs):
        if name == tag and self.trainer.training:
            calls.append(self.trainer.fit_loop.epoch_loop._batches_that_stepped + 1)
        return log(self, name, *args, **kwargs)

    monkeypatch.setattr(L.LightningModule, "log", counting)
    base = DEBUG_TINY if task == "classifier" else gan_overrides(fashion_sample_dir)
    overrides = [*base, "trainer.max_epochs=1", f"trainer.limit_train_batches={STEPS}"]
    train(compose_config([*overrides, f"trainer.log_every_n_steps={EVERY}"], tmp_path))
    written = read_events(tmp_path / "tensorboard")["scalars"][tag]
    assert calls == [3, 6]  # not once per batch: 7 calls would write the same 2 points
    assert len(written) == 2 and all(value == value for _, value in written)  # real values, not NaN
