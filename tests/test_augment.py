"""`normtheory.augment`: crop with zero padding and horizontal flip, against a loop oracle;
seeded draws; the TrainCell/TrainConfig option (refused for non-image data, reproducible,
``none`` leaves training as it was)."""

import pytest
import torch

from normtheory.augment import PAD, check_augment, crop_flip, draw_crop_flip, pad_for
from normtheory.data import load_dataset
from normtheory.experiment import TrainCell
from normtheory.models import build_model
from normtheory.train import TrainConfig, train


def _oracle(x, offsets, flips, pad):
    """out[n, c, h, w] = x[n, c, h + i - pad, w' + j - pad] (0 outside), w' mirrored if flip."""
    n, c, h, w = x.shape
    out = torch.zeros_like(x)
    for k in range(n):
        i, j = int(offsets[k, 0]), int(offsets[k, 1])
        for r in range(h):
            for s in range(w):
                src_r, src_s = r + i - pad, (w - 1 - s if flips[k] else s) + j - pad
                if 0 <= src_r < h and 0 <= src_s < w:
                    out[k, :, r, s] = x[k, :, src_r, src_s]
    return out


def test_crop_and_flip_match_the_loop_oracle():
    torch.manual_seed(0)
    x = torch.randn(12, 3, 5, 7)
    for pad in (1, 2, 4):
        offsets, flips = draw_crop_flip(12, torch.Generator().manual_seed(pad), pad)
        assert offsets.min() >= 0 and offsets.max() <= 2 * pad
        torch.testing.assert_close(
            crop_flip(x, offsets, flips, pad), _oracle(x, offsets, flips, pad), rtol=0, atol=0
        )


def test_identity_crop_shift_and_flip_are_exact():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    centre = torch.full((2, 2), PAD)
    no, yes = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    assert torch.equal(crop_flip(x, centre, no), x)
    assert torch.equal(crop_flip(x, centre, yes), x.flip(-1))
    down = crop_flip(x, centre + torch.tensor([-1, 0]), no)  # crop one row higher: image moves down
    assert torch.equal(down[:, :, 1:], x[:, :, :-1]) and (down[:, :, 0] == 0).all()


def test_draws_are_reproducible_from_the_generator():
    a = draw_crop_flip(64, torch.Generator().manual_seed(5))
    b = draw_crop_flip(64, torch.Generator().manual_seed(5))
    c = draw_crop_flip(64, torch.Generator().manual_seed(6))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert 0 < a[1].float().mean() < 1  # both flipped and not


def _run(augment, seed=0):
    train_set, _ = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("convnet", norm="batch", in_shape=(1, 8, 8), num_classes=10, width=8)
    config = TrainConfig(
        steps=15, device="cpu", seed=seed, **({"augment": augment} if augment else {})
    )
    train(model, train_set, None, config)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_with_augmentation_is_reproducible_and_none_changes_nothing():
    default, none = _run(None), _run("none")
    assert torch.equal(default, none)
    aug = _run("crop_flip")
    assert torch.equal(aug, _run("crop_flip")) and not torch.equal(aug, none)


def test_non_image_data_is_refused_in_one_line():
    with pytest.raises(ValueError, match="augment='crop_flip' needs an image dataset"):
        TrainCell(dataset="mnist1d", augment="crop_flip")
    with pytest.raises(ValueError, match="unknown augment 'cutout'"):
        TrainCell(augment="cutout")
    with pytest.raises(
        ValueError, match=r"needs image inputs \(C, H, W\), not inputs of shape \(32,\)"
    ):
        check_augment("crop_flip", (32,))
    data = load_dataset("gaussian_mixture", n_train=64, n_test=32)
    model = build_model("mlp", norm="batch", in_shape=(32,), num_classes=4, width=8, depth=2)
    with pytest.raises(ValueError, match="needs image inputs"):
        train(model, *data, TrainConfig(steps=2, device="cpu", augment="crop_flip"))
    assert TrainCell(augment="crop_flip").train_config(0).augment == "crop_flip"


def test_the_padding_is_an_eighth_of_the_image():
    assert [pad_for(h) for h in (32, 28, 8, 4)] == [PAD, 3, 1, 1]


def test_crop_never_flips_and_draws_the_same_offsets_as_crop_flip():
    crop, crop_flip_ = _run("crop"), _run("crop_flip")
    assert torch.equal(crop, _run("crop")) and not torch.equal(crop, crop_flip_)
    assert not torch.equal(crop, _run("none"))
