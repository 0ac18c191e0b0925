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
