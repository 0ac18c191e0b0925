"""The sanity table of the GAN quality metrics: docs/gan_metric_sanity.md.

    python scripts/fid_sanity.py            # a few minutes on 2 CPU cores; writes docs/gan_metric_sanity.md

Real images degraded on purpose, scored like generated ones by ``gan_quality.quality`` against
real test images, equal counts everywhere: the floor (real training-split images against real
test images, at the validation and the test evaluation's sizes), Gaussian blur, additive
Gaussian noise, classes left out, and an untrained generator. Seeds are fixed: a rerun writes
the same file.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur

from sgmod_study.data import SYSTEM_FASHION_MNIST, load_fashion_mnist
from sgmod_study.nn.feature_net import TEST_ACCURACY, FrozenFeatures, load_feature_net
from sgmod_study.nn.models import Generator
from sgmod_study.tasks import gan_collapse, gan_quality
from train_feature_net import training_indices

SEED = 0
FLOOR_SIZES = (5000, 10_000)  # the validation and the test evaluation's number of images
N = 10_000  # images per degraded set (the test evaluation's size)
BLUR_SIGMAS = (0.5, 1.0, 2.0)  # pixels
NOISE_LEVELS = (0.05, 0.1, 0.2)  # std in the [-1, 1] pixel scale
DROPPED = (1, 3, 5)  # classes left out; the first ones of a seeded permutation (nested sets)
DISTINCT_PER_CLASS = 10  # collapse within the classes: this many distinct images per class, repeated
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DOC = Path(__file__).resolve().parents[1] / "docs" / "gan_metric_sanity.md"
COMMAND = "python scripts/fid_sanity.py"
HEADER = (
    "| compared with real test images | n | FID | KID ± SE | precision | recall | classes | class entropy (bits) "
    "| collapsed |\n|---|---|---|---|---|---|---|---|---|"
)


def to_tanh_range(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1  # uint8 -> [-1, 1], a tanh generator's range


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of images in [-1, 1] (kernel out to 3 sigma, reflected borders)."""
    return gaussian_blur(images, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)


def add_noise(images: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=generator)
    return (images + level * noise).clamp(-1, 1)


def dropped_classes(count: int, seed: int = SEED) -> list[int]:
    """The classes left out: the first ``count`` of a seeded permutation, so 1 dropped is in 3 dropped is in 5."""
    order = torch.randperm(len(CLASS_NAMES), generator=torch.Generator().manual_seed(seed))
    return sorted(order[:count].tolist())


def without_classes(
    labels: torch.Tensor, base: torch.Tensor, dropped: list[int], generator: torch.Generator
) -> torch.Tensor:
    """Indices of a set like ``base`` (indices into ``labels``) without the ``dropped`` classes: its
    images of the other classes stay, the rest are replaced by unused images of the other classes,
    so the set keeps its count and differs from ``base`` only where it must."""
    kept_class = ~torch.isin(labels, torch.tensor(dropped))
    stay = base[kept_class[base]]
    unused = kept_class.clone()
    unused[base] = False
    candidates = torch.nonzero(unused).squeeze(1)
    missing = len(base) - len(stay)
    if len(candidates) < missing:
        raise ValueError(f"only {len(candidates)} unused images are left without classes {dropped}, {missing} needed")
    return torch.cat([stay, candidates[torch.randperm(len(candidates), generator=generator)[:missing]]])


def few_distinct(labels: torch.Tensor, base: torch.Tensor, per_class: int) -> torch.Tensor:
    """Collapse within the classes: ``per_class`` images of each class from ``base``, repeated up to its count."""
    picks = torch.cat([base[labels[base] == c][:per_class] for c in range(len(CLASS_NAMES))])
    return picks.repeat(len(base) // len(picks) + 1)[: len(base)]


def sample(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return images[torch.randperm(len(images), generator=generator)[:n]]


def embed(features: FrozenFeatures, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and classifier logits of images in [-1, 1]."""
    feats = torch.cat([features(batch) for batch in images.split(1000)])
    return feats, features.classify(feats)


def table_row(label: str, real: torch.Tensor, fake_images: torch.Tensor, features: FrozenFeatures) -> str:
    fake, logits = embed(features, fake_images)
    q = gan_quality.quality(real, fake, logits, seed=SEED)
    row = (
        f"| {label} | {len(fake)} | {q['fid']:.2f} | {q['kid']:.4f} ± {q['kid_se']:.4f} | {q['precision']:.3f} "
        f"| {q['recall']:.3f} | {q['classes']:.0f} | {q['class_entropy']:.2f} | {'yes' if q['collapsed'] else 'no'} |"
    )
    print(row, flush=True)
    return row


def rows(features: FrozenFeatures) -> list[str]:
    generator = torch.Generator().manual_seed(SEED)
    train_x, train_y, test_x, _ = load_fashion_mnist("data", SYSTEM_FASHION_MNIST)
    split = training_indices(len(train_y))
    train_x, train_y = to_tanh_range(train_x[split]), train_y[split]
    test_x = to_tanh_range(test_x)
    out = []
    for n in FLOOR_SIZES:
        real, _ = embed(features, sample(test_x, n, generator))
        out.append(table_row("real training-split images (the floor)", real, sample(train_x, n, generator), features))
    real, _ = embed(features, sample(test_x, N, generator))
    base = torch.randperm(len(train_y), generator=generator)[:N]
    for sigma in BLUR_SIGMAS:
        out.append(table_row(f"blur, sigma {sigma:g} px", real, blur(train_x[base], sigma), features))
    for level in NOISE_LEVELS:
        out.append(table_row(f"noise, std {level:g}", real, add_noise(train_x[base], level, generator), features))
    for count in DROPPED:
        dropped = dropped_classes(count)
        names = ", ".join(CLASS_NAMES[c] for c in dropped)
        fake = train_x[without_classes(train_y, base, dropped, generator)]
        out.append(table_row(f"{count} class{'es' if count > 1 else ''} dropped ({names})", real, fake, features))
    distinct = few_distinct(train_y, base, DISTINCT_PER_CLASS)
    label = f"{DISTINCT_PER_CLASS} images per class, each repeated {N // (10 * DISTINCT_PER_CLASS)} times"
    out.append(table_row(label, real, train_x[distinct], features))
    torch.manual_seed(SEED)  # the generator's initial weights
    untrained = Generator(64, 1, 28, {"name": "sgmod"}, {"name": "batch"}).eval()
    with torch.no_grad():
        fake = torch.cat([untrained(z) for z in torch.randn(N, 64, generator=generator).split(1000)])
    out.append(table_row("an untrained generator (sgmod)", real, fake, features))
    return out


def document(table: list[str]) -> str:
    q, c = gan_quality, gan_collapse
    return (
        f"""# GAN metric sanity table

Generated by `{COMMAND}` (fixed seeds: a rerun writes the same file).

The GAN task scores generated images on the 128-d features of a small Fashion-MNIST classifier
shipped with the toolkit (`src/sgmod_study/nn/feature_net.py`), not on Inception features, so the
numbers compare within this toolkit only. The net was trained on the 55,000 images of the training
split only: the 5,000 validation images that validation FID takes as its real reference, and the
10,000 test images, were never seen. Its test accuracy is {TEST_ACCURACY:.4f}.

Each row scores a set of real images, degraded on purpose, as if it were generated, against as many
real test images (`sgmod_study.tasks.gan_quality.quality`, KID on 100 random subsets of 1,000,
precision and recall with k = {q.PR_NEIGHBOUR}). The first two rows are the floor: what two samples
of real images score, at the validation evaluation's size (5,000) and the test evaluation's size
(10,000); FID is biased upwards at smaller n, so compare only numbers of the same n. The others use
n = {N:,} and degrade training-split images: Gaussian blur, additive Gaussian noise (std in the
[-1, 1] pixel scale, clamped), classes left out (the remaining classes sampled up to the same n), a
collapse within the classes (a few images repeated) and an untrained generator.

How to read it: FID and KID grow with every kind of damage; KID's ± is the standard error over
its subsets (which overlap, so it understates the sampling noise). Precision is the share of
generated images that land near real ones (image quality), recall the share of real images that
have a generated image nearby (diversity): blur and noise cost precision and, on these features,
recall even more; dropped classes cost recall only. "classes" counts the classes the feature net
assigns at least {c.COVERED_SHARE:.0%} of the images to; the class entropy is at most log2(10) = 3.32 bits.

Collapse: `collapsed` is "yes" when at most {c.COLLAPSE_MAX_CLASSES} classes are covered or recall is
below {c.COLLAPSE_MIN_RECALL} (`gan_collapse.is_collapsed`; its module docstring gives the full
argument). 5 dropped classes are flagged, 1 or 3 dropped classes and the mild blur (0.5 px) and
noise (0.05, 0.1) levels are not. A class is covered at {c.COVERED_SHARE:.0%} of the images (half a fair
share) because the feature net files a few per cent of a present class under a missing look-alike
(up to 3.6% over all 252 ways of dropping 5 classes). The recall bound is low because k-NN recall on
these features falls as fast with image quality as with diversity (half a pixel of blur: 0.86 to
0.15); where it is practically zero it catches a collapse within the classes (the repeated-images
row: 10 classes, recall 0). Outputs far from every real image (strong blur or noise, an untrained
generator) are flagged too: read "collapsed" as "mode collapse or no usable samples".

{HEADER}
"""
        + "\n".join(table)
        + "\n"
    )


def main() -> None:
    torch.manual_seed(SEED)
    features = FrozenFeatures(load_feature_net())
    print(HEADER, flush=True)
    table = rows(features)
    DOC.write_text(document(table))
    print(f"written: {DOC}")


if __name__ == "__main__":
    main()
