import pytest
import torch

from benchmarks.op import saved_bytes
from sgmod_study.nn import sgmod_op
from sgmod_study.nn.activations import Sgmod
from sgmod_study.nn.sgmod_op import FUSED_MIN_ELEMENTS, kernels, sgmod, sgmod_fused, sgmod_reference

# (input shape, number of gamma/beta values): conv and linear layers, per-channel and scalar
CASES = [((4, 3, 5, 5), 3), ((4, 3, 5, 5), 1), ((6, 5), 5), ((6, 5), 1)]


def _inputs(shape, channels, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype).requires_grad_()
    gamma = (0.5 + torch.rand(channels, generator=generator, dtype=dtype)).requires_grad_()
    beta = torch.randn(channels, generator=generator, dtype=dtype).requires_grad_()
    return x, gamma, beta


@pytest.fixture
def fused_at_every_size(monkeypatch):
    """The test tensors are small and seen a few times: sgmod would take the plain expression."""
    monkeypatch.setitem(FUSED_MIN_ELEMENTS, "cpu", 0)
    monkeypatch.setattr(sgmod_op, "COMPILE_AFTER_CALLS", 0)


def _values_and_gradients(op, x, gamma, beta, grad):
    y = op(x, gamma, beta)
    return (y, *torch.autograd.grad(y, (x, gamma, beta), grad))


@pytest.mark.parametrize(("shape", "channels"), CASES)
def test_fused_matches_reference_values_and_all_gradients(shape, channels, fused_at_every_size):
    x, gamma, beta = _inputs(shape, channels, torch.float32)
    grad = torch.randn(shape)
    fused = _values_and_gradients(sgmod, x, gamma, beta, grad)
    reference = _values_and_gradients(sgmod_reference, x, gamma, beta, grad)
    for got, expected in zip(fused, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert kernels().failed is None  # the compiled kernels ran, not the eager fallback


@pytest.mark.parametrize(("shape", "channels"), CASES)
def test_gradcheck_on_the_fast_path_and_double_backward(shape, channels, fused_at_every_size):
    inputs = _inputs(shape, channels)
    assert torch.autograd.gradcheck(sgmod, inputs)
    assert torch.autograd.gradgradcheck(sgmod, inputs)  # WGAN-GP differentiates the gradient
    assert kernels().failed is None


def test_channels_last_input_takes_the_layout_agnostic_kernel(fused_at_every_size):
    x, gamma, beta = _inputs((2, 3, 4, 4), 3)
    x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(sgmod, (x, gamma, beta))


def test_gradient_formula_by_hand(fused_at_every_size):
    x, gamma, beta = _inputs((2, 3, 4, 4), 3)
    grad = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    _, dx, dgamma, dbeta = _values_and_gradients(sgmod, x, gamma, beta, grad)
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(dx, grad * gamma.detach().view(1, 3, 1, 1) * s * (1 - s))
    torch.testing.assert_close(dgamma, (grad * s).sum((0, 2, 3)))
    torch.testing.assert_close(dbeta, grad.sum((0, 2, 3)))


def test_saves_one_input_sized_tensor_like_sigmoid(fused_at_every_size):
    x, gamma, beta = _inputs((8, 4, 6, 6), 4, torch.float32)
    inputs = (x, gamma, beta, None)
    assert saved_bytes("sgmod", inputs) == x.numel() * 4 == saved_bytes("sigmoid", inputs)


def test_bfloat16_keeps_its_dtype_and_float32_parameter_gradients(fused_at_every_size):
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


def test_small_inputs_take_the_plain_expression_and_large_ones_the_compiled_kernels(monkeypatch):
    monkeypatch.setitem(FUSED_MIN_ELEMENTS, "cpu", 4 * 3 * 5 * 5)
    monkeypatch.setattr(sgmod_op, "COMPILE_AFTER_CALLS", 0)
    gamma, beta = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    small, large = torch.randn(4, 3, 5, 4), torch.randn(4, 3, 5, 5)
    assert type(sgmod(small, gamma, beta).grad_fn).__name__ == "AddBackward0"
    assert type(sgmod(large, gamma, beta).grad_fn).__name__ == "_SgmodFunctionBackward"
    assert type(sgmod_fused(small, gamma, beta).grad_fn).__name__ == "_SgmodFunctionBackward"
    # both give the same values and gradients
    for x in (small, large):
        x = x.requires_grad_()
        grad = torch.randn_like(x)
        got = _values_and_gradients(sgmod, x, gamma, beta, grad)
        expected = _values_and_gradients(sgmod_reference, x, gamma, beta, grad)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_linear_activation_s_plain_path_records_no_view_of_gamma_or_beta():
    """Each view of a parameter is an autograd node: on a 2-D input gamma/beta broadcast as they are."""
    gamma, beta = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)

    def nodes(y):
        found, todo = [], [y.grad_fn]
        while todo:
            node = todo.pop()
            found.append(type(node).__name__)
            todo += [next_node for next_node, _ in node.next_functions if next_node is not None]
        return found

    linear, conv = sgmod(torch.randn(4, 3), gamma, beta), sgmod(torch.randn(4, 3, 2, 2), gamma, beta)
    assert not any("View" in name for name in nodes(linear))
    assert sum("View" in name for name in nodes(conv)) == 2  # (1, 3, 1, 1) views of gamma and beta


def test_the_plain_path_keeps_a_bfloat16_input_in_bfloat16():
    x = torch.randn(2, 3, 4, 4).bfloat16()
    y = sgmod(x, torch.ones(3), torch.zeros(3))  # float32 parameters, as in bf16-mixed training
    assert y.dtype == torch.bfloat16 and x.numel() < FUSED_MIN_ELEMENTS["cpu"]


def test_the_compiled_kernels_are_specialised_per_shape():
    """Kernels for symbolic shapes ran up to 2x slower on the CPU: each new shape gets a kernel of
    its own (with Dynamo's automatic dynamic shapes the third shape would reuse the second's)."""
    counters = torch._dynamo.utils.counters["stats"]
    before = counters["unique_graphs"]
    for batch in (7, 9, 11):  # shapes no other test uses
        sgmod_fused(torch.randn(batch, 3, 4, 4), torch.ones(3), torch.zeros(3))
    assert counters["unique_graphs"] - before == 3


def test_a_shape_is_compiled_once_it_has_run_compile_after_calls_times(monkeypatch):
    monkeypatch.setitem(FUSED_MIN_ELEMENTS, "cpu", 0)
    monkeypatch.setattr(sgmod_op, "COMPILE_AFTER_CALLS", 3)
    monkeypatch.setattr(sgmod_op, "_calls", {})
    gamma, beta = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)

    def path(shape):
        return type(sgmod(torch.randn(shape), gamma, beta).grad_fn).__name__

    assert [path((2, 3, 4, 4)) for _ in range(5)] == ["AddBackward0"] * 3 + ["_SgmodFunctionBackward"] * 2
    assert path((1, 3, 4, 4)) == "AddBackward0"  # another shape (a partial batch) counts on its own
