"""The catalogue of claims normtheory tests (mirrors ``shared/CLAIMS.md``; ids are stable).

Each claim is either *exact* (an identity checked to floating-point precision) or *empirical*
(a study measures it over seeds and `normtheory.stats` gives it a verdict).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """One claim: stable id, the paper it comes from, one line of what it says, its kind."""

    id: str
    source: str
    statement: str
    kind: str  # "exact" | "empirical" | "mechanism"


_CHEN = "Chen et al. 2019, Rethinking the usage of BN and Dropout (IC layer)"
_SANTURKAR = "Santurkar et al. 2018, How does BN help optimization?"
_QIAO = "Qiao et al. 2019, Weight Standardization"
_LIU = "Liu et al. 2021, Implicit biases of SGD on BN-DNNs / weight rescaling"
_SUMMERS = "Summers & Dinneen 2019, Four things everyone should know to improve BN"

_CLAIMS = (
    Claim(
        "IC-CORR",
        _CHEN,
        "Dropout with keep prob q scales the correlation of zero-mean units by q",
        "exact",
    ),
    Claim(
        "IC-MI", _CHEN, "Dropout with keep prob q scales pairwise mutual information by q²", "exact"
    ),
    Claim(
        "IC-ORDER",
        _CHEN,
        "W→ReLU→BN→Dropout→W trains faster and more stably than W→BN→ReLU",
        "empirical",
    ),
    Claim(
        "IC-SIGN",
        _CHEN,
        "After plain ReLU every per-sample weight-gradient row has one sign",
        "mechanism",
    ),
    Claim(
        "BN-SMOOTH",
        _SANTURKAR,
        "BN narrows the loss range and lowers effective β-smoothness along the gradient",
        "empirical",
    ),
    Claim("BN-GRAD", _SANTURKAR, "Thm 4.1 (1/m form): BN's gradient-norm identity", "exact"),
    Claim(
        "BN-HESS", _SANTURKAR, "Thm 4.2: BN's quadratic-form identity along the gradient", "exact"
    ),
    Claim("WS-GRAD", _QIAO, "WS's gradient-norm identity for one output channel", "exact"),
    Claim(
        "WS-SMOOTH",
        _QIAO,
        "GN+WS has smaller effective β-smoothness and top Hessian eigenvalue than GN",
        "empirical",
    ),
    Claim(
        "BN-DEPTH-HESS",
        "Yao et al. 2020, PyHessian",
        "Removing BN raises the top eigenvalue and trace for deep residual nets",
        "empirical",
    ),
    Claim(
        "BN-LR",
        "Bjorck et al. 2018, Understanding BN",
        "The largest stable learning rate with BN is far larger than without",
        "empirical",
    ),
    Claim(
        "SI-ORTH", _LIU, "A scale-invariant weight has ⟨w, ∇L⟩ = 0 and ∇L(cw) = ∇L(w)/c", "exact"
    ),
    Claim(
        "SI-GROWTH",
        _LIU,
        "SGD: ‖w_{t+1}‖² = (1−ηλ)²‖w_t‖² + η²‖g_t‖² for scale-invariant w",
        "exact",
    ),
    Claim(
        "SPAN-ORTH",
        _LIU,
        "SGD never changes W·P⊥ (orthogonal to the input span); WD shrinks it as (1−ηλ)^t",
        "exact",
    ),
    Claim(
        "WRS",
        _LIU,
        "Per-channel weight rescaling removes orthogonal noise and trains as well as WD",
        "empirical",
    ),
    Claim(
        "GN-BATCH",
        "Wu & He 2018, Group Normalization",
        "BN's error rises sharply as the batch shrinks while GN stays flat",
        "empirical",
    ),
    Claim(
        "WS-MICRO", _QIAO, "GN+WS at batch 1–2 matches or beats BN at a large batch", "empirical"
    ),
    Claim(
        "FRN-BATCH",
        "Singh & Krishnan 2019, Filter Response Normalization",
        "FRN+TLU is batch-independent and beats GN at small batches",
        "empirical",
    ),
    Claim(
        "GHOST-REG",
        _SUMMERS,
        "Ghost BN regularizes and improves test accuracy at small and medium batches",
        "empirical",
    ),
    Claim(
        "EX-WEIGH",
        _SUMMERS,
        "Inference example weighing (w ≈ 1/B) improves test accuracy",
        "empirical",
    ),
    Claim(
        "GAMMA-WD",
        _SUMMERS,
        "Weight decay on γ (toward 1) and β (toward 0) changes accuracy",
        "empirical",
    ),
    Claim(
        "BGN-TINY",
        "Zhou et al. 2020, Batch Group Normalization",
        "Batch-Group Norm beats both BN and GN at very small batch sizes",
        "empirical",
    ),
    Claim(
        "WS-SINGULAR",
        _QIAO,
        "Without batch statistics nets drift toward elimination singularities; WS avoids them",
        "empirical",
    ),
)

CLAIMS: dict[str, Claim] = {c.id: c for c in _CLAIMS}


def get_claim(claim_id: str) -> Claim:
    """The claim with id `claim_id`; unknown ids raise, listing the known ones."""
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise ValueError(f"unknown claim {claim_id!r}; known claims: {', '.join(CLAIMS)}") from None
