"""`TrainCell`: the standard grid cell (data + model + optimization), and how to run one.

Studies declare grids over `TrainCell` fields with `dataclasses.replace`; `run_train_cell`
loads the data, builds the model (seeded), and trains it with the study's hooks.
"""

import dataclasses
import functools
import inspect
from dataclasses import dataclass

import torch

from normtheory.augment import AUGMENTS
from normtheory.checks import check_choice
from normtheory.data import _GREY, data_root, list_datasets, load_dataset, split_validation
from normtheory.local_data import LOCAL
from normtheory.models import build_model, list_archs, list_placements
from normtheory.norms import _REGISTRY, parse_norm_spec
from normtheory.train import TrainConfig, TrainResult, train

LR_SCALINGS = ("none", "linear", "sqrt")
_LOW_RANK_DATASETS = ("gaussian_mixture", "teacher")
_IMAGES = ("cifar10", "digits", "fashion_mnist", "mnist")  # (C, H, W) inputs: augment applies
# The data of the ``standard`` tier (`normtheory.study.TIERS`): Fashion-MNIST from Debian's
# `dataset-fashion-mnist`, a fixed 20 000-example training subset (the full 10 000-example test
# split). A BN convnet of width 16 and depth 4 reaches 88–89 % test accuracy on it in 10 epochs.
STANDARD_DATA = {"dataset": "fashion_mnist", "max_train": 20000}
# The data of the ``paper`` tier: CIFAR-10 from the data root, with the papers' augmentation.
PAPER_DATA = {"dataset": "cifar10", "augment": "crop_flip"}
# CIFAR-10's training examples: a paper cell sets ``examples = E * PAPER_EPOCH`` for E epochs
# (``epochs=E`` would count them by loading the data when the cell is made, so a study module
# with a paper profile could not even be imported on a machine without CIFAR-10).
PAPER_EPOCH = 50_000
# Cell fields passed to the norm factories that accept them (0 means "the norm's default").
_NORM_FIELDS = (
    "groups",
    "ghost_size",
    "examples_per_group",
    "example_weight",
    "r_max",
    "d_max",
    "renorm_steps",
)


@dataclass(frozen=True)
class TrainCell:
    """One training configuration of a study grid.

    Attributes:
        dataset: a name from `normtheory.data.list_datasets()`; `max_train` caps its size (0: all).
        data_rank: for the synthetic datasets, the rank of the subspace the inputs span (0: full).
        data_channels: for the single-channel datasets (digits, fashion_mnist, mnist, mnist1d),
            repeat the input on this many channels (a grey image fed to an RGB net).
        arch, norm, width, depth, placement, dropout_keep, residual, binary: see
            `build_model`; `norm` is a spec such as ``"group+ws"``. ``arch="transformer"``
            takes placement ``pre_norm`` or ``post_norm``.
        heads, patch: the transformer's attention heads and patch size (`build_model`; its
            vocabulary comes from the dataset); ignored by the other archs.
        groups, ghost_size, examples_per_group, example_weight: norm options, passed to the
            norms that take them (``examples_per_group=0`` means the whole batch).
        r_max, d_max, renorm_steps: Batch Renorm's limits and the length of their warm-up
            schedule (`normtheory.norms.BatchRenorm`; the defaults are the paper's).
        optimizer, lr, momentum, weight_decay, batch_size, schedule, eval_every: see `TrainConfig`.
        lr_scaling: ``linear`` uses lr·B/ref_batch, ``sqrt`` lr·√(B/ref_batch) (Goyal et al. 2017).
        examples: when > 0, steps = examples // batch_size, so every batch size sees the same
            number of examples; otherwise `steps` is used.
        epochs: when > 0 (and `examples` is 0), steps = epochs · (n_train // batch_size): equal
            passes over the training data for every batch size.
        validation: when > 0, this share of the training set is held out (stratified, split
            seed 0; `normtheory.data.split_validation`), the model trains on the rest and the
            cell's "test" metrics are measured on the held-out part: for tuning, so that the
            test split is never looked at.
        rescale: weight rescaling (WRS) after every step; see `TrainConfig`.
        agc: adaptive gradient clipping threshold λ (0: off); see `TrainConfig`.
        gamma_decay, beta_decay: decay of the norms' γ toward 1 and β toward 0 (`TrainConfig`).
        augment: ``none``, ``crop`` or ``crop_flip`` (random crop of the image padded by 1/8 of
            its size, + random horizontal flip for ``crop_flip``, on the device, seeded; image datasets only; `normtheory.augment`).
        bn_precondition: Batch Normalization Preconditioning of every weight layer's gradient
            (`TrainConfig`; `normtheory.preconditioning`).
        tag: a free-form name of the cell's case (e.g. ``"SGD+WD"``), for figures and tables;
            it does not change training.
    """

    dataset: str = "digits"
    max_train: int = 0
    data_rank: int = 0
    data_channels: int = 1
    arch: str = "convnet"
    norm: str = "batch"
    width: int = 16
    depth: int = 3
    placement: str = "norm_act"
    dropout_keep: float = 1.0
    residual: bool = True
    heads: int = 4
    patch: int = 4
    groups: int = 32
    ghost_size: int = 16
    examples_per_group: int = 0
    example_weight: float = 0.0
    r_max: float = 3.0
    d_max: float = 5.0
    renorm_steps: int = 40000
    optimizer: str = "sgd"
    lr: float = 0.05
    lr_scaling: str = "none"
    ref_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    examples: int = 0
    epochs: int = 0
    validation: float = 0.0
    steps: int = 200
    schedule: str = "constant"
    eval_every: int = 0
    rescale: bool = False
    gamma_decay: float = 0.0
    beta_decay: float = 0.0
    augment: str = "none"
    bn_precondition: bool = False
    tag: str = ""
    agc: float = 0.0
    binary: bool = False

    def __post_init__(self):
        _check_types(self)
        check_choice("dataset", self.dataset, list_datasets())
        check_choice("arch", self.arch, list_archs())
        check_choice("placement", self.placement, list_placements(self.arch))
        check_choice("lr_scaling", self.lr_scaling, LR_SCALINGS)
        check_choice("augment", self.augment, AUGMENTS)
        if self.augment != "none" and self.dataset not in _IMAGES:
            raise ValueError(
                f"augment={self.augment!r} needs an image dataset ({', '.join(_IMAGES)}), "
                f"not {self.dataset!r}; use augment=none"
            )
        parse_norm_spec(self.norm)
        if self.binary and self.arch not in ("convnet", "resnet"):
            raise ValueError(f"binary nets are convnet or resnet (binary convs), not {self.arch}")
        if self.data_channels != 1 and self.dataset not in _GREY:
            raise ValueError(
                f"data_channels applies to the single-channel datasets ({', '.join(_GREY)}), "
                f"not to {self.dataset!r}; leave it 1"
            )
        for name in (
            "width",
            "depth",
            "batch_size",
            "steps",
            "ref_batch",
            "groups",
            "ghost_size",
            "data_channels",
            "heads",
            "patch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data_rank and self.dataset not in _LOW_RANK_DATASETS:
            raise ValueError(
                f"data_rank applies to the synthetic datasets ({', '.join(_LOW_RANK_DATASETS)}), "
                f"not to {self.dataset!r}; leave it 0"
            )
        if not 0 <= self.validation < 1:
            raise ValueError(f"validation must be in [0, 1), got {self.validation}")
        if self.examples and self.epochs:
            raise ValueError("set examples or epochs, not both")
        for name in (
            "max_train",
            "examples",
            "epochs",
            "examples_per_group",
            "eval_every",
            "data_rank",
            "renorm_steps",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.r_max < 1 or self.d_max < 0:
            raise ValueError(f"need r_max >= 1 and d_max >= 0, got {self.r_max}, {self.d_max}")
        if not 0 < self.dropout_keep <= 1:
            raise ValueError(
                f"dropout_keep must be in (0, 1] (the probability of keeping a unit), "
                f"got {self.dropout_keep}"
            )
        if self.max_train and self.max_train < self.batch_size:
            raise ValueError(
                f"max_train ({self.max_train}) must be at least batch_size ({self.batch_size}) "
                "(or 0 for the whole training set)"
            )
        if self.examples and self.examples < self.batch_size:
            raise ValueError(
                f"examples ({self.examples}) must be at least batch_size ({self.batch_size})"
            )
        self.train_config(0)  # validates optimizer, lr, schedule, ...

    @property
    def effective_lr(self) -> float:
        return scaled_lr(self.lr, self.lr_scaling, self.batch_size, self.ref_batch)

    @property
    def effective_steps(self) -> int:
        if self.examples:
            return self.examples // self.batch_size
        if self.epochs:
            return self.epochs * (len(cell_data(self)[0]) // self.batch_size)
        return self.steps

    def train_config(self, seed: int, device: str = "auto") -> TrainConfig:
        return TrainConfig(
            optimizer=self.optimizer,
            lr=self.effective_lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            steps=self.effective_steps,
            schedule=self.schedule,
            eval_every=self.eval_every,
            seed=seed,
            device=device,
            rescale=self.rescale,
            gamma_decay=self.gamma_decay,
            beta_decay=self.beta_decay,
            augment=self.augment,
            agc=self.agc,
            bn_precondition=self.bn_precondition,
        )

    def unused_fields(self) -> dict[str, str]:
        """The fields this cell sets but that do not change its training, each with why: a
        ``key=value`` override of one of them would be silently ignored."""
        out = {}
        if self.examples:
            out["steps"] = (
                f"steps = examples // batch_size here (examples={self.examples}, so "
                f"{self.effective_steps} steps at batch {self.batch_size}); set examples= instead"
            )
        elif self.epochs:
            out["steps"] = (
                f"steps = epochs × (training examples // batch_size) here (epochs={self.epochs}, "
                f"so {self.effective_steps} steps at batch {self.batch_size}); set epochs= instead"
            )
        if self.lr_scaling == "none":
            out["ref_batch"] = "the learning rate is not scaled with the batch (lr_scaling=none)"
        if self.arch != "transformer":
            for f in ("heads", "patch"):
                out[f] = f"{f} applies to arch=transformer only (arch={self.arch!r})"
        name, _ = parse_norm_spec(self.norm)
        accepted = inspect.signature(_REGISTRY[name]).parameters
        for f in _NORM_FIELDS:
            if f not in accepted:
                out[f] = f"norm {self.norm!r} does not take {f}"
        return out

    def norm_kw(self) -> dict:
        """The norm options this cell sets that its norm's factory accepts."""
        name, _ = parse_norm_spec(self.norm)
        accepted = inspect.signature(_REGISTRY[name]).parameters
        kw = {f: getattr(self, f) for f in _NORM_FIELDS if f in accepted}
        if kw.get("examples_per_group") == 0:
            kw["examples_per_group"] = None
        return kw


def scaled_lr(lr: float, scaling: str, batch_size: int, ref_batch: int) -> float:
    """The learning rate a cell trains with: lr · (B / ref)^p, p = 0, 1 or ½ for ``scaling``
    ``none``, ``linear`` or ``sqrt``."""
    ratio = batch_size / ref_batch
    return lr * {"none": 1.0, "linear": ratio, "sqrt": ratio**0.5}[scaling]


def _check_types(cell) -> None:
    """Raises TypeError naming the first field whose value is not of its annotated type
    (an int is a fine float; a bool is not an int)."""
    for f in dataclasses.fields(cell):
        value, kind = getattr(cell, f.name), _FIELD_TYPES.get(f.type, f.type)
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
        }.get(kind, True)
        if not ok:
            raise TypeError(
                f"{f.name} must be {kind.__name__}, got {value!r} ({type(value).__name__})"
            )


_FIELD_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


@functools.lru_cache(maxsize=8)
def _cached_dataset(name: str, max_train: int, rank: int, channels: int, root: str | None):
    kw = {"max_train": max_train} if max_train else {}
    if rank:
        kw["rank"] = rank
    if channels != 1:
        kw["channels"] = channels
    return load_dataset(name, seed=0, **kw, **({"root": root} if root else {}))


def cell_data(cell: TrainCell):
    """The cell's (train, test) datasets: split seed 0, so every seed sees the same data; local
    datasets come from the data root in force (`normtheory.data.data_root`). With
    ``cell.validation`` > 0, (train without the held-out part, the held-out part) instead."""
    root = data_root() if cell.dataset in LOCAL else None
    key = (cell.dataset, cell.max_train, cell.data_rank, cell.data_channels, root)
    if cell.validation:
        return _cached_split(*key, cell.validation)
    return _cached_dataset(*key)


@functools.lru_cache(maxsize=8)
def _cached_split(name: str, max_train: int, rank: int, channels: int, root, fraction: float):
    return split_validation(_cached_dataset(name, max_train, rank, channels, root)[0], fraction)


def probe_batch(cell: TrainCell, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed probe batch: the first `n` training examples of the cell's dataset."""
    train_set, _ = cell_data(cell)
    return train_set.tensors[0][:n], train_set.tensors[1][:n]


def build_cell_model(cell: TrainCell, in_shape, num_classes: int, seed: int) -> torch.nn.Module:
    """The cell's model, initialised from `seed`."""
    extra = _transformer_kw(cell)  # reads the data before the seed is set
    torch.manual_seed(seed)
    return build_model(
        cell.arch,
        norm=cell.norm,
        in_shape=tuple(in_shape),
        num_classes=num_classes,
        width=cell.width,
        depth=cell.depth,
        placement=cell.placement,
        dropout_keep=cell.dropout_keep,
        residual=cell.residual,
        norm_kw=cell.norm_kw(),
        binary=cell.binary,
        **extra,
    )


def _transformer_kw(cell: TrainCell) -> dict:
    """The transformer's own build options: heads, patch and the vocabulary of token data."""
    if cell.arch != "transformer":
        return {}
    vocab = getattr(cell_data(cell)[0], "vocab_size", None) or 0
    return {"heads": cell.heads, "patch": cell.patch, "vocab_size": vocab}


def run_train_cell(
    cell: TrainCell, seed: int, *, device: str = "auto", hooks=(), progress=None
) -> TrainResult:
    """Loads the cell's data (fixed split), builds its model from `seed`, trains it with `hooks`."""
    train_set, test_set = cell_data(cell)
    model = build_cell_model(cell, train_set.in_shape, train_set.num_classes, seed)
    return train(
        model, train_set, test_set, cell.train_config(seed, device), hooks, progress=progress
    )
