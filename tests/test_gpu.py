"""The CUDA paths: the fused op, data on the device, bf16, channels-last and compile.

Marked ``gpu``: skipped on a machine without CUDA (conftest.py), run there by ``pytest -m gpu``
and by ``python scripts/gpu_check.py``.
"""

import pytest
import torch

from helpers.runs import TINY, run_train
from sgmod_study.nn import sgmod_op
from sgmod_study.nn.sgmod_op import FUSED_MIN_ELEMENTS, kernels, sgmod, sgmod_fused, sgmod_reference
from sgmod_study.trial_contract import read_metrics

pytestmark = pytest.mark.gpu

# (shape, gamma/beta values): conv per channel and scalar, linear; one above the size threshold
CASES = [((4, 3, 5, 5), 3), ((4, 3, 5, 5), 1), ((6, 5), 5), ((64, 64, 8, 8), 64)]
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def _inputs(shape, channels, dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to("cuda", dtype).requires_grad_()
    gamma = (0.5 + torch.rand(channels, generator=generator)).cuda().requires_grad_()
    beta = torch.randn(channels, generator=generator).cuda().requires_grad_()
    return x, gamma, beta


def _values_and_gradients(op, x, gamma, beta, grad):
    y = op(x, gamma, beta)
    return (y, *torch.autograd.grad(y, (x, gamma, beta), grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("shape", "channels"), CASES)
def test_the_compiled_kernels_match_the_reference_on_cuda(shape, channels, dtype):
    """Against the float32 expression on the same (rounded) inputs: the kernels compute in float32
    whatever the input's dtype, so bfloat16 only rounds the output and the input gradient."""
    x, gamma, beta = _inputs(shape, channels, dtype)
    grad = torch.randn_like(x)
    fused = _values_and_gradients(sgmod_fused, x, gamma, beta, grad)
    x32 = x.detach().float().requires_grad_()
    reference = _values_and_gradients(sgmod_reference, x32, gamma, beta, grad.float())
    assert fused[0].dtype == fused[1].dtype == dtype and fused[0].is_cuda
    tol = TOLERANCE[dtype]
    for got, expected in zip(fused, reference, strict=True):
        torch.testing.assert_close(got.float(), expected, rtol=tol, atol=tol * max(1.0, expected.abs().max().item()))
    assert kernels().failed is None  # Triton compiled them: not the eager fallback


def test_sgmod_takes_the_plain_expression_below_the_cuda_threshold(monkeypatch):
    monkeypatch.setitem(FUSED_MIN_ELEMENTS, "cuda", 4 * 3 * 5 * 5)
    monkeypatch.setattr(sgmod_op, "COMPILE_AFTER_CALLS", 0)
    gamma, beta = torch.ones(3, device="cuda", requires_grad=True), torch.zeros(3, device="cuda", requires_grad=True)
    assert type(sgmod(torch.randn(4, 3, 5, 4, device="cuda"), gamma, beta).grad_fn).__name__ == "AddBackward0"
    assert type(sgmod(torch.randn(4, 3, 5, 5, device="cuda"), gamma, beta).grad_fn).__name__ == "_SgmodFunctionBackward"


def test_double_backward_on_cuda():
    x = torch.randn(2, 3, 4, 4, device="cuda", dtype=torch.float64, requires_grad=True)
    gamma = torch.rand(3, device="cuda", dtype=torch.float64).add(0.5).requires_grad_()
    beta = torch.randn(3, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(sgmod_fused, (x, gamma, beta))


def _tiny_gpu_run(tmp_path, *overrides):
    args = [*TINY, "trainer=gpu", *overrides]  # the preset's trainer=cpu replaced
    done = run_train(args, tmp_path / "run", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return read_metrics(tmp_path / "run")


@pytest.mark.slow
def test_a_run_on_the_gpu_with_data_on_the_device_bf16_and_channels_last_learns(tmp_path):
    metrics = _tiny_gpu_run(tmp_path, "data.on_device=true", "trainer.precision=bf16-mixed", "speed.channels_last=true")
    assert metrics["test/acc"] > 0.5  # digits, 2 epochs: chance is 0.1


@pytest.mark.slow
def test_a_compiled_model_trains_on_the_gpu(tmp_path):
    metrics = _tiny_gpu_run(tmp_path, "speed.compile=default", "data.on_device=true")
    assert metrics["test/acc"] > 0.5
