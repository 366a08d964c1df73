"""Diagnostics of generated samples: pure functions over arrays and DataFrames.

This package imports nothing of ``sedge_pyro.models`` or ``sedge_pyro.inference``; ArviZ
conversion lives with the samples. MMD and its floor are here; spec satisfaction in
:mod:`~sedge_pyro.diagnostics.satisfaction`, pair plots in :mod:`~sedge_pyro.diagnostics.plots`,
the MCC in :mod:`~sedge_pyro.diagnostics.mcc`, all importable from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.diagnostics.mcc import MCCResult, mcc
from sedge_pyro.diagnostics.plots import pair_plot
from sedge_pyro.diagnostics.satisfaction import SpecSatisfaction, spec_satisfaction
from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.options import whole

__all__ = [
    "MCCResult",
    "MMD",
    "SpecSatisfaction",
    "mcc",
    "mmd",
    "mmd_floor",
    "pair_plot",
    "spec_satisfaction",
]


class MMD(float):
    r"""The maximum mean discrepancy, a ``float`` that also carries how it was computed.

    It compares and prints like its value, :math:`\sqrt{\max(\mathrm{MMD}^2, 0)}`.

    :ivar mmd2: the estimate of :math:`\mathrm{MMD}^2` (the unbiased one may be negative).
    :ivar bandwidth: the Gaussian kernel's bandwidth used.
    :ivar p_value: the permutation test's p-value (``None`` without permutations).
    :ivar unbiased: whether ``mmd2`` is the unbiased (U-statistic) estimate.
    """

    mmd2: float
    bandwidth: float
    p_value: float | None
    unbiased: bool

    def __new__(cls, mmd2: float, bandwidth: float, p_value: float | None, unbiased: bool) -> MMD:
        """Build from the estimate of MMD^2 and how it was computed."""
        self = super().__new__(cls, float(np.sqrt(max(mmd2, 0.0))))
        self.mmd2 = float(mmd2)
        self.bandwidth = float(bandwidth)
        self.p_value = p_value
        self.unbiased = unbiased
        return self


def _matrix(data: Any, name: str, columns: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    if isinstance(data, pd.DataFrame):
        cols = list(data.columns) if columns is None else columns
        missing = [c for c in cols if c not in data.columns]
        if missing:
            raise DataError(f"{name} has no column {missing[0]!r}: expected columns {cols}")
        arr = data[cols].to_numpy(dtype=float)
        out_cols: list[str] | None = cols
    else:
        arr = np.asarray(data, dtype=float)
        out_cols = columns
        if arr.ndim == 1:
            arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{name} has shape {arr.shape}: expected rows x features")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} holds {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr, out_cols


#: entries of the rows x permutations work matrix per chunk (about 32 MB of float64)
_CHUNK_ENTRIES = 1 << 22


def _mmd2_and_p(
    k: np.ndarray, n: int, m: int, unbiased: bool, permutations: int, seed: int
) -> tuple[float, float | None]:
    r"""MMD^2 of the first ``n`` rows of the kernel matrix ``k`` against the last ``m``, and
    the permutation test's p-value.

    A labelling with indicator :math:`s` of the first sample needs only
    :math:`q = s^\top K s`: with :math:`r = K 1` and :math:`t = 1^\top K 1`, the within-``a``
    sum is :math:`q`, the cross sum :math:`s^\top r - q` and the within-``b`` sum
    :math:`t - 2 s^\top r + q` (the unbiased estimate drops the diagonal, :math:`s^\top
    \mathrm{diag} K` and the rest). So a batch of permutations, the columns of an indicator
    matrix :math:`S`, costs one product :math:`K S`, taken in chunks to bound memory.
    """
    size = n + m
    r = k.sum(axis=1)
    total = float(r.sum())
    diag = np.diagonal(k).copy()
    diag_total = float(diag.sum())

    def statistics(s: np.ndarray) -> np.ndarray:
        q = np.einsum("ip,ip->p", s, k @ s)
        sr = r @ s
        within_a, cross, within_b = q, sr - q, total - 2 * sr + q
        if unbiased:
            diag_a = diag @ s
            within_a = (within_a - diag_a) / (n * (n - 1))
            within_b = (within_b - (diag_total - diag_a)) / (m * (m - 1))
        else:
            within_a, within_b = within_a / (n * n), within_b / (m * m)
        return within_a + within_b - 2 * cross / (n * m)

    first = np.arange(size) < n
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    if unbiased:
        observed = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        observed += (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    else:
        observed = kxx.mean() + kyy.mean()
    observed = float(observed - 2 * kxy.mean())
    if not permutations:
        return observed, None
    # the permuted statistics are compared with the observed one computed the same way, so
    # ties (identical samples) count alike
    reference = statistics(first[:, None].astype(float))[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(permutations, _CHUNK_ENTRIES // size))
    hits, done = 0, 0
    while done < permutations:
        c = min(chunk, permutations - done)
        s = np.empty((size, c))
        for j in range(c):
            s[:, j] = rng.permutation(first)
        hits += int(np.count_nonzero(statistics(s) >= reference))
        done += c
    return observed, (hits + 1) / (permutations + 1)


def mmd(
    a: Any,
    b: Any,
    *,
    bandwidth: str | float = "median",
    unbiased: bool = True,
    standardize: bool = False,
    permutations: int = 0,
    seed: int = 0,
) -> MMD:
    r"""Maximum mean discrepancy between two samples with a Gaussian kernel.

    :math:`k(x, y) = \exp(-\lVert x - y \rVert^2 / (2 h^2))`;
    :math:`\mathrm{MMD}^2 = \mathbb E k(a, a') + \mathbb E k(b, b') - 2 \mathbb E k(a, b)`,
    estimated with (``unbiased=True``) or without the diagonal terms.

    :param a: rows x features (array or DataFrame; a DataFrame ``b`` is aligned to ``a``'s
        columns by name).
    :param b: the other sample, same features.
    :param bandwidth: ``h``: a positive number, or ``"median"`` for the median pairwise
        distance of the pooled sample.
    :param unbiased: the U-statistic (needs two or more rows each) instead of the biased
        V-statistic. The paper's Table 2 magnitude is ``unbiased=False, bandwidth=1.0`` on raw
        features.
    :param standardize: scale every feature by the pooled sample's mean and standard deviation
        first.
    :param permutations: number of label permutations for a p-value of the null "same
        distribution" (0: no test).
    :param seed: seeds the permutations.
    :returns: an :class:`MMD` (a float with ``mmd2``, ``bandwidth``, ``p_value``).
    :raises DataError: for mismatched features, NaNs, or too few rows.
    :raises OptionError: for a bad bandwidth or number of permutations.

    References: Gretton et al., A Kernel Two-Sample Test, JMLR 2012.

    >>> round(mmd([[0.0]], [[1.0]], bandwidth=1.0, unbiased=False), 4)
    0.8871
    """
    x, cols = _matrix(a, "a", None)
    y, _ = _matrix(b, "b", cols if isinstance(b, pd.DataFrame) else None)
    if x.shape[1] != y.shape[1]:
        raise DataError(f"a has {x.shape[1]} features and b {y.shape[1]}: expected the same")
    n, m = len(x), len(y)
    if min(n, m) < (2 if unbiased else 1):
        raise DataError(f"a has {n} rows and b {m}: the unbiased MMD needs two or more each")
    if isinstance(permutations, bool) or int(permutations) < 0:
        raise OptionError(f"permutations={permutations!r}: expected a number >= 0")
    pooled = np.vstack([x, y])
    if standardize:
        std = pooled.std(axis=0)
        std[std == 0] = 1.0
        pooled = (pooled - pooled.mean(axis=0)) / std
    sq = np.sum(pooled**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise OptionError(f"bandwidth={bandwidth!r}: expected 'median' or a positive number")
        # the upper triangle row by row: the same values as d2[np.triu_indices(...)], without
        # two index arrays of (n + m)^2 / 2 entries
        upper = [d2[i, i + 1 :] for i in range(n + m - 1)]
        dist = np.sqrt(np.concatenate(upper)) if upper else np.empty(0)
        dist = dist[dist > 0]
        h = float(np.median(dist)) if dist.size else 1.0
    else:
        h = float(bandwidth)
        if not h > 0:
            raise OptionError(f"bandwidth={bandwidth!r}: expected 'median' or a positive number")
    k = np.exp(-d2 / (2 * h * h))
    mmd2, p_value = _mmd2_and_p(k, n, m, unbiased, int(permutations), seed)
    return MMD(mmd2, h, p_value, unbiased)


def mmd_floor(
    reference: Any,
    n: int | None = None,
    *,
    repeats: int = 5,
    seed: int = 0,
    **mmd_options: Any,
) -> float:
    r"""The finite-sample floor of :func:`mmd`: the MMD between two halves of one sample.

    Two disjoint random subsets of ``reference`` of ``n`` rows each are two independent
    samples of the same distribution, so their MMD is what a perfect generator of ``n`` draws
    would score against ``n`` reference rows. The mean over ``repeats`` random splits.

    :param reference: rows x features (array or DataFrame), e.g. the Oracle rows.
    :param n: rows per subset; default ``len(reference) // 2``.
    :param repeats: number of random splits averaged.
    :param seed: seeds the splits (and, offset per split, :func:`mmd`'s permutations).
    :param mmd_options: passed to :func:`mmd` (``bandwidth``, ``unbiased``, ``standardize``,
        ``permutations``), so the floor is computed like the values it is compared with.
    :returns: the mean MMD, a ``float``.
    :raises DataError: when ``2 n`` exceeds the rows of ``reference``.
    :raises OptionError: for a bad ``n``, ``repeats`` or MMD option.

    >>> import numpy as np
    >>> ref = np.random.default_rng(0).normal(size=(400, 2))
    >>> floor = mmd_floor(ref, 100, bandwidth=1.0, unbiased=False)
    >>> 0.0 < floor < 0.2
    True
    """
    rows = (
        reference
        if isinstance(reference, pd.DataFrame)
        else _matrix(reference, "reference", None)[0]
    )
    total = len(rows)
    if n is None:
        n = total // 2
    whole("n", n, expected="a positive integer number of rows per subset")
    whole("repeats", repeats, expected="a positive integer")
    if 2 * n > total:
        raise DataError(
            f"n={n}: two disjoint subsets need 2 n = {2 * n} rows, but reference has {total}"
        )
    rng = np.random.default_rng(seed)
    values = []
    for r in range(int(repeats)):
        order = rng.permutation(total)
        first, second = order[:n], order[n : 2 * n]
        if isinstance(rows, pd.DataFrame):
            a, b = rows.iloc[first], rows.iloc[second]
        else:
            a, b = rows[first], rows[second]
        values.append(float(mmd(a, b, seed=seed + r, **mmd_options)))
    return float(np.mean(values))


# ---------------------------------------------------------------------- spec satisfaction


# ---------------------------------------------------------------------- pair plots


# ---------------------------------------------------------------------- identifiability (MCC)
