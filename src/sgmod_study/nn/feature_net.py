"""The shipped Fashion-MNIST classifier whose features stand in for Inception in FID/KID.

Inception weights need a download, and Inception features of 28x28 grey images say little
anyway; as in "Demystifying MMD GANs" (Binkowski et al. 2018, a LeNet for MNIST), a classifier
trained on the same dataset gives the feature space. FID/KID values are therefore comparable
only within this toolkit.

The net was trained on the 55,000 images of the training split only (``data.split_indices``
with the data module's val_size=5000, split_seed=0): the 5,000 validation images that
validation FID takes as its real reference, and the 10,000 test images, were never seen. It
reaches test accuracy 0.9120 on the 10,000 test images (``TEST_ACCURACY``, the shipped float16
weights). ``scripts/train_feature_net.py`` reproduces the weights file and updates
``TEST_ACCURACY``, ``WEIGHTS_SHA256`` and the figure above.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).parent / "assets" / "fashion_mnist_features.pt"
WEIGHTS_SHA256 = "c705a68db30d2bcfaf8110eef9c1629ce7c422a2dc66acb0694cd39d59a186b4"
TEST_ACCURACY = 0.9120
# Fashion-MNIST training-set pixel statistics (of images scaled to [0, 1]).
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530


class FeatureNet(nn.Module):
    """Three conv stages and global average pooling: a 128-d feature, then a linear classifier."""

    num_features = 128

    def __init__(self) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            return layers + [nn.MaxPool2d(2)] if pool else layers

        self.body = nn.Sequential(
            *stage(1, 32, True),
            *stage(32, 64, True),
            *stage(64, self.num_features, False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(self.num_features, 10)

    def features(self, standardized: torch.Tensor) -> torch.Tensor:
        return self.body(standardized)

    def forward(self, standardized: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(standardized))


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (a tanh generator's range) -> the net's input scale."""
    return ((images + 1) / 2 - PIXEL_MEAN) / PIXEL_STD


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_feature_net(path: Path = WEIGHTS, expected_sha256: str | None = WEIGHTS_SHA256) -> FeatureNet:
    """The shipped net, checksum-verified, frozen and in eval mode."""
    if not path.is_file():
        raise FileNotFoundError(f"feature net weights missing: {path} (re-create with scripts/train_feature_net.py)")
    actual = sha256_of(path)
    if expected_sha256 is not None and actual != expected_sha256:
        raise RuntimeError(
            f"feature net weights {path} fail their checksum: sha256 {actual}, expected {expected_sha256} "
            "(the file is corrupted or was re-trained without updating WEIGHTS_SHA256)"
        )
    net = FeatureNet()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval().requires_grad_(False)


class FrozenFeatures(nn.Module):
    """Feature extractor for images in [-1, 1]: never trains, whatever ``.train()`` a parent calls."""

    num_features = FeatureNet.num_features

    def __init__(self, net: FeatureNet) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenFeatures":
        return super().train(False)  # Lightning's model.train() must not switch BatchNorm to batch stats

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(standardize(images.float()))

    @torch.no_grad()
    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The classifier head's logits for features this extractor computed already."""
        return self.net.classifier(features.float())
