"""The paper's synthetic data generators.

:func:`paper_synthetic` is Sec. 5.1 / App. D.1 (with the paper's typo fixed: the shared feature
is X2): ``X1, X3 ~ U(0, 1)``, ``X2 ~ U(0.75, 0.8)``, ``Z1 = 0.8 X1 + 0.6 X2 + e1``,
``Z2 = 0.6 X3 + 0.8 X2 + e2``, ``e1, e2 ~ U(0, 0.2)``; rows with ``Z1 < 0.8`` and ``Z2 > 1.0``
are the Oracle (S = 0), the rest are Seen (S = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError
from sedge_pyro.graph import SpecGraph

__all__ = ["SyntheticData", "paper_synthetic"]


@dataclass(frozen=True)
class SyntheticData:
    """A generated data set: training rows, the held-out novel rows, and the true graph.

    :param seen: training rows (S = 1), columns ``x1, x2, x3, z1, z2``.
    :param oracle: rows the selection removed (S = 0): the ground truth to extrapolate to.
    :param graph: the true :class:`SpecGraph` (Fig. 2(b)).
    """

    seen: pd.DataFrame
    oracle: pd.DataFrame
    graph: SpecGraph

    def __iter__(self):  # allows ``seen, oracle, graph = paper_synthetic(...)``
        return iter((self.seen, self.oracle, self.graph))


def paper_synthetic(
    n: int = 20_000,
    seed: int = 0,
    *,
    z1_below: float = 0.8,
    z2_above: float = 1.0,
) -> SyntheticData:
    """Simulate the paper's synthetic problem (Sec. 5.1) and split it by the selection.

    :param n: population rows before the split.
    :param seed: seed of the simulation.
    :param z1_below: Oracle rows have ``z1 < z1_below`` ...
    :param z2_above: ... and ``z2 > z2_above``.
    :returns: :class:`SyntheticData` (unpacks as ``seen, oracle, graph``).
    :raises DataError: when ``n`` is not a positive integer.

    >>> seen, oracle, graph = paper_synthetic(2000, seed=0)
    >>> bool(((oracle.z1 < 0.8) & (oracle.z2 > 1.0)).all())
    True
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"n={n!r}: expected a positive integer number of rows")
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0.0, 1.0, n)
    x2 = rng.uniform(0.75, 0.8, n)
    x3 = rng.uniform(0.0, 1.0, n)
    z1 = 0.8 * x1 + 0.6 * x2 + rng.uniform(0.0, 0.2, n)
    z2 = 0.6 * x3 + 0.8 * x2 + rng.uniform(0.0, 0.2, n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "z1": z1, "z2": z2})
    novel = (df["z1"] < z1_below) & (df["z2"] > z2_above)
    graph = SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
    return SyntheticData(
        df.loc[~novel].reset_index(drop=True), df.loc[novel].reset_index(drop=True), graph
    )
