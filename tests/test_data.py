from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.data import make_fake_fashion_mnist, write_idx
from sgmod_study.data import ImageDataModule, load_fashion_mnist, random_shift_flip, read_idx
from sgmod_study.errors import ConfigError


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    for gz in (True, False):
        path = tmp_path / ("a.gz" if gz else "a")
        write_idx(path, array, gz)
        np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ConfigError, match="is not an unsigned-byte IDX file"):
        read_idx(bad)


def test_lookup_prefers_data_dir_over_system_copy(tmp_path):
    data_dir = make_fake_fashion_mnist(tmp_path / "mine", fill=1)
    system = make_fake_fashion_mnist(tmp_path / "system", fill=2)
    train_x, _, test_x, _ = load_fashion_mnist(str(data_dir), str(system), download=False)
    assert train_x.shape == (40, 1, 28, 28) and test_x.shape == (10, 1, 28, 28)
    assert int(train_x.max()) == 1


def test_lookup_accepts_torchvision_layout_and_plain_files(tmp_path):
    make_fake_fashion_mnist(tmp_path / "tv" / "FashionMNIST" / "raw", fill=3, gz=False)
    train_x, *_ = load_fashion_mnist(str(tmp_path / "tv"), str(tmp_path / "nowhere"), download=False)
    assert int(train_x.max()) == 3


def test_lookup_falls_back_to_system_copy(tmp_path):
    system = make_fake_fashion_mnist(tmp_path / "system", fill=2)
    train_x, *_ = load_fashion_mnist(str(tmp_path / "empty"), str(system), download=False)
    assert int(train_x.max()) == 2


def test_lookup_downloads_last_into_data_dir(tmp_path, monkeypatch):
    calls = []

    class FakeFashionMNIST:  # stands in for torchvision's class: "downloads" the raw files
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            make_fake_fashion_mnist(Path(root) / "FashionMNIST" / "raw", fill=4)

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", FakeFashionMNIST)
    data_dir = tmp_path / "data"
    train_x, *_ = load_fashion_mnist(str(data_dir), str(tmp_path / "no-system"), download=True)
    assert int(train_x.max()) == 4
    assert calls == [(str(data_dir), True, True), (str(data_dir), False, True)]


def test_no_data_anywhere_names_all_three_ways(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", offline)
    with pytest.raises(ConfigError) as err:
        load_fashion_mnist(str(tmp_path / "data"), str(tmp_path / "system"), download=True)
    message = str(err.value)
    assert "\n" not in message
    assert f"data.data_dir={tmp_path / 'data'}" in message
    assert f"{tmp_path / 'system'} (apt-get install dataset-fashion-mnist)" in message
    assert "torchvision download" in message and "no network" in message


def test_split_is_fixed_disjoint_and_test_set_separate(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_train=50, n_test=7)
    # give every training image a unique value so splits can be compared
    train = np.repeat(np.arange(50)[:, None, None], 28, 1).repeat(28, 2)
    write_idx(folder / "train-images-idx3-ubyte.gz", train, gz=True)

    def split(seed):
        dm = ImageDataModule(
            "fashion_mnist",
            data_dir=str(folder),
            system_dir="/nonexistent",
            download=False,
            val_size=10,
            split_seed=seed,
            batch_size=8,
        )
        dm.setup("fit")
        return dm

    a, b, c = split(0), split(0), split(1)
    torch.testing.assert_close(a.val_set.tensors[0], b.val_set.tensors[0])
    assert not torch.equal(a.val_set.tensors[0], c.val_set.tensors[0])
    assert len(a.train_set) == 40 and len(a.val_set) == 10 and len(a.test_set) == 7
    train_values = set(a.train_set.tensors[0][:, 0, 0, 0].tolist())
    val_values = set(a.val_set.tensors[0][:, 0, 0, 0].tolist())
    assert not train_values & val_values
    # normalised with the training split's statistics
    assert abs(a.train_set.tensors[0].mean().item()) < 1e-5


def test_digits_dataset_needs_no_download():
    dm = ImageDataModule("digits", val_size=200, batch_size=32)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 8, 8) and labels.max() <= 9
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 1797


def test_unknown_dataset_and_bad_val_size():
    with pytest.raises(
        ConfigError, match="data='imagenet' is not a known choice; valid choices: cifar10, digits, fashion_mnist, mnist"
    ):
        ImageDataModule("imagenet")
    dm = ImageDataModule("digits", val_size=5000)
    with pytest.raises(ConfigError, match=r"data.val_size=5000 is not allowed: it must be in 1\.\."):
        dm.setup("fit")


def test_augmentation_shifts_and_flips_per_sample():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3:5, 1:3] = 1.0  # a blob left of centre
    out = random_shift_flip(x, padding=2, flip=True)
    assert out.shape == x.shape
    centres = (out[:, 0].sum(1) * torch.arange(8.0)).sum(1) / out[:, 0].sum((1, 2))
    assert len(set(centres.round(decimals=2).tolist())) > 3  # different shifts per sample
    assert (centres > 4).any()  # some were mirrored to the right half
    assert torch.equal(random_shift_flip(x, padding=0, flip=False), x)
