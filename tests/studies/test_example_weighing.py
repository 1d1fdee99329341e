"""The example_weighing study: a smoke run through the CLI on a tiny grid (w = 0 is the standard
evaluation), and its EX-WEIGH verdicts on synthetic results with known answers."""

import numpy as np
import pandas as pd
import pytest

from normtheory.hooks import ExampleWeighing
from normtheory.results import Results
from normtheory.verdicts import judge_study
from studies.example_weighing import MULTIPLES, STUDY, weighing_table

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["abs_loss_gap_reduction", "acc_gain", "output_gap_reduction", "signed_loss_gap_change"]


def test_example_weighing(study_cli):
    out, rows = study_cli.run("example_weighing", "batch_size=4,8", "examples=96", "width=4")
    assert set(rows["claim"]) == {"EX-WEIGH"} and sorted(rows["name"]) == NAMES
    assert (rows["n_seeds"] == 2).all() and np.isfinite(rows["estimate"]).all()
    claim = study_cli.claims().set_index("claim").loc["EX-WEIGH"]
    assert claim["verdict"] in {"inconclusive", "not testable at this scale"}
    study_cli.figures(["weighing"])
    results = Results.load(out)
    table = weighing_table(results)
    assert len(table) == 2 * 2 * len(MULTIPLES) * 4  # batch × seed × w × metric
    assert (table["w"] <= 1).all() and table["w"].min() == 0
    # w = 0 is the standard eval-mode evaluation the training loop ended with.
    acc0 = table[(table["metric"] == "test_acc") & (table["multiple"] == 0)]
    final = results.cells.set_index(["batch_size", "seed"])["final_test_acc"]
    assert acc0.set_index(["batch_size", "seed"])["value"].sort_index().to_numpy() == (
        pytest.approx(final.sort_index().to_numpy())
    )
    gaps = table[table["metric"] == "output_gap"]["value"]
    assert (gaps >= 0).all() and np.isfinite(gaps).all()
    # The statistics average the two batch sizes within a seed.
    acc = acc0.set_index(["batch_size", "seed"])["value"]
    at1 = table[(table["metric"] == "test_acc") & (table["multiple"] == 1)]
    gain = at1.set_index(["batch_size", "seed"])["value"] - acc
    assert rows.set_index("name").loc["acc_gain", "estimate"] == pytest.approx(gain.mean())


def _results(gain, out_cut, *, acc0=0.9, seeds=6, sizes=(8, 32)) -> Results:
    """Records of nets trained at `sizes`: at w = 1/B (and above) the test accuracy is higher by
    `gain` and the output gap lower by `out_cut` than at w = 0, plus seed noise; the loss gap
    (eval − train) falls from 0.05 to 0.02."""
    rng = np.random.default_rng(1)
    rows, cells = [], []
    for b in sizes:
        for s in range(seeds):
            base = acc0 + rng.normal(0, 0.01)
            cell = {"cell": f"batch_size={b}", "seed": s, "batch_size": b}
            cells.append({**cell, "status": "completed", "final_test_acc": base})  # w = 0
            g, o, lg = rng.normal(gain, 0.003), rng.normal(out_cut, 0.01), rng.normal(0.03, 0.005)
            for m in MULTIPLES:
                on = m > 0
                values = {
                    "test_acc": base + on * g,
                    "test_loss": 0.3,
                    "output_gap": 0.2 - on * o,
                    "loss_gap": 0.05 - on * lg,
                }
                rows += [
                    {**cell, "step": 99, "metric": ExampleWeighing.PREFIX + k, "key": f"{m:g}",
                     "value": v}
                    for k, v in values.items()
                ]  # fmt: skip
    return Results(pd.DataFrame(rows), pd.DataFrame(cells), {})


def test_example_weighing_verdicts_on_known_answers():
    """Weighing helps accuracy and closes the output gap → supported; it widens the output gap
    (as the quick profile measured) → refuted; BN untrained → not testable; 3 seeds →
    underpowered. Batch sizes are averaged within a seed, never counted as extra seeds."""
    good = judge_study(STUDY, _results(0.01, 0.05))["EX-WEIGH"]
    assert good.verdict == "supported"
    rows = {r.name: r for r in good.rows}
    assert sorted(rows) == NAMES and {r.n_seeds for r in rows.values()} == {6}
    assert rows["acc_gain"].estimate == pytest.approx(0.01, abs=0.003)
    assert rows["output_gap_reduction"].estimate == pytest.approx(0.05, abs=0.01)
    assert rows["signed_loss_gap_change"].estimate == pytest.approx(0.03, abs=0.005)
    assert judge_study(STUDY, _results(0.01, -0.05))["EX-WEIGH"].verdict == "refuted"
    # The check reads w = 0: nets below 85 % there stay untestable though w = 1/B reaches 86 %.
    untrained = judge_study(STUDY, _results(0.03, 0.05, acc0=0.83))["EX-WEIGH"]
    assert untrained.verdict == "not testable at this scale"
    few = judge_study(STUDY, _results(0.01, 0.05, seeds=3))["EX-WEIGH"]
    assert (few.verdict, few.note) == ("inconclusive", "underpowered")


def test_example_weighing_loss_gap_size_and_sign():
    """A loss gap that flips sign (eval − train from +0.05 to −0.05) is no smaller in size: the
    absolute reduction is 0 while the signed change is 0.1."""
    results = _results(0.01, 0.05)
    rec = results.records
    lg = (rec["metric"] == ExampleWeighing.LOSS_GAP) & (rec["key"] != "0")
    rec.loc[lg, "value"] = -0.05
    rows = {r.name: r for r in judge_study(STUDY, results)["EX-WEIGH"].rows}
    assert rows["abs_loss_gap_reduction"].estimate == pytest.approx(0.0, abs=1e-12)
    assert rows["signed_loss_gap_change"].estimate == pytest.approx(0.1)


def test_example_weighing_check_counts_a_diverged_net_as_untrained():
    """``bn_trained`` reads the final test accuracy under the one final-metric policy: a net that
    diverged (so it has no weighing records) counts as accuracy 0, not as missing."""
    results = _results(0.01, 0.05)
    diverged = {"cell": "batch_size=8", "seed": 6, "batch_size": 8, "status": "diverged"}
    cells = pd.concat([results.cells, pd.DataFrame([diverged])], ignore_index=True)
    claim = judge_study(STUDY, Results(results.records, cells, {}))["EX-WEIGH"]
    assert claim.checks[0][1] == pytest.approx(0.9 * 12 / 13, abs=0.01)
    assert claim.verdict == "not testable at this scale"
