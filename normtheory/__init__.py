"""normtheory: puts the theory of normalization layers in deep networks to the test.

``from normtheory import TrainCell, Grid, Profile, Study`` gives what a study of your own
declares (they live in `normtheory.study`; imported on first use, so ``import normtheory``
stays light).
"""

__version__ = "0.1.0"

_STUDY_NAMES = ("TrainCell", "Grid", "Profile", "Study", "cross")


def __getattr__(name: str):
    if name in _STUDY_NAMES:
        from normtheory import study

        return getattr(study, name)
    raise AttributeError(f"module 'normtheory' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_STUDY_NAMES])
