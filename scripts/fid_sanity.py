"""Sanity figures for the FID/KID of this toolkit (the README quotes them).

    python scripts/fid_sanity.py            # about a minute on 2 CPU cores

FID/KID of 10,000 real test images against 10,000 real training images (should be near 0),
and of 10,000 images from an untrained generator against the same training images (large).
"""

from __future__ import annotations

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from sgmod_study.data import SYSTEM_FASHION_MNIST, load_fashion_mnist
from sgmod_study.nn.feature_net import FrozenFeatures, load_feature_net
from sgmod_study.nn.models import Generator
from sgmod_study.tasks.gan import PrecomputedFeatures

SAMPLES = 10_000


def features_of(features: FrozenFeatures, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([features(batch) for batch in images.split(1000)])


def fid_and_kid(real: torch.Tensor, fake: torch.Tensor, num_features: int) -> tuple[float, float]:
    fid = FrechetInceptionDistance(feature=PrecomputedFeatures(num_features))
    kid = KernelInceptionDistance(feature=PrecomputedFeatures(num_features), subset_size=1000)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    return fid.compute().item(), kid.compute()[0].item()


def main() -> None:
    torch.manual_seed(0)
    features = FrozenFeatures(load_feature_net())
    train_x, _, test_x, _ = load_fashion_mnist("data", SYSTEM_FASHION_MNIST)
    to_tanh_range = lambda images: images.float() / 127.5 - 1  # noqa: E731
    train_features = features_of(features, to_tanh_range(train_x[torch.randperm(len(train_x))[:SAMPLES]]))
    test_features = features_of(features, to_tanh_range(test_x[:SAMPLES]))
    generator = Generator(64, 1, 28, {"name": "sgmod"}, {"name": "batch"}).eval()
    with torch.no_grad():
        fake_features = features_of(features, generator(torch.randn(SAMPLES, 64)))
    n = features.num_features
    for name, other in (("real test", test_features), ("untrained generator (sgmod)", fake_features)):
        fid, kid = fid_and_kid(train_features, other, n)
        print(f"{name:>28} vs real train: FID {fid:8.3f}   KID {kid:.4f}")


if __name__ == "__main__":
    main()
