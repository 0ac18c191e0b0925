"""What a user sees in TensorBoard: a real server over a classifier run, a GAN run and a 2-trial
sweep, asked through the HTTP API its pages use."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from helpers.runs import ROOT, compose_config, gan_overrides
from helpers.sweeps import EAGER_SGMOD, TRIAL
from sgmod_study.run.training import train
from sgmod_study.tasks.gan import GAN

pytestmark = pytest.mark.slow  # trains, and starts a TensorBoard server

CLASSIFIER_METRICS = {"val/acc_best", "test/acc", "test/loss"}
# a GAN run's final metrics: every one but those of the sampling mode it did not test in
GAN_METRICS = {m for m in GAN.FINAL_METRICS if not m.startswith("test_train_mode/")}
STARTUP_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def logdir(tmp_path_factory, fashion_sample_dir, tiny_run) -> Path:
    """outputs/-like folder: runs/classifier (a copy of the session's tiny run, conftest.py), runs/gan and
    multirun/sweep with trials 0 and 1."""
    root = tmp_path_factory.mktemp("outputs")
    shutil.copytree(tiny_run, root / "runs" / "classifier", ignore=shutil.ignore_patterns("*.ckpt"))
    train(compose_config(gan_overrides(fashion_sample_dir), root / "runs" / "gan"))
    trial = [o for o in TRIAL if not o.startswith("diagnostics.")]
    command = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        "hparams_search=sgmod_classifier",
        *trial,
        "trainer.limit_train_batches=4",
        "diagnostics.every_n_steps=2",
        EAGER_SGMOD,
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={root / 'study.journal'}",
        f"hydra.sweep.dir={root / 'multirun' / 'sweep'}",
        "hydra.sweeper.sampler.seed=0",
    ]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _post(base: str, path: str, body: dict):
    request = urllib.request.Request(
        f"{base}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _event_dirs(root: Path) -> set[str]:
    """TensorBoard's run names: every folder holding an event file, relative to the logdir."""
    return {str(path.parent.relative_to(root)) for path in root.rglob("events.out.tfevents.*")}


def _loaded(base: str, root: Path) -> bool:
    """Every run on disk is listed, and every run with scalars has its last ones (test/*) loaded."""
    try:
        runs = set(_get(base, "/data/runs"))
        tags = _get(base, "/data/plugin/scalars/tags")
    except OSError:  # not listening yet
        return False
    expected = _event_dirs(root)
    with_scalars = expected - {"multirun/sweep/tensorboard"}  # the sweep's plots: images only
    return expected <= runs and all(any(t.startswith("test/") for t in tags.get(run, {})) for run in with_scalars)


@pytest.fixture(scope="module")
def tensorboard(logdir, tmp_path_factory):
    """``tensorboard --logdir <logdir>`` on a free port of 127.0.0.1, ready, and always stopped."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("tensorboard_server") / "server.log"
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    with open(log_path, "w") as log:
        server = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _loaded(base, logdir):
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"TensorBoard did not load the runs: {log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_gamma_beta_curves_and_histograms(tensorboard):
    scalar_tags = _get(tensorboard, "/data/plugin/scalars/tags")
    histogram_tags = _get(tensorboard, "/data/plugin/histograms/tags")
    for run, layer in (
        ("runs/classifier/tensorboard", "features.stage1.act"),
        ("runs/gan/tensorboard", "generator.body.block0.act"),
        ("runs/gan/tensorboard", "discriminator.body.act1"),
        ("multirun/sweep/trial_0001/tensorboard", "head.act"),
    ):
        for name in ("gamma", "beta"):
            tag = f"sgmod/{layer}/{name}"
            assert tag in scalar_tags.get(run, {}), (run, tag, sorted(scalar_tags.get(run, {})))
            curve = _get(tensorboard, "/data/plugin/scalars/scalars", run=run, tag=tag)
            assert len(curve) >= 2 and curve[-1][1] > 0, (run, layer, curve)  # from the init to the end
            tag = f"sgmod_hist/{layer}/{name}"
            assert tag in histogram_tags.get(run, {}), (run, tag, sorted(histogram_tags.get(run, {})))
            histograms = _get(tensorboard, "/data/plugin/histograms/histograms", run=run, tag=tag)
            assert len(histograms) >= 2 and histograms[-1][2], (run, tag)  # [wall_time, step, buckets]
    gan = scalar_tags["runs/gan/tensorboard"]
    assert {"lr-generator/decay", "lr-discriminator/decay"} <= set(gan)
    assert not [tag for tags in scalar_tags.values() for tag in tags if tag.startswith("final/")]


def test_hparams_table_shows_every_run_hyperparameter_and_metric(tensorboard, tiny_run):
    experiment = _post(tensorboard, "/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"]: info for info in experiment.get("hparamInfos", [])}
    for name in ("activation.gamma_init", "activation.beta_init", "activation.lr", "optimizer.lr", "task.name"):
        assert hparams.get(name, {}).get("differs"), (name, sorted(hparams))
    metrics = {info["name"]["tag"] for info in experiment.get("metricInfos", [])}
    assert metrics == CLASSIFIER_METRICS | GAN_METRICS  # the final metrics only, not every curve

    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": name, "includeInResult": True} for name in hparams]
        + [{"metric": info["name"], "includeInResult": True} for info in experiment["metricInfos"]],
        "aggregationType": "AGGREGATION_AVG",
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = {g["name"]: g for g in _post(tensorboard, "/data/plugin/hparams/session_groups", request)["sessionGroups"]}
    classifier = tiny_run.name  # the copy keeps the session name it was trained with: its folder's
    assert set(groups) == {classifier, "gan", "#0 sgmod_classifier", "#1 sgmod_classifier"}
    for name, expected in ((classifier, CLASSIFIER_METRICS), ("gan", GAN_METRICS)):
        values = {m["name"]["tag"]: m["value"] for m in groups[name]["metricValues"]}
        assert set(values) == expected, name
    trial = groups["#0 sgmod_classifier"]
    assert trial["hparams"]["activation.gamma_init"] == 1.0  # the enqueued baseline
    assert {m["name"]["tag"] for m in trial["metricValues"]} == CLASSIFIER_METRICS
    assert groups["#1 sgmod_classifier"]["hparams"]["activation.gamma_init"] != 1.0
