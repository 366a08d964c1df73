"""Diagnostics of generated samples: pure functions over arrays and DataFrames.

This module imports nothing of ``sedge_pyro.models`` or ``sedge_pyro.inference``; ArviZ
conversion lives with the samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError, OptionError

__all__ = ["MMD", "mmd"]


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
        dist = np.sqrt(d2[np.triu_indices(n + m, k=1)])
        dist = dist[dist > 0]
        h = float(np.median(dist)) if dist.size else 1.0
    else:
        h = float(bandwidth)
        if not h > 0:
            raise OptionError(f"bandwidth={bandwidth!r}: expected 'median' or a positive number")
    k = np.exp(-d2 / (2 * h * h))

    def statistic(first: np.ndarray) -> float:
        second = ~first
        kxx, kyy, kxy = k[np.ix_(first, first)], k[np.ix_(second, second)], k[np.ix_(first, second)]
        if unbiased:
            sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        else:
            sxx, syy = kxx.mean(), kyy.mean()
        return float(sxx + syy - 2 * kxy.mean())

    labels = np.zeros(n + m, dtype=bool)
    labels[:n] = True
    observed = statistic(labels)
    p_value = None
    if permutations:
        rng = np.random.default_rng(seed)
        hits = sum(statistic(rng.permutation(labels)) >= observed for _ in range(int(permutations)))
        p_value = (hits + 1) / (int(permutations) + 1)
    return MMD(observed, h, p_value, unbiased)
