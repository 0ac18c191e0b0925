"""The depth study's report sections (trainability, gradients, gamma_by_layer) from synthetic records
with known values: no training."""

from __future__ import annotations

import pytest

from helpers.records import write_parts
from helpers.runs import CONF
from sgmod_study.study import stats
from sgmod_study.study.report import figures, gamma_by_layer, gradients, trainability
from sgmod_study.study.spec import load_study

DEPTH = load_study("depth", CONF / "study")
STEPS_PER_EPOCH = 215
DIVERGED = {"state": "FAIL", "fail_reason": "training diverged: the loss is nan", "status": "diverged", "values": None}


def depth_row(activation, depth, seed, *, train=(0.3, 0.6, 0.9), test=0.9, slopes=None, gamma=None, beta=None):
    """A finished run: training accuracy ``train`` by epoch; ``slopes`` {step: b}: the gradient norm of
    hidden layer K is 10 ** (b K) at that step (the output layer's 1000 whatever the step); ``gamma`` and
    ``beta``: each hidden layer's final values by channel (learnable), or none (not an Sgmod)."""
    curves = {"train/acc": [[STEPS_PER_EPOCH * e - 1, acc] for e, acc in enumerate(train, 1)]}
    for step, b in (slopes or {}).items():
        for k in range(1, depth + 1):
            curves.setdefault(f"grad_norm/net.layer{k}.fc", []).append([step, 10 ** (b * k)])
        curves.setdefault("grad_norm/net.out", []).append([step, 1000.0])
    row = {
        "number": seed,
        "state": "COMPLETE",
        "status": "complete",
        "values": [test],
        "params": {"activation": activation, "model.depth": depth, "seed": seed},
        "metrics": {"test/acc": test, "val/acc_best": test},
        "curves": curves,
        "config": {"trainer.max_epochs": len(train), "activation": {"gamma_init": 4.0, "beta_init": -2.0}},
        "sgmod": None,
    }
    if gamma is not None:
        layers = {
            f"net.layer{k}.act": {"gamma": g, "beta": b, "learn_gamma": True, "learn_beta": True}
            for k, (g, b) in enumerate(zip(gamma, beta, strict=True), 1)
        }
        row["sgmod"] = {"layers": layers}
    return row


def _page(tmp_path):
    return figures.Page(tmp_path / "depth_figures", {})


def _render(module, record, tmp_path) -> tuple[object, str]:
    data = module.compute(DEPTH, record)
    return data, "\n".join(module.render(data, _page(tmp_path)))


# --- trainability -------------------------------------------------------------------------------


def test_trainability_counts_trainable_runs_epochs_to_the_threshold_and_the_test_accuracy(tmp_path):
    rows = [
        depth_row("relu", 4, 0, train=(0.6, 0.8, 0.85), test=0.90),  # 0.85 first reached at epoch 3
        depth_row("relu", 4, 1, train=(0.7, 0.9, 0.95), test=0.92),  # at epoch 2
        depth_row("relu", 4, 2, train=(0.6, 0.9, 0.2)) | DIVERGED,  # diverged: not trainable, counted as never
        depth_row("sigmoid", 4, 0, train=(0.1, 0.1, 0.1), test=0.1),  # at chance: not trainable
        depth_row("sigmoid", 4, 1, train=(0.4, 0.7, 0.8), test=0.8),  # trainable, never at 0.85
    ]
    record = write_parts(tmp_path / "depth", {"none_kaiming": rows})
    data, text = _render(trainability, record, tmp_path)

    assert trainability.first_epoch_at(rows[0], 0.85) == 3 and trainability.first_epoch_at(rows[4], 0.85) is None
    assert [trainability.is_trainable(r) for r in rows] == [True, True, False, False, True]
    relu = data.parts[1].cells["relu"][4]
    assert (relu.runs, relu.trainable, relu.reached, relu.budget) == (3, 2, [3, 2, None], 3)
    assert relu.median_epochs() == 3  # ranked 2, 3, never: the median is a run that reached it
    assert data.parts[1].cells["sigmoid"][4].median_epochs() is None  # half never reached it
    half = (stats.mean_ci([0.90, 0.92])[3] - stats.mean_ci([0.90, 0.92])[2]) / 2
    assert f"| relu | 2/3 · 3 · 0.910 ± {half:.3f} (2) |" in text
    assert "| sigmoid | 1/2 · >3 · 0.450 ± " in text
    assert "trains for 3 epochs of 215 optimizer steps each" in text and "is above 50%" in text
    assert "a training accuracy of 85% or more" in text
    assert "### none_default: no norm, PyTorch's default initialisation\n\nNot run yet." in text
    assert "So far 5 of 192 runs." in text
    assert trainability.cell_text(relu).startswith("2/3 · 3 ·")
    assert _page(tmp_path).path("trainability").stat().st_size > 0


@pytest.mark.parametrize(
    "reached, median",
    [([2, None], None), ([3, 1, None], 3), ([1, 2, 3, None], 2.5), ([2, 3, None, None], None), ([], None)],
)
def test_the_median_epochs_ranks_runs_that_never_reached_the_threshold_last(reached, median):
    found = trainability.Cell(len(reached), 0, reached, 10, []).median_epochs()
    assert found == median


def test_a_record_without_runs_says_every_section_waits_and_draws_nothing(tmp_path):
    record = write_parts(tmp_path / "depth", {})
    for module in (trainability, gradients, gamma_by_layer):
        text = "\n".join(module.render(module.compute(DEPTH, record), _page(tmp_path)))
        assert "Not run yet (no finished run" in text and "none_default, none_kaiming" in text
    assert not (tmp_path / "depth_figures").exists()


# --- gradients ----------------------------------------------------------------------------------


def test_the_slope_of_log_norms_over_the_layers_is_exact_and_excludes_the_output_layer():
    assert gradients.slope({k: 10 ** (0.5 * k) for k in range(1, 9)}) == pytest.approx(0.5, abs=1e-12)
    row = depth_row("tanh", 4, 0, slopes={0: -0.25, 50: 0.5})
    row["curves"]["grad_norm/net.layer2.other"] = [[0, 1e6]]  # not a Linear's weights
    assert set(gradients.layer_norms(row, 0)) == {1, 2, 3, 4}  # net.out is not a hidden layer
    assert gradients.slope(gradients.complete_norms(row, 0)) == pytest.approx(-0.25, abs=1e-12)
    assert gradients.complete_norms(row, 500) is None  # a step the curves lack


def test_the_first_layer_which_reads_the_image_is_left_out_of_the_slope():
    norms = {k: 10 ** (0.5 * k) for k in range(1, 5)}
    assert gradients.slope({**norms, 1: 1e-9}) == pytest.approx(0.5, abs=1e-12)  # layer 1 alone off the line
    assert gradients.slope({**norms, 2: 1e-9}) != pytest.approx(0.5, abs=1e-3)


def test_gradients_give_the_median_slope_per_step_skipping_missing_steps_and_broken_norms(tmp_path):
    broken = depth_row("sigmoid", 4, 2, slopes={0: 0.3, 50: 0.1})
    broken["curves"]["grad_norm/net.layer2.fc"][0][1] = 0.0  # step 0: a zero norm leaves the run out there
    rows = [
        depth_row("sigmoid", 4, 0, slopes={0: 0.5, 50: 0.2}),
        depth_row("sigmoid", 4, 1, slopes={0: 0.7, 50: 0.4}),
        broken,
        depth_row("sigmoid", 8, 0, slopes={0: 0.25, 50: 0.125}),
        depth_row("relu", 8, 0, slopes={0: 0.0, 50: 0.0, 500: -0.5}),  # the only run that reached step 500
    ]
    record = write_parts(tmp_path / "depth", {"none_kaiming": rows})
    data, text = _render(gradients, record, tmp_path)

    cell = data.parts[1].cells["sigmoid"][4]
    assert cell.slopes[0] == pytest.approx([0.5, 0.7]) and cell.slopes[50] == pytest.approx([0.2, 0.4, 0.1])
    assert cell.median(0) == pytest.approx(0.6) and cell.median(50) == pytest.approx(0.2) and cell.median(500) is None
    assert data.parts[1].steps == [0, 50, 500]
    # median at depth 8 times layers 2..8: 0.25 x 6 = 1.5 decades
    assert "| sigmoid | 0 | +0.600 (2) | +0.250 | +1.50 |" in text
    assert "| sigmoid | 50 | +0.200 | +0.125 | +0.750 |" in text
    assert "| sigmoid | 500 | - | - | - |" in text and "| relu | 500 | - | -0.500 | -3.00 |" in text
    assert "b > 0 means the gradient shrinks toward the input" in text
    # the figure: at depth 8, the first and the last step any run logged (0 and 500), where each has them
    drawn = [(p.activation, p.step) for p in data.parts[1].profiles]
    assert drawn == [("relu", 0), ("relu", 500), ("sigmoid", 0)]
    profile = data.parts[1].profiles[2]
    assert profile.layers == list(range(1, 9))
    assert profile.norms == pytest.approx([10 ** (0.25 * k) for k in range(1, 9)])
    assert _page(tmp_path).path("gradients").stat().st_size > 0


# --- gamma by layer -----------------------------------------------------------------------------


def test_gamma_by_layer_compares_the_lower_half_with_the_upper_half_over_seeds(tmp_path):
    rows = [
        # gamma by layer (channel means): 3, 3, 1, 1 -> lower - upper +2; beta -1, -1, -3, -3 -> +2
        depth_row("sgmod_2tanh", 4, 0, gamma=[[2, 4], [3, 3], [1, 1], [0, 2]], beta=[[-1, -1]] * 2 + [[-3, -3]] * 2),
        # gamma 1, 1, 2, 2 -> -1; beta all -2 -> 0 (not above)
        depth_row("sgmod_2tanh", 4, 1, gamma=[[1, 1]] * 2 + [[2, 2]] * 2, beta=[[-2, -2]] * 4),
        depth_row("relu", 4, 0),  # no Sgmod: not in the table
    ]
    fixed = depth_row("sgmod_2tanh_fixed", 4, 0, gamma=[[4, 4]] * 4, beta=[[-2, -2]] * 4)
    for layer in fixed["sgmod"]["layers"].values():
        layer["learn_gamma"] = layer["learn_beta"] = False
    record = write_parts(tmp_path / "depth", {"layer_kaiming": [*rows, fixed]})
    data, text = _render(gamma_by_layer, record, tmp_path)

    assert list(data.parts[3].cells) == ["sgmod_2tanh"]
    cell = data.parts[3].cells["sgmod_2tanh"][4]
    assert [r.lower_minus_upper("gamma") for r in cell.runs] == pytest.approx([2.0, -1.0])
    assert cell.median_difference("gamma") == pytest.approx(0.5) and cell.lower_above("gamma") == 1
    assert cell.median_difference("beta") == pytest.approx(1.0) and cell.lower_above("beta") == 1
    assert "| sgmod_2tanh | 4 | 2 | 4.000 | 2.000 | 2.000 | 1.500 | +0.500 | 1/2 | -2.000 | +1.000 | 1/2 |" in text
    assert "### none_kaiming: no norm, Kaiming initialisation at each activation's gain" in text
    assert _page(tmp_path).path("gamma_by_layer").stat().st_size > 0


def test_an_odd_depth_leaves_its_middle_layer_out_of_both_halves():
    run = gamma_by_layer.Run({"gamma": {1: 5.0, 2: 100.0, 3: 1.0}, "beta": {1: 0.0, 2: 0.0, 3: 0.0}})
    assert run.lower_minus_upper("gamma") == 4.0 and run.lower_minus_upper("beta") == 0.0
