"""Every registered norm against a naive float64 oracle written with explicit Python loops.

The oracle works on Python floats (`math.fsum`), never on the module's code, F.batch_norm or
F.group_norm. A norm is described by which (example, channel) cells share its statistics:
a block of `epg` consecutive examples (None: the whole batch) x a group of `cpg` consecutive
channels, over all spatial positions. Adding a norm to the registry without an entry in
`_SPECS` fails `test_every_norm_has_an_oracle`.
"""

import math
import re
import zlib
from dataclasses import dataclass, field

import pytest
import torch

from normtheory.norms import NORM_FREE, build_norm, list_norms, norm_includes_activation

C = 6
N = 10  # blocks of 4 leave a remainder block of 2
SHAPES = [(N, C), (N, C, 5), (N, C, 3, 4)]
TOL = dict(rtol=1e-10, atol=1e-10)


@dataclass(frozen=True)
class Spec:
    """How the oracle computes a norm. kind: 'standardize', 'frn', 'rms', 'renorm' (Batch
    Renorm's r/d correction toward the running statistics of before the batch, clipped by r_max,
    d_max) or 'identity'."""

    kw: dict = field(default_factory=dict)
    kind: str = "standardize"
    epg: int | None = None  # examples pooled per statistic in training (None: whole batch)
    cpg: int = 1  # consecutive channels pooled per statistic
    running: bool = False  # eval mode uses running statistics
    eps: float = 1e-5
    momentum: float = 0.1
    example_weight: float = 0.0
    r_max: float = 1.0
    d_max: float = 0.0


_SPECS: dict[str, list[Spec]] = {
    "none": [Spec(kind="identity")],
    "nf": [Spec(kind="identity")],  # normalizer-free: no norm layer (its weights are scaled WS)
    "batch": [
        Spec(running=True),
        Spec(
            kw=dict(example_weight=0.3, momentum=0.25),
            running=True,
            momentum=0.25,
            example_weight=0.3,
        ),
        Spec(kw=dict(example_weight=1.0), running=True, example_weight=1.0),
        Spec(kw=dict(track_running_stats=False, eps=1e-3), eps=1e-3),
    ],
    "ghost_batch": [Spec(kw=dict(ghost_size=4), epg=4, running=True)],
    # GroupNorm-like norms pool one example; groups=4 is clipped to 3, the default 32 to 6.
    "group": [Spec(kw=dict(groups=4), epg=1, cpg=2), Spec(epg=1, cpg=1)],
    "layer": [Spec(epg=1, cpg=C)],
    "instance": [Spec(cpg=1, epg=1)],
    "batch_group": [
        Spec(kw=dict(examples_per_group=4, groups=4), epg=4, cpg=2, running=True),
        Spec(kw=dict(channels_per_group=3, momentum=0.5), cpg=3, running=True, momentum=0.5),
        Spec(kw=dict(examples_per_group=3, groups=2, track_running_stats=False), epg=3, cpg=3),
    ],
    "frn": [Spec(kind="frn", eps=1e-6), Spec(kw=dict(eps=1e-2), kind="frn", eps=1e-2)],
    "layer_nobias": [Spec(epg=1, cpg=C), Spec(kw=dict(eps=1e-2), epg=1, cpg=C, eps=1e-2)],
    "layer_noaffine": [Spec(epg=1, cpg=C)],
    "rms": [
        Spec(kind="rms", epg=1, cpg=C),
        Spec(kw=dict(eps=1e-2), kind="rms", epg=1, cpg=C, eps=1e-2),
    ],
    "rms_noaffine": [Spec(kind="rms", epg=1, cpg=C)],
    # Batch Renorm: during the default warm-up (r_max = 1, d_max = 0 for 5 000 steps) it is BN;
    # without a schedule the corrections act from the first step.
    "batch_renorm": [
        Spec(running=True),
        Spec(
            kw=dict(r_max=1.5, d_max=0.5, renorm_steps=0),
            kind="renorm",
            running=True,
            r_max=1.5,
            d_max=0.5,
        ),
        Spec(
            kw=dict(r_max=4.0, d_max=3.0, renorm_steps=0, momentum=0.5),
            kind="renorm",
            running=True,
            r_max=4.0,
            d_max=3.0,
            momentum=0.5,
        ),
    ],
    # A Batch Kalman Norm alone has no predecessor: plain BN (the chain: tests/norms/test_kalman.py).
    "batch_kalman": [Spec(running=True)],
}
_CASES = [(name, i) for name in list_norms() for i in range(len(_SPECS.get(name, [None])))]


def _stats(values: list[float]) -> tuple[float, float, float]:
    """Mean, biased variance, unbiased variance of a list of floats."""
    n = len(values)
    mean = math.fsum(values) / n
    ss = math.fsum((v - mean) ** 2 for v in values)
    return mean, ss / n, (ss / (n - 1) if n > 1 else math.nan)


def _members(n: int, c: int, count: int, epg: int | None, cpg: int) -> list[tuple[int, int]]:
    """The (example, channel) cells whose values share a statistic with cell (n, c)."""
    start = 0 if epg is None else (n // epg) * epg
    stop = count if epg is None else min(start + epg, count)
    c0 = (c // cpg) * cpg
    return [(i, j) for i in range(start, stop) for j in range(c0, c0 + cpg)]


class Oracle:
    """Naive float64 model of one norm: forward in train/eval mode, running statistics."""

    def __init__(self, spec: Spec, params: dict[str, list[float]]) -> None:
        self.spec, self.p = spec, params
        self.rmean, self.rvar = [0.0] * C, [1.0] * C

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        s, count = self.spec, x.shape[0]
        xs = x.reshape(count, C, -1).tolist()  # xs[n][c] = list of the M spatial values
        out = [[[0.0] * len(xs[0][0]) for _ in range(C)] for _ in range(count)]
        self.before = list(self.rmean), list(self.rvar)  # Batch Renorm's r, d use these
        if training and s.running:  # population statistics: whole batch, one channel group
            for c in range(C):
                pooled = [v for i, j in _members(0, c, count, None, s.cpg) for v in xs[i][j]]
                mean, _, var_unbiased = _stats(pooled)
                self.rmean[c] = (1 - s.momentum) * self.rmean[c] + s.momentum * mean
                self.rvar[c] = (1 - s.momentum) * self.rvar[c] + s.momentum * var_unbiased
        self.training = training
        for n in range(count):
            for c in range(C):
                out[n][c] = [self._one(v, c, *self._cell(xs, n, c, training)) for v in xs[n][c]]
        return torch.tensor(out, dtype=torch.float64).reshape(x.shape)

    def _cell(self, xs, n: int, c: int, training: bool) -> tuple[float, float]:
        """(mean, var) that cell (n, c) is normalized with: x -> (x - mean) / sqrt(var + eps)."""
        s = self.spec
        if s.kind == "identity":
            return 0.0, 1.0
        if s.kind == "frn":  # no mean subtraction; nu^2 = mean of x^2 over space
            return 0.0, math.fsum(u * u for u in xs[n][c]) / len(xs[n][c])
        if s.kind == "rms":  # no mean subtraction; mean of x^2 over the pooled cells
            pooled = [u for i, j in _members(n, c, len(xs), s.epg, s.cpg) for u in xs[i][j]]
            return 0.0, math.fsum(u * u for u in pooled) / len(pooled)
        if training or not s.running:
            pooled = [u for i, j in _members(n, c, len(xs), s.epg, s.cpg) for u in xs[i][j]]
            mean, var, _ = _stats(pooled)
            return mean, var
        w, mu_pop, var_pop = s.example_weight, self.rmean[c], self.rvar[c]
        mu_i, var_i, _ = _stats(xs[n][c])
        mean = (1 - w) * mu_pop + w * mu_i
        return mean, (1 - w) * var_pop + w * var_i + w * (1 - w) * (mu_i - mu_pop) ** 2

    def _one(self, v: float, c: int, mean: float, var: float) -> float:
        s = self.spec
        if s.kind == "identity":
            return v
        y = (v - mean) / math.sqrt(var + s.eps)
        if s.kind == "renorm" and self.training:
            sigma = math.sqrt(self.before[1][c] + s.eps)
            r = min(max(math.sqrt(var + s.eps) / sigma, 1 / s.r_max), s.r_max)
            d = min(max((mean - self.before[0][c]) / sigma, -s.d_max), s.d_max)
            y = y * r + d
        y = y * self.p.get("weight", [1.0] * C)[c] + self.p.get("bias", [0.0] * C)[c]
        return max(y, self.p["tau"][c]) if s.kind == "frn" else y


def _randomize(module: torch.nn.Module, gen: torch.Generator) -> dict[str, list[float]]:
    """Non-trivial affine parameters (gamma around 1, beta and tau around 0)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            if name == "weight":
                p.add_(1.0)
    return {name: p.tolist() for name, p in module.named_parameters()}


def _per_channel(buffer: torch.Tensor) -> torch.Tensor:
    """A per-group buffer (G,) as per-channel values (C,): groups are consecutive channels."""
    return buffer.repeat_interleave(C // buffer.numel())


def test_every_norm_has_an_oracle():
    missing = [name for name in list_norms() if name not in _SPECS]
    assert not missing, f"add an oracle Spec to _SPECS for {missing}"
    assert set(_SPECS) == set(list_norms())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"ndim{len(s)}")
@pytest.mark.parametrize("name, index", _CASES)
def test_against_oracle_train_then_eval(name, index, shape):
    spec = _SPECS[name][index]
    gen = torch.Generator().manual_seed(zlib.crc32(f"{name}/{index}/{shape}".encode()))
    module = build_norm(name, C, **spec.kw).double()
    oracle = Oracle(spec, _randomize(module, gen))
    module.train()
    for _ in range(3):
        x = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64) + 0.7
        torch.testing.assert_close(module(x), oracle(x, training=True), **TOL)
    if spec.running:
        for buffer, expected in [
            (module.running_mean, oracle.rmean),
            (module.running_var, oracle.rvar),
        ]:
            torch.testing.assert_close(
                _per_channel(buffer), torch.tensor(expected, dtype=torch.float64), **TOL
            )
        assert int(module.num_batches_tracked) == 3
    module.eval()
    x = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64) - 0.4
    torch.testing.assert_close(module(x), oracle(x, training=False), **TOL)
    x1 = x[:1]  # eval mode must also work on a single example
    if spec.kind != "standardize" or spec.running or spec.epg == 1:
        torch.testing.assert_close(module(x1), oracle(x1, training=False), **TOL)


@pytest.mark.parametrize("name", list_norms())
def test_gradients_match_finite_differences(name):
    torch.manual_seed(0)
    module = build_norm(name, C).double().train()
    _randomize(module, torch.Generator().manual_seed(1))
    x = torch.randn(5, C, 2, dtype=torch.float64, requires_grad=True)
    named = dict(module.named_parameters())
    names, params = tuple(named), tuple(named.values())

    def f(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, fast_mode=True)
    out = module(x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", [n for n in list_norms() if n not in NORM_FREE])
@pytest.mark.parametrize("shape", [(C,), (), (N, C + 1), (N, C - 1, 3)])
def test_bad_input_shape_raises_naming_shape(name, shape):
    module = build_norm(name, C)
    with pytest.raises(ValueError, match=re.escape(str(tuple(shape)))):
        module(torch.randn(shape))


@pytest.mark.parametrize("name", list_norms())
def test_includes_activation_flag_matches_registry(name):
    module = build_norm(name, C)
    assert getattr(module, "includes_activation", False) == norm_includes_activation(name)
