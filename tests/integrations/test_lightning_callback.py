"""The Lightning callback: training is bit-identical with it, and it records what a `Monitor`
records in a hand-written loop over the same batches."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pl = pytest.importorskip(
    "lightning.pytorch", reason="needs lightning: pip install normtheory[lightning]"
)

from normtheory.hooks import (  # noqa: E402
    GradNorm,
    HessianSpectrum,
    LossAccuracy,
    Monitor,
    OrthogonalWeightNorm,
    ScaleInvariance,
    Smoothness,
    WeightNorm,
)
from normtheory.integrations.lightning import NormtheoryCallback  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Lightning's advice (workers, logger)
]

STEPS, BATCH = 8, 16


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=gen)
    x[:, 5] = 0  # the first layer sees 5 of 6 input dimensions: orth.ratio is recorded
    return x, (x[:, 0] + x[:, 1] > 0).long()


class Net(pl.LightningModule):
    def __init__(self, call_net: bool = False, wd: float = 1e-2):
        super().__init__()
        self.call_net, self.wd = call_net, wd
        self.net = nn.Sequential(
            nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(16, 2),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x) if self.call_net else self(x)
        return F.cross_entropy(out, y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=self.wd)


def _fit(callbacks, *, validate=False, accumulate=1, **net):
    pl.seed_everything(0, verbose=False)
    model = Net(**net)
    x, y = _data()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=True
    )
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:32], y[:32]), batch_size=16)
    trainer = pl.Trainer(
        max_steps=STEPS, accelerator="cpu", callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        val_check_interval=4 if validate else None, limit_val_batches=2 if validate else 0,
        num_sanity_val_steps=2 if validate else 0, accumulate_grad_batches=accumulate,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, loader, val if validate else None)
    return model, trainer


def _all_hooks():
    x, y = _data()
    return [
        LossAccuracy(data=(x[:32], y[:32]), every=3),
        GradNorm(every=2),
        WeightNorm(every=2),
        OrthogonalWeightNorm(every=3),
        ScaleInvariance(every=2),
        HessianSpectrum(k=1, every=4, at_end=True),  # train mode: BN batch stats, dropout masks
        Smoothness(every=5, n_points=3),
    ]


def _state(model, trainer):
    opt = trainer.optimizers[0].state_dict()["state"]
    return [*model.state_dict().values(), *(v["momentum_buffer"] for v in opt.values())]


def test_training_is_bit_identical_with_the_callback():
    callback = NormtheoryCallback(_all_hooks())
    with_hooks = _state(*_fit([callback], validate=True))
    without = _state(*_fit([], validate=True))
    assert len(with_hooks) == len(without)
    assert all(torch.equal(a, b) for a, b in zip(with_hooks, without))
    frame = callback.frame()
    metrics = set(frame.metric)
    assert {"hessian.eig", "smoothness.beta", "orth.ratio", "scale_inv.cosine"} <= metrics
    assert {"outcome.data_acc", "outcome.val_loss", "outcome.train_acc"} <= metrics
    assert frame[frame.metric == "outcome.val_loss"].step.tolist() == [4]  # not the sanity check
    assert frame[frame.metric == "hessian.eig"].step.tolist() == [0, 4, STEPS]


def _hand_loop(hooks):
    """The oracle: the same training as `_fit` written by hand, measured by a `Monitor`."""
    pl.seed_everything(0, verbose=False)
    model = Net()
    opt = model.configure_optimizers()
    x_all, y_all = _data()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_all, y_all), batch_size=BATCH, shuffle=True
    )
    model.train()
    with Monitor(model, hooks, optimizer=opt, total_steps=STEPS) as monitor:
        step = 0
        while step < STEPS:
            for x, y in loader:
                out = model(x)
                loss = F.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward()
                with monitor.step(step, batch=(x, y), loss=loss, outputs=out):
                    opt.step()
                step += 1
                if step == STEPS:
                    break
    return monitor.frame(), model


def test_records_equal_those_of_a_hand_written_loop():
    callback = NormtheoryCallback(_all_hooks())
    model, _ = _fit([callback])
    expected, hand_model = _hand_loop(_all_hooks())
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), hand_model.state_dict().values())
    )
    got = callback.frame()
    assert len(got) > 100
    pd = pytest.importorskip("pandas")
    pd.testing.assert_frame_equal(got, expected)


def test_a_submodule_the_training_step_calls():
    """training_step calls self.net(x): with module="net" the hooks watch and call the net."""
    callback = NormtheoryCallback([OrthogonalWeightNorm(every=4), LossAccuracy()], module="net")
    _fit([callback], call_net=True)
    frame = callback.frame()
    assert set(frame[frame.metric == "orth.norm"].key) == {"0", "4"}  # the net's own names
    assert frame[frame.metric == "orth.updates"].value.tolist() == [1, 5, STEPS]
    assert len(frame[frame.metric == "outcome.train_acc"]) == STEPS  # its outputs were seen


def test_orthogonal_ratio_is_the_weight_decay_factor():
    """SPAN-ORTH through the callback: under SGD with coupled decay λ and no momentum... here
    with momentum 0.9 the complement still only decays: ‖W_t P⊥‖ = ‖W_0 P⊥‖ · c_t with c_t the
    heavy-ball recursion of the decay alone, c_{t+1} = c_t − η(λ c_t + μ m_t)."""
    callback = NormtheoryCallback([OrthogonalWeightNorm()])
    _fit([callback])
    frame = callback.frame()
    ratio = frame[(frame.metric == "orth.ratio") & (frame.key == "net.0")]
    c, m, expected = 1.0, 0.0, []
    for _ in range(STEPS):
        m = 0.9 * m + 1e-2 * c  # the momentum buffer of the decay term alone
        c = c - 0.1 * m
        expected.append(c)
    assert ratio.value.tolist()[:STEPS] == pytest.approx(expected, rel=1e-6)  # float32 weights


def test_gradient_accumulation_is_refused():
    with pytest.raises(ValueError, match="gradient accumulation"):
        _fit([NormtheoryCallback([GradNorm()])], accumulate=2)
