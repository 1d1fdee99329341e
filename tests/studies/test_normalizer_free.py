"""The normalizer_free study: a smoke run through the CLI on a tiny grid (accuracy cells and LR
searches), the tag-keyed LR table, and known-answer tests of the NF-MATCH, BNN-NOBN and AGC-LR
verdicts on synthetic results."""

import numpy as np
import pandas as pd
import pytest

from normtheory.results import Results
from normtheory.tuning import LrTable
from normtheory.verdicts import judge_study
from studies.normalizer_free import BASE, SEARCH, STUDY, NFCell

pytestmark = pytest.mark.usefixtures("one_thread")

NF, NO = SEARCH["NF+AGC"]["tag"], SEARCH["NF"]["tag"]


def test_smoke(study_cli):
    out, rows = study_cli.run("normalizer_free", "epochs=1", "width=4")
    assert sorted(rows["name"]) == ["bnn_nf_vs_bn", "log10_lr_ratio", "nf_vs_bn"]
    assert set(rows.loc[rows["name"] != "log10_lr_ratio", "condition"]) == {"64"}
    claims = study_cli.claims().set_index("claim")
    for claim in ("NF-MATCH", "AGC-LR", "BNN-NOBN"):
        assert claims.loc[claim, "verdict"] in {"inconclusive", "not testable at this scale"}
    study_cli.figures(["accuracy", "stability"])
    cells = Results.load(out).cells
    assert len(cells) == 12 and set(cells["status"]) <= {"completed", "diverged"}
    searched = cells[cells["search"].astype(bool)]
    assert set(searched["tag"]) == {NF, NO} and (searched["final_n_probes"] >= 2).all()
    assert set(cells.loc[cells["binary"].astype(bool), "tag"]) == {"BNN+BN", "BNN+NF+AGC"}


def test_the_lr_table_is_keyed_by_tag_and_batch():
    """BN and its binary version share the norm: the table tells them apart by their tag."""
    table = LrTable({("BN", 64): 0.4, ("BNN+BN", 64): 1.6}, keys=("tag", "batch_size"))
    bn = NFCell(**{**BASE.__dict__, "tag": "BN"})
    assert table(bn).lr == 0.4 and table(NFCell(**{**BASE.__dict__, "tag": "BNN+BN"})).lr == 1.6
    assert table(NFCell(**{**BASE.__dict__, "tag": "NF+AGC"})).lr == BASE.lr  # not tuned


def synthetic(*, nf_gap=0.0, bnn_gap=-0.003, ratio=1.0, seeds=5, bn_acc=0.95, unbracketed=()):
    """Accuracy cells (BN, NF+AGC, binary versions at batch 64; NF+AGC = BN + nf_gap, binary NF =
    binary BN + bnn_gap, with seed noise) and searches at batch 256 (NF at 1.0, NF+AGC at
    10^ratio, final brackets 0.15 wide)."""
    rng = np.random.default_rng(1)
    cells = []
    for seed in range(seeds):
        base = bn_acc + rng.normal(0, 0.01)
        accs = {"BN": base, "NF+AGC": base + nf_gap, "BNN+BN": base - 0.05,
                "BNN+NF+AGC": base - 0.05 + bnn_gap}  # fmt: skip
        for tag, acc in accs.items():
            cells.append(dict(cell=f"tag={tag}", seed=seed, tag=tag, batch_size=64, search=False,
                              status="completed", lr=0.1,
                              final_test_acc=acc + rng.normal(0, 0.002)))  # fmt: skip
        for tag, limit in ((NO, 1.0), (NF, 10.0**ratio)):
            ok = (tag, seed) not in unbracketed
            cells.append(dict(cell=f"tag={tag}", seed=seed, tag=tag, batch_size=256, search=True,
                              status="completed", lr=0.1,
                              final_max_stable_lr=limit if ok else np.nan,
                              final_bracket_width=0.15 if ok else np.nan,
                              final_bracketed=float(ok)))  # fmt: skip
    return Results(pd.DataFrame(columns=["metric"]), pd.DataFrame(cells), {})


def verdicts(**kw):
    return judge_study(STUDY, synthetic(**kw))


def test_known_answers():
    good = verdicts()
    assert good["NF-MATCH"].verdict == "supported", good["NF-MATCH"].reason
    assert good["BNN-NOBN"].verdict == "supported", good["BNN-NOBN"].reason
    assert good["AGC-LR"].verdict == "supported", good["AGC-LR"].reason
    row = good["AGC-LR"].headline
    assert row.estimate == pytest.approx(1.0) and row.n_seeds == 5
    assert good["NF-MATCH"].headline.condition == "64"
    bad = verdicts(nf_gap=-0.04, bnn_gap=-0.04, ratio=0.0)
    assert {bad[c].verdict for c in ("NF-MATCH", "BNN-NOBN", "AGC-LR")} == {"refuted"}
    # a binary BN net that did not train is no baseline
    assert verdicts(bn_acc=0.82)["BNN-NOBN"].verdict == "not testable at this scale"
    assert verdicts(unbracketed=[(NO, 2)])["AGC-LR"].verdict == "not testable at this scale"
    few = verdicts(seeds=3)
    assert (few["NF-MATCH"].verdict, few["NF-MATCH"].note) == ("inconclusive", "underpowered")
