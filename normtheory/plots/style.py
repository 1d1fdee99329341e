"""Norm names and colours shared by every figure: one readable label and one colour per norm
spec, in one canonical order, so that a reader matches series across figures at a glance."""

import re

import seaborn as sns

NORM_ORDER = (
    "batch",
    "ghost_batch",
    "batch_group",
    "group",
    "group+ws",
    "layer",
    "layer+ws",
    "instance",
    "frn",
    "none",
    "batch+ws",
    "batch_renorm",
    "batch_kalman",
    "bnp",
)
NORM_LABELS = {
    "batch": "BN",
    "ghost_batch": "Ghost BN",
    "batch_group": "BGN",
    "group": "GN",
    "layer": "LN",
    "instance": "IN",
    "frn": "FRN + TLU",
    "none": "no norm",
    "nf": "NF (scaled WS)",
    "layer_nobias": "LN, no bias",
    "layer_noaffine": "LN, no affine",
    "rms": "RMSNorm",
    "rms_noaffine": "RMSNorm, no affine",
    "batch_renorm": "Batch Renorm",
    "batch_kalman": "BKN",
    "bnp": "BNP",  # no norm layer + BN Preconditioning (`normtheory.preconditioning`)
}
# tab10 in NORM_ORDER, except "none" (the baseline in most figures): near-black, since tab10's
# 10th colour (cyan) is hard to tell from BN's blue; "batch+ws" takes the cyan instead.
_TAB10 = sns.color_palette("tab10", 10)
_PALETTE = dict(
    zip(
        NORM_ORDER,
        [
            *_TAB10[:9],
            (0.15, 0.15, 0.15),
            _TAB10[9],
            (0.55, 0.35, 0.0),
            (0.5, 0.0, 0.5),
            (0.0, 0.45, 0.45),
        ],
    )
)


def norm_label(name) -> str:
    """The name of norm spec `name` in a figure: ``"group+ws"`` -> ``"GN + WS"``, ``"batch"`` ->
    ``"BN"``, ``"none"`` -> ``"no norm"``; an unknown name reads as words (``"some_norm"`` ->
    ``"some norm"``, ``"foo+ws"`` -> ``"foo + WS"``)."""
    base, plus, suffix = str(name).partition("+")
    label = NORM_LABELS.get(base, base.replace("_", " "))
    return f"{label} + {suffix.upper()}" if plus else label


def norm_palette(norms) -> dict:
    """Colour per norm spec, the same in every figure (unknown specs get extra colours)."""
    extra = iter(sns.color_palette("Set2", 8))
    return {n: _PALETTE.get(n) or next(extra) for n in norms}


def norm_order(norms) -> list[str]:
    """Norm specs in the canonical order used by legends."""
    known = [n for n in NORM_ORDER if n in set(norms)]
    return known + sorted(set(norms) - set(known))


def hue_palette(values, column: str = "norm") -> dict:
    """Colour per value of a hue column: the norm colours when `column` is ``"norm"``, otherwise
    seaborn's colour-blind palette in the order given."""
    values = list(values)
    if column == "norm":
        return norm_palette(values)
    return dict(zip(values, sns.color_palette("colorblind", max(len(values), 1))))


def _natural(value) -> tuple:
    """Sort key reading the numbers in a string as numbers: "Ghost BN 2" before "Ghost BN 16"."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", str(value))
        if part
    )


def hue_order(values, column: str = "norm") -> list:
    """Values of a hue or panel column in drawing order: canonical for norms, numbers by value,
    strings with the numbers in them read as numbers (first-seen order when they do not sort)."""
    values = list(dict.fromkeys(values))
    if column == "norm":
        return norm_order(values)
    try:
        if all(isinstance(v, str) for v in values):
            return sorted(values, key=_natural)
        return sorted(values)
    except TypeError:
        return values


def value_label(column: str, value) -> str:
    """How a value of `column` is named in a title or legend: norms by `norm_label`, other
    values as themselves."""
    return norm_label(value) if column == "norm" else str(value)
