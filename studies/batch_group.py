"""Batch-Group Norm (2 examples × 4 channel groups) against BN and GN at batch sizes 1–8, at
equal examples seen, on a small convnet on the 8×8 digits: the verdict is about the direction and
size of the effect at this scale, not about the paper's ImageNet numbers.

Claim (``CLAIMS.md``; its registered test is in ``normtheory/claims.toml``; Zhou et al. 2020,
"Batch Group Normalization"):
- BGN-TINY (empirical): BGN, which pools its statistics over a block of examples × a group of
  channels × all positions (BN, Ghost BN and GN are special cases), beats both BN and GN at very
  small batch sizes. Statistics, paired by seed and each claimed > 0, one row per batch size
  ≤ 8 of the grid (so a reversal at one batch size cannot be averaged away): ``vs_bn`` = err_BN
  − err_BGN and ``vs_gn`` = err_GN − err_BGN; secondary ``vs_bn_pooled``, ``vs_bn`` averaged
  over those batch sizes within each seed. Check ``bn_trained``: BN's test accuracy at the
  largest batch size of the grid (8 in ``quick``, 16 in ``full``). Test error follows
  `normtheory.analysis.FINAL_METRIC_POLICY`: a diverged cell counts as error 1, a failed one
  is missing.

BGN's shape: blocks of 2 examples (``examples_per_group=2``; ``0`` pools the whole batch, the
same thing at batch ≤ 2) × 4 channel groups — the same groups as GN.
The paper's 32 groups, clipped to the 16 channels of this net, would leave one channel per
group, i.e. Ghost BN with 2-example ghost batches, which equals BN at batch ≤ 2: no test of BGN
at all. With 4 groups of 4 channels BGN is exactly GN pooled over 2 examples (at batch 1 it
trains as GN and differs only in using per-group population statistics at test time), so the
comparison isolates what the extra examples in a statistic buy. BN at batch 1 still trains
(statistics over the 8×8 / 4×4 positions of one image) but tests with population statistics it
never trained with: that mismatch is the effect the claim is about.

Protocol: a 3-layer convnet (width 16) on sklearn's 8×8 digits, SGD with momentum 0.9, the
learning rate scaled linearly with batch size from η = 0.1 at batch 8 (Goyal et al. 2017, as in
the GN paper) and decayed by a cosine to 0 (so the final iterate is not dominated by the noise of
batch-1 steps), and the same number of training examples for every batch size (batch 8 takes
1/8 of the steps of batch 1). ``quick``: batch sizes 1, 2, 4, 8, 1600 examples, 6 seeds;
``full``: batch sizes 1–16, 4000 examples, 8 seeds. At equal examples a larger batch takes fewer
steps, so a norm that needs more steps than another loses ground as the batch grows for that
reason too: read the gap per batch size, not only the pooled one.
"""

from dataclasses import replace

from normtheory.analysis import changes, final_outcomes
from normtheory.evidence import CheckValue, per_condition, sample
from normtheory.experiment import TrainCell
from normtheory.plots import by_condition, paired_change
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

CLAIM = "BGN-TINY"
NORMS = ("batch", "group", "batch_group")
BGN, RIVALS = "batch_group", {"batch": "BN", "group": "GN"}
SMALL = 8  # the claim's "very small" batch sizes: B <= SMALL
BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=3,
    groups=4,  # GN and BGN: 4 groups of 4 channels
    examples_per_group=2,  # BGN only (BN and GN take no such option)
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    lr_scaling="linear",
    ref_batch=8,
    batch_size=8,  # set by the grid's axis; 8 keeps small `examples=` overrides valid
    schedule="cosine",
    examples=1600,
)


def statistics(results: Results):
    outcomes = final_outcomes(results.cells)
    means = outcomes.groupby(["norm", "batch_size"])["test_error"].mean()
    gaps = changes(outcomes, "test_error", "norm", BGN, by="batch_size")  # err_X − err_BGN
    gaps = gaps[gaps["batch_size"] <= SMALL]

    def detail(norm):
        return lambda b: (
            f"mean test error {RIVALS[norm]} {means[norm, b]:.3f}, BGN {means[BGN, b]:.3f}"
        )

    out = [row for norm, short in RIVALS.items() for row in per_condition(
        CLAIM, f"vs_{short.lower()}", gaps[gaps["norm"] == norm], "batch_size", detail=detail(norm))]  # fmt: skip
    bn = gaps[gaps["norm"] == "batch"]
    if len(bn):
        # Pool over batch sizes within a seed first: the seeds are the independent samples.
        sizes = ", ".join(map(str, sorted(bn["batch_size"].unique())))
        pooled = bn.groupby("seed")["change"].mean()
        out.append(sample(CLAIM, "vs_bn_pooled", pooled, detail=f"batch sizes {sizes}"))
    bn_err = outcomes[outcomes["norm"] == "batch"].dropna(subset=["test_error"])
    if len(bn_err):  # BN at the grid's largest batch: the baseline the claim needs trained
        top = bn_err["batch_size"].max()
        acc = 1 - bn_err.loc[bn_err["batch_size"] == top, "test_error"].mean()
        out.append(CheckValue(CLAIM, "bn_trained", acc, f"BN at batch {top}"))
    return out


def error_vs_batch(results: Results):
    """Test error vs batch size per norm (mean, 95 % t-CI band over seeds)."""
    return by_condition(
        final_outcomes(results.cells),
        "test_error",
        "batch_size",
        hue="norm",
        categorical=False,
        logx=2,
        clip=(0, 1),
        title="BN, GN and Batch-Group Norm at tiny batch sizes",
        ylabel="test error (fraction)",
        xlabel="batch size (log scale; equal examples seen)",
    )


def gap_to_bgn(results: Results):
    """The paired gap err_X − err_BGN (same seed) per batch size: > 0 where BGN is better."""
    return paired_change(
        final_outcomes(results.cells),
        "test_error",
        "norm",
        BGN,
        x="batch_size",
        categorical=False,
        logx=2,
        labels={n: f"err {short} − err BGN" for n, short in RIVALS.items()},
        title="Test error gap to Batch-Group Norm, paired by seed",
        ylabel="err X − err BGN (> 0: BGN better)",
        xlabel="batch size (log scale; equal examples seen)",
    )


STUDY = Study(
    name="batch_group",
    title="Batch-Group Norm vs BN and GN at batch sizes 1–8",
    claims=("BGN-TINY",),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": NORMS, "batch_size": (1, 2, 4, 8)}),
            seeds=6,
            description="BN, GN, BGN at batch sizes 1, 2, 4, 8, 1600 examples each, 6 seeds",
        ),
        "full": Profile(
            Grid(replace(BASE, examples=4000), {"norm": NORMS, "batch_size": (1, 2, 4, 8, 16)}),
            seeds=8,
            description="batch sizes 1–16, 4000 examples each, 8 seeds",
        ),
    },
    statistics=statistics,
    figures={"error_vs_batch": error_vs_batch, "gap_to_bgn": gap_to_bgn},
)
