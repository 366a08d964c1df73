"""The backtest's cells and their scoring: which seen combinations of the target's shape to
hold out, and how draws are scored against a cell's held-out rows.

:func:`_choose_cells` removes a cell's rows as the selection variable :math:`S` removes the
target (paper Sec. 3) and keeps the cells that stay identifiable once removed (Assumption 1,
checked by :func:`~sedge_pyro.identify`); :class:`_Scorer` scores draws by the standardised
MMD against the held-out rows (Sec. 5.1) over its split-half floor, and the share outside
their range. The engine that runs them is :mod:`~sedge_pyro.inference.backtest_engine`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.assumptions import DEFAULT_TOLERANCE_SD, is_continuous
from sedge_pyro.diagnostics import mmd, mmd_floor
from sedge_pyro.errors import DataError, SedgeError, TargetError
from sedge_pyro.expr import Interval, Var
from sedge_pyro.graph import SpecGraph
from sedge_pyro.identify import Status, identify
from sedge_pyro.inference.backtest_result import Cell

__all__ = ["FLOOR_REPEATS", "MARGIN"]

#: the held-out range is widened by this fraction of its width on each side
MARGIN = 0.05
#: split-half repeats of the floor, and reference subsets the draws are scored against
FLOOR_REPEATS = 5


def _check_target(graph: SpecGraph, target: Any) -> dict[str, Any]:
    if not isinstance(target, Mapping) or not target:
        raise TargetError(
            f"target is {target!r}: expected a non-empty dict spec -> value or sp.Interval"
        )
    for spec, value in target.items():
        if spec not in graph.specs:
            raise TargetError(
                f"target names {spec!r}, not a specification of the graph: expected one of "
                f"{', '.join(graph.specs)}"
            )
        if not isinstance(value, Interval) and np.ndim(value) != 0:
            raise TargetError(
                f"target {spec!r} is an array: the backtest needs one value or sp.Interval "
                "per spec (per-draw targets cannot define cells)"
            )
    return dict(target)


def _alternatives(spec: str, value: Any, column: pd.Series) -> list[tuple[Any, np.ndarray]]:
    """The target's event on ``spec`` first, then the pieces of its complement, each as
    ``(target value, row mask)``; the masks partition the rows (up to the closed bounds).
    """
    if isinstance(value, Interval) or is_continuous(column):
        if not pd.api.types.is_numeric_dtype(column):
            raise TargetError(f"target {spec!r} is an interval but column {spec!r} is not numeric")
        z = column.to_numpy(dtype=float)
        if not isinstance(value, Interval):
            tol = DEFAULT_TOLERANCE_SD * float(np.std(z))
            value = Interval(float(value) - tol, float(value) + tol)
        out = [(value, value.contains(z))]
        if value.low is not None:
            out.append((Interval(high=value.low), z < value.low))
        if value.high is not None:
            out.append((Interval(low=value.high), z > value.high))
        return out
    values = column.to_numpy()
    out = [(value, values == value)]
    for other in sorted(pd.unique(column), key=str):
        if other != value:
            other = other.item() if isinstance(other, np.generic) else other
            out.append((other, values == other))
    return out


def _choose_cells(
    graph: SpecGraph,
    df: pd.DataFrame,
    target: Mapping[str, Any],
    min_rows: int,
    max_combos: int,
) -> tuple[list[tuple[Cell, np.ndarray]], list[Cell]]:
    """The cells to hold out (rarest first, with their masks) and the skipped ones."""
    specs = list(target)
    options = [_alternatives(z, target[z], df[z]) for z in specs]
    candidates = []
    for order, combo in enumerate(itertools.product(*options)):
        if order == 0:
            continue  # every spec at its event: the target's own cell
        cell_target = {z: v for z, (v, _) in zip(specs, combo, strict=True)}
        mask = np.logical_and.reduce([m for _, m in combo])
        label = ", ".join(Var(z, v).to_text() for z, v in cell_target.items())
        unseen = [
            Var(z, v).to_text()
            for z, (v, m) in zip(specs, combo, strict=True)
            if not bool((m & ~mask).any())
        ]
        candidates.append((int(mask.sum()), order, label, cell_target, mask, unseen))
    candidates.sort(key=lambda c: (c[0], c[1]))
    picked: list[tuple[Cell, np.ndarray]] = []
    skipped: list[Cell] = []
    for count, _, label, cell_target, mask, unseen in candidates:
        if count < min_rows:
            reason = f"too few rows to score against (min_rows={min_rows})"
            status = ""
            if unseen:  # the more basic reason first: no rows would help
                rest = len(df) - count
                reason = (
                    f"removing its rows makes it impossible to identify: target value "
                    f"{' and '.join(unseen)} is never seen in the {rest} other rows (Assumption "
                    f"1 fails); it also has too few rows to score against (min_rows={min_rows})"
                )
                status = Status.IMPOSSIBLE.value
            skipped.append(Cell(label, cell_target, count, status=status, reason=reason))
            continue
        if len(picked) >= max_combos:
            reason = f"more common than the {max_combos} rarest held out (max_combos={max_combos})"
            skipped.append(Cell(label, cell_target, count, reason=reason))
            continue
        try:
            res = identify(graph, cell_target, df.loc[~mask])
        except SedgeError as err:
            skipped.append(Cell(label, cell_target, count, reason=f"cannot be identified: {err}"))
            continue
        if res.status is Status.IMPOSSIBLE:
            why = res.reason or "a value is never seen alone (Assumption 1)"
            reason = f"removing its rows makes it impossible to identify: {why}"
            skipped.append(Cell(label, cell_target, count, status=res.status.value, reason=reason))
            continue
        picked.append((Cell(label, cell_target, count, status=res.status.value), mask))
    if not picked:
        found = "; ".join(f"{c.label}: {c.rows} rows, {c.reason}" for c in skipped)
        raise DataError(
            f"no cell of the target's shape can be held out ({len(df)} rows): {found or 'none'}"
            f". Expected a seen combination with at least min_rows={min_rows} rows whose "
            "removal leaves each of its values seen"
        )
    return picked, skipped


class _Scorer:
    """Scores draws against one cell's held-out rows.

    The MMD (standardised, median bandwidth, the V-statistic so it is never clipped at 0)
    compares ``k = min(draws, rows // 2)`` draws with ``k`` held-out rows, averaged over
    :data:`FLOOR_REPEATS` random subsets; the floor is the same MMD between two disjoint
    ``k``-row halves of the held-out rows (:func:`~sedge_pyro.mmd_floor`). Both carry the same
    finite-sample bias, so a perfect generator scores a ratio near 1 whatever ``k`` is. Every
    method is scored against the same reference subsets.
    """

    OPTIONS: dict[str, Any] = {"bandwidth": "median", "standardize": True, "unbiased": False}

    def __init__(self, reference: pd.DataFrame, draws: int, seed: int) -> None:
        m = len(reference)
        self.k = max(1, min(draws, m // 2))
        self.seed = seed
        self.floor = mmd_floor(reference, self.k, repeats=FLOOR_REPEATS, seed=seed, **self.OPTIONS)
        rng = np.random.default_rng(seed)
        self.refs = [
            reference.iloc[rng.choice(m, self.k, replace=False)] for _ in range(FLOOR_REPEATS)
        ]
        values = reference.to_numpy(dtype=float)
        lo, hi = values.min(axis=0), values.max(axis=0)
        width = np.where(hi > lo, hi - lo, np.maximum(np.abs(lo), 1.0))
        self.lo, self.hi = lo - MARGIN * width, hi + MARGIN * width

    def score(self, x: pd.DataFrame) -> dict[str, float]:
        values = x.to_numpy(dtype=float)
        outside = float(np.mean(((values < self.lo) | (values > self.hi)).any(axis=1)))
        rng = np.random.default_rng(self.seed + 1)
        k = min(self.k, len(x))
        d = float(
            np.mean(
                [
                    float(mmd(x.iloc[rng.choice(len(x), k, replace=False)], ref, **self.OPTIONS))
                    for ref in self.refs
                ]
            )
        )
        ratio = d / self.floor if self.floor > 0 else math.nan
        return {"mmd": d, "floor": self.floor, "ratio": ratio, "outside": outside}
