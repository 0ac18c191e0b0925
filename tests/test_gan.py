import itertools
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

import sgmod_study.tasks.gan as gan_module
from helpers.data import load_fashion_sample
from helpers.runs import CONF, compose_config, gan_overrides, read_events, run_train
from sgmod_study.data import dataset_spec
from sgmod_study.errors import ConfigError, TrainingDiverged
from sgmod_study.nn.activations import ACTIVATIONS, Sgmod
from sgmod_study.nn.feature_net import WEIGHTS, FrozenFeatures, load_feature_net, standardize
from sgmod_study.nn.models import Discriminator, Generator
from sgmod_study.nn.norms import NORMS, PLACEMENTS
from sgmod_study.run.training import train
from sgmod_study.tasks.gan import build_gan
from sgmod_study.tasks.gan_losses import gradient_penalty


def _sample_as_tanh_range() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_fashion_sample()
    return torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1, torch.from_numpy(labels).long()


@pytest.mark.parametrize("act, norm, placement", itertools.product(ACTIVATIONS, NORMS, PLACEMENTS))
def test_generator_and_discriminator_shapes(act, norm, placement):
    act_cfg, norm_cfg = {"name": act}, {"name": norm, "placement": placement}
    g = Generator(16, 1, 28, act_cfg, norm_cfg, width=8)
    d = Discriminator(1, 28, act_cfg, norm_cfg, width=8, spectral_norm=(norm == "none"))
    images = g(torch.randn(3, 16))
    assert images.shape == (3, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (3,)


def test_gradient_penalty_double_backward_through_sgmod():
    torch.manual_seed(0)
    d = Discriminator(1, 28, {"name": "sgmod"}, {"name": "layer"}, width=8).double()
    real, fake = torch.rand(4, 1, 28, 28).double(), torch.rand(4, 1, 28, 28).double()
    penalty = gradient_penalty(d, real, fake)
    penalty.backward()
    sgmods = [m for m in d.modules() if isinstance(m, Sgmod)]
    assert len(sgmods) == 2
    assert all(m.gamma.grad is not None and m.gamma.grad.abs().sum() > 0 for m in sgmods)


def test_shipped_feature_net_checksum_and_accuracy():
    net = load_feature_net()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    images, labels = _sample_as_tanh_range()
    accuracy = (net(standardize(images)).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.85, accuracy
    assert WEIGHTS.stat().st_size < 400 * 1024


def test_corrupted_feature_net_fails_its_checksum(tmp_path):
    copy = tmp_path / "features.pt"
    shutil.copy(WEIGHTS, copy)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="fail their checksum"):
        load_feature_net(copy)


def test_frozen_features_stay_in_eval_mode():
    features = FrozenFeatures(load_feature_net())
    features.train()
    assert not features.training and not features.net.training


@pytest.mark.slow
@pytest.mark.parametrize("loss, d_norm", [("bce", "batch"), ("hinge", "batch"), ("wgan_gp", "layer")])
def test_one_training_epoch_with_each_loss(tmp_path, fashion_sample_dir, loss, d_norm):
    overrides = [*gan_overrides(fashion_sample_dir), f"task.loss={loss}", f"model.discriminator.norm={{name:{d_norm}}}"]
    fid_best = train(compose_config(overrides, tmp_path))
    assert fid_best > 0
    logs = read_events(tmp_path / "tensorboard")
    scalars = logs["scalars"]
    for tag in (
        "train/d_loss",
        "train/g_loss",
        "train/d_real",
        "train/d_fake",
        "val/fid",
        "val/kid",
        "val/fid_best",
        "test/fid",
        "test/kid",
    ):
        assert tag in scalars, tag
    assert len(scalars["train/g_loss"]) == 3
    assert "sgmod_hist/generator.body.block0.act/gamma" in logs["histograms"]
    assert "sgmod_hist/discriminator.body.act1/gamma" in logs["histograms"]
    assert {"lr-generator/decay", "lr-discriminator/decay"} <= set(scalars)  # which network, not lr-Adam-1
    assert {"grad_norm/generator.body.up1", "grad_norm/discriminator.body.conv1"} <= set(scalars)
    assert (tmp_path / "samples" / "epoch000.png").is_file()


@pytest.mark.slow
def test_fixed_noise_grid_reaches_tensorboard(tmp_path, fashion_sample_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(compose_config([*gan_overrides(fashion_sample_dir), "trainer.max_epochs=2"], tmp_path))
    images = []
    for path in (tmp_path / "tensorboard").glob("events.out.tfevents.*"):
        events = EventAccumulator(str(path), size_guidance={"images": 0})
        events.Reload()
        if "samples" in events.Tags()["images"]:
            images += events.Images("samples")
    assert len(images) == 3  # one grid per evaluation, and the final weights' at the test
    assert images[0].width == images[0].height > 28  # a grid of 16 images, 4 x 4


@pytest.mark.slow
def test_forced_nan_stops_the_run_with_the_divergence_message(tmp_path, fashion_sample_dir, monkeypatch):
    monkeypatch.setattr(gan_module, "discriminator_loss", lambda *args: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step \d+: d_loss=nan"):
        train(compose_config(gan_overrides(fashion_sample_dir), tmp_path))


@pytest.mark.slow
def test_collapsed_discriminator_stops_the_run(tmp_path, fashion_sample_dir):
    overrides = [*gan_overrides(fashion_sample_dir), "task.collapse_loss=1e9", "task.collapse_steps=2"]
    with pytest.raises(
        TrainingDiverged, match=r"discriminator collapsed at step \d+: d_loss < 1000000000.0 for 2 consecutive"
    ):
        train(compose_config(overrides, tmp_path))


@pytest.mark.slow
def test_divergence_exit_code_from_the_command_line(tmp_path, fashion_sample_dir):
    result = run_train(
        [*gan_overrides(fashion_sample_dir), "task.collapse_loss=1e9", "task.collapse_steps=1"], tmp_path / "run"
    )
    assert result.returncode == 3
    assert re.match(r"diverged: discriminator collapsed at step \d+: ", result.stderr.strip().splitlines()[-1])


def test_per_network_activation_override(tmp_path, fashion_sample_dir):
    from omegaconf import OmegaConf

    from sgmod_study.data import dataset_spec
    from sgmod_study.tasks.gan import build_gan

    cfg = compose_config([*gan_overrides(fashion_sample_dir), "model=dcgan_baseline"], tmp_path)
    gan = build_gan(OmegaConf.to_container(cfg, resolve=True), dataset_spec("fashion_mnist"))
    assert isinstance(gan.generator.body.block0.act, torch.nn.ReLU)
    assert gan.discriminator.body.act1.negative_slope == 0.2
    cfg = compose_config([*gan_overrides(fashion_sample_dir), "model.discriminator.activation={name:relu}"], tmp_path)
    gan = build_gan(OmegaConf.to_container(cfg, resolve=True), dataset_spec("fashion_mnist"))
    assert isinstance(gan.generator.body.block0.act, Sgmod)  # the selected activation
    assert isinstance(gan.discriminator.body.act1, torch.nn.ReLU)


@pytest.mark.parametrize(
    "override, message",
    [
        ("task.loss=wgan_gp", "task.loss=wgan_gp with a batch-normalised discriminator"),
        ("scheduler=cosine", "task=gan trains with constant learning rates: scheduler=cosine"),
        ("model=cnn", "task=gan needs model=dcgan or model=dcgan_baseline, got model=cnn"),
        ("trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val=1.0 is not supported with task=gan"),
        ("task.loss=wasserstein", "task.loss='wasserstein' is not a known choice; valid choices: bce, hinge, wgan_gp"),
        ("task.sample_mode=average", "task.sample_mode='average' is not a known choice; valid choices: eval, train"),
        (
            "optimizer=adam optimizer.weight_decay=1e-4",
            r"optimizer.weight_decay=0.0001 with optimizer=adam is coupled L2 \(added to the gradient\), not allowed "
            "with task=gan: use optimizer=adamw",
        ),
    ],
)
def test_bad_gan_settings_are_clear_errors(tmp_path, fashion_sample_dir, override, message):
    base = [o for o in gan_overrides(fashion_sample_dir) if not o.startswith("model.")]  # keep model=cnn composable
    with pytest.raises(ConfigError, match=message):
        train(compose_config([*base, *override.split()], tmp_path))


@pytest.mark.slow
def test_gan_with_ddp_cpu(tmp_path, fashion_sample_dir):
    runs = tmp_path / "runs"
    result = run_train([*gan_overrides(fashion_sample_dir), "trainer=ddp_cpu"], runs / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["run"]
    logs = read_events(runs / "run" / "tensorboard")
    assert len(logs["scalars"]["val/fid"]) == 1
    assert "test/fid" in logs["scalars"]


def _gan_on_rank(fashion_sample_dir, tmp_path, rank: int, world_size: int):
    c = OmegaConf.to_container(compose_config(gan_overrides(fashion_sample_dir), tmp_path), resolve=True)
    module = build_gan(c, dataset_spec("fashion_mnist"))
    module._trainer = SimpleNamespace(world_size=world_size, global_rank=rank)  # what _noise asks of it
    return module


def test_each_ddp_rank_draws_its_own_noise_and_a_single_process_the_global_one(tmp_path, fashion_sample_dir):
    draws = []
    for rank in (0, 1):
        module = _gan_on_rank(fashion_sample_dir, tmp_path, rank, world_size=2)
        torch.manual_seed(42)  # seed_everything: alike on every rank
        draws.append(module._noise(8))
    assert not torch.equal(draws[0], draws[1])
    single = _gan_on_rank(fashion_sample_dir, tmp_path, 0, world_size=1)
    torch.manual_seed(42)
    expected = torch.randn(8, single.latent_dim)
    torch.manual_seed(42)
    assert torch.equal(single._noise(8), expected)  # single-device runs draw what they always drew


# Trains task=gan trainer=ddp_cpu and saves every fake batch each rank's generator made.
RECORD_FAKES = """
import os, sys
from pathlib import Path
import torch
from hydra import compose, initialize_config_dir
from sgmod_study.nn.models import Generator
from sgmod_study.run.training import train

out, conf, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
made, forward = [], Generator.forward

def recording(self, z):
    images = forward(self, z)
    made.append(images.detach().clone())
    torch.save(made, out / f"fakes_rank{os.environ.get('LOCAL_RANK', '0')}.pt")
    return images

Generator.forward = recording
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    train(compose("train", overrides=overrides))
"""


@pytest.mark.slow
def test_ddp_ranks_make_different_fake_batches_so_fid_counts_distinct_images(tmp_path, fashion_sample_dir):
    script = tmp_path / "record_fakes.py"
    script.write_text(RECORD_FAKES)
    overrides = [*gan_overrides(fashion_sample_dir), "trainer=ddp_cpu", f"output_dir={tmp_path / 'run'}"]
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(CONF), *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fakes = [torch.load(tmp_path / f"fakes_rank{rank}.pt") for rank in (0, 1)]
    assert not torch.equal(fakes[0][0], fakes[1][0])  # the first training step's fake batches
    rows = [torch.cat([f.flatten(1) for f in made]) for made in fakes]  # every fake image of a rank
    shared = (rows[0][:, None, :] == rows[1][None, :, :]).all(dim=2).any(dim=1)
    assert not shared.any(), f"{int(shared.sum())} of rank 0's {len(rows[0])} fake images were made on rank 1 too"
