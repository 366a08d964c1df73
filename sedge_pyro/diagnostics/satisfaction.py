"""Spec satisfaction: the probability that each draw meets the target, under a fitted likelihood
and/or an oracle simulator (the paper's check that generated :math:`X` carries the novel
combination, Sec. 5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.assumptions import is_continuous
from sedge_pyro.diagnostics.frames import _frame
from sedge_pyro.errors import DataError, OptionError, TargetError
from sedge_pyro.expr import Interval


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
    probs = None if likelihood is None else _by_likelihood(likelihood, draws, target, tolerance)
    met = None if simulate is None else _by_oracle(simulate, draws, target, tolerance, seed)
    return SpecSatisfaction(target, probs, met)


def _by_likelihood(
    likelihood: Any, draws: pd.DataFrame, target: dict[str, Any], tolerance: Any
) -> pd.DataFrame:
    """Each draw's probability of each target spec under ``likelihood``, and their product."""
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
    return probs


def _by_oracle(
    simulate: Any, draws: pd.DataFrame, target: dict[str, Any], tolerance: Any, seed: int
) -> pd.DataFrame:
    """Whether specs simulated from each draw by the true mechanism meet each target value."""
    if not callable(simulate):
        raise OptionError(
            f"simulate is {type(simulate).__name__}: expected a callable "
            "simulate(features_df, rng) -> specs_df"
        )
    specs = _columns(simulate(draws, np.random.default_rng(seed)), target, len(draws), "simulate")
    met = pd.DataFrame(
        {k: _met(specs[k], k, v, tolerance) for k, v in target.items()}, index=draws.index
    )
    met = _with_all(met)
    return met


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
