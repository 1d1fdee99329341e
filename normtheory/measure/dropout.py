"""What element-wise dropout does to pairwise dependence between units (claims IC-CORR, IC-MI).

Inverted dropout of keep probability q, x̂ = m x / q with m ~ Bernoulli(q) per element
(Chen et al. 2019, the IC layer), shrinks correlation linearly and mutual information
quadratically in q:

    corr(x̂_i, x̂_j) = q · corr(x_i, x_j)     (IC-CORR; needs E[x] = 0, else the factor is < q)
    I(x̂_i; x̂_j) = q² · I(x_i; x_j)           (IC-MI; needs no mass at 0, else it is a strict <)

`dropout_ratios` measures both factors on given activations with hand-drawn masks (the exact
check); `module_dropout_ratios` with the masks of a network's own ``nn.Dropout`` module (the IC
layer inside a trained net). Both use the estimators of `normtheory.measure.information`.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from normtheory.measure import _rank
from normtheory.measure._rank import default_bins
from normtheory.measure.information import pairwise_correlation, pairwise_mutual_information, upper
from normtheory.state import preserved_rng


@dataclass(frozen=True)
class DropoutRatios:
    """How much element-wise dropout of keep probability q shrinks pairwise dependence.

    Attributes:
        keep: q.
        corr: slope through the origin of corr(x̂_i, x̂_j) on corr(x_i, x_j) over all pairs,
            Σ ρ̂ ρ / Σ ρ² (IC-CORR: q when E[x] = 0).
        mi: the same for binned MI (IC-MI: q² when no unit has mass at 0).
        corr_before, mi_before: mean |corr| and mean MI over pairs before dropout.
        n_samples: examples × masks behind the "after" estimates.
        n_constant: units constant over the examples (e.g. a dead ReLU after BN: the constant β),
            left out; dropout would make them vary, but they carry no dependence to shrink.
    """

    keep: float
    corr: float
    mi: float
    corr_before: float
    mi_before: float
    n_samples: int
    n_constant: int = 0


def dropout_ratios(
    acts: Tensor | np.ndarray,
    keep: float,
    *,
    n_masks: int = 16,
    n_bins: int | None = None,
    seed: int = 0,
) -> DropoutRatios:
    """Pairwise correlation and MI of `acts` (N, d) before and after dropout with keep prob q.

    Each example is repeated `n_masks` times with independent Bernoulli(q) masks (scaled by
    1/q, as ``nn.Dropout(p=1 − q)`` in training). MI is binned with the same `n_bins` before
    and after (default round(1.25 N^(1/3)) for the N distinct examples), the dropout atom in a
    bin of its own, and "before" is estimated on the same N · n_masks rows (the examples
    repeated, i.e. q = 1), so both estimates are of the same discretization of the same
    examples with the same bias correction, and the ratio is not biased by them. Masks come from a local generator (`seed`).
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    x = _units(acts, n_masks)
    gen = torch.Generator().manual_seed(seed)
    tiled = x.repeat(n_masks, 1)
    mask = (torch.rand(tiled.shape, generator=gen, dtype=torch.float64) < keep).to(x.device)
    return _ratios(x, tiled, tiled * mask.to(tiled.dtype) / keep, keep, n_bins)


def module_dropout_ratios(
    acts: Tensor | np.ndarray,
    dropout: nn.Dropout,
    *,
    n_masks: int = 16,
    n_bins: int | None = None,
    seed: int = 0,
) -> DropoutRatios:
    """`dropout_ratios` with the masks drawn by `dropout` itself, q = 1 − ``dropout.p``.

    The (N, d) units (moved to the CPU, float64) are repeated `n_masks` times and passed through
    the module in train mode, its masks drawn from the CPU generator seeded with `seed`; the
    module's mode and every RNG stream are restored afterwards, so a training run that calls
    this is not changed by it. "Before" and the MI bins are as in `dropout_ratios`.
    """
    if not isinstance(dropout, nn.Dropout):
        raise TypeError(f"dropout must be an nn.Dropout, got {type(dropout).__name__}")
    keep = round(1.0 - dropout.p, 12)  # p = 1 - q is not exact in floating point
    if keep <= 0:
        raise ValueError(f"the module drops everything (p = {dropout.p}); keep must be > 0")
    x = _units(acts, n_masks).to("cpu", torch.float64)
    tiled = x.repeat(n_masks, 1)
    was_training = dropout.training
    try:
        with preserved_rng(), torch.no_grad():
            torch.default_generator.manual_seed(seed)  # the CPU stream only: x is on the CPU
            after = dropout.train()(tiled)
    finally:
        dropout.train(was_training)
    return _ratios(x, tiled, after, keep, n_bins, same_bins=True)


def _units(acts, n_masks: int) -> Tensor:
    if n_masks < 1:
        raise ValueError(f"n_masks must be >= 1, got {n_masks!r}")
    x = torch.as_tensor(acts)
    if x.ndim != 2:
        raise ValueError(f"acts must have shape (N, d), got {tuple(x.shape)}")
    return x


def _ratios(
    x: Tensor, tiled: Tensor, after: Tensor, keep: float, n_bins: int | None, same_bins=False
):
    """The ratios from the N distinct rows `x`, their repeats `tiled` and `after` dropout, over
    the units that are not constant in `x`; MI by `_same_bins_mi` or, without `same_bins`,
    binned afresh after dropout (same bin count, equal-mass bins of the after values)."""
    varies = (x != x[:1]).any(0)  # (d,)
    x, tiled, after = x[:, varies], tiled[:, varies], after[:, varies]
    n_bins = n_bins or default_bins(x.shape[0])
    c0, c1 = upper(pairwise_correlation(x)), upper(pairwise_correlation(after))
    if same_bins:
        m0, m1 = _same_bins_mi(x, after, n_bins)
    else:  # "before" on the same N · n_masks rows (the q = 1 case): the same Miller–Madow terms
        m0 = upper(pairwise_mutual_information(tiled, method="binned", n_bins=n_bins))
        m1 = upper(pairwise_mutual_information(after, method="binned", n_bins=n_bins))
    if c0.numel() != c1.numel() or m0.numel() != m1.numel():
        raise ValueError("dropout made a unit constant (all dropped); use more examples or masks")
    return DropoutRatios(
        keep=float(keep),
        corr=float((c0 * c1).sum() / c0.square().sum()),
        mi=float((m0 * m1).sum() / m0.square().sum()),
        corr_before=float(c0.abs().mean()),
        mi_before=float(m0.mean()),
        n_samples=after.shape[0],
        n_constant=int((~varies).sum()),
    )


def _same_bins_mi(x: Tensor, after: Tensor, n_bins: int) -> tuple[Tensor, Tensor]:
    """Pairwise binned MI (upper triangles) of the units before and after dropout, with one
    fixed partition of each unit's values: the bins of the N examples `x` (equal mass, an atom
    such as the ReLU one in a bin of its own), and the value 0 in the bin it has in `x` or, when
    no example is 0, in a bin of its own. A kept value keeps its example's bin; a dropped one is
    a 0. So "before" and "after" are the same discretization, and for it I(after) = q² I(before)
    holds exactly in expectation when no unit takes the value 0, and is smaller when one does
    (dropped and inactive zeros share a bin). Both on the N · n_masks rows (same Miller–Madow
    terms). Re-binning the after values by rank instead gives the continuous part fewer bins
    when a second atom (the ReLU one after BN) remains, which biases the ratio down.
    """
    n, d = x.shape
    codes = _rank.bin_codes(x.T.contiguous(), n_bins)  # (d, N) in [0, n_bins]
    zero = x == 0  # (N, d)
    zero_code = torch.full((d,), n_bins + 1, dtype=codes.dtype)
    has_zero = zero.any(0)
    first = zero.to(torch.int8).argmax(0)  # (d,) first example at 0, where there is one
    zero_code[has_zero] = codes[has_zero, first[has_zero]]
    before = codes.repeat(1, after.shape[0] // n)  # (d, N · n_masks), rows as `after`
    dropped = after.T.cpu() == 0  # -0.0 too
    after_codes = torch.where(dropped, zero_code[:, None], before)
    return tuple(_upper(_rank.codes_mi(c, n_bins + 2)) for c in (before, after_codes))


def _upper(matrix: Tensor) -> Tensor:
    i, j = torch.triu_indices(*matrix.shape, offset=1)
    return matrix[i, j]
