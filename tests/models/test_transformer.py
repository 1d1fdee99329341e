"""The transformer classifier: shapes with every norm and placement, each part against an
independent oracle (attention by explicit per-head loops, per-token LayerNorm / RMSNorm by
torch's own, the block orders), twice differentiable (dense Hessian), and it learns."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normtheory.data import load_dataset
from normtheory.measure import hessian_eigenvalues
from normtheory.measure._functional import fixed_loss
from normtheory.measure.scale_invariant import find_scale_invariant
from normtheory.models import build_model, list_archs, list_placements
from normtheory.models.transformer import Attention
from normtheory.norms import TokenNorm, build_norm, list_norms
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
INPUTS = {  # in_shape, options: image patches, signal patches, token ids
    "image": ((1, 8, 8), {"patch": 4}),
    "signal": ((2, 12), {"patch": 3}),
    "tokens": ((7,), {"vocab_size": 5}),
}


def _build(kind="image", norm="layer", placement="pre_norm", **kw):
    in_shape, options = INPUTS[kind]
    torch.manual_seed(0)
    kw = {"width": 8, "depth": 2, "heads": 2, **options, **kw}
    return build_model(
        "transformer", norm=norm, in_shape=in_shape, num_classes=3, placement=placement, **kw
    )


def _input(kind, n=4):
    in_shape, options = INPUTS[kind]
    gen = torch.Generator().manual_seed(1)
    if "vocab_size" in options:
        return torch.randint(options["vocab_size"], (n, *in_shape), generator=gen)
    return torch.randn(n, *in_shape, generator=gen)


def test_lists():
    assert "transformer" in list_archs()
    assert list_placements("transformer") == ["post_norm", "pre_norm"]
    assert list_placements("convnet") == ["act_norm", "ic", "last", "norm_act"]


@pytest.mark.parametrize("placement", ["pre_norm", "post_norm"])
@pytest.mark.parametrize("norm", [*list_norms(), "layer+ws"])
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_forward_backward(kind, norm, placement):
    kw = {"norm_kw": {"groups": 2}} if norm.startswith("group") or norm == "batch_group" else {}
    model = _build(kind, norm, placement, **kw)
    x = _input(kind)
    out = model(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    again = build_model(**model.config)
    assert again.config == model.config
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())


def test_bad_options_raise():
    with pytest.raises(ValueError, match="its placements: post_norm, pre_norm"):
        _build(placement="norm_act")
    with pytest.raises(ValueError, match="divisible by heads"):
        _build(heads=3)
    with pytest.raises(ValueError, match="patch"):
        _build(patch=3)
    with pytest.raises(ValueError, match="transformer only"):
        build_model("mlp", norm="batch", in_shape=(4,), num_classes=2, heads=2)
    with pytest.raises(ValueError, match="placement"):
        build_model("convnet", norm="batch", in_shape=(1, 8, 8), num_classes=2,
                    placement="pre_norm")  # fmt: skip


def test_attention_against_per_head_loops():
    """softmax(q_h k_hᵀ / √d_h) v_h per head and example, written with explicit loops."""
    torch.manual_seed(0)
    attn = Attention(6, 3).double()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    wq, wk, wv = attn.qkv.weight.split(6)
    bq, bk, bv = attn.qkv.bias.split(6)
    out = torch.empty(2, 5, 6, dtype=torch.float64)
    for n in range(2):
        q, k, v = x[n] @ wq.T + bq, x[n] @ wk.T + bk, x[n] @ wv.T + bv  # (T, d)
        for h in range(3):
            cols = slice(2 * h, 2 * h + 2)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(2)  # (T, T)
            weights = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)
            out[n, :, cols] = weights @ v[:, cols]
    expected = out @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, rtol=1e-12, atol=1e-12)


def test_token_norms_are_torch_per_token_norms():
    """`TokenNorm` of ``layer`` / ``rms`` on (N, T, d) equals torch's LayerNorm / RMSNorm(d)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, generator=gen, dtype=torch.float64) * 2 + 0.5
    gamma, beta = torch.rand(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen)
    ln = TokenNorm(build_norm("layer", 6)).double()
    rms = TokenNorm(build_norm("rms", 6)).double()
    with torch.no_grad():
        ln.norm.weight.copy_(gamma), ln.norm.bias.copy_(beta), rms.norm.weight.copy_(gamma)
    expected_ln = F.layer_norm(x, (6,), gamma, beta.double(), eps=1e-5)
    torch.testing.assert_close(ln(x), expected_ln, rtol=1e-12, atol=1e-12)
    torch_rms = nn.RMSNorm(6, eps=1e-5).double()
    with torch.no_grad():
        torch_rms.weight.copy_(gamma)
    torch.testing.assert_close(rms(x), torch_rms(x), rtol=1e-12, atol=1e-12)
    no_bias = TokenNorm(build_norm("layer_nobias", 6)).double()
    assert no_bias.norm.bias is None
    torch.testing.assert_close(no_bias(x), F.layer_norm(x, (6,), eps=1e-5), rtol=1e-12, atol=0)


@pytest.mark.parametrize("placement", ["pre_norm", "post_norm"])
def test_block_order_against_the_formulas(placement):
    """Pre: x + A(N₁x), then + M(N₂·); post: N₁(x + A x), then N₂(· + M ·) (Xiong et al.)."""
    model = _build(placement=placement).double()
    block = model.blocks[0]
    x = torch.randn(2, 4, 8, dtype=torch.float64)

    def ln(norm, h):
        return F.layer_norm(h, (8,), norm.norm.weight, norm.norm.bias, eps=1e-5)

    if placement == "pre_norm":
        h = x + block.attn(ln(block.norm1, x))
        expected = h + block.mlp(ln(block.norm2, h))
    else:
        h = ln(block.norm1, x + block.attn(x))
        expected = ln(block.norm2, h + block.mlp(h))
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)
    final = model.norm
    assert isinstance(final, TokenNorm) == (placement == "pre_norm")


def test_hessian_vector_products_against_a_dense_hessian():
    """The whole net (attention, GELU, per-token LN, post-norm) is twice differentiable: H v
    by the measures equals the dense autograd Hessian's."""
    model = _build("tokens", "layer", "post_norm", width=4, depth=1, heads=2).double()
    x, y = _input("tokens", n=5), torch.tensor([0, 1, 2, 0, 1])
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat):
        parts = torch.split(flat, [s.numel() for s in shapes])
        state = {n: p.view(s) for n, p, s in zip(names, parts, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, state, (x,)), y)

    dense = torch.autograd.functional.hessian(loss, w)
    v = torch.randn(len(w), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with fixed_loss(model, F.cross_entropy, (x, y), mode="train") as f:
        torch.testing.assert_close(f.hvp(v), dense @ v, rtol=1e-9, atol=1e-11)
    top = hessian_eigenvalues(model, F.cross_entropy, (x, y), k=1, tol=1e-8).values[0]
    assert float(top) == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-6)


@pytest.mark.parametrize("placement", ["pre_norm", "post_norm"])
def test_no_weight_of_a_standard_transformer_is_scale_invariant(placement):
    """Residual streams and biases mix every path, so no weight feeds a norm alone."""
    assert find_scale_invariant(_build(placement=placement)) == {}
    assert find_scale_invariant(_build("tokens", placement=placement)) == {}


def test_it_learns_the_majority_task():
    train_set, test_set = load_dataset("majority", n_train=512, n_test=256)
    torch.manual_seed(0)
    model = build_model("transformer", norm="layer", placement="pre_norm", width=16, depth=1,
                        heads=2, in_shape=train_set.in_shape, num_classes=train_set.num_classes,
                        vocab_size=train_set.vocab_size)  # fmt: skip
    config = TrainConfig(optimizer="adam", lr=3e-3, batch_size=64, steps=150, seed=0, device="cpu")
    result = train(copy.deepcopy(model), train_set, test_set, config)
    assert result.final["test_acc"] > 0.6  # chance: 1/8
