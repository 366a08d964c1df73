"""Pair plots of training rows, generated draws and the oracle, the style of the paper's Fig. 3
and App. D.1.1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.diagnostics.frames import _frame
from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.options import whole


def pair_plot(
    seen: Any,
    generated: Any,
    oracle: Any = None,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    ax: Any = None,
    labels: tuple[str, str, str] = ("seen", "generated", "oracle"),
    max_points: int | None = 2000,
    seed: int = 0,
) -> Any:
    """Scatter plots of feature pairs, the style of the paper's Fig. 3 and App. D.1.1.

    Training rows in grey, generated draws in colour, the oracle (the population rows with
    the target specifications) in another colour, one panel per pair. Draws no window:
    save the returned figure (``fig.savefig("pairs.png")``) or let a notebook show it.

    :param seen: training rows (a DataFrame, or anything with ``to_dataframe()``).
    :param generated: generated draws (e.g. :class:`~sedge_pyro.Samples`).
    :param oracle: optionally, the rows the draws should match.
    :param pairs: feature pairs to plot (default: every pair of ``generated``'s columns).
    :param ax: an Axes or a sequence of Axes, one per pair (default: a new figure).
    :param labels: legend labels of seen, generated and oracle.
    :param max_points: at most this many points per set (a seeded random subset; ``None``:
        all).
    :param seed: seeds the subsets.
    :returns: the ``matplotlib.figure.Figure``.
    :raises DataError: naming a column missing from a set.
    :raises OptionError: for a bad pair, a wrong number of Axes, or a bad ``max_points``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"x1": [0.0, 1.0], "x2": [1.0, 0.0], "x3": [0.5, 0.5]})
    >>> fig = pair_plot(df, df + 1, pairs=[("x1", "x3")])
    >>> [a.get_xlabel() for a in fig.axes]
    ['x1']
    """
    sets = [("seen", seen), ("generated", generated), ("oracle", oracle)]
    frames = {name: _frame(data, name) for name, data in sets if data is not None}
    pairs = _checked_pairs(frames, pairs)
    whole("max_points", max_points, none_ok=True, expected="a positive number or None")
    axes = _axes(ax, len(pairs))
    rng = np.random.default_rng(seed)
    style = {
        "seen": {"color": "0.6", "s": 4, "alpha": 0.35, "zorder": 1},
        "oracle": {"color": "tab:orange", "s": 6, "alpha": 0.5, "zorder": 2},
        "generated": {"color": "tab:blue", "s": 6, "alpha": 0.6, "zorder": 3},
    }
    label = dict(zip(("seen", "generated", "oracle"), labels, strict=True))
    shown = {}
    for name, frame in frames.items():
        if max_points is not None and len(frame) > max_points:
            frame = frame.iloc[np.sort(rng.choice(len(frame), max_points, replace=False))]
        shown[name] = frame
    for axis, (a, b) in zip(axes, pairs, strict=True):
        for name in ("seen", "oracle", "generated"):
            if name in shown:
                frame = shown[name]
                axis.scatter(frame[a], frame[b], label=label[name], **style[name])
        axis.set_xlabel(a)
        axis.set_ylabel(b)
    axes[0].legend(loc="best", markerscale=3, frameon=False)
    fig = axes[0].figure
    return fig


def _checked_pairs(
    frames: dict[str, pd.DataFrame], pairs: Sequence[tuple[str, str]] | None
) -> list[tuple[str, ...]]:
    """The pairs to plot (default every pair of ``generated``'s columns), each column in every
    set.
    """
    if pairs is None:
        cols = list(frames["generated"].columns)
        pairs = list(itertools.combinations(cols, 2))
        if not pairs:
            raise OptionError(
                f"generated has {len(cols)} column(s): pair_plot needs two or more features"
            )
    pairs = [tuple(p) for p in pairs]
    for p in pairs:
        if len(p) != 2 or not all(isinstance(c, str) for c in p):
            raise OptionError(f"pair {p!r}: expected two column names, e.g. ('x1', 'x3')")
    if not pairs:
        raise OptionError("pairs is empty: expected at least one pair of columns")
    needed = list(dict.fromkeys(c for p in pairs for c in p))
    for name, frame in frames.items():
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(
                f"{name} has no column {missing[0]!r}: expected columns {needed} "
                f"(it has {list(frame.columns)})"
            )
    return pairs


def _axes(ax: Any, count: int) -> list[Any]:
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4 * count, 3.8), layout="constrained")
        return list(np.atleast_1d(fig.subplots(1, count, squeeze=False)[0]))
    axes = list(np.ravel(ax)) if isinstance(ax, list | tuple | np.ndarray) else [ax]
    if len(axes) != count:
        raise OptionError(f"ax holds {len(axes)} Axes for {count} pair(s): expected one per pair")
    return axes
