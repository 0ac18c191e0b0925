"""Re-create the FID/KID feature network shipped in src/sgmod_study/nn/assets/.

    python scripts/train_feature_net.py            # about 8 minutes on 2 CPU cores

Trains ``sgmod_study.nn.feature_net.FeatureNet`` (seeded, random shifts) on the 55,000 images
of the training split only: the 5,000 validation images that validation FID uses as its real
reference, and the test images, are never seen. It writes the weights in float16, measures the
test accuracy of those shipped weights, and records accuracy and sha256 in
src/sgmod_study/nn/feature_net.py (``TEST_ACCURACY``, ``WEIGHTS_SHA256`` and the docstring's
"test accuracy" figure). It also writes, if missing or different, the small held-out test
sample the test suite classifies (tests/data/fashion_mnist_test_sample.npz).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import sgmod_study.nn.feature_net as feature_net_module
from sgmod_study.data import SYSTEM_FASHION_MNIST, load_fashion_mnist, random_shift_flip, split_indices
from sgmod_study.nn.feature_net import WEIGHTS, FeatureNet, load_feature_net, sha256_of, standardize

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "fashion_mnist_test_sample.npz"
# conf/data/fashion_mnist.yaml's val_size and split_seed: the validation images FID is measured on
VAL_SIZE, SPLIT_SEED = 5000, 0


def training_indices(n: int) -> torch.Tensor:
    """The training set images the feature net learns from: the data module's training split."""
    train_idx, _ = split_indices(n, VAL_SIZE, SPLIT_SEED)
    return train_idx


def to_input(images: torch.Tensor) -> torch.Tensor:
    return standardize(images.float() / 127.5 - 1)  # uint8 -> [-1, 1] -> the net's scale


def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        predictions = torch.cat([net(to_input(x)).argmax(1) for x in images.split(1000)])
    return (predictions == labels).float().mean().item()


def train(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int) -> FeatureNet:
    torch.manual_seed(seed)
    net = FeatureNet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=4e-3, weight_decay=1e-4)
    steps = epochs * ((len(labels) + 255) // 256)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(labels))
        for batch in order.split(256):
            x = random_shift_flip(to_input(images[batch]), padding=2, flip=False)
            loss = F.cross_entropy(net(x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.3f}")
    return net


def save_half(net: FeatureNet) -> None:
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save(state, WEIGHTS)


def record_in_module(test_accuracy: float, sha256: str) -> Path:
    """Write accuracy and checksum into feature_net.py, where users (and load_feature_net) read them."""
    path = Path(feature_net_module.__file__)
    text = path.read_text()
    for pattern, value in (
        (r"^TEST_ACCURACY = .*$", f"TEST_ACCURACY = {test_accuracy:.4f}"),
        (r'^WEIGHTS_SHA256 = ".*"$', f'WEIGHTS_SHA256 = "{sha256}"'),
        (r"test accuracy \d\.\d{4}", f"test accuracy {test_accuracy:.4f}"),
    ):
        text, count = re.subn(pattern, value, text, flags=re.MULTILINE)
        if count != 1:
            raise RuntimeError(f"{path}: expected one match of {pattern!r}, found {count}; edit it by hand")
    path.write_text(text)
    return path


def write_sample(test_x: torch.Tensor, test_y: torch.Tensor, n: int) -> None:
    """The last ``n`` test images, for the tests; left alone when it holds them already (no spurious diff)."""
    images, labels = test_x[-n:, 0].numpy(), test_y[-n:].numpy()
    if SAMPLE.is_file():
        with np.load(SAMPLE) as old:
            if np.array_equal(old["images"], images) and np.array_equal(old["labels"], labels):
                return
    SAMPLE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(SAMPLE, images=images, labels=labels)
    print(f"held-out sample written: {SAMPLE} ({SAMPLE.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--sample-size", type=int, default=256)
    args = parser.parse_args()

    train_x, train_y, test_x, test_y = load_fashion_mnist(args.data_dir, SYSTEM_FASHION_MNIST)
    idx = training_indices(len(train_y))
    print(f"training on {len(idx)} of {len(train_y)} training images (validation and test images held out)")
    net = train(train_x[idx], train_y[idx], args.epochs, args.seed)
    save_half(net)
    sha256 = sha256_of(WEIGHTS)
    test_accuracy = accuracy(load_feature_net(WEIGHTS, expected_sha256=sha256), test_x, test_y)
    module = record_in_module(test_accuracy, sha256)
    write_sample(test_x, test_y, args.sample_size)
    print(f"test accuracy (shipped float16 weights, {len(test_y)} test images): {test_accuracy:.4f}")
    print(f"weights: {WEIGHTS} ({WEIGHTS.stat().st_size / 1024:.0f} KiB), sha256 {sha256}")
    print(f"recorded TEST_ACCURACY and WEIGHTS_SHA256 in {module}")


if __name__ == "__main__":
    main()
