"""The paper's synthetic data generators, with the true mechanism kept for closed-form checks.

:func:`synthetic` simulates any feature -> specification model with uniform features and
uniform additive noise, ``Z_i = link(w_i^T V_i) + b_i + e_i``, ``e_i ~ U(0, w)`` (or a binary
``Z_i = 1[m_i(x) + e_i > threshold]``), and splits the rows by a novel region: rows whose
specifications all fall in it are the Oracle (S = 0), the rest are Seen (S = 1). The returned
:class:`SyntheticData` knows the true mechanism, so the probability that a generated ``x``
carries the novel combination is exact (:meth:`SyntheticData.region_probability`), not
estimated.

:func:`paper_synthetic` is Sec. 5.1 / App. D.1 (with the paper's typo fixed: the shared feature
is X2): ``X1, X3 ~ U(0, 1)``, ``X2 ~ U(0.75, 0.8)``, ``Z1 = 0.8 X1 + 0.6 X2 + e1``,
``Z2 = 0.6 X3 + 0.8 X2 + e2``, ``e1, e2 ~ U(0, 0.2)``; rows with ``Z1 < 0.8`` and ``Z2 > 1.0``
are the Oracle (S = 0), the rest are Seen (S = 1).

:func:`paper_latent` is App. B.1's latent setting: :func:`paper_synthetic`'s X and Z observed
only through random linear mixtures ``Y_X = X A_X``, ``Y_Z = Z A_Z``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError, OptionError, SedgeError, TargetError
from sedge_pyro.expr import Interval
from sedge_pyro.graph import SpecGraph

__all__ = [
    "LINKS",
    "SHAPES_HELD_OUT",
    "SHAPE_ATTRIBUTES",
    "LatentData",
    "LinearGaussian",
    "Mechanism",
    "ShapesData",
    "SyntheticData",
    "attribute_codes",
    "image_array",
    "linear_gaussian",
    "paper_latent",
    "paper_synthetic",
    "shapes",
    "synthetic",
]


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-u))


#: the links of :class:`Mechanism`: name -> elementwise function of :math:`u = w^\top v`
LINKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda u: u,
    "square": np.square,
    "sin": np.sin,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
}


def _is_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.integer | np.floating)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class Mechanism:
    r"""The true mechanism of one specification: :math:`Z = m(x) + e`, :math:`e \sim U(0, w)`.

    The mean is :math:`m(x) = \mathrm{link}(w^\top v) + b` over the parents :math:`v = V_i`;
    ``link`` is one of :data:`LINKS`: ``"linear"`` (:math:`u`), ``"square"`` (:math:`u^2`),
    ``"sin"``, ``"tanh"``, ``"sigmoid"`` (:math:`1 / (1 + e^{-u})`). With a ``threshold`` the
    specification is binary, :math:`Z = 1[m(x) + e > \mathrm{threshold}]`.

    :param parents: the feature parents :math:`V_i`, in the order of ``weights``.
    :param weights: one weight per parent.
    :param bias: :math:`b`, added after the link.
    :param noise: :math:`w > 0`, the width of the uniform noise.
    :param link: the name of the link.
    :param threshold: ``None`` for a continuous specification, else the binary cut.
    :raises OptionError: naming the bad field.

    >>> m = Mechanism(("x1", "x2"), (0.8, 0.6))
    >>> m.mean(pd.DataFrame({"x1": [1.0], "x2": [0.5]})).round(6).tolist()
    [1.1]
    """

    parents: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float = 0.0
    noise: float = 0.2
    link: str = "linear"
    threshold: float | None = None

    def __post_init__(self) -> None:
        parents = (self.parents,) if isinstance(self.parents, str) else tuple(self.parents)
        if not parents or not all(isinstance(p, str) for p in parents):
            raise OptionError(
                f"Mechanism parents={self.parents!r}: expected a non-empty tuple of feature names"
            )
        if len(set(parents)) != len(parents):
            raise OptionError(f"Mechanism parents={parents!r}: a parent is listed twice")
        weights = tuple(self.weights)
        if len(weights) != len(parents) or not all(_is_number(w) for w in weights):
            raise OptionError(
                f"Mechanism weights={self.weights!r}: expected {len(parents)} finite numbers, "
                f"one per parent {parents}"
            )
        if not _is_number(self.bias):
            raise OptionError(f"Mechanism bias={self.bias!r}: expected a finite number")
        if not _is_number(self.noise) or not float(self.noise) > 0:
            raise OptionError(f"Mechanism noise={self.noise!r}: expected a finite number > 0")
        if self.link not in LINKS:
            raise OptionError(f"Mechanism link={self.link!r}: expected one of {list(LINKS)}")
        if self.threshold is not None and not _is_number(self.threshold):
            raise OptionError(
                f"Mechanism threshold={self.threshold!r}: expected None or a finite number"
            )
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        object.__setattr__(self, "bias", float(self.bias))
        object.__setattr__(self, "noise", float(self.noise))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def binary(self) -> bool:
        """Whether the specification is binary (it has a ``threshold``)."""
        return self.threshold is not None

    def mean(self, x: pd.DataFrame) -> np.ndarray:
        r""":math:`m(x) = \mathrm{link}(w^\top v) + b` for each row of ``x``.

        :param x: a DataFrame holding the parents' columns.
        :returns: shape ``(len(x),)``.
        :raises DataError: when a parent's column is missing or not finite.
        """
        # summed parent by parent, in order, so that the paper's default rows stay bit-identical
        # to the closed formula ``0.8 * x1 + 0.6 * x2 + e``
        u = None
        for p, w in zip(self.parents, self.weights, strict=True):
            term = w * _column(x, p)
            u = term if u is None else u + term
        return LINKS[self.link](u) + self.bias

    def sample(self, x: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """Draw the specification for each row of ``x`` (one ``rng.uniform`` call).

        :returns: floats, or ``int64`` zeros and ones for a binary specification.
        """
        z = self.mean(x) + rng.uniform(0.0, self.noise, len(x))
        if self.threshold is None:
            return z
        return (z > self.threshold).astype(np.int64)

    def probability(self, x: pd.DataFrame, value: Any) -> np.ndarray:
        r""":math:`P(Z \in A \mid x)` for an :class:`~sedge_pyro.Interval` or value ``A``.

        Continuous: :math:`|[lo, hi] \cap [m, m + w]| / w`. Binary:
        :math:`P(Z = 1) = \mathrm{clip}((m + w - \mathrm{threshold}) / w, 0, 1)`.

        :raises TargetError: for a point on a continuous specification (probability zero; use
            :meth:`SyntheticData.in_support`) or a binary value other than 0 and 1.
        """
        m = self.mean(x)
        w = self.noise
        if self.threshold is None:
            if not isinstance(value, Interval):
                raise TargetError(
                    f"value {value!r} is a point on a continuous specification: its probability "
                    "is zero; pass an Interval"
                )
            lo = -np.inf if value.low is None else value.low
            hi = np.inf if value.high is None else value.high
            # measured from m, so that a window wholly inside the interval gives exactly 1
            overlap = np.minimum(hi - m, w) - np.maximum(lo - m, 0.0)
            return np.clip(overlap, 0.0, w) / w
        p1 = np.clip((m + w - self.threshold) / w, 0.0, 1.0)
        if isinstance(value, Interval):
            ones, zeros = value.contains([1.0, 0.0])
            return p1 * bool(ones) + (1.0 - p1) * bool(zeros)
        if not (_is_number(value) and value in (0, 1)):
            raise TargetError(
                f"value {value!r} on a binary specification: expected 0, 1 or an Interval"
            )
        return p1 if value == 1 else 1.0 - p1


def _column(x: pd.DataFrame, name: str) -> np.ndarray:
    if not isinstance(x, pd.DataFrame):
        raise DataError(f"x is {type(x).__name__}: expected a DataFrame of features")
    if name not in x.columns:
        raise DataError(f"x has no column {name!r}: expected a column per feature")
    values = x[name].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise DataError(f"x column {name!r} holds NaN or infinite values")
    return values


def _check_region(
    region: Any, mechanisms: Mapping[str, Mechanism], name: str, error: type[SedgeError]
) -> dict[str, Any]:
    """A region spec -> Interval or value, each entry checked against its mechanism."""
    if not isinstance(region, Mapping) or not region:
        raise error(f"{name}={region!r}: expected a non-empty mapping spec -> Interval or value")
    out = dict(region)
    for spec, value in out.items():
        if spec not in mechanisms:
            raise error(f"{name} names {spec!r}: expected one of the specs {list(mechanisms)}")
        if mechanisms[spec].binary:
            if not isinstance(value, Interval) and not (_is_number(value) and value in (0, 1)):
                raise error(
                    f"{name}[{spec!r}]={value!r}: {spec!r} is binary, expected 0, 1 or an Interval"
                )
        elif not isinstance(value, Interval) and not _is_number(value):
            raise error(f"{name}[{spec!r}]={value!r}: expected an Interval or a number")
    return out


@dataclass(frozen=True)
class SyntheticData:
    """A generated data set: training rows, the held-out novel rows, the true graph and mechanism.

    :param seen: training rows (S = 1), a column per feature then per spec (``x1, x2, x3, z1,
        z2`` for :func:`paper_synthetic`).
    :param oracle: rows the selection removed (S = 0): the ground truth to extrapolate to.
    :param graph: the true :class:`SpecGraph` (Fig. 2(b) for :func:`paper_synthetic`).
    :param features_range: feature -> ``(low, high)`` of its uniform distribution.
    :param mechanisms: spec -> its true :class:`Mechanism`.
    :param novel: the Oracle region, spec -> :class:`~sedge_pyro.Interval` or value.

    The last three default to empty for data built by hand; the methods need them.
    """

    seen: pd.DataFrame
    oracle: pd.DataFrame
    graph: SpecGraph
    features_range: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    mechanisms: Mapping[str, Mechanism] = field(default_factory=dict)
    novel: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:  # allows ``seen, oracle, graph = paper_synthetic(...)``
        return iter((self.seen, self.oracle, self.graph))

    def _require_mechanisms(self) -> None:
        if not self.mechanisms:
            raise OptionError(
                "this SyntheticData carries no mechanisms: build it with synthetic() or "
                "paper_synthetic()"
            )

    def _region(self, region: Mapping[str, Any] | None) -> dict[str, Any]:
        self._require_mechanisms()
        return _check_region(
            self.novel if region is None else region, self.mechanisms, "region", TargetError
        )

    def spec_mean(self, x: pd.DataFrame) -> pd.DataFrame:
        r"""The mean :math:`m_i(x)` of every specification (before the noise).

        :param x: features, a column per parent (other columns are ignored).
        :returns: a DataFrame with a column per spec, indexed like ``x``.
        :raises DataError: when a parent's column is missing.
        """
        self._require_mechanisms()
        return pd.DataFrame({z: mech.mean(x) for z, mech in self.mechanisms.items()}, index=x.index)

    def simulate_specs(self, x: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Simulate the specifications of ``x`` by the true mechanism, spec by spec in order.

        Usable as the oracle ``simulate=`` of :func:`~sedge_pyro.spec_satisfaction`.

        :param x: features, a column per parent.
        :param rng: the generator the noise is drawn from.
        :returns: a DataFrame with a column per spec, indexed like ``x``.
        """
        self._require_mechanisms()
        return pd.DataFrame(
            {z: mech.sample(x, rng) for z, mech in self.mechanisms.items()}, index=x.index
        )

    def region_probability(
        self, x: pd.DataFrame, region: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        r"""Exact :math:`P(Z \in A \mid x)` under the true mechanism, for each row of ``x``.

        The specs are independent given :math:`X` (Sec. 3.1), so the probability is the product
        over the region's specs of :meth:`Mechanism.probability`: for uniform noise of width
        :math:`w`, :math:`|[lo, hi] \cap [m_i(x), m_i(x) + w]| / w`; for a binary spec,
        :math:`P(Z_i = 1 \mid x) = \mathrm{clip}((m_i(x) + w - \mathrm{threshold}) / w, 0, 1)`.
        Its mean over generated draws is their exact spec satisfaction.

        :param x: features, a column per parent.
        :param region: spec -> :class:`~sedge_pyro.Interval` (or 0/1 for a binary spec);
            default :attr:`novel`, the Oracle region.
        :returns: probabilities, shape ``(len(x),)``.
        :raises TargetError: for an unknown spec or a point on a continuous spec.

        >>> data = paper_synthetic(2000, seed=0)
        >>> p = data.region_probability(data.oracle)
        >>> bool((p > 0).all() and (p <= 1).all())
        True
        """
        target = self._region(region)
        prob = np.ones(len(x))
        for spec, value in target.items():
            try:
                prob = prob * self.mechanisms[spec].probability(x, value)
            except TargetError as err:
                raise TargetError(f"region[{spec!r}]: {err}") from None
        return prob

    def in_support(self, x: pd.DataFrame, region: Mapping[str, Any] | None = None) -> np.ndarray:
        r"""Whether each row of ``x`` lies in the support of :math:`p(X \mid Z \in A)`.

        That is: every feature inside its range, and the region reachable from ``x``
        (:meth:`region_probability` > 0). A point value ``c`` on a continuous spec (the support
        of :math:`p(X \mid Z_i = c)`) needs :math:`c \in [m_i(x), m_i(x) + w_i]`.

        :param x: features, a column per feature of the data.
        :param region: spec -> :class:`~sedge_pyro.Interval` or value; default :attr:`novel`.
        :returns: a boolean array, shape ``(len(x),)``.
        :raises DataError: when a feature's column is missing.

        >>> data = paper_synthetic(2000, seed=0)
        >>> bool(data.in_support(data.oracle).all())
        True
        """
        target = self._region(region)
        inside = np.ones(len(x), dtype=bool)
        for name, (lo, hi) in self.features_range.items():
            values = _column(x, name)
            inside &= (values >= lo) & (values <= hi)
        for spec, value in target.items():
            mech = self.mechanisms[spec]
            if mech.binary or isinstance(value, Interval):
                inside &= mech.probability(x, value) > 0
            else:
                m = mech.mean(x)
                inside &= (m <= value) & (value <= m + mech.noise)
        return inside

    def oracle_satisfaction(self) -> float:
        r"""The Oracle's own spec satisfaction: the mean of :meth:`region_probability` over the
        Oracle rows' features, :math:`\mathbb E[P(Z \in A \mid X) \mid Z \in A]`.

        The reference value for generated draws: a sampler of :math:`p(X \mid Z \in A)` should
        reach it, not 1.

        :raises DataError: when there are no Oracle rows.
        """
        if len(self.oracle) == 0:
            raise DataError("oracle has no rows: no reference spec satisfaction")
        return float(self.region_probability(self.oracle).mean())


def _novel_mask(
    df: pd.DataFrame, novel: Mapping[str, Any], mechanisms: Mapping[str, Mechanism]
) -> np.ndarray:
    mask = np.ones(len(df), dtype=bool)
    for spec, value in novel.items():
        z = df[spec].to_numpy()
        if mechanisms[spec].binary:
            if isinstance(value, Interval):
                mask &= value.contains(z)
            else:
                mask &= z == value
        elif isinstance(value, Interval):
            # open bounds, as the paper's strict inequalities: the boundary has probability zero
            if value.low is not None:
                mask &= z > value.low
            if value.high is not None:
                mask &= z < value.high
        else:
            mask &= z == float(value)
    return mask


def synthetic(
    n: int,
    seed: int = 0,
    *,
    features: Mapping[str, tuple[float, float]],
    specs: Mapping[str, Mechanism],
    novel: Mapping[str, Interval | int],
) -> SyntheticData:
    r"""Simulate uniform features and mechanism-made specs, and split the rows by ``novel``.

    Each feature is drawn with ``rng.uniform(low, high, n)`` in the order of ``features``, then
    each spec by its :class:`Mechanism` (one ``rng.uniform(0, noise, n)``) in the order of
    ``specs``. Rows whose specs all fall in ``novel`` are the Oracle (S = 0), the rest are Seen
    (S = 1). For continuous specs the split uses the open interval (strict inequalities, as the
    paper's ``Z1 < 0.8``); its boundary has probability zero, so the closed
    :class:`~sedge_pyro.Interval` of :meth:`SyntheticData.region_probability` describes the
    same region.

    :param n: population rows before the split.
    :param seed: seed of ``np.random.default_rng``.
    :param features: feature -> ``(low, high)`` of its uniform distribution, ``low < high``.
        Features no spec uses become isolated features of the graph.
    :param specs: spec -> :class:`Mechanism`; its parents must be keys of ``features``.
    :param novel: the Oracle region: spec -> :class:`~sedge_pyro.Interval`, or 0 / 1 for a
        binary spec (a point on a continuous spec would select no rows).
    :returns: :class:`SyntheticData` (unpacks as ``seen, oracle, graph``).
    :raises DataError: when ``n`` is not a positive integer.
    :raises OptionError: naming the bad feature, spec or region entry.

    >>> data = synthetic(
    ...     1000,
    ...     features={"x1": (0.0, 1.0), "x2": (-1.0, 1.0)},
    ...     specs={"z1": Mechanism(("x1", "x2"), (1.0, 0.5), link="tanh", threshold=0.5)},
    ...     novel={"z1": 1},
    ... )
    >>> bool((data.oracle.z1 == 1).all()), data.graph.specs
    (True, ('z1',))
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"n={n!r}: expected a positive integer number of rows")
    if not isinstance(features, Mapping) or not features:
        raise OptionError(
            f"features={features!r}: expected a non-empty mapping name -> (low, high)"
        )
    ranges: dict[str, tuple[float, float]] = {}
    for name, bounds in features.items():
        if not isinstance(name, str):
            raise OptionError(f"features names {name!r}: expected a string")
        try:
            lo, hi = bounds
        except (TypeError, ValueError):
            raise OptionError(
                f"features[{name!r}]={bounds!r}: expected a pair (low, high)"
            ) from None
        if not (_is_number(lo) and _is_number(hi) and lo < hi):
            raise OptionError(f"features[{name!r}]={bounds!r}: expected finite numbers low < high")
        ranges[name] = (float(lo), float(hi))
    if not isinstance(specs, Mapping) or not specs:
        raise OptionError(f"specs={specs!r}: expected a non-empty mapping name -> Mechanism")
    for spec, mech in specs.items():
        if not isinstance(mech, Mechanism):
            raise OptionError(f"specs[{spec!r}] is {type(mech).__name__}: expected a Mechanism")
        if spec in ranges:
            raise OptionError(f"specs names {spec!r}, which is also a feature")
        for p in mech.parents:
            if p not in ranges:
                raise OptionError(
                    f"specs[{spec!r}] has parent {p!r}: expected one of the features {list(ranges)}"
                )
    mechanisms = dict(specs)
    region = _check_region(novel, mechanisms, "novel", OptionError)
    used = {p for mech in mechanisms.values() for p in mech.parents}
    graph = SpecGraph.from_parents(
        {spec: list(mech.parents) for spec, mech in mechanisms.items()},
        features=[f for f in ranges if f not in used],
    )
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({name: rng.uniform(lo, hi, n) for name, (lo, hi) in ranges.items()})
    for spec, mech in mechanisms.items():
        df[spec] = mech.sample(df, rng)
    mask = _novel_mask(df, region, mechanisms)
    return SyntheticData(
        df.loc[~mask].reset_index(drop=True),
        df.loc[mask].reset_index(drop=True),
        graph,
        ranges,
        mechanisms,
        region,
    )


def paper_synthetic(
    n: int = 20_000,
    seed: int = 0,
    *,
    z1_below: float = 0.8,
    z2_above: float = 1.0,
    weights: tuple[float, float, float, float] = (0.8, 0.6, 0.8, 0.6),
    noise: float = 0.2,
    x2_range: tuple[float, float] = (0.75, 0.8),
    link: str = "linear",
    extra_features: int = 0,
) -> SyntheticData:
    r"""Simulate the paper's synthetic problem (Sec. 5.1) and split it by the selection.

    :math:`X_1, X_3 \sim U(0, 1)`, :math:`X_2 \sim U(\text{x2\_range})`,
    :math:`Z_1 = \mathrm{link}(w_1 X_1 + w_2 X_2) + e_1`,
    :math:`Z_2 = \mathrm{link}(w_3 X_2 + w_4 X_3) + e_2`, :math:`e_i \sim U(0, \text{noise})`;
    the Oracle is ``z1 < z1_below`` and ``z2 > z2_above``. The defaults are the paper's, and
    give the same rows as earlier releases for the same seed.

    :param n: population rows before the split.
    :param seed: seed of the simulation.
    :param z1_below: Oracle rows have ``z1 < z1_below`` ...
    :param z2_above: ... and ``z2 > z2_above``.
    :param weights: ``(w1, w2, w3, w4)``: ``z1``'s weights on ``x1, x2``, then ``z2``'s on
        ``x2, x3``.
    :param noise: the width of the uniform noise of both specs.
    :param x2_range: the range of the shared feature ``x2``.
    :param link: the link of both specs (see :class:`Mechanism`).
    :param extra_features: number of distractors ``x4, x5, ...`` ~ U(0, 1), drawn after ``x3``
        and parents of no spec (isolated features of the graph).
    :returns: :class:`SyntheticData` (unpacks as ``seen, oracle, graph``).
    :raises DataError: when ``n`` is not a positive integer.
    :raises OptionError: for bad weights, noise, range, link or ``extra_features``.

    >>> seen, oracle, graph = paper_synthetic(2000, seed=0)
    >>> bool(((oracle.z1 < 0.8) & (oracle.z2 > 1.0)).all())
    True
    """
    if isinstance(extra_features, bool) or not isinstance(extra_features, int | np.integer):
        raise OptionError(f"extra_features={extra_features!r}: expected an integer >= 0")
    if extra_features < 0:
        raise OptionError(f"extra_features={extra_features!r}: expected an integer >= 0")
    try:
        w1, w2, w3, w4 = weights
    except (TypeError, ValueError):
        raise OptionError(
            f"weights={weights!r}: expected four numbers (z1 on x1, x2; z2 on x2, x3)"
        ) from None
    for name, value in (("z1_below", z1_below), ("z2_above", z2_above)):
        if not _is_number(value):
            raise OptionError(f"{name}={value!r}: expected a finite number")
    features = {"x1": (0.0, 1.0), "x2": x2_range, "x3": (0.0, 1.0)}
    features.update({f"x{4 + i}": (0.0, 1.0) for i in range(int(extra_features))})
    return synthetic(
        n,
        seed,
        features=features,
        specs={
            "z1": Mechanism(("x1", "x2"), (w1, w2), noise=noise, link=link),
            "z2": Mechanism(("x2", "x3"), (w3, w4), noise=noise, link=link),
        },
        novel={"z1": Interval(high=z1_below), "z2": Interval(low=z2_above)},
    )


@dataclass(frozen=True)
class LinearGaussian:
    r"""A linear-Gaussian feature -> specification model with a closed-form ``p(X | Z = z)``.

    :math:`X \sim \mathcal N(\mu, \Sigma)` and :math:`Z_i = w_i^\top V_i + b_i + s_i
    \varepsilon_i`, so :math:`p(X \mid Z_T = z)` is Gaussian (:meth:`posterior`): the known
    answer every sampler is tested against.

    :param seen: training rows (S = 1).
    :param oracle: rows the selection removed (S = 0); empty without a selection.
    :param graph: the graph (Fig. 2(b): ``z1 <- x1, x2``, ``z2 <- x2, x3``).
    :param mean: :math:`\mu`, shape ``(3,)``.
    :param cov: :math:`\Sigma`, shape ``(3, 3)``.
    :param specs: spec -> ``(parents, weights, bias, scale)``.
    """

    seen: pd.DataFrame
    oracle: pd.DataFrame
    graph: SpecGraph
    mean: np.ndarray
    cov: np.ndarray
    specs: dict[str, tuple[tuple[str, ...], np.ndarray, float, float]] = field(repr=False)

    def __iter__(self):  # allows ``seen, oracle, graph = linear_gaussian(...)``
        return iter((self.seen, self.oracle, self.graph))

    def _design(self, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = list(self.graph.features)
        a = np.zeros((len(names), len(features)))
        b = np.zeros(len(names))
        s = np.zeros(len(names))
        for r, z in enumerate(names):
            parents, w, bias, scale = self.specs[z]
            for f, wf in zip(parents, w, strict=True):
                a[r, features.index(f)] = wf
            b[r], s[r] = bias, scale
        return a, b, s

    def posterior(self, target: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        r"""Mean and covariance of :math:`p(X \mid Z_T = z)` for point targets.

        :math:`C = (\Sigma^{-1} + A^\top D^{-1} A)^{-1}`, :math:`m = C(\Sigma^{-1}\mu +
        A^\top D^{-1}(z - b))`.
        """
        names = list(target)
        unknown = [k for k in names if k not in self.specs]
        if unknown:
            raise DataError(f"target names {unknown[0]!r}: expected one of {list(self.specs)}")
        a, b, s = self._design(names)
        z = np.array([float(target[k]) for k in names])
        prec0 = np.linalg.inv(self.cov)
        prec = prec0 + a.T @ np.diag(1 / s**2) @ a
        cov = np.linalg.inv(prec)
        mean = cov @ (prec0 @ self.mean + a.T @ ((z - b) / s**2))
        return mean, (cov + cov.T) / 2

    def sample_posterior(self, target: Mapping[str, float], n: int, seed: int = 0) -> np.ndarray:
        r"""``n`` exact draws of :math:`p(X \mid Z_T = z)`, shape ``(n, 3)``."""
        mean, cov = self.posterior(target)
        return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def linear_gaussian(
    n: int = 20_000,
    seed: int = 0,
    *,
    unseen: Mapping[str, float] | None = None,
    cov: np.ndarray | None = None,
) -> LinearGaussian:
    """Simulate a linear-Gaussian model on Fig. 2(b)'s graph (correlated features).

    :param n: population rows.
    :param seed: seed of the simulation.
    :param unseen: optional thresholds, spec -> value: rows with every listed spec above its
        threshold are removed by the selection (the Oracle), making that corner novel.
    :param cov: the features' covariance, 3 x 3 symmetric positive definite (default: the
        built-in one, in which ``x1`` and ``x3`` are dependent given ``x2``).
    :returns: :class:`LinearGaussian` (unpacks as ``seen, oracle, graph``).

    >>> data = linear_gaussian(1000, seed=0)
    >>> mean, cov = data.posterior({"z1": 1.0, "z2": -1.0})
    >>> mean.shape, cov.shape
    ((3,), (3, 3))
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"n={n!r}: expected a positive integer number of rows")
    graph = SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
    mean = np.array([0.5, -0.3, 0.2])
    if cov is None:
        cov = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, -0.4], [0.0, -0.4, 1.5]])
    cov = np.asarray(cov, dtype=float)
    if cov.shape != (3, 3) or not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
        raise DataError(
            f"cov of shape {cov.shape}: expected a 3 x 3 symmetric positive definite matrix"
        )
    specs = {
        "z1": (("x1", "x2"), np.array([1.0, 0.7]), 0.1, 0.5),
        "z2": (("x2", "x3"), np.array([-0.8, 0.6]), -0.2, 0.4),
    }
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(mean, cov, size=n)
    df = pd.DataFrame(x, columns=["x1", "x2", "x3"])
    for z, (parents, w, b, s) in specs.items():
        df[z] = df[list(parents)].to_numpy() @ w + b + s * rng.standard_normal(n)
    novel = np.zeros(n, dtype=bool)
    if unseen:
        for z in unseen:
            if z not in specs:
                raise DataError(f"unseen names {z!r}: expected one of {list(specs)}")
        novel = np.all([df[z].to_numpy() > float(c) for z, c in unseen.items()], axis=0)
    return LinearGaussian(
        df.loc[~novel].reset_index(drop=True),
        df.loc[novel].reset_index(drop=True),
        graph,
        mean,
        cov,
        specs,
    )


_LATENT_X = ("x1", "x2", "x3")
_LATENT_Z = ("z1", "z2")


@dataclass(frozen=True)
class LatentData:
    r"""App. B.1's latent problem: observed mixtures, and the latent truth kept apart.

    :param seen: training rows (S = 1): the observations ``yx_0 .. yx_{k-1}`` then
        ``yz_0 .. yz_{m-1}``.
    :param oracle: the rows the selection removed (S = 0), same columns.
    :param seen_latent: the latent truth of ``seen``, row for row: ``x1, x2, x3, z1, z2``
        (the rows of :func:`paper_synthetic`'s ``seen``).
    :param oracle_latent: the latent truth of ``oracle``.
    :param mixing_x: :math:`A_X`, shape ``(3, k)``: :math:`Y_X = X A_X` (+ noise).
    :param mixing_z: :math:`A_Z`, shape ``(2, m)``: :math:`Y_Z = Z A_Z` (+ noise).
    :param graph: the true :class:`SpecGraph` of the latent variables (Fig. 2(b)).
    :param noise: the standard deviation of the Gaussian observation noise.
    :param truth: the latent :class:`SyntheticData` (its mechanisms and Oracle region).
    """

    seen: pd.DataFrame
    oracle: pd.DataFrame
    seen_latent: pd.DataFrame
    oracle_latent: pd.DataFrame
    mixing_x: np.ndarray
    mixing_z: np.ndarray
    graph: SpecGraph
    noise: float = 0.0
    truth: SyntheticData | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Any]:  # allows ``seen, oracle, graph = paper_latent(...)``
        return iter((self.seen, self.oracle, self.graph))

    @property
    def columns_x(self) -> list[str]:
        """The names of the observations of X: ``yx_0, yx_1, ...``."""
        return [f"yx_{j}" for j in range(self.mixing_x.shape[1])]

    @property
    def columns_z(self) -> list[str]:
        """The names of the observations of Z: ``yz_0, yz_1, ...``."""
        return [f"yz_{j}" for j in range(self.mixing_z.shape[1])]

    def _observations(self, df: pd.DataFrame, columns: list[str]) -> np.ndarray:
        return np.column_stack([_column(df, c) for c in columns])

    def observations_x(self, df: pd.DataFrame) -> np.ndarray:
        """The matrix :math:`Y_X` of ``df`` (e.g. :attr:`seen`), shape ``(len(df), k)``.

        :raises DataError: when a column ``yx_j`` is missing or not finite.
        """
        return self._observations(df, self.columns_x)

    def observations_z(self, df: pd.DataFrame) -> np.ndarray:
        """The matrix :math:`Y_Z` of ``df``, shape ``(len(df), m)``.

        :raises DataError: when a column ``yz_j`` is missing or not finite.
        """
        return self._observations(df, self.columns_z)


def _dim(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise OptionError(
            f"{name}={value!r}: expected an integer >= {least} (the number of latent variables "
            "it mixes, so that the mixing can be injective)"
        )
    return int(value)


def paper_latent(
    n: int = 20_000,
    seed: int = 0,
    *,
    obs_x_dim: int = 20,
    obs_z_dim: int = 20,
    noise: float = 0.0,
) -> LatentData:
    r"""Simulate App. B.1's latent problem: Sec. 5.1's X and Z, seen only through mixtures.

    The latent :math:`X = (X_1, X_2, X_3)` and :math:`Z = (Z_1, Z_2)`, and the Seen / Oracle
    split, are exactly :func:`paper_synthetic` ``(n, seed)``'s. They are mixed linearly,
    :math:`Y_X = X A_X + \varepsilon_X` and :math:`Y_Z = Z A_Z + \varepsilon_Z`, with the
    entries of :math:`A_X` (``3 x obs_x_dim``) and :math:`A_Z` (``2 x obs_z_dim``) drawn from
    :math:`U(0, 1)` as in App. B.1, and :math:`\varepsilon \sim \mathcal N(0, \text{noise}^2)`
    independent per entry.

    Draw order: the latents come from ``np.random.default_rng(seed)`` (inside
    :func:`paper_synthetic`); a separate stream ``np.random.default_rng([seed, 1])`` then
    draws ``A_X`` (``uniform(0, 1, (3, obs_x_dim))``), ``A_Z`` (``uniform(0, 1, (2,
    obs_z_dim))``) and, only when ``noise > 0``, ``normal(0, noise, ...)`` for :math:`Y_X`
    then :math:`Y_Z`, each over the Seen rows followed by the Oracle rows. So the mixing
    matrices do not depend on ``noise`` or on the dimensions of the other block.

    App. B.1 calls the latent model linear Gaussian; this generator keeps Sec. 5.1's
    uniform model, whose split the paper says it reuses.

    :param n: population rows before the split.
    :param seed: seed of the latents and of the mixing stream.
    :param obs_x_dim: :math:`k`, the dimension of :math:`Y_X`, at least 3.
    :param obs_z_dim: :math:`m`, the dimension of :math:`Y_Z`, at least 2.
    :param noise: the standard deviation of the observation noise, ``>= 0``.
    :returns: :class:`LatentData` (unpacks as ``seen, oracle, graph``).
    :raises DataError: when ``n`` is not a positive integer.
    :raises OptionError: for a bad dimension or noise.

    References: Xie et al. 2025 (the identifiability conditions App. B.1 follows).

    >>> data = paper_latent(2000, seed=0, obs_x_dim=5, obs_z_dim=4)
    >>> data.seen.shape[1], data.mixing_x.shape, data.mixing_z.shape
    (9, (3, 5), (2, 4))
    >>> x = data.seen_latent[["x1", "x2", "x3"]].to_numpy()
    >>> bool(np.allclose(data.observations_x(data.seen), x @ data.mixing_x))
    True
    """
    k = _dim(obs_x_dim, "obs_x_dim", len(_LATENT_X))
    m = _dim(obs_z_dim, "obs_z_dim", len(_LATENT_Z))
    if not _is_number(noise) or noise < 0:
        raise OptionError(f"noise={noise!r}: expected a finite number >= 0")
    truth = paper_synthetic(n, seed)
    latent = list(_LATENT_X + _LATENT_Z)
    seen_latent = truth.seen[latent].copy()
    oracle_latent = truth.oracle[latent].copy()
    rng = np.random.default_rng([seed, 1])
    a_x = rng.uniform(0.0, 1.0, (len(_LATENT_X), k))
    a_z = rng.uniform(0.0, 1.0, (len(_LATENT_Z), m))
    both = pd.concat([seen_latent, oracle_latent], ignore_index=True)
    y_x = both[list(_LATENT_X)].to_numpy() @ a_x
    y_z = both[list(_LATENT_Z)].to_numpy() @ a_z
    if noise > 0:
        y_x = y_x + rng.normal(0.0, float(noise), y_x.shape)
        y_z = y_z + rng.normal(0.0, float(noise), y_z.shape)
    columns = [f"yx_{j}" for j in range(k)] + [f"yz_{j}" for j in range(m)]
    obs = pd.DataFrame(np.hstack([y_x, y_z]), columns=columns)
    n_seen = len(seen_latent)
    for a in (a_x, a_z):
        a.setflags(write=False)
    return LatentData(
        seen=obs.iloc[:n_seen].reset_index(drop=True),
        oracle=obs.iloc[n_seen:].reset_index(drop=True),
        seen_latent=seen_latent,
        oracle_latent=oracle_latent,
        mixing_x=a_x,
        mixing_z=a_z,
        graph=truth.graph,
        noise=float(noise),
        truth=truth,
    )


# -- images (Sec. 5.2 at laptop scale) -------------------------------------------------------

#: the attributes of :func:`shapes` and their values, in label-code order
SHAPE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle"),
    "colour": ("red", "green", "blue"),
    "size": ("small", "large"),
    "position": ("left", "right"),
}

#: the default held-out combinations: a Latin-square diagonal of shape x colour, so every
#: shape and every colour is still seen, each with the two other values of the other
SHAPES_HELD_OUT: tuple[dict[str, str], ...] = (
    {"shape": "circle", "colour": "blue"},
    {"shape": "square", "colour": "red"},
    {"shape": "triangle", "colour": "green"},
)

_RGB = {"red": (0.9, 0.15, 0.15), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.3, 0.95)}
_RADIUS = {"small": (4.0, 5.5), "large": (7.0, 9.0)}
_SQUARE_HALF = 0.9  # a square's half side, in units of the radius


@dataclass
class ShapesData:
    """A procedural image set split by held-out attribute combinations (see :func:`shapes`).

    :param images: the training images (S = 1), ``(N, 3, size, size)`` float32 in ``[0, 1]``.
    :param labels: their attributes, one row per image: a categorical column per attribute
        of :data:`SHAPE_ATTRIBUTES`, then the drawn geometry ``cx``, ``cy``, ``radius`` (pixels).
    :param held_images: images of the held-out combinations (S = 0): for evaluation and for
        the judge classifier only, never for training a generator.
    :param held_labels: their attributes.
    :param held_out: the held-out combinations (partial assignments of attribute values).
    """

    images: np.ndarray
    labels: pd.DataFrame
    held_images: np.ndarray
    held_labels: pd.DataFrame
    held_out: tuple[dict[str, str], ...]

    def codes(self, labels: pd.DataFrame | None = None) -> pd.DataFrame:
        """Integer codes of the attributes (the order of :data:`SHAPE_ATTRIBUTES`).

        :param labels: :attr:`labels` (default) or :attr:`held_labels`.
        """
        df = self.labels if labels is None else labels
        return pd.DataFrame({a: df[a].cat.codes.astype(np.int64) for a in SHAPE_ATTRIBUTES})

    def is_held_out(self, labels: pd.DataFrame) -> np.ndarray:
        """Which rows of ``labels`` carry one of the held-out combinations."""
        return _matches(labels, self.held_out)


def _matches(labels: pd.DataFrame, combos: tuple[dict[str, str], ...]) -> np.ndarray:
    out = np.zeros(len(labels), dtype=bool)
    for combo in combos:
        hit = np.ones(len(labels), dtype=bool)
        for attr, value in combo.items():
            hit &= (labels[attr] == value).to_numpy()
        out |= hit
    return out


def _check_held_out(held_out: Any) -> tuple[dict[str, str], ...]:
    try:
        combos = tuple(dict(c) for c in held_out)
    except (TypeError, ValueError):
        raise OptionError(
            f"held_out={held_out!r}: expected a list of dicts such as "
            "{'shape': 'circle', 'colour': 'blue'}"
        ) from None
    for combo in combos:
        if len(combo) < 2:
            raise OptionError(
                f"held_out combination {combo!r}: expected at least two attributes (a single "
                "value held out would never be seen alone, against Assumption 1)"
            )
        for attr, value in combo.items():
            if attr not in SHAPE_ATTRIBUTES:
                raise OptionError(
                    f"held_out combination {combo!r}: unknown attribute {attr!r}; expected one "
                    f"of {list(SHAPE_ATTRIBUTES)}"
                )
            if value not in SHAPE_ATTRIBUTES[attr]:
                raise OptionError(
                    f"held_out combination {combo!r}: {attr}={value!r} is not one of "
                    f"{list(SHAPE_ATTRIBUTES[attr])}"
                )
    return combos


def _render(labels: pd.DataFrame, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased shapes on a dark noisy background, ``(N, 3, size, size)`` float32."""
    n = len(labels)
    grid = np.arange(size, dtype=np.float32) + 0.5
    u, v = grid[None, None, :], grid[None, :, None]  # columns (x), rows (y)
    cx = labels["cx"].to_numpy(np.float32)[:, None, None]
    cy = labels["cy"].to_numpy(np.float32)[:, None, None]
    r = labels["radius"].to_numpy(np.float32)[:, None, None]
    shape = labels["shape"].to_numpy()[:, None, None]
    # signed distance to each shape's boundary (negative inside), in pixels
    circle = np.sqrt((u - cx) ** 2 + (v - cy) ** 2) - r
    square = np.maximum(np.abs(u - cx), np.abs(v - cy)) - _SQUARE_HALF * r
    # an upward equilateral triangle inscribed in the circle of radius r: three half-planes
    tri = np.full_like(circle, -np.inf)
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        nx, ny = -np.cos(angle), np.sin(angle)  # outward normal, image y axis points down
        tri = np.maximum(tri, (u - cx) * nx + (v - cy) * ny - r / 2)
    dist = np.where(shape == "circle", circle, np.where(shape == "square", square, tri))
    cover = np.clip(0.5 - dist, 0.0, 1.0)[:, None]  # (N, 1, H, W)
    rgb = np.array([_RGB[c] for c in labels["colour"]], dtype=np.float32)
    rgb = np.clip(rgb + rng.uniform(-0.06, 0.06, rgb.shape).astype(np.float32), 0, 1)
    background = 0.1 + rng.normal(0.0, 0.02, (n, 3, size, size)).astype(np.float32)
    image = background * (1 - cover) + rgb[:, :, None, None] * cover
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def image_array(images: Any, size: int, name: str = "images") -> np.ndarray:
    """``images`` as a float32 array ``(N, 3, size, size)``, N >= 1, finite.

    :raises DataError: naming ``name`` with the shape found, or for NaN / infinite pixels.
    """
    a = np.asarray(images, dtype=np.float32)
    if a.ndim != 4 or a.shape[1:] != (3, size, size) or len(a) == 0:
        raise DataError(f"{name} have shape {a.shape}: expected (N, 3, {size}, {size}), N >= 1")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} hold NaN or infinite values: expected finite pixels")
    return a


def attribute_codes(labels: Any, attributes: Mapping[str, Any]) -> np.ndarray:
    """Integer codes ``(N, n_attributes)`` of the attribute columns of ``labels``, each value
    coded by its position in ``attributes[name]``.

    :raises DataError: naming a missing column or an unknown value.

    >>> attribute_codes(pd.DataFrame({"colour": ["blue", "red"]}), {"colour": ["red", "blue"]})
    array([[1],
           [0]])
    """
    if not isinstance(labels, pd.DataFrame):
        raise DataError(f"labels is a {type(labels).__name__}: expected a DataFrame")
    cols = []
    for attr, values in attributes.items():
        if attr not in labels.columns:
            raise DataError(f"labels have no column {attr!r}: expected {list(attributes)}")
        col = labels[attr].astype(str)
        values = [str(v) for v in values]
        bad = sorted(set(col) - set(values))
        if bad:
            raise DataError(f"labels column {attr!r} holds {bad}: expected {values}")
        cols.append(col.map({v: i for i, v in enumerate(values)}).to_numpy(np.int64))
    return np.stack(cols, 1)


def shapes(
    n: int = 6000,
    seed: int = 0,
    *,
    size: int = 32,
    held_out: Any = SHAPES_HELD_OUT,
) -> ShapesData:
    r"""A procedural image set for extrapolated image generation (Sec. 5.2 at laptop scale).

    Each image shows one shape on a dark, slightly noisy background. Its attributes (the
    *text concepts*, i.e. the specifications) are drawn independently and uniformly:
    ``shape`` (circle, square, triangle), ``colour`` (red, green, blue, each with a small
    per-image jitter), ``size`` (small: radius 4-5.5 px, large: 7-9 px at 32 px) and
    ``position`` (left or right half; the vertical position is uniform). Images whose
    attributes match a ``held_out`` combination form the S = 0 split and never appear in
    :attr:`ShapesData.images`; each single value still does (Assumption 1), which is checked.

    The default holds out circle+blue, square+red and triangle+green: a Latin-square diagonal,
    so every shape is seen in two colours and every colour on two shapes. Nothing is
    downloaded; images are rendered with numpy (anti-aliased edges), deterministically for a
    seed.

    :param n: images drawn before the split (about 1/3 are held out with the default).
    :param seed: seed of the attributes, geometry, colour jitter and background noise.
    :param size: image side in pixels (geometry scales with it), at least 16.
    :param held_out: combinations held out, each a dict of at least two attributes.
    :returns: :class:`ShapesData`.
    :raises DataError: when ``n`` is not a positive integer.
    :raises OptionError: for a bad ``size`` or ``held_out`` (naming the combination), or
        when the held-out combinations remove every image of some value.

    >>> data = shapes(300, seed=0)
    >>> data.images.shape[1:], data.images.dtype.name
    ((3, 32, 32), 'float32')
    >>> bool(data.is_held_out(data.labels).any()), bool(data.is_held_out(data.held_labels).all())
    (False, True)
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"n={n!r}: expected a positive integer number of images")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 16:
        raise OptionError(f"size={size!r}: expected an integer image side >= 16 pixels")
    combos = _check_held_out(held_out)
    # every value must stay seen alone: some full combination with it is not held out
    full = pd.MultiIndex.from_product(list(SHAPE_ATTRIBUTES.values()), names=list(SHAPE_ATTRIBUTES))
    grid = full.to_frame(index=False)
    kept = grid[~_matches(grid, combos)]
    for attr, values in SHAPE_ATTRIBUTES.items():
        for value in values:
            if not (kept[attr] == value).any():
                raise OptionError(
                    f"held_out={list(combos)!r} removes every image with {attr}={value!r}: "
                    "each single value must stay seen (Assumption 1)"
                )
    rng = np.random.default_rng(seed)
    n = int(n)
    scale = size / 32.0
    labels = pd.DataFrame(
        {attr: rng.integers(0, len(values), n) for attr, values in SHAPE_ATTRIBUTES.items()}
    )
    for attr, values in SHAPE_ATTRIBUTES.items():
        labels[attr] = pd.Categorical.from_codes(labels[attr].to_numpy(), categories=values)
    left = (labels["position"] == "left").to_numpy()
    large = (labels["size"] == "large").to_numpy()
    labels["cx"] = scale * np.where(left, rng.uniform(8.0, 13.0, n), rng.uniform(19.0, 24.0, n))
    labels["cy"] = scale * rng.uniform(10.0, 22.0, n)
    labels["radius"] = scale * np.where(
        large, rng.uniform(*_RADIUS["large"], n), rng.uniform(*_RADIUS["small"], n)
    )
    images = _render(labels, int(size), rng)
    held = _matches(labels, combos)
    return ShapesData(
        images=images[~held],
        labels=labels[~held].reset_index(drop=True),
        held_images=images[held],
        held_labels=labels[held].reset_index(drop=True),
        held_out=combos,
    )
