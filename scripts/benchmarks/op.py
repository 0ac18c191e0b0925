"""The activation op alone: forward+backward time and saved memory of Sgmod vs its floor.

Variants, on the same conv-shaped tensor: ``torch.sigmoid`` (the floor for a sigmoid-based
op), ``nn.SiLU``, the naive eager expression ``gamma * torch.sigmoid(x) + beta`` and the fused
``sgmod`` op (per-channel gamma/beta). Times are medians over rounds that take the variants in
turn, so a busy machine slows all of them alike. Memory is the bytes autograd saves for
backward (on every device) and, on CUDA, the peak allocated during forward+backward.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from benchmarks import default_device, machine, synchronize
from sgmod_study.sgmod_op import channelwise, kernels, sgmod

SIZES = {"ci": (8, 16, 8, 8), "full": (256, 64, 28, 28)}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
VARIANTS: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": lambda x, gamma, beta: torch.sigmoid(x),
    "silu": lambda x, gamma, beta: nn.functional.silu(x),
    "naive": lambda x, gamma, beta: channelwise(gamma, x) * torch.sigmoid(x) + channelwise(beta, x),
    "sgmod": sgmod,
}
TAKES_PARAMETERS = ("naive", "sgmod")


def run(size: str = "full", device: str | None = None, rounds: int | None = None, repeats: int | None = None) -> dict:
    device = device or default_device()
    shape = SIZES[size]
    rounds = rounds or (3 if size == "ci" else 7)
    repeats = repeats or (2 if size == "ci" else 10)
    results = []
    for dtype_name, dtype in DTYPES.items():
        inputs = _inputs(shape, dtype, device)
        times = _median_times(inputs, device, rounds, repeats)
        for name in VARIANTS:
            results.append(
                {
                    "variant": name,
                    "dtype": dtype_name,
                    "fwd_bwd_ms": times[name] * 1e3,
                    "saved_bytes": saved_bytes(name, inputs),
                    "peak_bytes": _peak_bytes(name, inputs, device),
                }
            )
    return {
        "benchmark": "op",
        "size": size,
        "shape": list(shape),
        "device": device,
        "machine": machine(),
        "fused_kernels": kernels().failed or "compiled",
        "results": results,
        "ratios": _ratios(results),
    }


def _inputs(shape, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(device, dtype).requires_grad_()
    channels = shape[1]
    gamma = (1 + 0.1 * torch.randn(channels, generator=generator)).to(device).requires_grad_()
    beta = (0.1 * torch.randn(channels, generator=generator)).to(device).requires_grad_()
    grad = torch.randn(shape, generator=generator).to(device, dtype)
    return x, gamma, beta, grad


def _step(name: str, inputs) -> None:
    x, gamma, beta, grad = inputs
    y = VARIANTS[name](x, gamma, beta)
    wrt = (x, gamma, beta) if name in TAKES_PARAMETERS else (x,)
    torch.autograd.grad(y, wrt, grad)  # returns the gradients: no accumulation kernel in the timing


def _median_times(inputs, device: str, rounds: int, repeats: int) -> dict[str, float]:
    for name in VARIANTS:  # warm-up: compilation, allocator, caches
        _step(name, inputs)
        _step(name, inputs)
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name in VARIANTS:
            synchronize(device)
            started = time.perf_counter()
            for _ in range(repeats):
                _step(name, inputs)
            synchronize(device)
            samples[name].append((time.perf_counter() - started) / repeats)
    return {name: statistics.median(values) for name, values in samples.items()}


def saved_bytes(name: str, inputs) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one forward,
    not counting gamma and beta (parameters, which the model holds anyway)."""
    x, gamma, beta, _ = inputs
    parameters = {gamma.untyped_storage().data_ptr(), beta.untyped_storage().data_ptr()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        VARIANTS[name](x, gamma, beta)
    return sum(storages.values())


def _peak_bytes(name: str, inputs, device: str) -> int | None:
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    _step(name, inputs)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _ratios(results: list[dict]) -> dict[str, float]:
    ratios = {}
    for dtype in DTYPES:
        row = {r["variant"]: r for r in results if r["dtype"] == dtype}
        ratios[f"sgmod_vs_sigmoid_time_{dtype}"] = row["sgmod"]["fwd_bwd_ms"] / row["sigmoid"]["fwd_bwd_ms"]
        ratios[f"sgmod_vs_naive_time_{dtype}"] = row["sgmod"]["fwd_bwd_ms"] / row["naive"]["fwd_bwd_ms"]
        ratios[f"sgmod_vs_sigmoid_saved_{dtype}"] = row["sgmod"]["saved_bytes"] / row["sigmoid"]["saved_bytes"]
    return ratios


def format_table(result: dict) -> str:
    lines = [
        f"activation op, shape {result['shape']} on {result['device']} (fused kernels: {result['fused_kernels']})",
        f"{'variant':<10}{'dtype':<10}{'fwd+bwd ms':>12}{'saved MiB':>11}{'peak MiB':>10}",
    ]
    for r in result["results"]:
        peak = "-" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**20:.1f}"
        lines.append(
            f"{r['variant']:<10}{r['dtype']:<10}{r['fwd_bwd_ms']:>12.3f}{r['saved_bytes'] / 2**20:>11.2f}{peak:>10}"
        )
    lines += [f"{name}: {value:.2f}" for name, value in result["ratios"].items()]
    return "\n".join(lines)
