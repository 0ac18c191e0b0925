import re

import torch
from omegaconf import OmegaConf

import sgmod_study.nn.feature_net as feature_net
import train_feature_net
from helpers.data import load_fashion_sample
from helpers.runs import CONF
from sgmod_study.data import split_indices
from sgmod_study.nn.feature_net import WEIGHTS, WEIGHTS_SHA256, FrozenFeatures, load_feature_net, sha256_of


def test_the_feature_net_never_trains_on_validation_images():
    data = OmegaConf.load(CONF / "data" / "fashion_mnist.yaml")
    assert (train_feature_net.VAL_SIZE, train_feature_net.SPLIT_SEED) == (data.val_size, data.split_seed)
    train_idx = train_feature_net.training_indices(60_000)
    _, val_idx = split_indices(60_000, data.val_size, data.split_seed)  # the data module's validation images
    assert len(train_idx) == 55_000 and len(val_idx) == 5000
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(60_000))


def test_split_indices_are_the_data_modules_old_permutation():
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))
    train_idx, val_idx = split_indices(60_000, 5000, 0)
    assert torch.equal(val_idx, order[:5000]) and torch.equal(train_idx, order[5000:])


def test_shipped_weights_match_their_checksum_and_the_documented_accuracy():
    assert sha256_of(WEIGHTS) == WEIGHTS_SHA256
    assert 0.9 < feature_net.TEST_ACCURACY < 1
    documented = re.search(r"test accuracy (\d\.\d{4})", feature_net.__doc__)
    assert documented is not None and float(documented.group(1)) == feature_net.TEST_ACCURACY


def test_classify_gives_the_nets_logits_from_features():
    net = load_feature_net()
    features = FrozenFeatures(net)
    images, _ = load_fashion_sample()
    x = torch.from_numpy(images[:16]).float().unsqueeze(1) / 127.5 - 1
    logits = features.classify(features(x))
    assert logits.shape == (16, 10) and not logits.requires_grad
    assert torch.allclose(logits, net(feature_net.standardize(x)), atol=1e-5)
