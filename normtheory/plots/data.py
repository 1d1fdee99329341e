"""The tidy table a figure draws, attached to it so that the report can write it next to the
figure (``reports/results/<figure>.csv``) and anyone can replot it without the run."""

import pandas as pd
from matplotlib.figure import Figure

_ATTR = "_normtheory_data"


def attach_data(fig: Figure, frame: pd.DataFrame) -> Figure:
    """Attaches `frame`, the tidy data `fig` draws; returns `fig`."""
    setattr(fig, _ATTR, frame)
    return fig


def attached_data(fig: Figure) -> pd.DataFrame | None:
    """The table attached to `fig` by `attach_data`, or None."""
    frame = getattr(fig, _ATTR, None)
    return frame if isinstance(frame, pd.DataFrame) else None
