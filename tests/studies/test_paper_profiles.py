"""Every study's ``paper`` profile (CIFAR-10, meant for a GPU): well-formed (default suite); a CPU
smoke run of each through the CLI on a tiny CIFAR-10 fixture in the real pickle layout, shrunk by
the profile's `smoke` overrides (``slow``: all of them together take minutes); and, on CUDA with
the real CIFAR-10 under ``NORMTHEORY_DATA``, each profile's first cell for one epoch (``gpu``)."""

import dataclasses
import os

import numpy as np
import pytest
import torch
from fake_data import write_cifar

from normtheory.cli import main
from normtheory.data import check_dataset, use_data_root
from normtheory.experiment import PAPER_EPOCH, TrainCell
from normtheory.registry import list_studies, load_study
from normtheory.results import load_cells
from normtheory.study import TIERS
from normtheory.sweep import _check_overrides_matter, run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")

STUDIES = list_studies()
PAPER = [name for name in STUDIES if "paper" in load_study(name).profiles]
# Images per CIFAR-10 batch file of the fixture: 5 × 64 training images (every paper grid's
# largest batch, 128, fits in a smoke run's max_train) and 64 test images.
FIXTURE = (64,) * 6
# Paper grids whose smoke run is restricted to some cells (run through the API, reported through
# the CLI): orthogonal_noise's MLP on CIFAR-10 tracks the span of 3072-dimensional inputs, one
# float64 eigendecomposition of 3072 × 3072 (≈12 s on a CPU core) per run however small the run;
# one of its five optimizers (WRS: the rescaling after every step) on all three setups.
SMOKE_KEEP = {"orthogonal_noise": lambda cell: cell.tag == "SGD+WRS"}


def _needs_smoke(name: str, profile) -> None:
    """Skips a paper profile that declares no smoke overrides: on a CPU its full grid would
    train for hours."""
    if not profile.smoke:
        pytest.skip(f"{name}: its paper profile declares no smoke overrides (Profile.smoke)")


def _smoke_argv(profile) -> list[str]:
    return [f"{k}={v}" for k, v in profile.smoke_overrides().items()]


def test_every_study_has_a_quick_a_standard_and_a_paper_profile_with_its_cost():
    for name in STUDIES:
        study = load_study(name)
        assert set(TIERS) <= set(study.profiles), name
        for tier in TIERS:
            assert study.tier(tier) == tier, (name, tier)
        for tier in ("standard", "paper"):
            assert study.profile(tier).cost, (name, tier)
        assert "GPU" in study.profile("paper").cost or "CPU" in study.profile("paper").cost
        assert study.profile("paper").seeds >= 5, name  # the claims' min_seeds
    assert PAPER == STUDIES


@pytest.mark.parametrize("name", PAPER)
def test_a_paper_profile_trains_on_cifar10_and_takes_its_own_smoke_overrides(name):
    """No training: the paper cells train on CIFAR-10 with the papers' augmentation (or say in
    the docstring why not), the smoke overrides are fields every cell knows, each changes some
    cell (the CLI refuses one that changes none) and the shrunk cells are valid."""
    study = load_study(name)
    profile = study.profile("paper")
    cells = profile.grid.cells()
    assert cells, name
    trains = [c for c in cells if isinstance(c, TrainCell)]
    assert all(c.dataset in ("cifar10", "teacher") for c in trains), name
    assert all(not c.epochs for c in trains), "epochs= loads the data to count steps: use examples"
    assert "``paper``" in study.description, "the docstring says what the paper profile reproduces"
    _needs_smoke(name, profile)
    for key, value in profile.smoke.items():
        if "," not in str(value):
            assert any(getattr(c, key) != value for c in cells), (name, key)
    smoke = profile.grid.override(profile.smoke_overrides()).cells()
    _check_overrides_matter(name, smoke, profile.smoke_overrides())
    assert len(smoke) <= len(cells)
    for cell in smoke:
        if isinstance(cell, TrainCell):
            assert cell.effective_steps <= 64 and (cell.max_train or 0) <= 320, cell


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar(root / "cifar-10-batches-py", np.random.default_rng(0), FIXTURE)
    return root


def _restricted(name: str, keep):
    """Study `name` with its paper grid cut to the cells `keep` accepts."""
    study = load_study(name)
    profile = study.profile("paper")
    profile = dataclasses.replace(profile, grid=dataclasses.replace(profile.grid, keep=keep))
    return dataclasses.replace(study, profiles={**study.profiles, "paper": profile})


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_a_paper_profile_runs_and_reports_on_a_cifar10_fixture(name, cifar_root, tmp_path):
    """``normtheory run NAME --profile paper --device cpu --data-root FIXTURE`` with the
    profile's smoke overrides (`SMOKE_KEEP`'s studies: the same through the API on some cells),
    then ``normtheory report``: both succeed, and every cell × seed of the shrunk grid completed
    or diverged (a diverged cell is a result; a failed one is not)."""
    profile = load_study(name).profile("paper")
    _needs_smoke(name, profile)
    out, rep = tmp_path / "run", tmp_path / "rep"
    if name in SMOKE_KEEP:
        study = _restricted(name, SMOKE_KEEP[name])
        profile = study.profile("paper")
        summary = run_sweep(study, profile="paper", seeds=1, device="cpu", out=out,
                            overrides=profile.smoke_overrides(), data_root=cifar_root)  # fmt: skip
        assert summary.failed == 0, summary.errors
    else:
        argv = ["run", name, "--profile", "paper", "--seeds", "1", "--device", "cpu",
                "--data-root", str(cifar_root), "--out", str(out), *_smoke_argv(profile)]  # fmt: skip
        assert main(argv) == 0
    assert main(["report", str(out), "--out", str(rep)]) == 0
    cells = load_cells(out)
    expected = len(profile.grid.override(profile.smoke_overrides()).cells())
    assert len(cells) == expected and cells["seed"].eq(0).all()
    assert set(cells["status"]) <= {"completed", "diverged"}, cells[["cell", "status", "error"]]
    assert (rep / "README.md").exists()


def _one_epoch(cell):
    """`cell` shrunk to one epoch of CIFAR-10 (a custom cell as it is)."""
    if not isinstance(cell, TrainCell):
        return cell
    if cell.examples:
        return dataclasses.replace(cell, examples=PAPER_EPOCH)
    return dataclasses.replace(cell, steps=PAPER_EPOCH // cell.batch_size)


def _cifar10_root() -> str:
    root = os.environ.get("NORMTHEORY_DATA")
    try:
        check_dataset("cifar10", root=root)
    except (FileNotFoundError, ValueError):
        pytest.skip("needs CIFAR-10 under NORMTHEORY_DATA")
    return root


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", PAPER)
def test_a_paper_profiles_first_cell_trains_one_epoch_on_cuda(name):
    """The first cell of each paper grid, one epoch of the real CIFAR-10 on the GPU, with the
    study's hooks: it completes (or diverges, a result) and records its measurements."""
    root = _cifar10_root()
    study = load_study(name)
    cell = _one_epoch(study.profile("paper").grid.cells()[0])
    with use_data_root(root):
        result = study.run_cell(cell, 0, device="cuda", hooks=study.hooks(cell))
    assert result.status in ("completed", "diverged"), name
    assert len(result.records) > 0
    if isinstance(cell, TrainCell) and result.status == "completed":
        assert result.device.startswith("cuda")
        assert np.isfinite(result.final.get("train_loss", 0.0)), result.final
