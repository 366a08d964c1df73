"""The independence check of Thm 1: features of different components are independent given
``Z_T``, measured by partial correlations on the training rows (see
:func:`independence_assumption`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.assumptions.base import (
    INDEPENDENCE_ALPHA,
    INDEPENDENCE_MIN_R,
    Assumption,
    Check,
    _names,
    _require,
    _set_text,
)
from sedge_pyro.errors import DataError

#: Columns of the independence check's correlation matrix computed at a time (memory bound).
_CHUNK = 512


def _design(data: pd.DataFrame, specs: Sequence[str]) -> np.ndarray:
    """An intercept and the specifications' columns (numbers as they are, labels one-hot)."""
    parts = [np.ones((len(data), 1))]
    for name in specs:
        col = data[name]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            parts.append(col.to_numpy(dtype=float)[:, None])
        else:
            parts.append(pd.get_dummies(col, drop_first=True).to_numpy(dtype=float))
    return np.concatenate(parts, axis=1)


def independence_assumption(
    parts: Sequence[tuple[str, frozenset[str]]],
    target: Mapping[str, Any],
) -> Assumption:
    r"""Thm 1: features of different components are independent given ``Z_T``.

    :func:`~sedge_pyro.identify` writes ``p(X | Z_T) = prod_a p(F_a | Z_Ba)`` because no edge
    joins the components ``F_a`` of the graph. The check measures the partial correlation,
    given the target specifications' columns (linear, labels one-hot), of every pair of
    features in different components on the training rows and fails when a pair is dependent:
    a Fisher-z test, :math:`|\operatorname{atanh} r| \sqrt{n - k - 3}` with ``k`` the
    conditioning columns, significant at
    :data:`INDEPENDENCE_ALPHA` with a Bonferroni correction over the pairs tested, *and*
    :math:`|r| \ge` :data:`INDEPENDENCE_MIN_R` (so that a huge table does not fail on a
    negligible correlation). The message names the pair and ``r``.

    Why all training rows given the specs' values, not only the rows with the target's values:
    the rows with the whole target combination do not exist when it is novel, and the rows of
    one block are a small share of the table, where the test has little power. Why given
    ``Z_T`` rather than marginally: the training rows condition on ``S = 1``, which opens
    ``F_a -> z_a -> S <- z_b <- F_b`` (the selection itself makes the components' features
    correlate when it depends on their specifications); given the specifications' values that
    path is closed, so a dependence left means a missing edge between the components (or a
    non-target specification that joins them and feeds ``S``): the factorization is in doubt.
    Feature columns that are not numbers, are constant, or are missing are left out (and said
    so in the detail).

    :param parts: one ``(label, features)`` per component, e.g. ``("{z1}", {"x1", "x2"})``.
    :param target: the target, for the columns :func:`_require` asks for.
    :returns: the :class:`Assumption` named ``independence``.

    >>> rng = np.random.default_rng(0)
    >>> x1 = rng.normal(size=500)
    >>> rows = pd.DataFrame({"z1": 1, "x1": x1, "x2": x1 + rng.normal(size=500)})
    >>> a = independence_assumption([("{z1}", {"x1"}), ("{z2}", {"x2"})], {"z1": 1})
    >>> a.check(rows).label
    'FAIL'
    """

    def check(data: pd.DataFrame) -> Check:
        return _independence_check(data, parts, target)

    names = " | ".join(label for label, _ in parts)
    return Assumption(
        "independence",
        f"features of different components ({names}) are independent given Z_T, so "
        "p(X | Z_T) = prod_a p(F_a | Z_Ba) (Thm 1)",
        check,
    )


def _numeric_groups(
    data: pd.DataFrame, parts: Sequence[tuple[str, frozenset[str]]]
) -> tuple[list[str], list[list[str]], list[str], list[str]]:
    """Step 1 of the independence check: each component's numeric feature columns.

    :returns: labels and columns of the components with any, and the features left out
        (no column; not numbers).
    """
    labels, groups, missing, skipped = [], [], [], []
    for label, feats in parts:
        cols = []
        for c in _names(feats):
            if c not in data.columns:
                missing.append(c)
            elif pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c]):
                if data[c].isna().any():
                    raise DataError(f"column {c!r} holds NaN values: expected complete rows")
                cols.append(c)
            else:
                skipped.append(c)
        if cols:
            labels.append(label)
            groups.append(cols)
    return labels, groups, missing, skipped


def _unit_residuals(
    data: pd.DataFrame, cols: list[str], target: Mapping[str, Any]
) -> tuple[np.ndarray, int, np.ndarray]:
    """Step 2: the feature columns' residuals given the target specs (linear, labels one-hot),
    scaled to unit length, so that ``x.T @ x`` is the matrix of partial correlations.

    :returns: the residuals, the number of conditioning columns and which columns vary.
    """
    x = data[cols].to_numpy(dtype=float)
    # partial correlations given Z_T: S's parents are specifications, so selecting on S
    # makes features of different components dependent (x_a -> z_a -> S <- z_b <- x_b)
    # marginally, but not given the target specs' values
    z = _design(data, list(target))
    x = x - z @ np.linalg.lstsq(z, x, rcond=None)[0]
    n_given = z.shape[1] - 1
    norm = np.sqrt((x * x).sum(axis=0))
    varies = norm > 0
    x = x / np.where(varies, norm, 1.0)  # unit columns: x.T @ x is the correlation matrix
    return x, n_given, varies


def _scan_pairs(
    x: np.ndarray, comp: np.ndarray, varies: np.ndarray, r_crit: float
) -> tuple[tuple[float, int, int], list[tuple[float, int, int]]]:
    """Step 3: every pair of varying columns of different components, in chunks of rows.

    :returns: the pair with the largest ``|r|`` and every pair with ``|r| >= r_crit``.
    """
    p = x.shape[1]
    best = (0.0, 0, 0)
    flagged: list[tuple[float, int, int]] = []
    for start in range(0, p, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, p))
        r = x[:, rows].T @ x
        # each pair once, across components, neither column constant
        keep = (
            (comp[rows, None] != comp[None, :])
            & (np.arange(p)[None, :] > rows[:, None])
            & varies[rows, None]
            & varies[None, :]
        )
        r = np.where(keep, np.clip(r, -1.0, 1.0), 0.0)
        i, j = np.unravel_index(int(np.argmax(np.abs(r))), r.shape)
        if abs(r[i, j]) > abs(best[0]):
            best = (float(r[i, j]), int(rows[i]), int(j))
        for a, b in zip(*np.nonzero(np.abs(r) >= r_crit), strict=True):
            flagged.append((float(r[a, b]), int(rows[a]), int(b)))
    return best, flagged


def _independence_check(
    data: pd.DataFrame,
    parts: Sequence[tuple[str, frozenset[str]]],
    target: Mapping[str, Any],
) -> Check:
    """The check of :func:`independence_assumption` on ``data`` (see there)."""
    _require(data, target)
    labels, groups, missing, skipped = _numeric_groups(data, parts)
    notes = ""
    if missing:
        notes += f"; not checked (no column): {_set_text(missing)}"
    if skipped:
        notes += f"; not checked (not numbers): {_set_text(skipped)}"
    if len(groups) < 2:
        if missing:
            raise DataError(
                f"data has no column {missing[0]!r} for feature {missing[0]!r}: the "
                "independence check needs the features of two components"
            )
        return Check(None, "fewer than two components have numeric feature columns" + notes)
    n = len(data)
    if n < 4:
        return Check(None, f"{n} training rows: too few to measure a correlation" + notes)
    cols = [c for g in groups for c in g]
    comp = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    x, n_given, varies = _unit_residuals(data, cols, target)
    sizes = np.bincount(comp[varies], minlength=len(groups))
    n_pairs = int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)
    if n_pairs == 0:
        return Check(None, "the features of all but one component are constant" + notes)
    if n - n_given < 4:
        return Check(None, f"{n} training rows: too few to measure a correlation" + notes)
    z_crit = NormalDist().inv_cdf(1.0 - INDEPENDENCE_ALPHA / (2 * n_pairs))
    r_crit = max(INDEPENDENCE_MIN_R, math.tanh(z_crit / math.sqrt(n - n_given - 3)))
    best, flagged = _scan_pairs(x, comp, varies, r_crit)

    def pair(r: float, i: int, j: int) -> str:
        return (
            f"{cols[i]} ({labels[comp[i]]}) and {cols[j]} ({labels[comp[j]]}) correlate at "
            f"r = {r:.2f} given {_set_text(list(target))}"
        )

    test = (
        f"dependent: Fisher z at alpha {INDEPENDENCE_ALPHA:g}, Bonferroni over {n_pairs} "
        f"pair(s), and |r| >= {INDEPENDENCE_MIN_R:g}, i.e. |r| >= {r_crit:.3f}"
    )
    if flagged:
        flagged.sort(key=lambda f: -abs(f[0]))
        more = f"; {len(flagged) - 3} more dependent pair(s)" if len(flagged) > 3 else ""
        return Check(
            False,
            "; ".join(pair(*f) for f in flagged[:3])
            + f" on {n} training rows ({test}){more}: the factorization treats features "
            "of different components as independent (Thm 1)" + notes,
        )
    return Check(
        True,
        f"largest correlation between features of different components: {pair(*best)} on "
        f"{n} training rows; none {test}" + notes,
    )
