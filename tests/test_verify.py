"""``normtheory verify``: the exact checks run as the ordinary ``exact_checks`` study, then the
named studies' quick profiles; the report covers the runs verify made; the exit code says
whether an exact claim failed."""

from pathlib import Path

import pandas as pd
import pytest

from normtheory import exact
from normtheory.claims import CLAIMS
from normtheory.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_verify_skip_studies_runs_the_exact_checks_study(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "scratch").mkdir(parents=True)  # a user's other run folder: ignored
    assert main(["verify", "--skip-studies"]) == 0
    cells = pd.read_csv(tmp_path / "reports" / "results" / "exact_checks-quick-cells.csv")
    assert set(cells["claim"]) == set(exact.EXACT_CLAIMS) and cells["seed"].nunique() == 5
    claims = pd.read_csv(tmp_path / "reports" / "results" / "claims.csv", keep_default_na=False)
    assert list(claims["claim"]) == list(CLAIMS)
    held = claims[claims["claim"].isin(exact.EXACT_CLAIMS)]
    assert set(held["verdict"]) == {"exact-holds"} and set(held["run"]) == {"exact_checks-quick"}
    out = capsys.readouterr().out
    assert "exact_checks [quick]: 40 completed" in out and "normtheory: claims" in out
    assert "BN-GRAD" in out and "exact-holds" in out and "reports/index.html" in out
    assert (tmp_path / "reports" / "figures" / "exact_checks-quick-error_vs_tolerance.png").exists()


def test_cli_verify_exits_1_when_an_exact_check_fails(tmp_path, monkeypatch, capsys):
    broken = lambda seed=0: exact.check_ic_corr(seed, factor=lambda q: q**2)  # noqa: E731
    monkeypatch.setitem(exact._CHECKS, "IC-CORR", broken)
    argv = ["verify", "--skip-studies", "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    assert "exact claims that fail: IC-CORR" in capsys.readouterr().err
    claims = pd.read_csv(tmp_path / "o" / "results" / "claims.csv")
    assert claims.set_index("claim").loc["IC-CORR", "verdict"] == "exact-fails"


def test_cli_verify_runs_the_named_studies_and_reuses_complete_cells(tmp_path, monkeypatch, capsys):
    """``--studies`` runs only those, into <runs>/<study>-quick; a second verify reuses the
    stored cells (shrunk here to a few steps by wrapping run_sweep)."""
    import normtheory.verify as verify_mod

    real, calls = verify_mod.run_sweep, []

    def small(study, **kw):
        calls.append(study.name)
        if study.name == "exact_checks":
            return real(study, **kw)
        return real(study, **kw, seeds=1, overrides={"steps": "4", "width": "4"})

    monkeypatch.setattr(verify_mod, "run_sweep", small)
    argv = ["verify", "--studies", "scale_invariance", "--device", "cpu",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]  # fmt: skip
    assert main(argv) == 0
    assert calls == ["exact_checks", "scale_invariance"]
    assert (tmp_path / "runs" / "scale_invariance-quick" / "manifest.json").exists()
    capsys.readouterr()
    assert main(argv) == 0
    assert "scale_invariance [quick]: 0 completed" in capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "rep" / "results" / "rows.csv", keep_default_na=False)
    assert set(rows[rows["run"] == "scale_invariance-quick"]["claim"]) == {"SI-ORTH", "SI-GROWTH"}
    claims = pd.read_csv(tmp_path / "rep" / "results" / "claims.csv", keep_default_na=False)
    both = claims.set_index("claim").loc[["SI-ORTH", "SI-GROWTH"]]
    assert (both["verdict"] == "exact-holds").all()
    assert both["reason"].str.contains("scale_invariance-quick").all()  # both runs' checks


def test_cli_verify_unknown_study_is_bad_input(tmp_path, capsys):
    argv = ["verify", "--studies", "nope", "--runs", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_verify_a_study_whose_data_is_missing_is_not_run_and_the_rest_go_on(
    tmp_path, monkeypatch, capsys
):
    """The sweep's pre-flight refuses a study whose local data is missing (here scale_invariance
    moved onto CIFAR-10 with no data root): verify names it as not run, with the loader's
    message, runs the others and writes the report; nothing of it is stored."""
    import normtheory.verify as verify_mod

    monkeypatch.delenv("NORMTHEORY_DATA", raising=False)
    real = verify_mod.run_sweep

    def on_cifar(study, **kw):
        if study.name == "exact_checks":
            return real(study, **kw)
        return real(study, **kw, seeds=1, overrides={"dataset": "cifar10", "steps": "4"})

    monkeypatch.setattr(verify_mod, "run_sweep", on_cifar)
    argv = ["verify", "--studies", "scale_invariance", "--device", "cpu",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "scale_invariance [quick]: not run: cifar10: no data folder given; " in captured.out
    assert "studies with failed cells or not run: scale_invariance" in captured.err
    assert not (tmp_path / "runs" / "scale_invariance-quick").exists()
    assert (tmp_path / "rep" / "index.html").exists()


def test_cli_verify_reference_runs_each_studys_reference_profiles(tmp_path, monkeypatch, capsys):
    """``--reference`` runs every profile of `Study.reference` into <runs>/<study>-<profile>:
    quick and standard for a study whose claims need real data, quick only for a mechanism
    (the sweeps themselves are replaced here by a recorder)."""
    import normtheory.verify as verify_mod

    real, calls = verify_mod.run_sweep, []

    def record(study, *, profile, out, **kw):
        calls.append((study.name, profile, Path(out).name))
        if study.name == "exact_checks":
            return real(study, profile=profile, out=out, **kw)
        raise ValueError("recorded, not run")

    monkeypatch.setattr(verify_mod, "run_sweep", record)
    argv = ["verify", "--reference", "--studies", "example_weighing,scale_invariance",
            "--device", "cpu", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]  # fmt: skip
    main(argv)
    assert calls == [
        ("exact_checks", "quick", "exact_checks-quick"),
        ("example_weighing", "quick", "example_weighing-quick"),
        ("example_weighing", "standard", "example_weighing-standard"),
        ("scale_invariance", "quick", "scale_invariance-quick"),
    ]
    assert "example_weighing [standard]: not run: recorded" in capsys.readouterr().out
