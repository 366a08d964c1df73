"""Diagnostics of generated samples: pure functions over arrays and DataFrames.

This module imports nothing of ``sedge_pyro.models`` or ``sedge_pyro.inference``; ArviZ
conversion lives with the samples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.assumptions import is_continuous
from sedge_pyro.errors import DataError, OptionError, TargetError
from sedge_pyro.expr import Interval
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


def _frame(data: Any, name: str) -> pd.DataFrame:
    """A DataFrame of draws: a DataFrame as is, or ``data.to_dataframe()`` (e.g. ``Samples``)."""
    if isinstance(data, pd.DataFrame):
        return data
    to_dataframe = getattr(data, "to_dataframe", None)
    if callable(to_dataframe):
        frame = to_dataframe()
        if isinstance(frame, pd.DataFrame):
            return frame
    raise DataError(
        f"{name} is {type(data).__name__}: expected a DataFrame or an object with "
        "to_dataframe() (e.g. sp.Samples)"
    )


def _tolerance_for(tolerance: Any, spec: str) -> float | None:
    if isinstance(tolerance, Mapping):
        value = tolerance.get(spec)
    else:
        value = tolerance
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise OptionError(f"tolerance for {spec!r} is {value!r}: expected a number >= 0")
    return float(value)


def _met(column: pd.Series, spec: str, value: Any, tolerance: Any) -> np.ndarray:
    """Whether each simulated value of ``spec`` meets the target ``value``."""
    if isinstance(value, Interval):
        if not pd.api.types.is_numeric_dtype(column):
            raise DataError(f"simulated {spec!r} is not numeric: an Interval target needs numbers")
        return value.contains(column.to_numpy(dtype=float))
    if isinstance(value, int | float) and not isinstance(value, bool) and is_continuous(column):
        tol = _tolerance_for(tolerance, spec)
        if tol is None:
            raise OptionError(
                f"target {spec}={value!r} is a point on a continuous specification: pass "
                f"tolerance (a number, or a dict with {spec!r}) to count simulated values "
                "within it as met"
            )
        return np.abs(column.to_numpy(dtype=float) - float(value)) <= tol
    return np.asarray(column.to_numpy() == value, dtype=bool)


def _with_all(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["all"] = frame.prod(axis=1) if frame.dtypes.map(_is_number).all() else frame.all(axis=1)
    return frame


def _is_number(dtype: Any) -> bool:
    return pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)


@dataclass(frozen=True)
class SpecSatisfaction:
    r"""How well draws meet a target, from a fitted likelihood and/or an oracle simulator.

    :ivar target: the target, specification -> value or :class:`~sedge_pyro.Interval`.
    :ivar likelihood: per draw, :math:`P(z_i \in A_i \mid x)` for each target spec and their
        product ``"all"`` (``None`` without a likelihood).
    :ivar oracle: per draw, whether the simulated specs meet the target, each spec and
        ``"all"`` (``None`` without a simulator).
    """

    target: dict[str, Any]
    likelihood: pd.DataFrame | None
    oracle: pd.DataFrame | None

    @property
    def summary(self) -> pd.DataFrame:
        """Mean per spec (and ``"all"``): a row ``likelihood`` (expected share of draws
        meeting the target under the fitted model) and a row ``oracle`` (share of simulated
        specs meeting it), whichever were computed.
        """
        rows = {
            name: frame.astype(float).mean(axis=0)
            for name, frame in (("likelihood", self.likelihood), ("oracle", self.oracle))
            if frame is not None
        }
        return pd.DataFrame(rows).T

    def __repr__(self) -> str:
        return f"SpecSatisfaction(target={self.target!r})\n{self.summary.round(4).to_string()}"


def spec_satisfaction(
    samples: Any,
    target: Mapping[str, Any] | None = None,
    *,
    likelihood: Any = None,
    simulate: Callable[[pd.DataFrame, np.random.Generator], Any] | None = None,
    tolerance: float | Mapping[str, float] | None = None,
    seed: int = 0,
) -> SpecSatisfaction:
    r"""The probability that each draw meets the target, under a likelihood and/or an oracle.

    With ``likelihood``, each draw's :math:`P(z_i \in A_i \mid V_i(x))` per target spec and
    their product (column ``"all"``; the specs are independent given :math:`X`, Sec. 3.1);
    with ``simulate``, whether specifications simulated from each draw by the true mechanism
    meet the target (the paper's check that generated :math:`X` really carries the novel
    combination).

    :param samples: the draws: a DataFrame with a column per feature, or anything with
        ``to_dataframe()`` (:class:`~sedge_pyro.Samples`).
    :param target: specification -> value or :class:`~sedge_pyro.Interval`; default
        ``samples.target``.
    :param likelihood: a fitted model (any object with ``spec_probability(data, target,
        tolerance=...)``, e.g. :class:`~sedge_pyro.SEDGEModel`; a point on a continuous spec
        counts within ``tolerance``, by default the model's 0.1 training standard deviations),
        or a callable ``features_df -> probabilities`` returning a column per target spec.
    :param simulate: an oracle ``simulate(features_df, rng) -> specs_df`` with a column per
        target spec.
    :param tolerance: for point targets on continuous specs, the distance within which a value
        counts as met: a number or a dict spec -> number. The oracle needs it for such specs.
    :param seed: seeds the ``rng`` given to ``simulate``.
    :returns: a :class:`SpecSatisfaction` (``.likelihood``, ``.oracle``, ``.summary``).
    :raises OptionError: when neither ``likelihood`` nor ``simulate`` is given, either is not
        usable, or a continuous point target lacks a tolerance for the oracle.
    :raises TargetError: for an empty target.
    :raises DataError: when the probabilities or simulated specs lack a target spec, have
        the wrong number of rows, or probabilities fall outside [0, 1].

    >>> import pandas as pd
    >>> draws = pd.DataFrame({"x1": [0.0, 1.0, 2.0]})
    >>> def simulate(x, rng):
    ...     return pd.DataFrame({"z1": x["x1"] + 0.5})
    >>> result = spec_satisfaction(draws, {"z1": Interval(low=1.0)}, simulate=simulate)
    >>> result.oracle["all"].tolist(), round(float(result.summary.loc["oracle", "all"]), 3)
    ([False, True, True], 0.667)
    """
    draws = _frame(samples, "samples")
    if target is None:
        target = getattr(samples, "target", None)
        if target is None:
            raise TargetError("target is missing: pass target= (samples carry none)")
    if not isinstance(target, Mapping) or not target:
        raise TargetError(f"target is {target!r}: expected a non-empty mapping spec -> value")
    target = dict(target)
    if likelihood is None and simulate is None:
        raise OptionError(
            "spec_satisfaction needs likelihood= (a fitted model or a callable) and/or "
            "simulate= (an oracle simulator)"
        )
    probs = None
    if likelihood is not None:
        if hasattr(likelihood, "spec_probability"):
            raw = likelihood.spec_probability(draws, target, tolerance=tolerance)
        elif callable(likelihood):
            raw = likelihood(draws)
        else:
            raise OptionError(
                f"likelihood is {type(likelihood).__name__}: expected a fitted model with "
                "spec_probability() or a callable features_df -> probabilities"
            )
        probs = _columns(raw, target, len(draws), "likelihood")
        values = probs.to_numpy(dtype=float)
        if not np.all((values >= 0) & (values <= 1)):
            raise DataError("likelihood returned values outside [0, 1]: expected probabilities")
        probs = _with_all(probs.astype(float))
    met = None
    if simulate is not None:
        if not callable(simulate):
            raise OptionError(
                f"simulate is {type(simulate).__name__}: expected a callable "
                "simulate(features_df, rng) -> specs_df"
            )
        specs = _columns(
            simulate(draws, np.random.default_rng(seed)), target, len(draws), "simulate"
        )
        met = pd.DataFrame(
            {k: _met(specs[k], k, v, tolerance) for k, v in target.items()}, index=draws.index
        )
        met = _with_all(met)
    return SpecSatisfaction(target, probs, met)


def _columns(raw: Any, target: Mapping[str, Any], rows: int, name: str) -> pd.DataFrame:
    """The target specs' columns of what ``name`` returned, checked against the draws."""
    frame = raw if isinstance(raw, pd.DataFrame) else pd.DataFrame(dict(raw))
    missing = [k for k in target if k not in frame.columns]
    if missing:
        raise DataError(
            f"{name} returned no column {missing[0]!r}: expected one per target spec "
            f"({', '.join(target)})"
        )
    if len(frame) != rows:
        raise DataError(f"{name} returned {len(frame)} rows: expected {rows}, one per draw")
    return frame[list(target)].reset_index(drop=True)


# ---------------------------------------------------------------------- pair plots


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


def _axes(ax: Any, count: int) -> list[Any]:
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4 * count, 3.8), layout="constrained")
        return list(np.atleast_1d(fig.subplots(1, count, squeeze=False)[0]))
    axes = list(np.ravel(ax)) if isinstance(ax, list | tuple | np.ndarray) else [ax]
    if len(axes) != count:
        raise OptionError(f"ax holds {len(axes)} Axes for {count} pair(s): expected one per pair")
    return axes


# ---------------------------------------------------------------------- identifiability (MCC)


@dataclass(frozen=True)
class MCCResult:
    r"""The mean correlation coefficient of :func:`mcc` and its optimal matching.

    :ivar mean: the mean over the true variables of the matched :math:`|\rho|`.
    :ivar per_variable: true name -> :math:`|\rho|` with its matched estimate.
    :ivar matching: true name -> the name of its matched estimated variable (for an array,
        the column index as a string, ``"0"``, ``"1"``, ...).
    :ivar matrix: the :math:`|\rho|` matrix, estimated names (rows) x true names (columns).
    :ivar method: ``"pearson"`` or ``"spearman"``.
    """

    mean: float
    per_variable: Mapping[str, float]
    matching: Mapping[str, str]
    matrix: pd.DataFrame
    method: str

    @property
    def positions(self) -> dict[str, int]:
        """True name -> column position of its matched estimate in ``estimated``."""
        rows = list(self.matrix.index)
        return {t: rows.index(e) for t, e in self.matching.items()}


def _named_matrix(data: Any, name: str) -> tuple[np.ndarray, list[str]]:
    if not isinstance(data, pd.DataFrame) and callable(getattr(data, "to_dataframe", None)):
        data = _frame(data, name)
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        if len(set(names)) != len(names):
            raise DataError(f"{name} has duplicate column names {names}: expected unique names")
        try:
            arr = data.to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"{name} holds non-numeric columns: expected numbers") from None
    else:
        try:
            arr = np.asarray(data, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"{name} is not numeric: expected rows x variables") from None
        if arr.ndim == 1:
            arr = arr[:, None]
        names = [str(j) for j in range(arr.shape[1])] if arr.ndim == 2 else []
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"{name} has shape {arr.shape}: expected rows x variables (at least one)")
    bad = ~np.isfinite(arr)
    if bad.any():
        col = names[int(np.argmax(bad.any(axis=0)))]
        raise DataError(f"{name} column {col!r} holds {int(bad.sum())} NaN or infinite values")
    return arr, names


def _standardized(arr: np.ndarray, names: list[str], name: str) -> np.ndarray:
    centred = arr - arr.mean(axis=0)
    std = np.sqrt(np.mean(centred**2, axis=0))
    scale = np.maximum(np.abs(arr).max(axis=0), 1.0)
    # a column whose spread is at rounding level is constant: its correlation is undefined
    flat = std <= 1e-12 * scale
    if flat.any():
        raise DataError(
            f"{name} column {names[int(np.argmax(flat))]!r} is constant: its correlation is "
            "undefined"
        )
    return centred / std


def mcc(estimated: Any, truth: Any, *, method: str = "pearson") -> MCCResult:
    r"""Mean correlation coefficient between estimated and true variables (paper Table 1).

    The absolute correlation :math:`|\rho_{ij}|` of every estimated variable :math:`i` with
    every true variable :math:`j`; each true variable is matched to a distinct estimate by
    the assignment maximising :math:`\sum_j |\rho_{\pi(j) j}|` (the Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`), and the MCC is the mean of the matched
    :math:`|\rho|`. It is invariant to permutation, sign and scale of the estimates, the
    indeterminacies of component-wise identifiability; ``method="spearman"`` (correlation
    of ranks) also to strictly monotone transforms.

    :param estimated: rows x estimated variables: an array (names ``"0"``, ``"1"``, ...), a
        DataFrame (names from its columns), or an object with ``to_dataframe()``. It may
        hold more variables than ``truth``; the unmatched ones are ignored.
    :param truth: rows x true variables, same rows in the same order.
    :param method: ``"pearson"`` or ``"spearman"``.
    :returns: an :class:`MCCResult` (``mean``, ``per_variable``, ``matching``, ``matrix``).
    :raises DataError: for different row counts, fewer than two rows, NaN or infinite
        values, a constant column, or fewer estimated than true variables.
    :raises OptionError: for an unknown ``method``.

    References: Hyvärinen and Morioka, Unsupervised Feature Extraction by Time-Contrastive
    Learning and Nonlinear ICA, NeurIPS 2016; Xie et al. 2025 (App. B.1 of the paper).

    >>> t = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 0.0]])
    >>> r = mcc(-2.0 * t[:, ::-1], pd.DataFrame(t, columns=["x1", "x2"]))
    >>> round(r.mean, 6), r.matching
    (1.0, {'x1': '1', 'x2': '0'})
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.stats import rankdata

    if method not in ("pearson", "spearman"):
        raise OptionError(f"method={method!r}: expected 'pearson' or 'spearman'")
    est, est_names = _named_matrix(estimated, "estimated")
    tru, tru_names = _named_matrix(truth, "truth")
    if len(est) != len(tru):
        raise DataError(
            f"estimated has {len(est)} rows and truth {len(tru)}: expected the same rows"
        )
    if len(est) < 2:
        raise DataError(f"estimated and truth have {len(est)} rows: expected two or more")
    if est.shape[1] < tru.shape[1]:
        raise DataError(
            f"estimated has {est.shape[1]} variables and truth {tru.shape[1]}: expected at "
            "least one estimate per true variable"
        )
    if method == "spearman":
        est, tru = rankdata(est, axis=0), rankdata(tru, axis=0)
    za = _standardized(est, est_names, "estimated")
    zb = _standardized(tru, tru_names, "truth")
    corr = np.clip(np.abs(za.T @ zb) / len(za), 0.0, 1.0)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    per_variable = {tru_names[j]: float(corr[i, j]) for i, j in zip(rows, cols, strict=True)}
    matching = {tru_names[j]: est_names[i] for i, j in zip(rows, cols, strict=True)}
    order = {t: k for k, t in enumerate(tru_names)}
    per_variable = dict(sorted(per_variable.items(), key=lambda kv: order[kv[0]]))
    matching = dict(sorted(matching.items(), key=lambda kv: order[kv[0]]))
    return MCCResult(
        mean=float(np.mean(list(per_variable.values()))),
        per_variable=per_variable,
        matching=matching,
        matrix=pd.DataFrame(corr, index=est_names, columns=tru_names),
        method=method,
    )
