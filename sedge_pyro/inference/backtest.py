r"""``backtest``: which sampler to trust on *your* data, from seen combinations held out.

A target :math:`Z_T \in A` that the training rows never show has no rows to score draws
against. Its closest analogues that *can* be scored are the other cells of the same shape:
for every target spec either the target's event :math:`A_i` or its complement (for a
category, the other values), e.g. for :math:`z_1 \le 0.8, z_2 \ge 1` the cells
:math:`(A_1, \lnot A_2)`, :math:`(\lnot A_1, A_2)` and :math:`(\lnot A_1, \lnot A_2)`.
:func:`backtest` takes the rarest of them that have enough rows, and for each one

1. removes its rows, which makes it unseen exactly as the selection variable :math:`S` makes the
   target unseen (paper Sec. 3);
2. fits a fresh :class:`~sedge_pyro.SEDGEModel` (the user's options) on the other rows;
3. samples the cell as the target with every method, and scores the draws against the rows
   held out: the standardised MMD (median bandwidth) and its ratio to the split-half floor of
   the held-out rows (1 is as good as a second sample of the truth), the share of draws
   outside the held-out rows' range (widened by 5%), the fitted satisfaction of the draws'
   verdict, and the number of warnings.

A cell whose removal leaves one of its values unseen (Assumption 1) is skipped: no method can
extrapolate to it, and :func:`~sedge_pyro.identify` says so (``IMPOSSIBLE``); a cell with too
few rows that would also leave a value unseen gives that reason first. Every skipped cell is
listed with its reason in :attr:`Backtest.skipped`, and the report's heading says why the
others were not held out: the rarest *usable* cell can be the most common one.

The held-out cells are rare, as the novel one is, but they are not the novel one: the backtest
is evidence of how each method extrapolates on this data and this graph, not a guarantee for
the target.

References: SEDGE paper, Sec. 3 (the selection variable), Sec. 5.1 (MMD against held-out
rows); Gretton et al., A Kernel Two-Sample Test, JMLR 2012.

Where each part lives: the engine, :func:`run_backtest`, in
:mod:`~sedge_pyro.inference.backtest_engine`; the cells held out and the scoring of draws
against them in :mod:`~sedge_pyro.inference.backtest_cells`; the result, :class:`Backtest`
and :class:`Cell`, in :mod:`~sedge_pyro.inference.backtest_result`; ``method="auto"``,
:func:`sample_auto`, in :mod:`~sedge_pyro.inference.auto`. This module re-exports them:
``sp.backtest`` is :func:`run_backtest` with ``build=SEDGEModel``.
"""

from __future__ import annotations

from sedge_pyro.inference.auto import sample_auto
from sedge_pyro.inference.backtest_cells import FLOOR_REPEATS, MARGIN
from sedge_pyro.inference.backtest_engine import ALIASES, run_backtest
from sedge_pyro.inference.backtest_result import OUTSIDE_MAX, RELIABLE_RATIO, Backtest, Cell

__all__ = [
    "ALIASES",
    "FLOOR_REPEATS",
    "MARGIN",
    "OUTSIDE_MAX",
    "RELIABLE_RATIO",
    "Backtest",
    "Cell",
    "run_backtest",
    "sample_auto",
]
