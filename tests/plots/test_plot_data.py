"""`normtheory.plots.data`: the tidy table attached to a figure comes back as the same object, and
a figure without one (or with something else under the attribute) has none. (Named
``test_plot_data.py``: ``tests/test_data.py`` is the datasets' and test basenames must be unique;
reading a figure's data back from its artists is ``tests/report/test_figure_data.py``.)"""

import matplotlib.pyplot as plt
import pandas as pd

from normtheory.plots import attach_data, attached_data
from normtheory.plots.data import _ATTR


def test_attached_data_round_trip():
    fig, _ = plt.subplots()
    table = pd.DataFrame({"a": [1, 2]})
    assert attached_data(fig) is None
    assert attach_data(fig, table) is fig and attached_data(fig) is table
    again = pd.DataFrame({"b": [3]})
    assert attached_data(attach_data(fig, again)) is again  # the last table attached wins
    plt.close(fig)


def test_something_else_under_the_attribute_is_no_table():
    fig, _ = plt.subplots()
    setattr(fig, _ATTR, [1, 2])
    assert attached_data(fig) is None
    plt.close(fig)
