"""The Sgmod op, ``y = gamma * sigmoid(x) + beta``, fused: one pass forward, one tensor saved.

``sgmod(x, gamma, beta)`` picks the faster of two implementations by the input's size (and
compiles a shape only once it has run ``COMPILE_AFTER_CALLS`` times):

- from ``FUSED_MIN_ELEMENTS`` elements on (on the CPU: conv activations of the default models;
  on CUDA: only activations far larger than theirs, where bandwidth and not launches bound it): a custom
  autograd function whose forward and backward are compiled by ``torch.compile`` (Triton on
  CUDA, C++/OpenMP on the CPU). It saves only the input ``x`` (plus the tiny gamma/beta) and
  recomputes ``sigmoid(x)`` in the backward pass, like timm's memory-efficient activations: the
  forward is one read and one write, and the backward computes the input gradient and the
  per-channel gamma/beta sums from one read of ``x`` and the incoming gradient. Each input shape
  gets a kernel of its own (``dynamic=False``): kernels for symbolic shapes ran up to 2x slower
  on the CPU.
- below it (linear layers, small batches): the plain expression ``sgmod_reference``. A compiled
  call has a fixed cost (Dynamo's guards, the wrapper; 30-50 us on a CPU) that small tensors do
  not repay. It also saves one input-sized tensor, sigmoid(x).

Where compilation is unavailable (no C++ compiler, no Triton, an unsupported device) the same
Python functions run eagerly, with a warning. Double backward (WGAN-GP's gradient penalty)
takes the differentiable eager formula: when autograd records the backward pass
(``create_graph=True``) the compiled kernel is bypassed. The arithmetic runs in at least float32
(bfloat16 inputs are upcast inside the kernel) and the output keeps the input's dtype.
Measured figures: docs/benchmarks.md.
"""

from __future__ import annotations

import warnings

import torch

# From this many input elements on, per device type, the compiled kernels are faster than the
# plain expression (the crossover: `python scripts/benchmark.py op --size models` on the CPU,
# `scripts/gpu_check.py` on CUDA). On an H200 (docs/gpu_check/h200) the compiled call cost about
# 0.3 ms more per forward+backward than the plain expression at every size measured, 65k to 12.8M
# elements (the default models' activations are all launch-bound there), while halving the bytes
# saves about 2.5 ps an element: break-even near 1e8 elements, an estimate, not a measurement.
FUSED_MIN_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 27}
# A shape is compiled on its next call once it has run this many times: the first compiled call
# of a process costs seconds even with the compiler's cache warm (3-6 s on 2 CPU cores), each new
# shape 0.3 s more, which a short run (a quick check, a pruned trial) or a shape seen once per
# epoch (the last partial batch) does not win back.
COMPILE_AFTER_CALLS = 20
_calls: dict[tuple, int] = {}


def sgmod(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``gamma * sigmoid(x) + beta``, fused where that is faster; gamma and beta have 1 or
    ``x.shape[1]`` (channel) values."""
    check_shapes(x, gamma, beta)
    if x.numel() < FUSED_MIN_ELEMENTS.get(x.device.type, 0) or not _hot(x):
        return _plain(x, gamma, beta)
    return _SgmodFunction.apply(x, gamma, beta)


def _hot(x: torch.Tensor) -> bool:
    """Whether x's shape has run ``COMPILE_AFTER_CALLS`` times (inside a compiled model: always)."""
    if torch.compiler.is_compiling():
        return True
    key = (x.shape, x.dtype, x.device, x.requires_grad)
    seen = _calls.get(key, 0)
    if seen >= COMPILE_AFTER_CALLS:
        return True
    _calls[key] = seen + 1
    return False


def sgmod_fused(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The compiled kernels at any size (``sgmod`` uses them from ``FUSED_MIN_ELEMENTS`` on)."""
    check_shapes(x, gamma, beta)
    return _SgmodFunction.apply(x, gamma, beta)


def sgmod_reference(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The plain eager expression: the reference the fused op is tested and benchmarked against."""
    check_shapes(x, gamma, beta)
    return _plain(x, gamma, beta)


def _plain(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    # A product, then beta added in place: one torch.addcmul took 1.14-1.40x its forward+backward
    # time on the linear activations (2 CPU cores; about equal on an H200), and the in-place add
    # allocates one input-sized tensor fewer than `gamma * s + beta`.
    y = (channelwise(gamma, x) * torch.sigmoid(x)).add_(channelwise(beta, x))
    return y.to(x.dtype)  # bfloat16 x, float32 gamma/beta: the output keeps x's dtype, as the fused op's


def check_shapes(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> None:
    """Raise one ``ValueError`` line for an input that gamma/beta do not fit, before the compiled
    kernel sees it: the compiler's own error is pages of log, and a 1-D input would broadcast to a
    wrong shape without one. The usual case costs a few integer comparisons (about 1 us)."""
    n = gamma.numel()
    if n == beta.numel() and ((n == 1 and x.dim() >= 1) or (x.dim() >= 2 and x.size(1) == n)):
        return
    _check_shapes_in_full(x, gamma, beta)


def _check_shapes_in_full(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> None:
    channels = max(gamma.numel(), beta.numel())
    if gamma.numel() not in (1, channels) or beta.numel() not in (1, channels):
        raise ValueError(
            f"Sgmod's gamma has {gamma.numel()} values and beta {beta.numel()}: each must have 1 or the channel count"
        )
    if channels == 1:
        if x.dim() < 1:
            raise ValueError("Sgmod expects an input with at least 1 dimension; got a 0-d tensor")
    elif x.dim() < 2 or x.shape[1] != channels:
        raise ValueError(
            f"Sgmod with {channels} channels expects an input of shape (N, {channels}, ...) (channels on dim 1); "
            f"got shape {tuple(x.shape)}"
        )


def channelwise(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``p`` (1 or C values) shaped to broadcast over dim 1 of ``x``. A 1-D ``p`` already does on a
    2-D ``x``: a view would add an autograd node, about 8 us of a linear activation's 35 us forward."""
    return p if p.numel() == 1 or (x.dim() == 2 and p.dim() == 1) else p.view(1, -1, *([1] * (x.dim() - 2)))


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    dtype = _compute_dtype(x)
    s = torch.sigmoid(x.to(dtype))
    return torch.addcmul(channelwise(beta, x).to(dtype), channelwise(gamma, x).to(dtype), s).to(x.dtype)


def _backward(grad, x, gamma, beta, needs: tuple[bool, bool, bool]):
    """Gradients of (x, gamma, beta), differentiable (the double-backward path) and layout-agnostic."""
    dtype = _compute_dtype(x)
    s = torch.sigmoid(x.to(dtype))
    g = grad.to(dtype)
    dx = (g * channelwise(gamma, x).to(dtype) * s * (1 - s)).to(x.dtype) if needs[0] else None
    dgamma = _sum_to(g * s, gamma) if needs[1] else None
    dbeta = _sum_to(g, beta) if needs[2] else None
    return dx, dgamma, dbeta


def _sum_to(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return t.sum_to_size(channelwise(p, t).shape).reshape(p.shape).to(p.dtype)


def _backward_rows(grad, x, gamma, beta, needs: tuple[bool, bool, bool]):
    """``_backward`` for a contiguous ``x``, seen as (batch * channels) rows: the input gradient
    and both per-row sums come out of one loop over the rows (the compiler fuses a row
    reduction with the element-wise work on the same row; with the channel sum over dims 0, 2,
    3 it writes sigmoid(x) out and reads it back in a second loop). The per-row sums are then
    added up per channel, a tensor of batch * channels values."""
    dtype = _compute_dtype(x)
    n, c = x.shape[0], x.shape[1] if x.dim() > 1 else 1
    rows = (n * c, -1)
    s = torch.sigmoid(x.reshape(rows).to(dtype))
    g = grad.reshape(rows).to(dtype)
    dx = None
    if needs[0]:
        gamma_rows = gamma.to(dtype).expand(c).view(1, c).expand(n, c).reshape(n * c, 1)
        dx = (g * s * (1 - s) * gamma_rows).to(x.dtype).reshape(x.shape)
    dgamma = _rows_to(g * s, gamma, n, c) if needs[1] else None
    dbeta = _rows_to(g, beta, n, c) if needs[2] else None
    return dx, dgamma, dbeta


def _rows_to(t: torch.Tensor, p: torch.Tensor, n: int, c: int) -> torch.Tensor:
    per_channel = t.sum(1).reshape(n, c).sum(0)
    return (per_channel if p.numel() == c else per_channel.sum().reshape(p.shape)).to(p.dtype)


EAGER_KERNELS = {"forward": _forward, "backward": _backward, "backward_rows": _backward_rows}


class _Kernels:
    """The kernels compiled once per process, or eager after the first compiler failure."""

    def __init__(self) -> None:
        self.compiled = {name: torch.compile(f, fullgraph=True, dynamic=False) for name, f in EAGER_KERNELS.items()}
        self.failed: str | None = None
        # A process sees a few shapes, dtypes and gradient needs per kernel (a model's layers,
        # the last partial batch, evaluation); Dynamo's default of 8 compiled variants per
        # function is easily reached. Raised once, for the process (a config.patch around each
        # call would cost ~0.1 ms per call on the hot path).
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)

    def run(self, name: str, *args):
        if self.failed is not None:
            return EAGER_KERNELS[name](*args)
        try:
            return self.compiled[name](*args)
        except Exception as err:  # noqa: BLE001 - a compiler failure: fall back to the eager kernels
            result = EAGER_KERNELS[name](*args)  # bad arguments raise here, with the eager error
            self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            warnings.warn(f"fused Sgmod kernels unavailable, running eagerly ({self.failed})", stacklevel=3)
            return result


_kernels: _Kernels | None = None


def kernels() -> _Kernels:
    global _kernels
    if _kernels is None:
        _kernels = _Kernels()
    return _kernels


def _run(name: str, *args):
    if torch.compiler.is_compiling():  # inside a compiled model: traced into the model's graph
        return EAGER_KERNELS[name](*args)
    return kernels().run(name, *args)


class _SgmodFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, gamma, beta)
        return _run("forward", x, gamma, beta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, gamma, beta = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad)
        if torch.is_grad_enabled():  # create_graph=True: stay differentiable for double backward
            return _backward(grad, x, gamma, beta, needs)
        layout = "backward_rows" if x.is_contiguous() and grad.is_contiguous() else "backward"
        return _run(layout, grad, x, gamma, beta, needs)
