"""The activation op alone: forward+backward time and saved memory of Sgmod vs its floor.

Variants, on the same tensors: ``torch.sigmoid`` (the floor for a sigmoid-based op),
``nn.SiLU``, ``affine`` (``gamma * x + beta``: no sigmoid, but Sgmod's three gradients, two of
them per-channel sums; what any op with per-channel parameters costs in eager autograd), the
naive eager expression ``gamma * torch.sigmoid(x) + beta``, the plain
expression Sgmod runs below its size threshold (``sgmod_reference``), the compiled kernels
alone (``sgmod_fused``) and ``sgmod`` itself, which picks one of the two by size.

Sizes: ``full`` is one big conv activation; ``models`` is every activation size of the default
CNN, MLP and ResNet (batch 256, 28x28 images) side by side; ``ci`` is tiny. Times are the
fastest of several rounds that take the variants in turn: a shared machine's noise only adds
time. Memory is the bytes autograd saves for backward (every device) and, on CUDA, the peak
allocated during forward+backward. Achieved bandwidth counts the five input-sized transfers of
forward+backward (read x, write y; read x or y, read the gradient, write dx) against the
device's limit: on CUDA its rated peak, on a CPU a measured large copy.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

import torch
from torch import nn

from benchmarks import default_device, machine, synchronize
from sgmod_study.nn import sgmod_op
from sgmod_study.nn.sgmod_op import FUSED_MIN_ELEMENTS, channelwise, kernels, sgmod, sgmod_fused, sgmod_reference

# (label, shape): where the shape occurs
SIZES: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "ci": [("conv, small", (8, 16, 8, 8)), ("conv, fused", (4, 16, 64, 64)), ("linear", (64, 32))],
    "full": [("conv", (256, 64, 28, 28))],
    "models": [
        ("cnn/resnet stage 1", (256, 32, 28, 28)),
        ("cnn/resnet stage 2", (256, 64, 14, 14)),
        ("resnet stage 3", (256, 128, 7, 7)),
        ("mlp hidden", (256, 256)),
        ("cnn hidden", (256, 128)),
    ],
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
VARIANTS: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": lambda x, gamma, beta: torch.sigmoid(x),
    "silu": lambda x, gamma, beta: nn.functional.silu(x),
    "affine": lambda x, gamma, beta: (channelwise(gamma, x) * x).add_(channelwise(beta, x)),
    "naive": lambda x, gamma, beta: channelwise(gamma, x) * torch.sigmoid(x) + channelwise(beta, x),
    "plain": sgmod_reference,
    "fused": sgmod_fused,
    "sgmod": sgmod,
}
TAKES_PARAMETERS = ("affine", "naive", "plain", "fused", "sgmod")
TRANSFERS = 5  # input-sized reads and writes of forward + backward (module docstring)
# rated peak memory bandwidth, GB/s, where torch does not report it
RATED_GBPS = {"H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H200": 4800, "A100-SXM4-80GB": 2039, "A100-SXM4-40GB": 1555}


def run(size: str = "full", device: str | None = None, rounds: int | None = None) -> dict:
    device = device or default_device()
    keep_big_blocks_in_the_heap()
    rounds = rounds or (3 if size == "ci" else 9)
    limit = bandwidth_limit_gbps(device, small=size == "ci")
    results = []
    for label, shape in SIZES[size]:
        for dtype_name, dtype in DTYPES.items():
            inputs = _inputs(shape, dtype, device)
            times = _fastest_times(inputs, device, rounds, repeats=_repeats(shape, size))
            moved = TRANSFERS * inputs[0].numel() * inputs[0].element_size()
            for name in VARIANTS:
                gbps = moved / times[name] / 1e9
                results.append(
                    {
                        "layer": label,
                        "shape": list(shape),
                        "variant": name,
                        "dtype": dtype_name,
                        "fwd_bwd_ms": times[name] * 1e3,
                        "gbps": gbps,
                        "fraction_of_limit": gbps / limit["gbps"],
                        "saved_bytes": saved_bytes(name, inputs),
                        "peak_bytes": _peak_bytes(name, inputs, device),
                    }
                )
    return {
        "benchmark": "op",
        "size": size,
        "device": device,
        "machine": machine(),
        "bandwidth_limit": limit,
        "fused_min_elements": FUSED_MIN_ELEMENTS.get(torch.device(device).type),
        "fused_kernels": kernels().failed or "compiled",
        "results": results,
        "ratios": _ratios(results),
    }


def keep_big_blocks_in_the_heap() -> None:
    """glibc serves blocks above its mmap threshold (adaptive, 128 KiB to 32 MiB) with fresh pages
    and unmaps them on free, so a tensor may pay its page faults on every call, or not, depending
    on what ran before: the same kernels measured 1.2x and 1.9x of sigmoid in one run. Keeping
    blocks up to 32 MiB (glibc's maximum) in the heap makes the figures the op's, not the allocator's."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 1 << 30)


def _repeats(shape, size: str) -> int:
    """Calls per timed stretch: about 6e7 elements' worth. On a linear activation (32k-65k
    elements, 40-50 us a call) 200 calls made the ratio against the eager expression swing
    between 0.93 and 1.22 from run to run on 2 CPU cores; with 1000-2000, between 0.90 and 1.08."""
    if size == "ci":
        return 2
    return max(3, min(2000, int(6e7 / torch.Size(shape).numel())))


def bandwidth_limit_gbps(device: str, small: bool = False) -> dict:
    """The device's memory-bandwidth limit: the rated peak on CUDA, a measured copy on a CPU."""
    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name(device)
        props = torch.cuda.get_device_properties(device)
        clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
        if clock_khz and bus_bits:  # double data rate: two transfers per clock
            return {"gbps": 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9, "source": f"{name}: memory clock x bus width"}
        rated = next((v for k, v in RATED_GBPS.items() if k in name), None)
        if rated:
            return {"gbps": float(rated), "source": f"{name}: rated peak"}
    elements = (1 << 22) if small else (1 << 26)  # 256 MiB of float32: far beyond the caches
    a, b = torch.randn(elements, device=device), torch.zeros(elements, device=device)  # pages touched
    b.copy_(a)
    best = float("inf")
    for _ in range(3 if small else 7):
        synchronize(device)
        started = time.perf_counter()
        b.copy_(a)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return {"gbps": 2 * a.numel() * a.element_size() / best / 1e9, "source": "measured: one large tensor copy"}


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


def _fastest_times(inputs, device: str, rounds: int, repeats: int) -> dict[str, float]:
    for name in VARIANTS:  # warm-up: compilation (sgmod compiles a shape after some calls), allocator, caches
        for _ in range(sgmod_op.COMPILE_AFTER_CALLS + 3):
            _step(name, inputs)
    best = dict.fromkeys(VARIANTS, float("inf"))
    for _ in range(rounds):
        for name in VARIANTS:
            synchronize(device)
            started = time.perf_counter()
            for _ in range(repeats):
                _step(name, inputs)
            synchronize(device)
            best[name] = min(best[name], (time.perf_counter() - started) / repeats)
    return best


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
    """Per shape and dtype: sgmod against sigmoid (time, saved memory), the plain expression and
    the naive one; ``shape`` keys read like ``256x64x28x28``."""
    ratios = {}
    for shape in dict.fromkeys(tuple(r["shape"]) for r in results):
        key = "x".join(map(str, shape))
        for dtype in DTYPES:
            row = {r["variant"]: r for r in results if tuple(r["shape"]) == shape and r["dtype"] == dtype}
            time_of = {name: r["fwd_bwd_ms"] for name, r in row.items()}
            ratios[f"{key}_{dtype}_sgmod_vs_sigmoid_time"] = time_of["sgmod"] / time_of["sigmoid"]
            ratios[f"{key}_{dtype}_sgmod_vs_plain_time"] = time_of["sgmod"] / time_of["plain"]
            ratios[f"{key}_{dtype}_sgmod_vs_naive_time"] = time_of["sgmod"] / time_of["naive"]
            ratios[f"{key}_{dtype}_sgmod_vs_sigmoid_saved"] = (
                row["sgmod"]["saved_bytes"] / row["sigmoid"]["saved_bytes"]
            )
    return ratios


def format_table(result: dict) -> str:
    limit = result["bandwidth_limit"]
    lines = [
        f"activation op, fwd+bwd, on {result['device']} (fused kernels: {result['fused_kernels']}; "
        f"sgmod fuses from {result['fused_min_elements']} elements; bandwidth limit {limit['gbps']:.0f} GB/s, "
        f"{limit['source']})",
        f"{'layer':<20}{'shape':<18}{'dtype':<10}"
        + "".join(f"{name:>9}" for name in VARIANTS)
        + f"{'ms':>10}{'vs sigm':>9}{'vs plain':>9}{'% bw':>6}",
    ]
    keyed = {(r["layer"], r["dtype"], r["variant"]): r for r in result["results"]}
    for layer, shape in dict.fromkeys((r["layer"], tuple(r["shape"])) for r in result["results"]):
        for dtype in DTYPES:
            row = {name: keyed[layer, dtype, name] for name in VARIANTS}
            floor = row["sigmoid"]["fwd_bwd_ms"]
            times = "".join(f"{row[name]['fwd_bwd_ms'] / floor:>8.2f}x" for name in VARIANTS)
            sgmod_row = row["sgmod"]
            lines.append(
                f"{layer:<20}{'x'.join(map(str, shape)):<18}{dtype:<10}{times}{sgmod_row['fwd_bwd_ms']:>10.3f}"
                f"{sgmod_row['fwd_bwd_ms'] / floor:>8.2f}x{sgmod_row['fwd_bwd_ms'] / row['plain']['fwd_bwd_ms']:>8.2f}x"
                f"{100 * sgmod_row['fraction_of_limit']:>5.0f}%"
            )
    lines.append("(variant columns: time relative to torch.sigmoid; ms, vs sigm, vs plain, % bw: of sgmod)")
    return "\n".join(lines)
