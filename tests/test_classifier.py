import pytest
import torch
from torch import nn

from sgmod_study.tasks.classifier import Classifier


def _classifier() -> Classifier:
    return Classifier(nn.Linear(4, 3), 3, optimizer={}, scheduler={}, activation={})


def test_a_nan_loss_shows_in_the_logged_mean_instead_of_being_dropped():
    module = _classifier()
    module.train_loss(torch.tensor(0.5), weight=4)
    module.train_loss(torch.tensor(float("nan")), weight=4)
    assert torch.isnan(module.train_loss.compute())


def test_accuracy_is_the_class_averaged_recall():
    module = _classifier()
    logits = torch.eye(3)[[0, 1, 2, 2]]  # predicts 0, 1, 2, 2
    module.val_acc(logits, torch.tensor([0, 1, 2, 1]))  # class 1: 1 of 2 right
    assert module.val_acc.compute().item() == pytest.approx((1 + 0.5 + 1) / 3)


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).eval()


def test_batch_statistics_switch_only_batchnorm_and_restore_its_running_statistics():
    from sgmod_study.nn.norms import batch_statistics

    net = _bn_net()
    net[1].running_mean.fill_(5.0)  # running statistics far from any batch's
    x = torch.randn(16, 4)
    before = [b.clone() for b in net.buffers()]
    with torch.no_grad(), batch_statistics(net):
        assert net[1].training and not net[3].training  # BatchNorm in train mode, dropout still off
        inside = net(x)
        twice = net(x)
    hidden = net[0](x)
    by_hand = (hidden - hidden.mean(0)) / torch.sqrt(hidden.var(0, unbiased=False) + net[1].eps)
    expected = net[4](torch.relu(by_hand * net[1].weight + net[1].bias))
    torch.testing.assert_close(inside, expected)
    torch.testing.assert_close(twice, inside)  # deterministic: dropout stayed off
    assert not net[1].training
    for a, b in zip(before, net.buffers(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert not torch.allclose(net(x), inside)  # eval mode: the running statistics again


def test_validation_with_batch_statistics_is_logged_beside_the_usual_one():
    module = Classifier(_bn_net(), 3, optimizer={}, scheduler={}, activation={}, val_batch_stats=True)
    from sgmod_study.nn.norms import batch_statistics

    module.model[1].running_mean.fill_(5.0)
    logged = {}
    module.log = lambda name, value, **kwargs: logged.setdefault(name, value)
    module.eval()
    x = torch.randn(64, 4)
    with torch.no_grad(), batch_statistics(module.model):
        y = module.model(x).argmax(1)  # the labels this network gets right with batch statistics
    with torch.no_grad():
        module.validation_step((x, y), 0)
    assert set(logged) == {"val/loss", "val/acc", "val_batch_stats/loss", "val_batch_stats/acc"}
    assert module.batch_stats_acc.compute().item() == 1.0
    assert module.val_acc.compute().item() < 0.9  # the shifted running mean hurts only the usual validation
    assert torch.equal(module.model[1].running_mean, torch.full((8,), 5.0))
