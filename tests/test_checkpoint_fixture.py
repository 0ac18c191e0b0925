"""A checkpoint written by an earlier version of the toolkit (tests/data/classifier_before_the_move.ckpt:
a 1-epoch MLP with Sgmod on digits, written at ad05ffd+, before the package was grouped into
folders) still loads with Classifier.load_from_checkpoint and computes what it computed then."""

import pytest
import torch

from helpers.runs import ROOT
from sgmod_study import Classifier

FIXTURE = ROOT / "tests" / "data" / "classifier_before_the_move.ckpt"
# its logits on a fixed input, computed by the code that wrote it
LOGITS = [-0.09913, -0.02879, 0.51586, -0.17879, 0.21325, 0.20254, 0.09006, -0.11854, 0.44871, 0.20792]


def test_a_checkpoint_written_before_the_move_loads_and_computes_the_same():
    model = Classifier.load_from_checkpoint(FIXTURE, map_location="cpu").eval()
    assert type(model.model).__name__ == "MLP" and model.hparams["data.name"] == "digits"
    assert model.state_dict()["model.net.layer1.act.gamma"][:3].tolist() == pytest.approx(
        [0.9927, 1.0176, 1.0176], abs=1e-4
    )
    with torch.no_grad():
        logits = model(torch.linspace(-1, 1, 64).view(1, 1, 8, 8))
    assert logits[0].tolist() == pytest.approx(LOGITS, abs=1e-5)
