import itertools

import pytest
import torch
import torch.nn.functional as F

from sgmod_study.errors import ConfigError
from sgmod_study.nn.activations import ACTIVATIONS, Sgmod
from sgmod_study.nn.models import build_model
from sgmod_study.nn.norms import NORMS, PLACEMENTS
from sgmod_study.tasks.optim import build_optimizer

MODEL_CFGS = {
    "cnn": {"name": "cnn", "channels": [8, 16], "hidden": 16},
    "mlp": {"name": "mlp", "depth": 3, "width": 16},
    "resnet": {"name": "resnet", "channels": [8, 16], "blocks_per_stage": 1},
}


def _train_one_step(model_cfg, act, norm, placement, size=8, channels=1):
    torch.manual_seed(0)
    norm_cfg = {"name": norm, "placement": placement, "groups": 4}
    act_cfg = {"name": act}
    model = build_model(model_cfg, act_cfg, norm_cfg, channels, size, 10)
    opt = build_optimizer(model, {"name": "adamw", "lr": 1e-2, "weight_decay": 1e-4}, act_cfg)
    x, y = torch.randn(6, channels, size, size), torch.randint(0, 10, (6,))
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
    assert all(changed), "every parameter should move after one AdamW step"
    return model


@pytest.mark.parametrize("act, norm, placement", itertools.product(ACTIVATIONS, NORMS, PLACEMENTS))
def test_cnn_every_activation_norm_placement_trains_a_step(act, norm, placement):
    _train_one_step(MODEL_CFGS["cnn"], act, norm, placement)


@pytest.mark.parametrize("model", ["mlp", "resnet"])
@pytest.mark.parametrize("act, norm, placement", itertools.product(["sgmod", "relu"], NORMS, PLACEMENTS))
def test_mlp_and_resnet_train_a_step(model, act, norm, placement):
    _train_one_step(MODEL_CFGS[model], act, norm, placement)


def test_placement_orders_norm_and_activation():
    before = build_model(MODEL_CFGS["cnn"], {"name": "sgmod"}, {"name": "batch", "placement": "before"}, 1, 8, 10)
    after = build_model(MODEL_CFGS["cnn"], {"name": "sgmod"}, {"name": "batch", "placement": "after"}, 1, 8, 10)
    assert [n for n, _ in before.features.stage1.named_children()] == ["conv", "norm", "act", "pool"]
    assert [n for n, _ in after.features.stage1.named_children()] == ["conv", "act", "norm", "pool"]
    assert before.features.stage1.conv.bias is None  # the norm right after the conv removes any bias
    assert after.features.stage1.conv.bias is not None


def test_every_hidden_layer_gets_the_configured_activation():
    model = build_model(MODEL_CFGS["mlp"], {"name": "sgmod"}, {"name": "none", "placement": "before"}, 1, 8, 10)
    assert sum(isinstance(m, Sgmod) for m in model.modules()) == 3
    resnet = build_model(MODEL_CFGS["resnet"], {"name": "sgmod"}, {"name": "batch", "placement": "before"}, 3, 32, 10)
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, Sgmod) for m in resnet.modules()) == 5  # 2 blocks x 2 + head


def test_bad_model_settings_are_clear_errors():
    with pytest.raises(ConfigError, match=r"model.channels=\[8, 16, 32, 64\] has 4 pooling stages, too many for 8x8"):
        build_model({"name": "cnn", "channels": [8, 16, 32, 64]}, {"name": "relu"}, {"name": "none"}, 1, 8, 10)
    with pytest.raises(ConfigError, match="model='vit' is not a known choice; valid choices: cnn, mlp, resnet"):
        build_model({"name": "vit"}, {"name": "relu"}, {"name": "none"}, 1, 8, 10)
    with pytest.raises(
        ConfigError, match="norm='instance' is not a known choice; valid choices: batch, group, layer, none"
    ):
        build_model(MODEL_CFGS["cnn"], {"name": "relu"}, {"name": "instance"}, 1, 8, 10)
    with pytest.raises(
        ConfigError, match="norm.placement='middle' is not a known choice; valid choices: after, before"
    ):
        build_model(MODEL_CFGS["cnn"], {"name": "relu"}, {"name": "batch", "placement": "middle"}, 1, 8, 10)
