"""Mutation tests of the exact checks: a bug injected into the library (monkeypatched where its
layers look the code up) must turn the claims whose identity runs through that code to
exact-fails in ``normtheory verify --skip-studies`` (the CLI, local executor in-process, so the
patch applies), and leave the claims that do not touch it holding.

Each mutant is a copy of the library code with one change, the kind of slip a real edit makes:

- ``bn_unbiased``: BatchNorm normalizes with the unbiased batch variance (Bessel's m − 1).
- ``bn_no_centering``: BatchNorm divides by σ but forgets to subtract the batch mean.
- ``ws_unbiased_eps_outside``: Weight Standardization divides by the unbiased σ + ε
  (``W.std() + eps``, the authors' reference code) instead of √(σ² + ε) with the biased σ².
  WS-GRAD is claimed at ε → 0 and checked with ``ws_eps=0``, so it is the unbiased σ that
  shows; where ε sits cannot matter at ε = 0.
- ``span_forgets``: `InputSpan.update` keeps only the last batch's span.
- ``bn_detached_stats``: BatchNorm computes its batch statistics outside autograd (as if they were
  constants, e.g. under ``torch.no_grad``): the forward is right, every gradient is wrong.
- ``gn_default_eps``: GroupNorm drops its ``eps`` argument, so ``F.group_norm`` uses its default
  1e-5 whatever ε the layer was built with (ε = 0 in the exact checks).
"""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import normtheory.norms.batch as batch_mod
import normtheory.norms.group as group_mod
import normtheory.norms.standardization as ws_mod
from normtheory.cli import main
from normtheory.exact import EXACT_CLAIMS
from normtheory.measure.span import InputSpan

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn_normalize(*, correction: int = 0, center: bool = True, detach: bool = False):
    """A mutated copy of `normtheory.norms.batch._blockwise_normalize` for whole-batch blocks
    (what `BatchNorm` in train mode with ε = 0 calls); ghost blocks go to the original."""
    original = batch_mod._blockwise_normalize

    def normalize(z, block, eps):  # z (N, C, M)
        if block is not None:
            return original(z, block, eps)
        var, mean = torch.var_mean(z, dim=(0, 2), correction=correction, keepdim=True)
        if detach:
            var, mean = var.detach(), mean.detach()
        return ((z - mean) if center else z) / torch.sqrt(var + eps)

    return normalize


def _ws_unbiased_eps_outside(weight, eps=1e-5):
    """`standardize_weight` with the unbiased σ and ε outside the square root."""
    flat = weight.reshape(weight.shape[0], -1)  # (C_out, fan_in)
    mean, std = flat.mean(1, keepdim=True), flat.std(1, keepdim=True)
    return ((flat - mean) / (std + eps)).reshape(weight.shape)


def _span_forgets(monkeypatch):
    update = InputSpan.update

    def forgetful(self, x):
        self._q = None  # the bug: each batch starts the span afresh instead of adding to it
        return update(self, x)

    monkeypatch.setattr(InputSpan, "update", forgetful)


def _gn_default_eps(self, x):
    """`GroupNorm.forward` with the eps argument dropped (F.group_norm's default 1e-5)."""
    group_mod._check_input(x, self.num_features, type(self).__name__)
    return F.group_norm(x, self.groups, self.weight, self.bias)


MUTANTS = {
    "bn_unbiased": (
        lambda mp: mp.setattr(batch_mod, "_blockwise_normalize", _bn_normalize(correction=1)),
        {"BN-GRAD", "BN-HESS"},
    ),
    "bn_no_centering": (
        lambda mp: mp.setattr(batch_mod, "_blockwise_normalize", _bn_normalize(center=False)),
        {"BN-GRAD", "BN-HESS"},
    ),
    "ws_unbiased_eps_outside": (
        lambda mp: mp.setattr(ws_mod, "standardize_weight", _ws_unbiased_eps_outside),
        {"WS-GRAD"},
    ),
    "span_forgets": (_span_forgets, {"SPAN-ORTH"}),
    # a scale-invariant loss whose gradient ignores the statistics: SI-ORTH and SI-GROWTH too
    "bn_detached_stats": (
        lambda mp: mp.setattr(batch_mod, "_blockwise_normalize", _bn_normalize(detach=True)),
        {"BN-GRAD", "BN-HESS", "SI-ORTH", "SI-GROWTH"},
    ),
    "gn_default_eps": (
        lambda mp: mp.setattr(group_mod.GroupNorm, "forward", _gn_default_eps),
        {"SI-ORTH"},
    ),
}


def _verify(tmp_path) -> tuple[int, dict[str, str]]:
    """``normtheory verify --skip-studies`` into `tmp_path`: exit code and the exact claims'
    verdicts from the report's ``results/claims.csv``."""
    argv = ["verify", "--skip-studies", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "report")]  # fmt: skip
    code = main(argv)
    claims = pd.read_csv(tmp_path / "report" / "results" / "claims.csv", keep_default_na=False)
    verdicts = claims.set_index("claim")["verdict"]
    return code, {c: verdicts[c] for c in EXACT_CLAIMS}


def test_without_a_mutation_every_exact_claim_holds(tmp_path, capsys):
    code, verdicts = _verify(tmp_path)
    assert code == 0 and set(verdicts.values()) == {"exact-holds"}, verdicts
    assert (
        "exact_checks [quick]: 40 completed, 0 reused, 0 diverged, 0 failed"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_a_library_bug_turns_its_claims_to_exact_fails(mutant, tmp_path, monkeypatch, capsys):
    inject, broken = MUTANTS[mutant]
    inject(monkeypatch)
    code, verdicts = _verify(tmp_path)
    out, err = capsys.readouterr()
    assert "exact_checks [quick]: 40 completed" in out  # the checks ran; the identities failed
    assert code == 1
    assert {c for c, v in verdicts.items() if v == "exact-fails"} == broken, verdicts
    assert all(verdicts[c] == "exact-holds" for c in set(EXACT_CLAIMS) - broken), verdicts
    assert f"exact claims that fail: {', '.join(sorted(broken))}" in err
