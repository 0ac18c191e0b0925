"""The startup benchmark's plumbing: which processes it times, with which compiler cache, and its ratios."""

import pytest

from benchmarks import startup


def test_warm_runs_share_one_cache_and_each_cold_run_gets_an_empty_one(tmp_path, monkeypatch):
    calls = []
    seconds = {"relu": 4.0, "sgmod": 4.2, "sgmod_reference": 4.6}

    def fake_timed(command, cache):
        calls.append((command, cache))
        name = next((n for n in seconds if f"hydra.run.dir={tmp_path / n}" in command), None)
        if name == "sgmod" and cache.name.startswith("cold_cache"):
            return 9.0
        return seconds.get(name, 1.0)

    monkeypatch.setattr(startup, "_timed", fake_timed)
    result = startup.run("full", out_dir=tmp_path)
    rounds = startup.SIZES["full"]["rounds"]
    assert len(calls) == 1 + rounds * 7  # the cache-filling run, then 6 phases and a cold run per round
    warm = tmp_path / "inductor_cache"
    assert calls[0][1] == warm and "activation=sgmod" in calls[0][0]
    colds = [cache for _, cache in calls if cache != warm]
    assert colds == [tmp_path / f"cold_cache_{i}" for i in range(rounds)]  # a fresh one each round
    train = next(command for command, _ in calls if f"hydra.run.dir={tmp_path / 'relu'}" in command)
    assert {"activation=relu", "trainer.max_epochs=1", "trainer.limit_train_batches=5"} <= set(train)
    assert {"+trainer.limit_val_batches=5", "+trainer.limit_test_batches=5", "data=fashion_mnist"} <= set(train)
    assert result["ratios"]["sgmod_vs_relu_warm"] == pytest.approx(4.2 / 4.0)
    assert result["ratios"]["sgmod_vs_relu_cold"] == pytest.approx(9.0 / 4.0)
    assert result["seconds"]["interpreter"] == 1.0
    assert "whole run, sgmod (cold cache)" in startup.format_table(result)


def test_a_failed_run_names_its_command_and_last_line(tmp_path):
    with pytest.raises(RuntimeError, match=r"-c import sys; sys.exit\('bad'\) exited with 1: bad"):
        startup._timed([startup.sys.executable, "-c", "import sys; sys.exit('bad')"], tmp_path)
