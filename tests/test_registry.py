"""`normtheory.registry`: the studies of the ``studies`` package (module name == study name) and
user study files named by path; unknown names, missing files and files without a STUDY give a
one-line error naming them."""

from pathlib import Path

import pytest

from normtheory.cli import main
from normtheory.registry import list_studies, load_study
from normtheory.study import Study

STUDIES = Path(__file__).resolve().parents[1] / "studies"

USER_STUDY = '''
"""My study: BN on a Gaussian mixture, {what}."""
from normtheory.experiment import TrainCell
from normtheory.study import Grid, Profile, Study

STUDY = Study(
    name="mine",
    title="mine",
    claims=(),
    profiles={{"quick": Profile(Grid(TrainCell(dataset="gaussian_mixture", steps=2)))}},
    {extra}
)
'''


def _write(tmp_path, name="my_study.py", what="two steps", extra=""):
    path = tmp_path / name
    path.write_text(USER_STUDY.format(what=what, extra=extra))
    return path


def test_list_studies_is_every_public_module_of_the_package_sorted():
    on_disk = sorted(p.stem for p in STUDIES.glob("*.py") if not p.name.startswith("_"))
    assert list_studies() == on_disk and "exact_checks" in on_disk


def test_each_listed_study_loads_under_its_own_name():
    for name in list_studies():
        study = load_study(name)
        assert isinstance(study, Study) and study.name == name, name
        assert study.source == ""  # a package study, not a user file
        assert study.description  # given, or the module docstring


def test_a_user_file_by_path_gets_its_docstring_and_source(tmp_path, monkeypatch):
    path = _write(tmp_path)
    study = load_study(str(path))
    assert study.name == "mine" and study.source == str(path.resolve())
    assert study.description == "My study: BN on a Gaussian mixture, two steps."
    monkeypatch.chdir(tmp_path)
    assert load_study("my_study.py").source == str(path.resolve())  # a relative path too


def test_a_given_description_is_kept(tmp_path):
    path = _write(tmp_path, extra='description="stated here",')
    assert load_study(str(path)).description == "stated here"


def test_a_user_file_is_reloaded_when_it_changes(tmp_path):
    first = load_study(str(_write(tmp_path, what="first")))
    second = load_study(str(_write(tmp_path, what="second")))
    assert "first" in first.description and "second" in second.description


@pytest.mark.parametrize(
    "ref,needle",
    [
        ("no_such_study", "unknown study 'no_such_study'; known studies: batch_group"),
        ("missing.py", "study file 'missing.py' does not exist"),
        ("_private", "unknown study '_private'"),
    ],
)
def test_unknown_names_and_missing_files_are_refused(ref, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        load_study(ref)
    assert needle in str(info.value) and len(str(info.value).splitlines()) == 1


def test_a_file_without_a_study_is_refused(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("STUDY = 'not a study'\n")
    with pytest.raises(ValueError, match="defines no STUDY = Study"):
        load_study(str(path))


SYNTAX_ERROR = '''"""A study with a typo."""
from normtheory.study import Study

STUDY = Study(name="typo" title="missing comma")
'''


def test_a_syntax_error_gives_one_line_naming_file_and_line(tmp_path, capsys):
    path = tmp_path / "typo.py"
    path.write_text(SYNTAX_ERROR)
    with pytest.raises(ValueError) as info:
        load_study(str(path))
    assert f"{path}:4" in str(info.value) and len(str(info.value).splitlines()) == 1
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4" in err and len(err.strip().splitlines()) == 1


def test_an_error_raised_by_the_study_file_names_its_line(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text('"""Broken."""\nfrom normtheory.study import Study\n\nGRID = undefined_name\n')
    with pytest.raises(ValueError) as info:
        load_study(str(path))
    assert str(info.value) == (
        f"{path}:4: the study file raised NameError: name 'undefined_name' is not defined"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
