"""Data augmentation of image batches, on the device: random crop with zero padding and a
random horizontal flip (the standard CIFAR recipe of He et al. 2016, §4.2); ``crop`` leaves out
the flip, which does not preserve the label of digits (a mirrored 2, 3 or 7 is no digit).

`crop_flip` is the pure operation of given offsets and flips; `draw_crop_flip` draws them from a
seeded CPU generator, so a run's augmented batches are reproducible whatever the device.
"""

import torch
import torch.nn.functional as F

AUGMENTS = ("none", "crop_flip", "crop")  # crop: no flip (digits are not mirror-symmetric)
PAD = 4  # pixels of zero padding on each side of a 32×32 image (CIFAR); see `pad_for`


def pad_for(height: int) -> int:
    """The padding of an image `height` pixels high: the CIFAR recipe's 4 of 32 (1/8), so 3 for
    28×28 (MNIST) and 1 for the 8×8 digits, where 4 pixels would shift half the image out."""
    return max(1, height // 8)


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = PAD):
    """Pads each image with `pad` zeros on every side, crops an H×W window at `offsets`, and
    mirrors it left-right where `flips` is true:

        out[n, c, h, w] = x_pad[n, c, i_n + h, j_n + w'],   w' = W-1-w if flips[n] else w,

    where ``x_pad`` is `x` zero-padded by `pad`, so ``(i, j) = (pad, pad)`` is the identity crop.

    Args:
        x: images, (N, C, H, W).
        offsets: (N, 2) integer (row, column) offsets of the crop in [0, 2·pad].
        flips: (N,) bool.
        pad: the padding.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (N, C, H+2p, W+2p)
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + offsets[:, 1:]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)


def draw_crop_flip(n: int, generator: torch.Generator, pad: int = PAD):
    """Offsets (N, 2) uniform in [0, 2·pad] and flips (N,) with probability ½, from `generator`."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def check_augment(augment: str, in_shape: tuple) -> None:
    """Refuses an unknown augmentation, or ``crop_flip`` of inputs that are not images."""
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; valid: {', '.join(AUGMENTS)}")
    if augment != "none" and len(in_shape) != 3:
        raise ValueError(
            f"augment={augment!r} needs image inputs (C, H, W), not inputs of shape "
            f"{tuple(in_shape)}; use augment=none"
        )
