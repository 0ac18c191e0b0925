"""Damaged or mismatched data files are refused with one line naming the file; a run says which
copy of the data it used."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from helpers.data import make_fake_fashion_mnist, write_idx
from helpers.runs import TINY, compose_config, run_train
from sgmod_study.data import ImageDataModule, load_fashion_mnist, read_idx
from sgmod_study.errors import ConfigError
from sgmod_study.run.training import train

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def _refusal(folder: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_fashion_mnist(str(folder), "/nonexistent", download=False)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_labels_file_with_half_the_labels_is_refused(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_train=40)
    labels = folder / f"{TRAIN_LABELS}.gz"
    write_idx(labels, np.zeros(20), gz=True)
    assert _refusal(folder) == (
        f"{labels} holds 20 labels but {folder / TRAIN_IMAGES}.gz holds 40 images: "
        "the two files must come from the same copy of the data"
    )


def test_truncated_plain_image_file_is_refused(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_train=40, gz=False)
    images = folder / TRAIN_IMAGES
    images.write_bytes(images.read_bytes()[:5000])
    assert _refusal(folder) == (
        f"{images} is truncated: its IDX header says shape 40x28x28 (31376 bytes), the file holds 5000 bytes; "
        "replace it"
    )


def test_gzip_of_a_truncated_image_file_is_refused(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_train=40)
    images = folder / f"{TRAIN_IMAGES}.gz"
    whole = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(whole[:5000]))
    assert _refusal(folder) == (
        f"{images} is truncated: its IDX header says shape 40x28x28 (31376 bytes uncompressed), "
        "the file holds 5000 bytes; replace it"
    )


def test_cut_off_gzip_download_is_refused(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_train=40)
    images = folder / f"{TRAIN_IMAGES}.gz"
    images.write_bytes(images.read_bytes()[:-30])
    assert _refusal(folder) == (
        f"{images} is not a readable gzip file (Compressed file ended before the end-of-stream marker "
        "was reached); replace it"
    )


def test_corrupt_gzip_is_refused_in_one_line(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_train=40)
    labels = folder / f"{TRAIN_LABELS}.gz"
    data = bytearray(labels.read_bytes())
    data[-16:-10] = bytes(byte ^ 0xFF for byte in data[-16:-10])  # inside the deflate stream, before the CRC
    labels.write_bytes(bytes(data))
    assert _refusal(folder).startswith(f"{labels} is not a readable gzip file (")


def test_idx_size_must_match_its_header_exactly(tmp_path):
    padded = tmp_path / "padded"
    write_idx(padded, np.zeros((2, 3)), gz=False)
    padded.write_bytes(padded.read_bytes() + b"\0")
    with pytest.raises(ConfigError) as err:
        read_idx(padded)
    assert str(err.value) == (
        f"{padded} is longer than its header says: its IDX header says shape 2x3 (18 bytes), "
        "the file holds 19 bytes; replace it"
    )
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\0\0")
    with pytest.raises(ConfigError, match=r"is not an IDX file: it holds 2 bytes, fewer than the 4-byte header"):
        read_idx(tiny)


def test_labels_outside_the_classes_are_refused(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_test=10)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.full(10, 12), gz=True)
    assert _refusal(folder) == f"{labels} holds label 12, Fashion-MNIST's labels are 0..9"


def test_data_module_says_which_copy_it_read(tmp_path, capsys):
    folder = make_fake_fashion_mnist(tmp_path / "mine", n_train=40, n_test=10)
    dm = ImageDataModule("fashion_mnist", data_dir=str(folder), system_dir="/nonexistent", download=False, val_size=10)
    dm.setup("fit")
    dm.setup("test")
    assert dm.source == str(folder.resolve())
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"data: fashion_mnist from {folder.resolve()} (train 30, val 10, test 10 images)"]  # once
    assert dm.state_dict() == {"source": str(folder.resolve())}


@pytest.mark.slow
def test_run_records_its_data_source(tmp_path, fashion_sample_dir):
    overrides = [
        *TINY,
        "data=fashion_mnist",  # the preset's digits replaced
        f"data.data_dir={fashion_sample_dir}",
        "data.system_dir=/nonexistent",
        "data.download=false",
        "data.val_size=64",
        "trainer.max_epochs=1",
        "model.channels=[8]",
        "model.hidden=16",
    ]
    train(compose_config(overrides, tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["data_source"] == str(fashion_sample_dir.resolve())
    hparams = (tmp_path / "tensorboard" / "hparams.yaml").read_text()
    assert str(fashion_sample_dir) not in hparams  # where the data are is no hyperparameter


@pytest.mark.slow
def test_truncated_data_exits_2_with_one_line(tmp_path):
    folder = make_fake_fashion_mnist(tmp_path / "fm", n_train=40, gz=False)
    images = folder / TRAIN_IMAGES
    images.write_bytes(images.read_bytes()[:5000])
    args = [
        *TINY,
        "data=fashion_mnist",  # the preset's digits replaced
        f"data.data_dir={folder}",
        "data.system_dir=/nonexistent",
        "data.download=false",
        "data.val_size=10",
    ]
    proc = run_train(args, tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {images} is truncated: its IDX header says shape 40x28x28 (31376 bytes), the file holds "
        "5000 bytes; replace it"
    )
    assert "Traceback" not in proc.stderr
