"""`normtheory.report.tables`: numbers as the report prints them, and which run's verdict stands
for a claim when several runs judged it: a run that reached a verdict, complete, of the highest
profile tier, then the latest; an exact claim holds only when every run's exact rows hold. The
sections are built by hand, so each rule is checked on its own."""

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from normtheory.claims import CLAIMS
from normtheory.report.tables import (
    Section,
    claim_rows,
    estimate_text,
    fmt,
    meta,
    statistic_rows,
)
from normtheory.stats import NOT_RUN, Verdict
from normtheory.verdicts import ClaimVerdict

CLAIM = "GN-BATCH"  # empirical, registered to the batch_size study
EXACT = "BN-GRAD"  # exact, registered to exact_checks


def _verdict(claim=CLAIM, verdict="supported", est=0.1, lo=0.05, hi=0.15, n=5, stat="s"):
    return Verdict(claim, verdict, stat, est, lo, hi, 0.95, n, "t", name=stat)


def _section(run, verdict="supported", *, claim=CLAIM, study=None, profile="quick",
             finished="2026-01-01", expected=4, complete=4, rows=None, tier=None) -> Section:  # fmt: skip
    rows = rows if rows is not None else [_verdict(claim, verdict)]
    cv = ClaimVerdict(claim, verdict, rows=rows, n_seeds=5, headline=rows[0] if rows else None)
    manifest = {"profile": profile, "finished_at": finished, "tests": {}}
    if tier is not None:  # runs stored before tiers were recorded have none
        manifest["tier"] = tier
    return Section(
        run=Path("runs") / run, study_name=study or CLAIMS[claim].study, title="t",
        description="", manifest=manifest, claim_verdicts={claim: cv}, expected=expected,
        complete=complete,
    )  # fmt: skip


def _stands(sections, claim=CLAIM) -> dict:
    return next(r for r in claim_rows(sections, {}) if r["claim"] == claim)


@pytest.mark.parametrize(
    "x,text",
    [(None, "–"), (math.nan, "–"), (math.inf, "–"), (0.123456, "0.123"), (1234.5, "1.23e+03"),
     (5, "5")],
)  # fmt: skip
def test_fmt(x, text):
    assert fmt(x) == text


def test_estimate_text():
    assert estimate_text(_verdict(est=0.1, lo=0.05, hi=0.15)) == "0.1 [0.05, 0.15]"
    assert estimate_text(_verdict(lo=math.nan, hi=math.nan)) == "0.1"  # no interval
    assert estimate_text(_verdict(verdict="exact-holds", est=1e-12)) == "1e-12"
    assert estimate_text(_verdict(verdict=NOT_RUN)) == estimate_text(None) == "–"


def test_without_runs_every_claim_is_a_not_run_row_naming_the_command():
    rows = claim_rows([], {CLAIM: ["normtheory run batch_size", "normtheory run x"]})
    assert [r["claim"] for r in rows] == list(CLAIMS)
    assert {r["verdict"] for r in rows} == {NOT_RUN}
    assert _stands([])["reason"] == "not run: no study tests it yet"
    row = next(r for r in rows if r["claim"] == CLAIM)
    assert row["reason"] == "not run: `normtheory run batch_size` or `normtheory run x`"


@pytest.mark.parametrize(
    "a,b",
    [
        (dict(verdict=NOT_RUN), dict(verdict="refuted")),  # a verdict beats none
        (dict(complete=2), dict(finished="2020-01-01")),  # complete beats partial, even older
        (dict(profile="paper", complete=2), dict(profile="quick")),  # partial loses first
        (dict(profile="quick"), dict(profile="standard", finished="2020-01-01")),  # tier
        (
            dict(profile="paper", tier="quick"),
            dict(profile="x", tier="standard", finished="2020-01-01"),
        ),  # the recorded tier
        (dict(profile="quick", tier="quick"), dict(profile="full", finished="2020-01-01")),
        (dict(finished="2026-01-01"), dict(finished="2026-02-01")),  # then the latest
        (dict(study="other"), dict(finished="2020-01-01", profile="quick")),  # its own study
    ],
    ids=[
        "verdict",
        "complete",
        "complete-over-tier",
        "tier",
        "recorded-tier",
        "full-over-quick",
        "latest",
        "registered-study",
    ],
)
def test_which_run_stands_for_a_claim(a, b):
    sections = [_section("a", **({"verdict": "supported"} | a)), _section("b", **b)]
    for order in (sections, sections[::-1]):
        assert _stands(order)["run"] == "b"


def test_an_exact_claim_holds_only_when_every_runs_exact_rows_hold():
    holds = [_verdict(EXACT, "exact-holds", est=1e-12, stat="max_rel_error")]
    fails = [_verdict(EXACT, "exact-fails", est=0.3, stat="bad identity")]
    both_hold = [_section("a", "exact-holds", claim=EXACT, rows=holds),
                 _section("b", "exact-holds", claim=EXACT, rows=holds, study="other")]  # fmt: skip
    row = _stands(both_hold, EXACT)
    assert row["verdict"] == "exact-holds" and row["run"] == "a"  # its registered study's run
    assert row["reason"] == "2 exact check(s) within tolerance in a, b"
    one_fails = [both_hold[0], _section("c", "exact-fails", claim=EXACT, rows=fails)]
    row = _stands(one_fails, EXACT)
    assert row["verdict"] == "exact-fails" and row["run"] == "c"
    assert row["reason"] == "fails: bad identity" and row["estimate"] == "0.3"


def test_an_exact_claims_secondary_rows_show_next_to_its_verdict():
    """The sampled secondary row of an exact claim (IC-CORR's slope in trained nets) is named,
    with its estimate and its own verdict, in the claim's row, whichever run decides it."""
    holds = [_verdict(EXACT, "exact-holds", est=1.0, stat="ratio_error_se")]
    slope = replace(
        _verdict(EXACT, "refuted", est=1.2, lo=1.1, hi=1.3, stat="slope"), primary=False
    )
    exact = _section("x", "exact-holds", claim=EXACT, rows=holds)
    in_net = _section("d", NOT_RUN, claim=EXACT, rows=[slope], study="dropout_independence")
    row = _stands([exact, in_net], EXACT)
    assert row["verdict"] == "exact-holds" and row["run"] == "x"
    assert row["reason"] == (
        "1 exact check(s) within tolerance in x. secondary, not in the rule: "
        "`slope` 1.2 [1.1, 1.3] → refuted (dropout_independence, run d)"
    )
    alone = _stands([in_net], EXACT)
    assert alone["verdict"] == NOT_RUN and alone["reason"].endswith(
        "→ refuted (dropout_independence, run d)"
    )
    assert "secondary" not in _stands([exact], EXACT)["reason"]


def test_statistic_rows_are_every_row_of_every_section():
    sections = [
        _section("a", rows=[_verdict(stat="x"), _verdict(stat="y")]),
        _section("b", rows=[_verdict(stat="z")]),
    ]
    rows = statistic_rows(sections)
    assert [(r["run"], r["name"]) for r in rows] == [("a", "x"), ("a", "y"), ("b", "z")]
    assert rows[0]["estimate_text"] == "0.1 [0.05, 0.15]" and rows[0]["n_seeds"] == 5


def test_meta_counts_the_runs_and_sums_the_training_time():
    sec = _section("a", expected=4, complete=3)
    sec.manifest |= {"config": {"seeds": 2, "cells": [{}, {}]}, "git_commit": "abc"}
    sec.cells = pd.DataFrame({"status": ["completed", "completed", "diverged"],
                              "wall_time": [1.0, 2.0, 0.5]})  # fmt: skip
    got = meta(sec)
    assert got["runs"] == "3 of 4 complete (2 cells × 2 seeds): 2 completed, 1 diverged"
    assert got["wall time"] == "3.5 s (training)" and got["commit"] == "abc"
    assert got["finished"] == "2026-01-01" and got["command"] == "–"


def test_meta_shows_the_range_of_test_accuracy_the_cells_reached():
    sec = _section("a")
    sec.cells = pd.DataFrame({"cell": ["A", "A", "B", "B", "C"],
                              "status": ["completed", "completed", "completed", "diverged", "failed"],
                              "final_test_acc": [0.8, 0.9, 0.7, float("nan"), 0.99]})  # fmt: skip
    assert (
        meta(sec)["test accuracy"]
        == "0.700 (B) to 0.850 (A), means over the completed seeds of 2 cells"
    )
    sec.cells = sec.cells.drop(columns="final_test_acc")
    assert "test accuracy" not in meta(sec)


def test_the_claims_row_states_the_tier_its_verdict_comes_from():
    rows = [_section("a", profile="quick", tier="quick"),
            _section("b", profile="big", tier="paper", finished="2020-01-01"),
            _section("c", profile="standard", finished="2020-01-01")]  # fmt: skip
    row = _stands(rows)
    assert (row["run"], row["profile"], row["tier"]) == ("b", "big", "paper")
    row = _stands(rows[::2])
    assert (row["run"], row["tier"]) == ("c", "standard")  # no recorded tier: from the name
    assert _stands([])["tier"] == "–"


def test_the_claims_row_shows_the_verdicts_of_the_other_tiers_beside_the_deciding_one():
    quick = _section("q", "refuted", profile="quick", tier="quick",
                     rows=[_verdict(verdict="refuted", est=-0.2, lo=-0.3, hi=-0.1)])  # fmt: skip
    standard = _section("s", profile="standard", tier="standard", finished="2020-01-01")
    row = _stands([quick, standard])
    assert row["run"] == "s" and row["verdict"] == "supported"
    assert row["reason"].endswith("other tiers: quick (q): refuted -0.2 [-0.3, -0.1]")
    assert "other tiers" not in _stands([standard])["reason"]  # alone: nothing to show
    same = _section("s2", profile="standard", tier="standard", finished="2019-01-01")
    assert "other tiers" not in _stands([standard, same])["reason"]  # same tier: not "other"


def test_a_protocol_changed_after_results_is_printed_beside_the_verdict_and_in_the_meta():
    revised = _section("s", profile="standard", tier="standard")
    revised.manifest["protocol_changes"] = ["constant LR → cosine; the first run showed x"]
    row = _stands([revised])
    assert row["reason"].startswith(
        "protocol changed after results were seen: constant LR → cosine; the first run showed x"
    )
    assert meta(revised)["protocol changed after results"].startswith("constant LR → cosine")
    plain = _section("p", profile="standard", tier="standard")
    assert "protocol changed" not in _stands([plain])["reason"]
    assert "protocol changed after results" not in meta(plain)


def test_meta_shows_the_tier_the_amp_setting_and_the_steps_per_second():
    sec = _section("a", profile="full")
    sec.manifest["amp"] = "bf16"
    sec.cells = pd.DataFrame({"status": ["completed"] * 2, "seed": [0, 1], "wall_time": [1.0, 3.0],
                              "steps_done": [100, 300], "steps_per_s": [50.0, 200.0]})  # fmt: skip
    m = meta(sec)
    assert m["profile"] == "full (tier quick)" and m["amp"] == "bf16"
    assert m["steps/s"] == "114.3 over 2 runs (each 50.0–200.0)"  # 400 steps / 3.5 s
    sec.cells = sec.cells.drop(columns="steps_per_s")  # runs stored before steps/s: no line
    assert "steps/s" not in meta(sec) and "amp" in meta(sec)
