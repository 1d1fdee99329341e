"""What element-wise dropout does to pairwise dependence between units (claims IC-CORR, IC-MI).

Inverted dropout of keep probability q, x̂ = m x / q with m ~ Bernoulli(q) per element
(Chen et al. 2019, the IC layer), shrinks correlation linearly and mutual information
quadratically in q:

    corr(x̂_i, x̂_j) = q · corr(x_i, x_j)     (IC-CORR; needs E[x] = 0, else the factor is < q)
    I(x̂_i; x̂_j) = q² · I(x_i; x_j)           (IC-MI; needs no mass at 0, else it is a strict <)

`dropout_ratios` measures both factors on given activations with the estimators of
`normtheory.measure.information`.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from normtheory.measure._rank import default_bins
from normtheory.measure.information import pairwise_correlation, pairwise_mutual_information, upper


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
    """

    keep: float
    corr: float
    mi: float
    corr_before: float
    mi_before: float
    n_samples: int


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
    if n_masks < 1:
        raise ValueError(f"n_masks must be >= 1, got {n_masks!r}")
    x = torch.as_tensor(acts)
    if x.ndim != 2:
        raise ValueError(f"acts must have shape (N, d), got {tuple(x.shape)}")
    n_bins = n_bins or default_bins(x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    tiled = x.repeat(n_masks, 1)
    mask = (torch.rand(tiled.shape, generator=gen, dtype=torch.float64) < keep).to(x.device)
    after = tiled * mask.to(tiled.dtype) / keep
    c0, c1 = upper(pairwise_correlation(x)), upper(pairwise_correlation(after))
    # "before" on the same N · n_masks rows (the q = 1 case): the same Miller–Madow terms
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
    )
