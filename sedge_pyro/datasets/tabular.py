"""The paper's synthetic tabular generators (Sec. 5.1, App. D.1): :func:`synthetic` and
:func:`paper_synthetic`, with the true mechanism kept for closed-form checks.

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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.datasets.mechanism import Mechanism, _column, _is_number
from sedge_pyro.errors import DataError, OptionError, SedgeError, TargetError
from sedge_pyro.expr import Interval
from sedge_pyro.graph import SpecGraph
from sedge_pyro.options import whole


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


def _feature_ranges(features: Any) -> dict[str, tuple[float, float]]:
    """Step 1 of :func:`synthetic`: each feature's ``(low, high)``, checked."""
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
    return ranges


def _check_specs(specs: Any, ranges: Mapping[str, tuple[float, float]]) -> None:
    """Step 2 of :func:`synthetic`: each spec a :class:`Mechanism` of known features."""
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
    whole("n", n, error=DataError, expected="a positive integer number of rows")
    ranges = _feature_ranges(features)
    _check_specs(specs, ranges)
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
