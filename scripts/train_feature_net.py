"""Re-create the FID/KID feature network shipped in src/sgmod_study/assets/.

    python scripts/train_feature_net.py            # about 8 minutes on 2 CPU cores

Trains ``sgmod_study.nn.feature_net.FeatureNet`` on the full Fashion-MNIST training set
(seeded, random shifts), reports its test accuracy, writes the weights in float16
and prints their sha256 (paste it into ``WEIGHTS_SHA256``). It also writes the small
held-out test sample the test suite classifies (tests/data/fashion_mnist_test_sample.npz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sgmod_study.data import SYSTEM_FASHION_MNIST, load_fashion_mnist, random_shift_flip
from sgmod_study.nn.feature_net import WEIGHTS, FeatureNet, sha256_of, standardize

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "fashion_mnist_test_sample.npz"


def to_input(images: torch.Tensor) -> torch.Tensor:
    return standardize(images.float() / 127.5 - 1)  # uint8 -> [-1, 1] -> the net's scale


def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        predictions = torch.cat([net(to_input(x)).argmax(1) for x in images.split(1000)])
    return (predictions == labels).float().mean().item()


def train(epochs: int, seed: int, data_dir: str) -> tuple[FeatureNet, float, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    train_x, train_y, test_x, test_y = load_fashion_mnist(data_dir, SYSTEM_FASHION_MNIST)
    net = FeatureNet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=4e-3, weight_decay=1e-4)
    steps = epochs * ((len(train_y) + 255) // 256)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_y))
        for batch in order.split(256):
            x = random_shift_flip(to_input(train_x[batch]), padding=2, flip=False)
            loss = F.cross_entropy(net(x), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.3f}")
    return net, accuracy(net, test_x, test_y), test_x, test_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--sample-size", type=int, default=256)
    args = parser.parse_args()

    net, test_accuracy, test_x, test_y = train(args.epochs, args.seed, args.data_dir)
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save(state, WEIGHTS)
    # the last sample_size test images: the tests classify them with the shipped (float16) weights
    SAMPLE.parent.mkdir(parents=True, exist_ok=True)
    n = args.sample_size
    np.savez_compressed(SAMPLE, images=test_x[-n:, 0].numpy(), labels=test_y[-n:].numpy())
    print(f"test accuracy (float32 weights): {test_accuracy:.4f}")
    print(f"weights: {WEIGHTS} ({WEIGHTS.stat().st_size / 1024:.0f} KiB)")
    print(f'WEIGHTS_SHA256 = "{sha256_of(WEIGHTS)}"')
    print(f"held-out sample: {SAMPLE} ({SAMPLE.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
