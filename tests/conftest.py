"""Shared test fixtures."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensor problems: torch's thread pool only adds wake-up latency, which on a busy
    2-core machine made them 10–60× slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``; the setting is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAULT_STUDY = str(Path(__file__).with_name("fault_study.py"))


def _stored_values(path):
    """A run folder's records in a fixed order, without the run folder's name."""
    from normtheory.results import load

    frame = load(path).drop(columns=["run"])
    return frame.sort_values(["cell", "seed", "step", "metric", "key"]).reset_index(drop=True)


@pytest.fixture(scope="session")
def fault_run(tmp_path_factory):
    """`fault_study.py` swept on the local executor (2 cells × 2 seeds), the reference the sweep
    and executor tests compare with: ``.path``, ``.study`` (its file), ``.overrides`` and
    ``.values(path)`` (any run folder's records in a fixed order)."""
    from normtheory.registry import load_study
    from normtheory.sweep import run_sweep

    overrides = {"lr": "0.01,0.1", "steps": "10"}
    out = tmp_path_factory.mktemp("sweep") / "local"
    summary = run_sweep(load_study(FAULT_STUDY), device="cpu", out=out, overrides=overrides)
    assert (summary.total, summary.completed) == (4, 4)
    return SimpleNamespace(path=out, study=FAULT_STUDY, overrides=overrides, values=_stored_values)


@pytest.fixture
def trained_bn_convnet():
    """(model in eval mode, its training set): a BN convnet trained 20 steps on 256 digits."""
    from normtheory.data import load_dataset
    from normtheory.models import build_model
    from normtheory.train import TrainConfig, train

    train_set, _ = load_dataset("digits", max_train=256)
    torch.manual_seed(0)
    model = build_model(
        "convnet", norm="batch", in_shape=train_set.in_shape, num_classes=10, width=8, depth=2
    )
    config = TrainConfig(lr=0.1, batch_size=32, steps=20, seed=0, device="cpu")
    train(model, train_set, None, config)
    return model.eval(), train_set
