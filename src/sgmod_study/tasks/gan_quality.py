"""GAN quality metrics as pure functions of feature tensors (float, shape [n, d]).

The GAN module computes the shipped feature net's features of real and generated images and calls
``quality`` once per evaluation. Everything here is plain torch, in float64 where sums or matrix
square roots are involved, and draws randomness (KID's subsets) only from a ``torch.Generator``
seeded by the caller: evaluating never moves the global RNG, so it cannot change a training run.

- FID: Frechet distance of the Gaussians fitted to the two feature sets (Heusel et al. 2017).
- KID: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets (Binkowski
  et al. 2018), with a standard error.
- precision / recall: the improved k-NN versions of Kynkaanniemi et al. 2019 (k = 3). Precision
  is the share of generated images that look real, recall the share of real images the generator
  can produce: a collapsed generator keeps its precision but loses recall.
- classes / class_entropy: the histogram of the feature net's predicted classes of the generated
  images; a generator that leaves out garment types covers fewer classes.
- collapsed: the collapse flag, ``gan_collapse.is_collapsed(classes, recall)`` (its thresholds
  and why they are where they are: that module).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sgmod_study.errors import ConfigError
from sgmod_study.tasks.gan_collapse import COVERED_SHARE, is_collapsed

QUALITY_KEYS = ("fid", "kid", "kid_se", "precision", "recall", "classes", "class_entropy", "collapsed")
PR_NEIGHBOUR = 3  # Kynkaanniemi et al. 2019: k = 3
# Pairwise distances are computed in row chunks of at most this many float64 entries (64 MiB, one
# buffer and a boolean or top-k result per chunk): 10k x 10k needs about 80 MB, not 800.
DISTANCE_CHUNK_ELEMENTS = 2**23


def quality(
    real: Tensor,
    fake: Tensor,
    fake_logits: Tensor,
    *,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of QUALITY_KEYS for equally many real and generated features (FID is biased
    by the sample size, so unequal counts would not compare across evaluations)."""
    _check_pair(real, fake)
    if len(real) != len(fake):
        raise ConfigError(
            f"quality needs as many generated as real features: got {len(fake)} generated and {len(real)} real"
        )
    if fake_logits.dim() != 2 or len(fake_logits) != len(fake):
        raise ConfigError(
            f"fake_logits of shape {tuple(fake_logits.shape)} is not allowed: it must be [{len(fake)}, num_classes]"
        )
    kid_mean, kid_se = kid(real, fake, kid_subset_size, kid_subsets, seed)
    precision, recall = precision_recall(real, fake)
    classes, entropy = class_stats(fake_logits, fake_logits.shape[1])
    values = {
        "fid": fid(real, fake),
        "kid": kid_mean,
        "kid_se": kid_se,
        "precision": precision,
        "recall": recall,
        "classes": float(classes),
        "class_entropy": entropy,
        "collapsed": float(is_collapsed(classes, recall)),
    }
    return {key: values[key] for key in QUALITY_KEYS}


def fid(real: Tensor, fake: Tensor) -> float:
    """Frechet distance ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), in float64.

    tr (S1 S2)^1/2 = tr (sqrt(S1) S2 sqrt(S1))^1/2: the latter matrix is symmetric positive
    semi-definite, so its eigenvalues are real; rounding can make tiny ones negative (clamped to 0).
    """
    _check_pair(real, fake)
    mu1, s1 = _mean_and_covariance(real)
    mu2, s2 = _mean_and_covariance(fake)
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    value = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * eigenvalues.sqrt().sum()
    return value.item()


def kid(real: Tensor, fake: Tensor, subset_size: int, subsets: int, seed: int) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged
    over ``subsets`` pairs of random subsets of min(subset_size, n) real and generated features
    (each drawn without replacement), from a generator seeded with ``seed``.

    Returns (mean, standard error). The standard error is the std over subsets / sqrt(subsets),
    which treats the subsets as independent draws; they overlap (all come from the same n features),
    so it measures the subset noise and understates the uncertainty of the finite sample itself.
    """
    _check_pair(real, fake)
    if not isinstance(subset_size, int) or subset_size < 2:
        raise ConfigError(f"kid_subset_size={subset_size!r} is not allowed: it must be an integer >= 2")
    if not isinstance(subsets, int) or subsets < 2:
        raise ConfigError(f"kid_subsets={subsets!r} is not allowed: it must be an integer >= 2 (for the std)")
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same subsets on every device
    m = min(subset_size, len(real), len(fake))
    real64, fake64 = real.double(), fake.double()
    scores = []
    for _ in range(subsets):
        r = real64[torch.randperm(len(real), generator=generator)[:m].to(real.device)]
        f = fake64[torch.randperm(len(fake), generator=generator)[:m].to(fake.device)]
        scores.append(_unbiased_mmd2(r, f))
    scores = torch.stack(scores)
    return scores.mean().item(), (scores.std() / math.sqrt(subsets)).item()


def precision_recall(real: Tensor, fake: Tensor, k: int = PR_NEIGHBOUR) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each real feature gets a ball whose radius is the distance to its k-th nearest other real
    feature; precision is the share of generated features inside at least one real ball. Recall
    is the same with the roles swapped: generated balls from the generated features' k-NN.
    """
    _check_pair(real, fake)
    if not isinstance(k, int) or not 1 <= k < min(len(real), len(fake)):
        raise ConfigError(f"k={k!r} is not allowed: it must be an integer in 1..{min(len(real), len(fake)) - 1}")
    real64, fake64 = real.double(), fake.double()
    real_radii, fake_radii = _knn_radii(real64, k), _knn_radii(fake64, k)
    precision = _share_inside(fake64, real64, real_radii)
    recall = _share_inside(real64, fake64, fake_radii)
    return precision, recall


def class_stats(fake_logits: Tensor, num_classes: int = 10) -> tuple[int, float]:
    """Of the generated images' predicted classes: how many classes hold at least COVERED_SHARE of
    them, and the entropy of the class histogram in bits (log2(num_classes) when all are equal)."""
    if fake_logits.dim() != 2 or fake_logits.shape[1] != num_classes or len(fake_logits) == 0:
        raise ConfigError(
            f"fake_logits of shape {tuple(fake_logits.shape)} is not allowed: it must be [n > 0, {num_classes}]"
        )
    counts = torch.bincount(fake_logits.argmax(1), minlength=num_classes).double()
    shares = counts / counts.sum()
    covered = int((shares >= COVERED_SHARE).sum().item())
    present = shares[shares > 0]
    entropy = (present * (1 / present).log2()).sum().item()  # not -(p log p): no -0.0 for one class
    return covered, entropy


def _check_pair(real: Tensor, fake: Tensor) -> None:
    for name, x in (("real", real), ("fake", fake)):
        if x.dim() != 2 or len(x) < 2 or not x.is_floating_point():
            raise ConfigError(
                f"{name} features of shape {tuple(x.shape)} and dtype {x.dtype} are not allowed: "
                "they must be a float tensor [n >= 2, d]"
            )
    if real.shape[1] != fake.shape[1]:
        raise ConfigError(f"real features have {real.shape[1]} dimensions, fake ones {fake.shape[1]}: they must match")


def _mean_and_covariance(x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.double()
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (len(x) - 1)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ vectors.T


def _unbiased_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """MMD^2 without the kernel's diagonal terms k(x_i, x_i) (the unbiased U-statistic)."""
    m, d = x.shape

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return (a @ b.T / d + 1) ** 3

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    squared = a @ b.T  # |a|^2 + |b|^2 - 2 a.b in place: one chunk-sized buffer
    squared.mul_(-2).add_(a.square().sum(1)[:, None]).add_(b.square().sum(1)[None, :])
    return squared.clamp_(min=0)


def _row_chunks(rows: Tensor, columns: int) -> tuple[Tensor, ...]:
    return rows.split(max(1, DISTANCE_CHUNK_ELEMENTS // columns))


def _knn_radii(x: Tensor, k: int) -> Tensor:
    """Squared distance of each point to its k-th nearest other point (the point itself is the 0-th)."""
    radii = [
        _squared_distances(chunk, x).topk(k + 1, dim=1, largest=False).values[:, -1] for chunk in _row_chunks(x, len(x))
    ]
    return torch.cat(radii)


def _share_inside(points: Tensor, centres: Tensor, squared_radii: Tensor) -> float:
    """The share of ``points`` within the ball of at least one of ``centres``."""
    inside = [
        (_squared_distances(chunk, centres) <= squared_radii[None, :]).any(1)
        for chunk in _row_chunks(points, len(centres))
    ]
    return torch.cat(inside).double().mean().item()
