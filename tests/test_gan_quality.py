import itertools
import math

import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

import fid_sanity
from helpers.data import load_fashion_sample
from sgmod_study.errors import ConfigError
from sgmod_study.nn.feature_net import FrozenFeatures, load_feature_net
from sgmod_study.tasks import gan_quality
from sgmod_study.tasks.gan_collapse import (
    COLLAPSE_MAX_CLASSES,
    COLLAPSE_MIN_RECALL,
    COVERED_SHARE,
    FEW_CLASSES,
    NO_RECALL,
    collapse_reasons,
    is_collapsed,
)
from sgmod_study.tasks.gan_quality import QUALITY_KEYS, class_stats, fid, kid, precision_recall, quality


class Identity(nn.Identity):
    """torchmetrics' feature extractor for features computed already."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def _pair(n: int = 600, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(n, d, generator=generator).abs()  # non-negative, like ReLU features
    mixing = torch.eye(d) + 0.3 * torch.randn(d, d, generator=generator)
    fake = (torch.randn(n, d, generator=generator) @ mixing).abs() + 0.2
    return real, fake


def _one_hot_logits(labels: list[int], num_classes: int = 10) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(labels), num_classes).float()


def _torchmetrics_fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=Identity(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return metric.compute().item()


# -- FID


def test_fid_agrees_with_torchmetrics():
    real, fake = _pair()
    ours, theirs = fid(real, fake), _torchmetrics_fid(real, fake)
    assert theirs > 0.5
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    real, _ = _pair()
    assert abs(fid(real, real)) < 1e-8
    assert fid(real, real + 0.5) == pytest.approx(real.shape[1] * 0.25, rel=1e-6)  # ||mean shift||^2


# -- KID


def test_kid_agrees_with_torchmetrics_on_the_whole_set():
    real, fake = _pair(n=300)
    metric = KernelInceptionDistance(feature=Identity(real.shape[1]), subsets=2, subset_size=300)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    theirs = metric.compute()[0].item()  # every subset is the whole set: no randomness left
    ours, se = kid(real, fake, subset_size=300, subsets=2, seed=0)
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert se == pytest.approx(0.0, abs=1e-12)


def test_kid_agrees_with_torchmetrics_mean_within_its_spread():
    real, fake = _pair()
    with torch.random.fork_rng():  # torchmetrics draws its subsets from the global RNG
        torch.manual_seed(1)
        metric = KernelInceptionDistance(feature=Identity(real.shape[1]), subsets=50, subset_size=200)
        metric.update(real, real=True)
        metric.update(fake, real=False)
        theirs, their_std = (v.item() for v in metric.compute())
    ours, se = kid(real, fake, subset_size=200, subsets=50, seed=0)
    assert ours > 10 * se > 0  # a clearly positive KID, not noise around 0
    assert abs(ours - theirs) < 4 * math.hypot(se, their_std / math.sqrt(50))


def test_quality_is_reproducible_and_leaves_the_global_rng_alone():
    real, fake = _pair()
    logits = _one_hot_logits([i % 10 for i in range(len(fake))])
    state = torch.get_rng_state()
    first = quality(real, fake, logits, kid_subset_size=100, kid_subsets=10, seed=3)
    second = quality(real, fake, logits, kid_subset_size=100, kid_subsets=10, seed=3)
    other_seed = quality(real, fake, logits, kid_subset_size=100, kid_subsets=10, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == second
    assert other_seed["kid"] != first["kid"] and other_seed["fid"] == first["fid"]


def test_kid_standard_error_is_the_std_over_subsets_over_sqrt_subsets():
    real, fake = _pair(n=200)
    means = [kid(real, fake, subset_size=50, subsets=40, seed=s)[0] for s in range(20)]
    _, se = kid(real, fake, subset_size=50, subsets=40, seed=0)
    spread = torch.tensor(means).std().item()  # how much the 40-subset mean moves with the subsets
    assert 0.5 * spread < se < 2 * spread


# -- precision and recall


def _clusters(centres: torch.Tensor, per_cluster: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    points = centres.repeat_interleave(per_cluster, 0)
    return points + torch.randn(points.shape, generator=generator)


CENTRES = 100 * torch.arange(10.0)[:, None] * torch.tensor([[1.0, 0.0]])  # 10 clusters 100 apart, std 1


def test_precision_recall_of_a_set_with_itself_is_one():
    real = _clusters(CENTRES, 50, seed=0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)


def test_precision_recall_of_a_far_away_set_is_zero():
    real = _clusters(CENTRES, 50, seed=0)
    assert precision_recall(real, real + 1000) == (0.0, 0.0)


def test_a_generator_covering_half_the_clusters_has_precision_but_half_the_recall():
    real = _clusters(CENTRES, 50, seed=0)
    fake = _clusters(CENTRES[:5], 100, seed=1)  # as many points, all in half the clusters
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9
    assert 0.4 < recall <= 0.5  # the other half of the real points has no generated neighbour


def test_precision_recall_are_the_same_in_small_chunks(monkeypatch):
    real = _clusters(CENTRES, 30, seed=0)
    fake = _clusters(CENTRES[:7], 43, seed=1)[:300]
    whole = precision_recall(real, fake)
    monkeypatch.setattr(gan_quality, "DISTANCE_CHUNK_ELEMENTS", 7 * 300)  # 7 rows a chunk
    assert precision_recall(real, fake) == whole
    assert 0 < whole[1] < 1


# -- classes and collapse


def test_class_stats_of_a_uniform_histogram():
    classes, entropy = class_stats(_one_hot_logits([i % 10 for i in range(1000)]))
    assert classes == 10
    assert entropy == pytest.approx(math.log2(10))


def test_class_stats_of_one_class_and_a_few_strays():
    strays = int(COVERED_SHARE * 1000) - 1  # just below the covered share
    classes, entropy = class_stats(_one_hot_logits([0] * (1000 - strays) + [1] * strays))
    assert classes == 1
    share = strays / 1000
    assert entropy == pytest.approx(-(share * math.log2(share) + (1 - share) * math.log2(1 - share)))


def test_is_collapsed_at_its_thresholds():
    assert is_collapsed(COLLAPSE_MAX_CLASSES, 0.9)
    assert not is_collapsed(COLLAPSE_MAX_CLASSES + 1, 0.9)
    assert is_collapsed(10, COLLAPSE_MIN_RECALL - 0.01)
    assert not is_collapsed(10, COLLAPSE_MIN_RECALL)


def test_collapse_reasons_name_each_criterion_that_fires():
    assert collapse_reasons(COLLAPSE_MAX_CLASSES, 0.5) == (FEW_CLASSES,)
    assert collapse_reasons(10, COLLAPSE_MIN_RECALL / 2) == (NO_RECALL,)
    assert collapse_reasons(1, 0.0) == (FEW_CLASSES, NO_RECALL)
    assert collapse_reasons(COLLAPSE_MAX_CLASSES + 1, COLLAPSE_MIN_RECALL) == ()


def test_quality_returns_exactly_its_keys():
    real, fake = _pair(n=100)
    result = quality(real, fake, _one_hot_logits([0] * 100), kid_subset_size=50, kid_subsets=5)
    assert tuple(result) == QUALITY_KEYS
    assert all(isinstance(v, float) for v in result.values())
    assert result["classes"] == 1.0 and result["class_entropy"] == 0.0 and result["collapsed"] == 1.0


def test_quality_rejects_unequal_counts():
    real, fake = _pair(n=100)
    with pytest.raises(ConfigError, match="got 99 generated and 100 real"):
        quality(real, fake[:99], _one_hot_logits([0] * 99))


@pytest.mark.parametrize("subset_size, subsets", [(1, 10), (10, 1), (10.5, 10)])
def test_kid_rejects_bad_subsets(subset_size, subsets):
    real, fake = _pair(n=100)
    with pytest.raises(ConfigError, match="kid_subset"):
        kid(real, fake, subset_size, subsets, seed=0)


# -- the metrics grow with damage, on the shipped feature net and real test images


@pytest.fixture(scope="module")
def sample():
    """The shipped sample as images in [-1, 1]: the first half the reference, the second a pool."""
    images, labels = load_fashion_sample()
    return fid_sanity.to_tanh_range(torch.from_numpy(images).unsqueeze(1)), torch.from_numpy(labels).long()


@pytest.fixture(scope="module")
def features():
    return FrozenFeatures(load_feature_net())


def _fid_and_kid(reference: torch.Tensor, damaged: torch.Tensor) -> tuple[float, float]:
    # subsets as large as the sets: KID of the whole sets, no subset noise
    return fid(reference, damaged), kid(reference, damaged, len(reference), 2, seed=0)[0]


def _increasing(values: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def _scores_of(features: FrozenFeatures, reference: torch.Tensor, damaged_sets: list[torch.Tensor]) -> list:
    return [_fid_and_kid(reference, fid_sanity.embed(features, images)[0]) for images in damaged_sets]


def test_fid_and_kid_grow_with_blur(sample, features):
    images, _ = sample
    reference, _ = fid_sanity.embed(features, images[:128])
    pool = images[128:]
    scores = _scores_of(features, reference, [pool] + [fid_sanity.blur(pool, s) for s in fid_sanity.BLUR_SIGMAS])
    assert _increasing([f for f, _ in scores]), scores
    assert _increasing([k for _, k in scores]), scores


def test_fid_and_kid_grow_with_noise(sample, features):
    images, _ = sample
    reference, _ = fid_sanity.embed(features, images[:128])
    pool = images[128:]
    noisy = [fid_sanity.add_noise(pool, level, torch.Generator().manual_seed(0)) for level in fid_sanity.NOISE_LEVELS]
    scores = _scores_of(features, reference, [pool] + noisy)
    assert _increasing([f for f, _ in scores]), scores
    assert _increasing([k for _, k in scores]), scores


def test_fid_and_kid_grow_with_dropped_classes(sample, features):
    """One class of ten is a small change at n = 64: the mean over 8 draws of reference and set."""
    images, labels = sample
    all_features, _ = fid_sanity.embed(features, images)
    reference_pool, pool, pool_labels = all_features[:128], all_features[128:], labels[128:]
    n, draws = 64, 8
    means = []
    for count in (0, *fid_sanity.DROPPED):
        dropped = fid_sanity.dropped_classes(count)
        scores = []
        for draw in range(draws):
            generator = torch.Generator().manual_seed(draw)
            reference = reference_pool[torch.randperm(128, generator=generator)[:n]]
            base = torch.randperm(128, generator=generator)[:n]
            damaged = pool[fid_sanity.without_classes(pool_labels, base, dropped, generator)]
            scores.append(_fid_and_kid(reference, damaged))
        means.append([sum(values) / draws for values in zip(*scores, strict=True)])
    assert _increasing([f for f, _ in means]), means
    assert _increasing([k for _, k in means]), means


def test_without_classes_keeps_the_count_and_the_kept_images():
    labels = torch.arange(100) % 10
    base = torch.arange(40)
    dropped = fid_sanity.dropped_classes(3)
    chosen = fid_sanity.without_classes(labels, base, dropped, torch.Generator().manual_seed(0))
    assert len(chosen) == 40 and len(set(chosen.tolist())) == 40
    assert not torch.isin(labels[chosen], torch.tensor(dropped)).any()
    kept = [i for i in base.tolist() if labels[i].item() not in dropped]
    assert set(kept) <= set(chosen.tolist())
