"""How test error depends on batch size for each normalization scheme, at equal examples seen.

Claims (``CLAIMS.md``; their registered tests are in ``normtheory/claims.toml``). B_min and B_max
are the smallest and largest batch sizes of the grid; every statistic is one value per seed.
- GN-BATCH (Wu & He 2018): BN's error rises sharply as the batch shrinks; GN stays flat.
  ``bn_rise`` = err_BN(B_min) − err_BN(B_max) (claimed > 0) and ``gn_rise``, the same for GN
  (claimed equivalent to 0). Checks: BN at B_max is trained (``bn_trained``, mean test
  accuracy) and its mean rise is there at all (``bn_penalty``): without the cause GN removes,
  the claim cannot be tested.
- WS-MICRO (Qiao et al. 2019): GN+WS at the smallest batch matches or beats BN at the largest.
  ``ws_vs_bn`` = err_GN+WS(B_min) − err_BN(B_max), paired by seed (non-inferiority: < 1 point).
- FRN-BATCH (Singh & Krishnan 2019): FRN+TLU beats GN at small batches.
  ``gn_vs_frn`` = err_GN(B_min) − err_FRN(B_min); check ``frn_trained``: FRN's accuracy there.
  Exact ``batch_independence``: the largest FRN `BatchDependence` change at the end of a run
  (8 probe examples, all but the first replaced by 8 others), over cells, seeds and layers.
Batch-Group Norm is trained too, for the figure: BGN-TINY is tested by the ``batch_group`` study.

Profiles: ``quick`` trains the four norms the claims compare (BN, GN, GN+WS, FRN) and BGN at batch
sizes 2, 8, 32 with 5 seeds; ``full`` adds LN, IN and no norm, batch sizes 1–128 and 5 seeds.

Protocol: a small convnet on sklearn's handwritten digits (8×8), SGD with momentum, the learning
rate scaled linearly with batch size (Goyal et al. 2017, as in the GN paper), and the same number
of training examples for every batch size. The ImageNet numbers are not the target: the verdict
is about the direction and size of the effect at this scale. Test error follows the one final
metric policy (`normtheory.analysis.FINAL_METRIC_POLICY`): a diverged cell counts as error 1, a
failed one is missing.
"""

from normtheory.analysis import final_outcomes, paired, seed_table
from normtheory.evidence import CheckValue, Exact, sample
from normtheory.experiment import TrainCell, probe_batch
from normtheory.hooks import BatchDependence, LossAccuracy, at_end
from normtheory.plots import by_condition, norm_label
from normtheory.results import Results
from normtheory.study import Grid, Profile, Study

NORMS = ("batch", "group", "layer", "instance", "group+ws", "frn", "batch_group", "none")
CLAIM_NORMS = ("batch", "group", "group+ws", "frn", "batch_group")  # the claims' norms and BGN
BASE = TrainCell(
    dataset="digits",
    arch="convnet",
    width=16,
    depth=3,
    groups=4,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    lr_scaling="linear",
    ref_batch=32,
    examples=4400,
)


def hooks(cell: TrainCell):
    x = probe_batch(cell, 16)[0]
    return [LossAccuracy(every=10), BatchDependence(probe=x[:8], other=x[8:], every=at_end())]


def _batch_independence(rec) -> list[Exact]:
    """Exact row: the largest FRN change (cells, seeds, layers); BN's range as the contrast."""
    if "metric" not in rec:
        return []
    rec = rec[rec["metric"] == BatchDependence.MAX_CHANGE]
    frn, bn = rec[rec["norm"] == "frn"], rec[rec["norm"] == "batch"]["value"]
    if frn.empty:
        return []
    detail = f"FRN max; contrast BN {bn.min():.2g}–{bn.max():.2g} (same probes)"
    value, n = float(frn["value"].max()), frn["seed"].nunique()
    return [Exact("FRN-BATCH", "batch_independence", value, n, detail)]


def statistics(results: Results):
    err = seed_table(final_outcomes(results.cells), "test_error", ["norm", "batch_size"])
    sizes = sorted(err.columns.get_level_values("batch_size").unique())
    lo, hi = sizes[0], sizes[-1]
    have = set(err.columns)

    def means(*keys):
        parts = (f"{norm_label(n)}@{b} {err[n, b].mean():.3f}" for n, b in keys)
        return "test error " + ", ".join(parts)

    out = []
    if lo < hi and {("batch", lo), ("batch", hi)} <= have:
        bn_rise = paired(err, ("batch", lo), ("batch", hi))
        bn_acc = 1 - err["batch", hi].mean()
        out += [
            sample("GN-BATCH", "bn_rise", bn_rise, detail=means(("batch", lo), ("batch", hi))),
            CheckValue("GN-BATCH", "bn_trained", bn_acc, f"BN@{hi}"),
            CheckValue("GN-BATCH", "bn_penalty", bn_rise.mean(), f"BN, batch {hi}→{lo}"),
        ]
        if {("group", lo), ("group", hi)} <= have:
            gn_rise = paired(err, ("group", lo), ("group", hi))
            detail = means(("group", lo), ("group", hi))
            out.append(sample("GN-BATCH", "gn_rise", gn_rise, detail=detail))
        if ("group+ws", lo) in have:
            gap = paired(err, ("group+ws", lo), ("batch", hi))
            detail = means(("group+ws", lo), ("batch", hi))
            out += [
                sample("WS-MICRO", "ws_vs_bn", gap, detail=detail),
                CheckValue("WS-MICRO", "bn_trained", bn_acc, f"BN@{hi}"),
            ]
    if {("group", lo), ("frn", lo)} <= have:
        frn = err["frn"].mean()
        spread = f"FRN {frn.min():.3f}–{frn.max():.3f} over all batch sizes"
        detail = f"{means(('group', lo), ('frn', lo))}; {spread}"
        out += [
            sample(
                "FRN-BATCH", "gn_vs_frn", paired(err, ("group", lo), ("frn", lo)), detail=detail
            ),
            CheckValue("FRN-BATCH", "frn_trained", 1 - err["frn", lo].mean(), f"FRN@{lo}"),
        ]
    return out + _batch_independence(results.records)


def error_vs_batch(results: Results):
    """One panel per norm (three to a row): test error vs batch size, t-CI band over seeds; BN
    dashed gray in every other panel for reference."""
    return by_condition(
        final_outcomes(results.cells),
        "test_error",
        "batch_size",
        panel="norm",
        reference="batch",
        categorical=False,
        logx=2,
        clip=(0, 1),
        title="Test error vs batch size at equal examples seen",
        ylabel="test error (fraction)",
        xlabel="batch size (log scale)",
    )


STUDY = Study(
    name="batch_size",
    title="Test error vs batch size for every normalization scheme",
    claims=("GN-BATCH", "WS-MICRO", "FRN-BATCH"),
    profiles={
        "quick": Profile(
            Grid(BASE, {"norm": CLAIM_NORMS, "batch_size": (2, 8, 32)}),
            seeds=5,
            description="the four norms the claims compare and BGN, 3 batch sizes, 5 seeds, "
            "≈5 min on 2 CPU cores",
        ),
        "full": Profile(
            Grid(BASE, {"norm": NORMS, "batch_size": (1, 2, 4, 8, 16, 32, 64, 128)}),
            seeds=5,
            description="8 batch sizes, 5 seeds",
        ),
    },
    hooks=hooks,
    statistics=statistics,
    figures={"error_vs_batch": error_vs_batch},
)
