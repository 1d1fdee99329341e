"""InputSpan and orthogonal_weight_norm (SPAN-ORTH) against closed forms, a naive im2col loop,
and float64 training runs: SGD keeps W P⊥, SGD + weight decay shrinks it by (1 − ηλ)^t, Adam
does not keep it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.measure.span import InputSpan, orthogonal_weight_norm
from normtheory.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


# -- closed forms ------------------------------------------------------------------------------


def test_orthogonal_norm_of_a_hand_made_weight():
    """Inputs in span{e1, e2} of R^4: P⊥ = diag(0, 0, 1, 1), so ‖W_o P⊥‖ = ‖(W_o3, W_o4)‖."""
    gen = _gen()
    layer = nn.Linear(4, 3, bias=False)
    x = torch.zeros(10, 4, dtype=torch.float64)
    x[:, :2] = _randn(gen, 10, 2)
    span = InputSpan(layer).update(x)
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, -1.0, 0.0, 0.0], [0.0, 0.0, -2.0, 0.5]])
    result = orthogonal_weight_norm(w, span)
    expected = torch.tensor([5.0, 0.0, (4 + 0.25) ** 0.5], dtype=torch.float64)
    assert span.dim == 2 and result.complement_dim == 2
    torch.testing.assert_close(result.per_channel, expected, atol=1e-12, rtol=0)
    assert result.total == pytest.approx(expected.norm().item(), abs=1e-12)
    assert result.relative == pytest.approx(expected.norm().item() / w.double().norm().item())
    proj = torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(span.complement_projector(), proj, atol=1e-12, rtol=0)


def test_nothing_seen_means_everything_is_orthogonal():
    span = InputSpan(nn.Linear(3, 2))
    w = torch.randn(2, 3)
    assert span.dim == 0 and span.n_seen == 0
    assert orthogonal_weight_norm(w, span).relative == pytest.approx(1.0)


def test_zero_inputs_span_nothing():
    span = InputSpan(nn.Linear(3, 2)).update(torch.zeros(5, 3))
    assert span.dim == 0 and span.n_seen == 5
    torch.testing.assert_close(span.complement_projector(), torch.eye(3, dtype=torch.float64))


# -- conv geometry against a naive im2col loop ------------------------------------------------


def _naive_patches(x, conv, pads):
    """im2col by loops over examples and output positions: {group: (M, fan_in)}.

    `pads` is ((left, right), ...) per spatial dim; the padded input is built by copying."""
    x = x.double()
    spatial = x.ndim - 2
    if spatial == 1:  # treat as (N, C, 1, L)
        x, pads = x.unsqueeze(2), ((0, 0), *pads)
        kernel, stride, dil = (1, *conv.kernel_size), (1, *conv.stride), (1, *conv.dilation)
    else:
        kernel, stride, dil = conv.kernel_size, conv.stride, conv.dilation
    n, c, h, w = x.shape
    (top, bottom), (left, right) = pads
    xp = torch.zeros(n, c, h + top + bottom, w + left + right, dtype=torch.float64)
    xp[:, :, top : top + h, left : left + w] = x
    out_h = (xp.shape[2] - dil[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (xp.shape[3] - dil[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    per_group = c // conv.groups
    rows = {g: [] for g in range(conv.groups)}
    for g in range(conv.groups):
        for i in range(n):
            for oh in range(out_h):
                for ow in range(out_w):
                    patch = [
                        xp[i, ch, oh * stride[0] + a * dil[0], ow * stride[1] + b * dil[1]]
                        for ch in range(g * per_group, (g + 1) * per_group)
                        for a in range(kernel[0])
                        for b in range(kernel[1])
                    ]
                    rows[g].append(torch.stack(patch))
    return {g: torch.stack(r) for g, r in rows.items()}, (out_h, out_w)


def _projector_of(rows: torch.Tensor, rtol: float = 1e-6) -> tuple[torch.Tensor, int]:
    """P⊥ and rank from the SVD of the explicit input matrix (σ² > rtol σ_max²)."""
    _, s, vh = torch.linalg.svd(rows, full_matrices=True)
    rank = int((s**2 > rtol * s[0] ** 2).sum())
    basis = vh[:rank].T  # (fan_in, rank)
    return torch.eye(rows.shape[1], dtype=torch.float64) - basis @ basis.T, rank


CONVS = {
    "2d-stride2-pad1-dil2-groups2": (
        lambda: nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=2, groups=2, bias=False),
        (1, 4, 7, 6),
    ),
    "1d-stride2-pad2-dil2": (
        lambda: nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2, bias=False),
        (2, 3, 5),
    ),
    "1d-same-even-kernel-groups3": (
        lambda: nn.Conv1d(3, 3, 4, padding="same", groups=3, bias=False),
        (1, 3, 3),
    ),
}


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("case", sorted(CONVS))
def test_conv_span_matches_naive_im2col(case):
    make, shape = CONVS[case]
    conv = make().double()
    gen = _gen(1)
    x = _randn(gen, *shape)
    if conv.padding == "same":  # torch puts the odd one on the right
        totals = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation)]
        pads = tuple((t // 2, t - t // 2) for t in totals)
    else:
        pads = tuple((p, p) for p in conv.padding)
    rows, out_shape = _naive_patches(x, conv, pads)
    # The oracle's patches and ordering are right: W_g · patch reproduces the conv's output.
    y = conv(x).detach().reshape(shape[0], conv.out_channels, -1)  # (N, O, L_out)
    w = conv.weight.detach().reshape(conv.groups, conv.out_channels // conv.groups, -1)
    for g, r in rows.items():
        naive = (r @ w[g].T).reshape(shape[0], -1, w.shape[1]).transpose(1, 2)  # (N, O/g, L)
        torch.testing.assert_close(naive, y[:, g * w.shape[1] : (g + 1) * w.shape[1]])
    span = InputSpan(conv).update(x)
    projs = span.complement_projector().reshape(conv.groups, span.fan_in, span.fan_in)
    dims = [span.dim] if conv.groups == 1 else span.dim
    for g, r in rows.items():
        proj, rank = _projector_of(r)
        assert 0 < rank < span.fan_in, "the test needs a proper subspace"
        assert dims[g] == rank
        assert (projs[g] - proj).norm() <= 1e-8
    assert span.n_seen == shape[0] * (out_shape[0] * out_shape[1])


def test_streaming_equals_one_batch():
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
    x = _randn(_gen(2), 7, 2, 5, 5)
    whole = InputSpan(conv, skip_full=False).update(x)
    parts = InputSpan(conv, skip_full=False)  # the span is full after the first chunk
    for chunk in (x[:2], x[2:3], x[3:]):
        parts.update(chunk)
    torch.testing.assert_close(parts.gram(), whole.gram(), atol=1e-12, rtol=1e-12)
    assert parts.n_seen == whole.n_seen and parts.n_examples == whole.n_examples == 7


def test_chunked_update_equals_one_gram(monkeypatch):
    """Big batches are unfolded a few examples at a time; the Gram must not notice."""
    conv = nn.Conv2d(2, 4, 3, padding=1, groups=2, bias=False)
    x = _randn(_gen(5), 5, 2, 4, 4)
    whole = InputSpan(conv, skip_full=False).update(x)
    monkeypatch.setattr("normtheory.measure.span._CHUNK", 40)  # one example per chunk
    chunked = InputSpan(conv, skip_full=False).update(x)
    torch.testing.assert_close(chunked.gram(), whole.gram(), atol=1e-12, rtol=1e-12)
    assert chunked.n_seen == whole.n_seen == 5 * 16


def test_linear_flattens_leading_dims_and_keeps_float64():
    layer = nn.Linear(3, 2)
    x = torch.randn(2, 4, 3)
    span = InputSpan(layer).update(x)
    flat = x.reshape(-1, 3).double()
    torch.testing.assert_close(span.gram(), flat.T @ flat)
    assert span.gram().dtype == torch.float64 and span.n_seen == 8


def test_errors_name_the_shapes_and_modes():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\).*\(2, 5\)"):
        InputSpan(nn.Linear(3, 2)).update(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(2, 4, 5, 5\)"):
        InputSpan(nn.Conv2d(3, 2, 3)).update(torch.randn(2, 4, 5, 5))
    with pytest.raises(NotImplementedError, match="reflect"):
        InputSpan(nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"))
    span = InputSpan(nn.Conv2d(4, 6, 3, groups=2)).update(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"\(6, 4, 3, 3\).*\(6, 2, 3, 3\)"):
        orthogonal_weight_norm(torch.randn(6, 4, 3, 3), span)


def test_grouped_weight_rows_use_their_group_projector():
    """Group 0 sees only channel 0, group 1 both channels: W rows of group 0 with weight on
    channel 1 are entirely orthogonal, rows of group 1 are not orthogonal at all."""
    conv = nn.Conv1d(4, 2, 1, groups=2, bias=False)
    x = _randn(_gen(3), 6, 4, 3)
    x[:, 1] = 0  # group 0 = channels (0, 1): only e1 seen
    span = InputSpan(conv).update(x)
    assert span.dim == [1, 2]
    w = torch.tensor([[[0.0], [2.0]], [[1.0], [1.0]]])  # (2, 2, 1)
    result = orthogonal_weight_norm(w, span)
    torch.testing.assert_close(
        result.per_channel, torch.tensor([2.0, 0.0]).double(), atol=1e-12, rtol=0
    )
    assert result.complement_dim == [1, 0]


def test_ws_layers_are_accepted():
    from normtheory.norms import WSConv2d

    span = InputSpan(WSConv2d(2, 3, 3, padding=1)).update(torch.randn(2, 2, 4, 4))
    assert span.fan_in == 18 and span.dim == 18


# -- SPAN-ORTH in training ---------------------------------------------------------------------


def _low_rank_problem(seed=0, n=64, d=8, r=3, classes=4):
    gen = _gen(seed)
    basis, _ = torch.linalg.qr(_randn(gen, d, r))  # (d, r) orthonormal
    x = _randn(gen, n, r) @ basis.T  # (n, d) in a rank-r subspace
    y = torch.randint(classes, (n,), generator=gen)
    return x, y


def _train(model, layer, x, y, opt, steps=50, batch=16):
    """SGD-style loop; returns W P⊥ before and after, P⊥ from every input the layer saw."""
    span = InputSpan(layer)

    def see(module, args):
        span.update(args[0])  # returns None: the inputs pass unchanged

    handle = layer.register_forward_pre_hook(see)
    w0 = layer.weight.detach().clone()
    gen = _gen(7)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:batch]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    handle.remove()
    proj = span.complement_projector()
    flat = lambda w: w.reshape(w.shape[0], -1)  # noqa: E731
    return flat(w0) @ proj, flat(layer.weight.detach()) @ proj, span


def _mlp(seed=0):
    torch.manual_seed(seed)
    return build_model(
        "mlp", norm="batch", in_shape=(8,), num_classes=4, width=16, depth=2
    ).double()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_never_changes_the_orthogonal_component(momentum):
    x, y = _low_rank_problem()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    before, after, span = _train(model, model.fc1, x, y, opt)
    assert span.dim == 3
    assert before.norm() > 0.1  # a real orthogonal component to keep
    assert (after - before).norm() / before.norm() <= 1e-12
    assert (model.fc1.weight.detach() - _mlp().fc1.weight.detach()).norm() > 1e-2  # it trained


def test_sgd_with_weight_decay_shrinks_it_by_one_minus_lr_lambda_to_the_t():
    x, y = _low_rank_problem()
    model, lr, wd, steps = _mlp(), 0.1, 0.05, 50
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
    before, after, _ = _train(model, model.fc1, x, y, opt, steps=steps)
    expected = (1 - lr * wd) ** steps * before
    assert (after - expected).norm() / expected.norm() <= 1e-10
    assert (after - before).norm() / before.norm() > 0.1  # the decay is visible


def test_adam_changes_the_orthogonal_component():
    x, y = _low_rank_problem()
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before, after, _ = _train(model, model.fc1, x, y, opt)
    assert (after - before).norm() / before.norm() > 1e-3


def test_sgd_keeps_the_orthogonal_component_of_a_padded_strided_conv():
    """Inputs with all channels equal: patches (zeros of the padding included) lie in the span of
    channel-repeated kernel vectors, a proper subspace of the conv's fan-in."""
    gen = _gen(4)
    s = _randn(gen, 32, 1, 9)
    x, y = s.expand(32, 3, 9).contiguous(), torch.randint(3, (32,), generator=gen)
    torch.manual_seed(0)
    model = build_model("convnet", norm="batch", in_shape=(3, 9), num_classes=3, width=4, depth=2)
    model.conv1.stride = (2,)
    model = model.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before, after, span = _train(model, model.conv1, x, y, opt, steps=20)
    assert span.dim == 3 and span.fan_in == 9
    assert (after - before).norm() / before.norm() <= 1e-12
