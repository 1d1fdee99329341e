"""The study smoke tests cannot pass while a study's statistics raise or leave its own claims
"not run" (audit regression: the full suite passed with the verdicts of three studies raising,
because the smoke tests accepted "not run")."""

import pytest

STUDY = """
from normtheory.experiment import TrainCell
from normtheory.study import Grid, Profile, Study
from normtheory.evidence import CheckValue, sample

BASE = TrainCell(dataset="gaussian_mixture", arch="mlp", width=4, depth=1, steps=3, batch_size=16)


def statistics(results):
    {body}


STUDY = Study(
    name="guard", title="guard", claims=("GN-BATCH",),
    profiles={{"quick": Profile(Grid(BASE, {{"norm": ("batch",)}}), seeds=2)}},
    statistics=statistics,
)
"""

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "body",
    [
        "raise RuntimeError('boom')",  # statistics raise
        "return []",  # nothing reported
        "return [sample('GN-BATCH', 'bn_rise', results.cells.groupby('seed').final_test_acc.mean())]",
    ],
    ids=["raises", "empty", "missing-statistic"],
)
def test_smoke_run_fails_when_a_claim_is_left_not_run(study_cli, tmp_path, body):
    path = tmp_path / "guard.py"
    path.write_text(STUDY.format(body=body))
    with pytest.raises(AssertionError, match="not run by their own smoke run"):
        study_cli.run(str(path))


def test_smoke_run_passes_when_every_claim_is_judged(study_cli, tmp_path):
    body = (
        "acc = results.cells.groupby('seed').final_test_acc.mean()\n"
        "    return [sample('GN-BATCH', n, acc) for n in ('bn_rise', 'gn_rise')] + "
        "[CheckValue('GN-BATCH', c, 1.0) for c in ('bn_trained', 'bn_penalty')]"
    )
    path = tmp_path / "guard.py"
    path.write_text(STUDY.format(body=body))
    _, rows = study_cli.run(str(path))
    assert set(rows["name"]) == {"bn_rise", "gn_rise"}
