"""Training with BNP, Batch Kalman Norm or Batch Renorm is bit-identical with and without hooks,
the new `LayerHessianBNP` and a meddling train-mode forward among them: measurements neither feed
BNP's statistics (only the training forward does) nor desynchronize the Kalman chain nor move
Batch Renorm's schedule."""

import pytest
import torch

from normtheory.data import load_dataset
from normtheory.hooks import Hook, LayerHessianBNP, LossAccuracy, every
from normtheory.models import build_model
from normtheory.state import preserved
from normtheory.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


class _TrainForward(Hook):
    """A measurement that runs the model in train mode (inside `preserved`)."""

    events = ("after_backward", "after_step")

    def on(self, event, ctx):
        with preserved(ctx.model):
            ctx.model.train()(ctx.inputs)
        return [("x", "", 1.0)]


@pytest.mark.parametrize(
    ("norm", "norm_kw", "bnp"),
    [("none", {}, True), ("batch_kalman", {}, False), ("batch_renorm", {"renorm_steps": 8}, False)],
)
def test_training_is_bit_identical_with_and_without_hooks(norm, norm_kw, bnp):
    train_set, test_set = load_dataset("digits", max_train=128, max_test=64)
    probe = (train_set.tensors[0][:32], train_set.tensors[1][:32])
    config = TrainConfig(lr=0.05, momentum=0.9, batch_size=8, steps=10, seed=1, device="cpu",
                         bn_precondition=bnp)  # fmt: skip
    states = []
    for hooks in ([], [LayerHessianBNP(probe=probe, every=every(3)), _TrainForward(name="tf"),
                       LossAccuracy(every=2)]):  # fmt: skip
        torch.manual_seed(0)
        model = build_model("convnet", norm=norm, in_shape=train_set.in_shape, num_classes=10,
                            width=4, depth=2, norm_kw=norm_kw)  # fmt: skip
        result = train(model, train_set, test_set, config, hooks)
        states.append(model.state_dict())
    assert "bnp_hess.cond" in set(result.records.metric)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_a_run_that_diverges_is_an_outcome_the_end_of_run_curvature_hooks_skip():
    """Seen in the bn_preconditioning standard sweep: a no-norm net diverged, the end-of-run
    Hessian hook ran on its blown-up weights and eigvalsh raised on the NaN matrix, so the cell
    failed instead of being recorded as diverged. Hooks that need a trained net
    (`Hook.trained_only`) record nothing at the end of a diverged run; others still do."""
    from normtheory.hooks import HessianSpectrum

    train_set, test_set = load_dataset("digits", max_train=200, max_test=100)
    probe = (train_set.tensors[0][:32], train_set.tensors[1][:32])
    config = TrainConfig(lr=1e20, momentum=0.9, batch_size=4, steps=30, seed=0, device="cpu")
    torch.manual_seed(0)
    model = build_model("convnet", norm="none", in_shape=train_set.in_shape, num_classes=10,
                        width=8, depth=2)  # fmt: skip
    hooks = [LayerHessianBNP(probe=probe), HessianSpectrum(probe=probe, k=2, at_end=True),
             LossAccuracy(every=1)]  # fmt: skip
    result = train(model, train_set, test_set, config, hooks)
    assert result.status == "diverged"
    rec = result.records
    end = rec["step"] == result.steps_done
    assert set(rec[rec.metric.str.startswith("bnp_hess.")]["step"]) == {0}  # start only
    assert not rec[end].metric.str.startswith(("bnp_hess.", "hessian")).any()
