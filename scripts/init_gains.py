"""What each activation's initialisation gain does at depth: the numbers behind sgmod_study/nn/init.py.

    python scripts/init_gains.py            # seconds on one CPU core; prints a markdown table

The depth study's MLP (width 256, no norm, depth 32) built as the project builds it (``model.init``
with each activation's gain, ``sgmod_study.nn.init``), at initialisation, on one batch of 256 inputs
drawn from N(0, 1) (like standardized pixels) with random labels. Per activation and gain: the
pre-activations' std at layer 1 and averaged over the hidden layers 2..32; the share of units whose
slope is under 4% of the activation's slope at 0 (sigmoid's under 0.01: saturated; "-" for an
unbounded one, ReLU, whose flat side is not saturation); and log10 of layer 32's weight gradient
norm over layer 2's (the decades the gradient loses on its way down; the depth report's slope
leaves layer 1 out too). Rows
marked "table" use PyTorch's ``calculate_gain`` value instead of the project's. Seeded: a rerun
prints the same table.
"""

from __future__ import annotations

import math

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sgmod_study.nn.init import activation_gain, init_layer
from sgmod_study.nn.models import build_model
from sgmod_study.paths import CONF_DIR

ACTIVATIONS = ("relu", "tanh", "sigmoid", "sgmod_own_lr", "sgmod_2tanh")
TABLE_GAINS = {"sigmoid": 1.0, "sgmod_own_lr": 1.0}  # PyTorch's calculate_gain("sigmoid")
DEPTH, WIDTH, BATCH, SEED = 32, 256, 256, 0
SATURATED = 0.04  # a slope under 4% of the slope at 0
HEADER = (
    "| activation | gain | pre-activation std, layer 1 | hidden layers | saturated units "
    "| decades lost, layer 32 to 2 |\n|---|---|---|---|---|---|"
)
HEADER = (
    "| activation | gain | pre-activation std, layer 1 | hidden layers | saturated units "
    "| decades lost, layer 32 to 2 |\n|---|---|---|---|---|---|"
)


def configs() -> dict[str, dict]:
    with initialize_config_dir(config_dir=str(CONF_DIR.resolve()), version_base="1.3"):
        return {
            name: OmegaConf.to_container(
                compose("train", overrides=[f"activation={name}", "model=mlp", "norm=none"]).activation, resolve=True
            )
            for name in ACTIVATIONS
        }


def measure(act_cfg: dict, gain: float, depth: int = DEPTH) -> dict[str, float]:
    """The table's four numbers for one activation config and gain (at ``depth``)."""
    torch.manual_seed(SEED)
    model_cfg = {"name": "mlp", "depth": depth, "width": WIDTH, "init": "kaiming"}
    model = build_model(model_cfg, act_cfg, {"name": "none"}, 1, 28, 10)
    for k in range(1, depth + 1):
        init_layer(model.net.get_submodule(f"layer{k}.fc"), "kaiming", gain)
    pre = {}
    for k in range(1, depth + 1):
        layer = model.net.get_submodule(f"layer{k}.fc")
        layer.register_forward_hook(lambda _m, _i, out, k=k: pre.__setitem__(k, out))
    x, y = torch.randn(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    act = model.net.get_submodule("layer1.act")
    return {
        "std1": pre[1].std().item(),
        "std": sum(pre[k].std().item() for k in range(2, depth + 1)) / (depth - 1),
        "saturated": saturated(act, [pre[k] for k in range(2, depth + 1)]),
        "decades": math.log10(grad_norm(model, depth) / grad_norm(model, 2)),
    }


def saturated(act: torch.nn.Module, pres: list[torch.Tensor]) -> float | None:
    """The share of units whose slope is under SATURATED of the slope at 0; None for a ReLU-like one."""
    if act(torch.full_like(pres[0], 1e4)).abs().max() > 1e3:
        return None  # unbounded (ReLU): its flat side is not saturation
    shares = []
    for pre in pres:
        slope, at_zero = _slope(act, pre), _slope(act, torch.zeros_like(pre))
        shares.append((slope.abs() < SATURATED * at_zero.abs()).float().mean().item())
    return sum(shares) / len(shares)


def _slope(act: torch.nn.Module, at: torch.Tensor) -> torch.Tensor:
    at = at.detach().requires_grad_()
    return torch.autograd.grad(act(at).sum(), at)[0]


def grad_norm(model: torch.nn.Module, k: int) -> float:
    weight = model.net.get_submodule(f"layer{k}.fc").weight
    return torch.linalg.vector_norm(weight.grad, dtype=torch.float64).item()


def main() -> None:
    print(f"MLP depth {DEPTH}, width {WIDTH}, no norm, model.init=kaiming; one batch of {BATCH} N(0, 1) inputs\n")
    print(HEADER)
    for name, act_cfg in configs().items():
        gains = [("", activation_gain(act_cfg))]
        if name in TABLE_GAINS:
            gains.append((" (table)", TABLE_GAINS[name]))
        for label, gain in gains:
            m = measure(act_cfg, gain)
            share = "-" if m["saturated"] is None else f"{m['saturated']:.0%}"
            print(f"| {name} | {gain:.3g}{label} | {m['std1']:.2f} | {m['std']:.2f} | {share} | {m['decades']:.1f} |")


if __name__ == "__main__":
    main()
