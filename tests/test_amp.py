"""Mixed precision (`normtheory.amp`): bf16 autocast of the training forward on CPU, hooks and
evaluation outside it in float32; fp16 refused without CUDA (one line, exit 2 at the CLI);
the setting is part of a run's config and recorded in its manifest."""

import json

import pytest
import torch

from normtheory.amp import amp_mode, check_amp, use_amp
from normtheory.cli import main
from normtheory.data import load_dataset
from normtheory.hooks.base import Hook
from normtheory.models import build_model
from normtheory.registry import load_study
from normtheory.results import ResultsError
from normtheory.sweep import run_sweep
from normtheory.train import TrainConfig, train


class _Dtypes(Hook):
    """What a measurement sees: autocast state, dtypes of params, outputs, and its own forward."""

    events = ("after_backward", "after_step")
    default_name = "dtypes"

    def on(self, event, ctx):
        probe = ctx.model(ctx.inputs[:4])
        yield "autocast", event, float(torch.is_autocast_enabled("cpu"))
        yield (
            "param_f32",
            event,
            float(all(p.dtype == torch.float32 for p in ctx.model.parameters())),
        )
        yield (
            "grad_f32",
            event,
            float(
                all(
                    p.grad.dtype == torch.float32
                    for p in ctx.model.parameters()
                    if p.grad is not None
                )
            ),
        )
        yield "probe_f32", event, float(probe.dtype == torch.float32)
        yield "outputs_f32", event, float(ctx.outputs.dtype == torch.float32)
        yield "loss_f32", event, float(ctx.loss.dtype == torch.float32)


def _run(amp):
    data = load_dataset("gaussian_mixture", n_train=128, n_test=64)
    torch.manual_seed(0)
    model = build_model("mlp", norm="batch", in_shape=(32,), num_classes=4, width=16, depth=2)
    seen = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    handle = linear.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype) if m.training else None
    )
    config = TrainConfig(steps=6, device="cpu", amp=amp)
    result = train(model, *data, config, [_Dtypes(every=2)])
    handle.remove()
    return result, seen


def test_bf16_runs_the_training_forward_in_bf16_and_hooks_in_float32():
    result, seen = _run("bf16")
    assert result.status == "completed" and result.final["test_loss"] > 0
    # the manipulation: each of the 6 training forwards ran in bf16 (the hook's probes: f32)
    assert seen.count(torch.bfloat16) == 6 and set(seen) == {torch.bfloat16, torch.float32}
    values = result.records.groupby("metric")["value"]
    assert values.max()["dtypes.autocast"] == 0
    for name in ("param_f32", "grad_f32", "probe_f32", "outputs_f32", "loss_f32"):
        assert values.min()[f"dtypes.{name}"] == 1, name
    off, seen_off = _run("off")
    assert set(seen_off) == {torch.float32}
    assert off.final["train_loss"] != result.final["train_loss"]  # it changes the numbers


def test_the_mode_in_force_reaches_a_config_without_one():
    assert amp_mode() == "off"
    with use_amp("bf16"):
        assert amp_mode() == "bf16"
        _, seen = _run(None)
    assert seen.count(torch.bfloat16) == 6 and amp_mode() == "off"


def test_fp16_needs_cuda_and_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="amp fp16 needs a CUDA device, not 'cpu'"):
        check_amp("fp16", "cpu")
    with pytest.raises(ValueError, match="unknown amp 'fp8'"):
        check_amp("fp8")
    with pytest.raises(ValueError, match="unknown amp"):
        TrainConfig(amp="half")


def test_cli_refuses_fp16_on_cpu_in_one_line_before_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "exact_checks", "--device", "cpu", "--amp", "fp16", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "amp fp16 needs a CUDA device" in err[0]
    assert not out.exists()


def test_amp_is_part_of_the_run_config_and_in_the_manifest(tmp_path):
    study = load_study("tests/fault_study.py")
    out = tmp_path / "run"
    run_sweep(
        study,
        profile="quick",
        seeds=1,
        device="cpu",
        out=out,
        overrides={"steps": "3", "lr": "0.1"},
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["amp"] == "off" and "amp" not in manifest["config"]
    with pytest.raises(ResultsError, match="differs in: amp"):
        run_sweep(study, profile="quick", seeds=1, device="cpu", out=out,
                  overrides={"steps": "3", "lr": "0.1"}, amp="bf16")  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_trains_and_hooks_see_float32(amp):
    data = load_dataset("gaussian_mixture", n_train=128, n_test=64)
    torch.manual_seed(0)
    model = build_model("mlp", norm="batch", in_shape=(32,), num_classes=4, width=16, depth=2)
    result = train(model, *data, TrainConfig(steps=20, device="cuda", amp=amp), [_Dtypes(every=5)])
    assert result.status == "completed" and result.final["test_acc"] > 0.3
    values = result.records.groupby("metric")["value"]
    for name in ("param_f32", "grad_f32", "probe_f32", "outputs_f32", "loss_f32"):
        assert values.min()[f"dtypes.{name}"] == 1, name


def test_verify_refuses_fp16_on_cpu_before_running_anything(tmp_path):
    from normtheory.verify import verify

    with pytest.raises(ValueError, match="amp fp16 needs a CUDA device"):
        verify(device="cpu", amp="fp16", runs=tmp_path / "runs", out=tmp_path / "out")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
