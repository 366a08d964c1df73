"""The true mechanism of a synthetic specification: ``Z_i = link(w_i^T V_i) + b_i + e_i`` with
uniform noise, or its binary threshold (:class:`Mechanism`), used by
:func:`~sedge_pyro.datasets.synthetic` and kept for closed-form checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError, OptionError, TargetError
from sedge_pyro.expr import Interval


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
