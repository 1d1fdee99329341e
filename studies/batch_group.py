"""Batch-Group Norm (2 examples × 4 channel groups) against BN and GN at small batch sizes, at
equal, sufficient training: the same epochs at every batch size, with a learning rate tuned for
every norm and batch size (``quick``, ``full``: a small convnet on the 8×8 digits) or the GN
paper's rule 0.1·B/32 with warm-up for all (``standard``: Fashion-MNIST; ``paper``). The verdict
is about the direction and size of the effect at the run's scale, not the paper's ImageNet
numbers.

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

Protocol (`normtheory.tuning`, shared with the ``batch_size`` study): a 3-layer convnet (width
16) on sklearn's 8×8 digits, SGD with momentum 0.9 and a cosine decay to 0 (so the final iterate
is not dominated by the noise of batch-1 steps), the same number of epochs at every batch size —
enough for the largest batch to converge (figure ``convergence``: the training loss per epoch
flattens; after 4 epochs no norm had flattened at batch 8, 0.21 → 0.08 over epochs 3–4 for
BGN) — and for every (norm, batch size) the learning rate of `LRS`: the lowest mean
validation error among 0.1·2^k·√(B/8), k = −4 … 3, trained on the training set minus a stratified
20 % validation part, on tuning seed 1000 (the verdict seeds are 0, 1, …; the test split is
never used to choose; figure ``lr_tuning`` of the ``tune`` run). ``quick``: batch sizes 1, 2, 4,
8, 8 epochs, 5 seeds; ``standard``: Fashion-MNIST (20 000 training examples), a depth-4 net,
batch sizes 2 and 8, 10 epochs, 5 seeds, and the GN paper's rule instead of a tuning run (LR
0.1·B/32, linear warm-up over 5 % of the steps, cosine to 0; as in ``batch_size``); ``full``: batch sizes 1–16, 12 epochs, 8 seeds (its own tuning run,
``tune_full``; cells `LRS` lacks fall back to 0.1·√(B/8)).

``paper`` reproduces Zhou et al. 2020's small-batch comparison (their ImageNet table of BN, GN and
BGN at batch 2 with ResNet-50, and their CIFAR-10 runs): ResNet-20 on CIFAR-10 (random crop +
flip), BN, GN and BGN at batch 2, 4 and 8, BGN as in the paper (statistics over the whole batch ×
a group of channels, ``examples_per_group=0``) with the same 8 groups as GN (the paper's 32 would
leave one channel per group in the 16-channel first stage); SGD with momentum 0.9, weight decay
1e-4, LR 0.1·B/32 with linear warm-up then cosine (as ``batch_size``'s paper profile), 10 epochs,
5 seeds.
"""

from dataclasses import replace

from normtheory.analysis import changes, final_outcomes
from normtheory.evidence import CheckValue, per_condition, sample
from normtheory.experiment import PAPER_DATA, PAPER_EPOCH, STANDARD_DATA, TrainCell
from normtheory.plots import by_condition, paired_change
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study
from normtheory.tuning import LrTable, convergence_figure, tuning_figure, tuning_profile

CLAIM = "BGN-TINY"
NORMS = ("batch", "group", "batch_group")
BGN, RIVALS = "batch_group", {"batch": "BN", "group": "GN"}
SMALL = 8  # the claim's "very small" batch sizes: B <= SMALL
FACTORS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # BASE.lr × these, √(B/8)-scaled
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
    lr_scaling="sqrt",
    ref_batch=8,
    batch_size=8,  # set by the grid's axis
    schedule="cosine",
    epochs=8,
)
# Chosen by `normtheory run batch_group --profile tune --device cpu --out runs/batch_group-tune`,
# then `normtheory.tuning.lr_table_source(normtheory.results.load_cells("runs/batch_group-tune"))`:
# the lowest mean validation error on tuning seed 1000 (`best_lrs`; the lr_tuning figure
# of that run's report shows every candidate).
LRS = LrTable(
    {
        ("batch", 1): 0.03536,
        ("batch", 2): 0.05,
        ("batch", 4): 0.01768,
        ("batch", 8): 0.05,
        ("batch_group", 1): 0.004419,
        ("batch_group", 2): 0.00625,
        ("batch_group", 4): 0.07071,
        ("batch_group", 8): 0.025,
        ("group", 1): 0.004419,
        ("group", 2): 0.0125,
        ("group", 4): 0.07071,
        ("group", 8): 0.1,
    },
    command="normtheory run batch_group --profile tune",
)
QUICK = Grid(BASE, {"norm": NORMS, "batch_size": (1, 2, 4, 8)}, adjust=LRS)
# Fashion-MNIST, a depth-4 net, 10 epochs, batch 2 and 8 (batch 1 would cost 8× batch 8 for a
# BGN that trains as GN there); the batch_size study's rule, LR 0.1·B/32 with warm-up, for all.
STANDARD = Grid(
    replace(BASE, **STANDARD_DATA, depth=4, epochs=10, lr_scaling="linear", ref_batch=32,
            schedule="warmup_cosine"),
    {"norm": NORMS, "batch_size": (2, 8)},
)  # fmt: skip
# ResNet-20 on CIFAR-10, batch 2, 4, 8; BGN pools the whole batch (the paper's), 8 groups; the
# GN paper's LR rule; 10 epochs (as examples: `PAPER_EPOCH`).
PAPER = Grid(
    replace(BASE, **PAPER_DATA, arch="resnet", width=16, depth=20, groups=8, examples_per_group=0,
            weight_decay=1e-4, lr_scaling="linear", ref_batch=32, schedule="warmup_cosine",
            epochs=0, examples=10 * PAPER_EPOCH),
    {"norm": NORMS, "batch_size": (2, 4, 8)},
)  # fmt: skip
FULL = Grid(replace(BASE, epochs=12), {"norm": NORMS, "batch_size": (1, 2, 4, 8, 16)}, adjust=LRS)


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
        xlabel="batch size (log scale; equal epochs)",
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
        xlabel="batch size (log scale; equal epochs)",
    )


STUDY = Study(
    name="batch_group",
    title="Batch-Group Norm vs BN and GN at batch sizes 1–8",
    claims=("BGN-TINY",),
    reference=("quick", "standard"),
    profiles={
        "quick": Profile(
            QUICK,
            seeds=5,
            description="BN, GN, BGN at batch sizes 1, 2, 4, 8, 8 epochs at the tuned learning "
            "rates, 5 seeds",
        ),
        "tune": tuning_profile(
            QUICK, FACTORS, description="the quick cells × 8 learning rates on a validation split"
        ),
        "standard": Profile(
            STANDARD,
            seeds=5,
            description="Fashion-MNIST (20 000), depth 4, BN, GN, BGN at batch 2 and 8, 10 epochs, "
            "LR 0.1·B/32 with warm-up, 5 seeds",
            cost="≈45 min on 2 CPU cores",
        ),
        "paper": Profile(
            PAPER,
            seeds=5,
            description="CIFAR-10 (crop + flip), ResNet-20, BN, GN, BGN at batch 2, 4, 8, 10 "
            "epochs, LR 0.1·B/32 with warm-up, weight decay 1e-4, 5 seeds",
            cost="≈9 h on one H100-class GPU (estimate, not measured: 6.6 M ResNet-20 steps at "
            "≈5 ms, launch-bound at batch ≤ 8)",
            smoke={"max_train": 16, "examples": 16, "width": 4},
        ),
        "full": Profile(FULL, seeds=8, description="batch sizes 1–16, 12 epochs, 8 seeds"),
        "tune_full": tuning_profile(
            FULL, FACTORS, description="the full cells × 8 learning rates on a validation split"
        ),
    },
    statistics=statistics,
    figures={
        "error_vs_batch": error_vs_batch,
        "gap_to_bgn": gap_to_bgn,
        "convergence": convergence_figure,
        "lr_tuning": tuning_figure,
    },
)
