import pytest
import torch

from benchmarks.op import saved_bytes
from sgmod_study.activations import Sgmod
from sgmod_study.sgmod_op import kernels, sgmod, sgmod_reference

# (input shape, number of gamma/beta values): conv and linear layers, per-channel and scalar
CASES = [((4, 3, 5, 5), 3), ((4, 3, 5, 5), 1), ((6, 5), 5), ((6, 5), 1)]


def _inputs(shape, channels, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype).requires_grad_()
    gamma = (0.5 + torch.rand(channels, generator=generator, dtype=dtype)).requires_grad_()
    beta = torch.randn(channels, generator=generator, dtype=dtype).requires_grad_()
    return x, gamma, beta


def _values_and_gradients(op, x, gamma, beta, grad):
    y = op(x, gamma, beta)
    return (y, *torch.autograd.grad(y, (x, gamma, beta), grad))


@pytest.mark.parametrize(("shape", "channels"), CASES)
def test_fused_matches_reference_values_and_all_gradients(shape, channels):
    x, gamma, beta = _inputs(shape, channels, torch.float32)
    grad = torch.randn(shape)
    fused = _values_and_gradients(sgmod, x, gamma, beta, grad)
    reference = _values_and_gradients(sgmod_reference, x, gamma, beta, grad)
    for got, expected in zip(fused, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert kernels().failed is None  # the compiled kernels ran, not the eager fallback


@pytest.mark.parametrize(("shape", "channels"), CASES)
def test_gradcheck_on_the_fast_path_and_double_backward(shape, channels):
    inputs = _inputs(shape, channels)
    assert torch.autograd.gradcheck(sgmod, inputs)
    assert torch.autograd.gradgradcheck(sgmod, inputs)  # WGAN-GP differentiates the gradient
    assert kernels().failed is None


def test_channels_last_input_takes_the_layout_agnostic_kernel():
    x, gamma, beta = _inputs((2, 3, 4, 4), 3)
    x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(sgmod, (x, gamma, beta))


def test_gradient_formula_by_hand():
    x, gamma, beta = _inputs((2, 3, 4, 4), 3)
    grad = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    _, dx, dgamma, dbeta = _values_and_gradients(sgmod, x, gamma, beta, grad)
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(dx, grad * gamma.detach().view(1, 3, 1, 1) * s * (1 - s))
    torch.testing.assert_close(dgamma, (grad * s).sum((0, 2, 3)))
    torch.testing.assert_close(dbeta, grad.sum((0, 2, 3)))


def test_saves_one_input_sized_tensor_like_sigmoid():
    x, gamma, beta = _inputs((8, 4, 6, 6), 4, torch.float32)
    inputs = (x, gamma, beta, None)
    assert saved_bytes("sgmod", inputs) == x.numel() * 4 == saved_bytes("sigmoid", inputs)


def test_bfloat16_keeps_its_dtype_and_float32_parameter_gradients():
    x, gamma, beta = _inputs((4, 3, 5, 5), 3, torch.float32)
    xb = x.detach().bfloat16().requires_grad_()
    y = sgmod(xb, gamma, beta)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and gamma.grad.dtype == torch.float32
    expected = sgmod_reference(xb.detach().float(), gamma.detach(), beta.detach())
    torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)


def test_fixed_parameters_get_no_gradient():
    act = Sgmod(3, learn_gamma=False)
    act(torch.randn(2, 3, 4, 4)).sum().backward()
    assert act.beta.grad is not None and act.gamma.grad is None


def test_module_implementations_agree_and_bad_choice_is_named():
    torch.manual_seed(0)
    fused, reference = Sgmod(3, init="normal"), Sgmod(3, init="normal", impl="reference")
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(fused(x), reference(x))
    with pytest.raises(ValueError, match=r"^impl='triton'.*fused, reference"):
        Sgmod(3, impl="triton")


def test_a_compiled_model_traces_sgmod_into_one_graph():
    import lightning  # noqa: F401 - Lightning replaces torch.compile, which Dynamo cannot trace into

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), Sgmod(4), torch.nn.Conv2d(4, 4, 3), Sgmod(4))
    explanation = torch._dynamo.explain(net)(torch.randn(2, 1, 8, 8))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
