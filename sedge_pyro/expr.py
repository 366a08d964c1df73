"""Symbolic probability expressions: variables, terms, factors and factorizations.

A :class:`Factorization` is what :func:`sedge_pyro.identify` returns as the answer to "what must I
estimate?": a product of :class:`Term` s, each a conditional density of the population (``p``,
``source="P"``) or of the training distribution ``pD(.) = p(. | S = 1)`` (``source="D"``),
marked ``exact`` when a d-separation proves it equal to its population counterpart. The objects
are frozen, ordered dataclasses (after y0's ``dsl``) so they can be compared, hashed, rendered as
Unicode text and LaTeX, and evaluated on a discrete joint probability table (used by the tests
to check the identification engine against exact enumeration).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError, TargetError
from sedge_pyro.graph import natural_key

__all__ = ["Factor", "Factorization", "Interval", "Term", "Var", "format_value"]

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_value(value: Any) -> str:
    """Render a target value compactly: ``1``, ``0.8``, ``red``.

    :param value: a scalar (number, string, bool).
    :returns: its text.
    """
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def _latex_name(name: str) -> str:
    match = re.fullmatch(r"([A-Za-z]+)_?(\d+)", name)
    if match:
        return f"{match.group(1)}_{{{match.group(2)}}}"
    if re.fullmatch(r"[A-Za-z]", name):
        return name
    return r"\mathrm{" + name.replace("_", r"\_") + "}"


def _latex_value(value: Any) -> str:
    if isinstance(value, str):
        return r"\text{" + value.replace("_", r"\_") + "}"
    return format_value(value)


@dataclass(frozen=True, order=True)
class Interval:
    """An event ``low <= Z <= high`` on a specification (closed; ``None`` is unbounded).

    :param low: lower bound, or ``None`` for no lower bound.
    :param high: upper bound, or ``None`` for no upper bound.
    :raises TargetError: when a bound is not a number or ``low > high``.

    >>> Interval(high=0.8).contains([0.5, 0.9]).tolist()
    [True, False]
    """

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        for side in ("low", "high"):
            bound = getattr(self, side)
            if bound is None:
                continue
            if isinstance(bound, bool) or not isinstance(bound, int | float | np.number):
                raise TargetError(f"Interval {side}={bound!r}: expected a number or None")
            if math.isnan(float(bound)):
                raise TargetError(f"Interval {side} is NaN: expected a number or None")
            object.__setattr__(self, side, float(bound))
        if self.low is not None and self.high is not None and self.low > self.high:
            raise TargetError(
                f"Interval low={self.low:g} > high={self.high:g}: expected low <= high"
            )

    def contains(self, values: Any) -> np.ndarray:
        """Boolean mask of the values inside the interval (bounds included).

        :param values: array-like of numbers.
        :returns: a boolean numpy array.
        """
        arr = np.asarray(values, dtype=float)
        mask = np.ones(arr.shape, dtype=bool)
        if self.low is not None:
            mask &= arr >= self.low
        if self.high is not None:
            mask &= arr <= self.high
        return mask

    def to_text(self, name: str) -> str:
        """Render the event for variable ``name``, e.g. ``z1 ≤ 0.8``."""
        if self.low is None and self.high is None:
            return f"{name} ∈ ℝ"
        if self.low is None:
            return f"{name} ≤ {self.high:g}"
        if self.high is None:
            return f"{name} ≥ {self.low:g}"
        return f"{self.low:g} ≤ {name} ≤ {self.high:g}"

    def to_latex(self, name: str) -> str:
        """Render the event for variable ``name`` in LaTeX."""
        tex = _latex_name(name)
        if self.low is None and self.high is None:
            return tex + r" \in \mathbb{R}"
        if self.low is None:
            return f"{tex} \\le {self.high:g}"
        if self.high is None:
            return f"{tex} \\ge {self.low:g}"
        return f"{self.low:g} \\le {tex} \\le {self.high:g}"


@dataclass(frozen=True)
class Var:
    """A variable in a term: free (``value is None``, a density in it) or an event.

    :param name: the node's name in the graph.
    :param value: ``None`` for a free variable, a scalar for ``name = value``, or an
        :class:`Interval`.
    """

    name: str
    value: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TargetError(f"Var name {self.name!r}: expected a non-empty string")

    @property
    def is_free(self) -> bool:
        """Whether the variable is free (the term is a density in it)."""
        return self.value is None

    def to_text(self) -> str:
        """Render as ``x1``, ``z1=1`` or ``z1 ≤ 0.8``."""
        if self.value is None:
            return self.name
        if isinstance(self.value, Interval):
            return self.value.to_text(self.name)
        return f"{self.name}={format_value(self.value)}"

    def to_latex(self) -> str:
        """Render in LaTeX."""
        if self.value is None:
            return _latex_name(self.name)
        if isinstance(self.value, Interval):
            return self.value.to_latex(self.name)
        return f"{_latex_name(self.name)}={_latex_value(self.value)}"

    def mask(self, column: Any) -> np.ndarray:
        """Boolean mask of the entries of ``column`` satisfying the event (all true if free)."""
        arr = np.asarray(column)
        if self.value is None:
            return np.ones(arr.shape, dtype=bool)
        if isinstance(self.value, Interval):
            return self.value.contains(arr)
        return arr == self.value


def _sorted_vars(variables: Iterable[Var]) -> tuple[Var, ...]:
    return tuple(sorted(variables, key=lambda v: natural_key(v.name)))


@dataclass(frozen=True)
class Term:
    """A conditional density or probability ``p(lhs | rhs)``.

    :param lhs: the variables the term is a distribution over (free or events).
    :param rhs: the conditioning variables (free or events).
    :param source: ``"D"`` for the training distribution ``pD = p(. | S = 1)``, ``"P"`` for
        the population.
    :param exact: ``True`` when the term equals its population counterpart (proved by a
        d-separation of ``lhs`` from ``S`` given ``rhs``); ``False`` when it does so only
        under the rarity assumption (paper Assumption 3).

    Variables are kept in natural order of their names, so equal terms compare equal.

    >>> str(Term((Var("x3"),), (Var("x2"), Var("z2", 1))))
    'pD(x3 | x2, z2=1)'
    """

    lhs: tuple[Var, ...]
    rhs: tuple[Var, ...] = ()
    source: str = "D"
    exact: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lhs", _sorted_vars(self.lhs))
        object.__setattr__(self, "rhs", _sorted_vars(self.rhs))
        if not self.lhs:
            raise TargetError("Term lhs is empty: expected at least one variable")
        if self.source not in ("D", "P"):
            raise TargetError(f"Term source {self.source!r}: expected 'D' or 'P'")
        names = [v.name for v in self.lhs + self.rhs]
        dupes = sorted((n for n, k in Counter(names).items() if k > 1), key=natural_key)
        if dupes:
            raise TargetError(f"Term names {', '.join(dupes)} twice: expected each variable once")

    @property
    def free(self) -> tuple[str, ...]:
        """Names of the free variables, lhs then rhs."""
        return tuple(v.name for v in self.lhs + self.rhs if v.is_free)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of all variables, lhs then rhs."""
        return tuple(v.name for v in self.lhs + self.rhs)

    def to_text(self) -> str:
        """Render as Unicode text, e.g. ``pD(x1, x2 | z1=1)``."""
        head = "pD" if self.source == "D" else "p"
        body = ", ".join(v.to_text() for v in self.lhs)
        if self.rhs:
            body += " | " + ", ".join(v.to_text() for v in self.rhs)
        return f"{head}({body})"

    def to_latex(self) -> str:
        r"""Render as LaTeX, e.g. ``p_{D}(x_{1} \mid z_{1}=1)``."""
        head = "p_{D}" if self.source == "D" else "p"
        body = ", ".join(v.to_latex() for v in self.lhs)
        if self.rhs:
            body += r" \mid " + ", ".join(v.to_latex() for v in self.rhs)
        return f"{head}({body})"

    def __str__(self) -> str:
        return self.to_text()

    def _repr_latex_(self) -> str:
        return f"${self.to_latex()}$"

    def evaluate(
        self,
        joint: pd.DataFrame,
        *,
        prob: str = "p",
        selection: str = "S",
        population: bool = False,
    ) -> pd.DataFrame:
        """Evaluate the term on a discrete joint probability table.

        :param joint: one row per joint assignment, a column per variable and a probability
            column ``prob`` (rows may be missing where the probability is zero).
        :param prob: name of the probability column.
        :param selection: name of the selection column, used for ``source="D"`` terms.
        :param population: evaluate as a population term even when ``source="D"``.
        :returns: a frame with one column per free variable (natural order) and the value in
            column ``prob``, over the product of the free variables' observed values; the value
            is NaN where the conditioning event has probability zero (the term is undefined).
        :raises DataError: when a column the term needs is missing.
        """
        names = list(self.names) + [prob]
        use_selection = self.source == "D" and not population
        if use_selection:
            names.append(selection)
        missing = [c for c in names if c not in joint.columns]
        if missing:
            raise DataError(f"joint table has no column {missing[0]!r} needed by {self}")
        weights = joint[prob].to_numpy(dtype=float)
        if use_selection:
            weights = weights * (joint[selection].to_numpy() == 1)
        rhs_mask = np.ones(len(joint), dtype=bool)
        for v in self.rhs:
            rhs_mask &= v.mask(joint[v.name])
        lhs_mask = rhs_mask.copy()
        for v in self.lhs:
            lhs_mask &= v.mask(joint[v.name])
        free_lhs = [v.name for v in self.lhs if v.is_free]
        free_rhs = [v.name for v in self.rhs if v.is_free]
        grid = _grid(joint, free_lhs + free_rhs)
        num = _marginal(joint, weights * lhs_mask, free_lhs + free_rhs, grid)
        den = _marginal(joint, weights * rhs_mask, free_rhs, grid)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        grid[prob] = value
        return grid


def _grid(joint: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The product of the observed values of ``names`` (one empty-named row if none)."""
    if not names:
        return pd.DataFrame(index=[0])
    levels = [sorted(pd.unique(joint[n])) for n in names]
    index = pd.MultiIndex.from_product(levels, names=names)
    return index.to_frame(index=False)


def _marginal(
    joint: pd.DataFrame, weights: np.ndarray, names: list[str], grid: pd.DataFrame
) -> np.ndarray:
    """Sum ``weights`` over all but ``names``, aligned to the rows of ``grid``."""
    if not names:
        return np.full(len(grid), float(weights.sum()))
    sums = (
        pd.DataFrame({**{n: joint[n].to_numpy() for n in names}, "_w": weights})
        .groupby(names, sort=False)["_w"]
        .sum()
    )
    keys = pd.MultiIndex.from_frame(grid[names]) if len(names) > 1 else pd.Index(grid[names[0]])
    return sums.reindex(keys, fill_value=0.0).to_numpy(dtype=float)


@dataclass(frozen=True)
class Factor:
    """A term raised to an integer power (``-1`` for a denominator).

    :param term: the term.
    :param power: a non-zero integer.
    """

    term: Term
    power: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.power, bool) or not isinstance(self.power, int) or self.power == 0:
            raise TargetError(f"Factor power {self.power!r}: expected a non-zero integer")

    def to_text(self) -> str:
        """Render as Unicode text, with a superscript power when it is not 1."""
        if self.power == 1:
            return self.term.to_text()
        return self.term.to_text() + str(self.power).translate(_SUPERSCRIPT)

    def to_latex(self) -> str:
        """Render as LaTeX."""
        if self.power == 1:
            return self.term.to_latex()
        return f"{self.term.to_latex()}^{{{self.power}}}"

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True)
class Factorization:
    """A product of factors, equal (or proportional) to a target distribution.

    :param factors: the factors, in the order they are written.
    :param proportional: ``True`` when the product equals the target only up to a positive
        constant (normalise to use it).

    >>> f = Factorization((Factor(Term((Var("x1"),), (Var("z1", 1),))),))
    >>> str(f)
    'pD(x1 | z1=1)'
    """

    factors: tuple[Factor, ...]
    proportional: bool = False
    _sep: str = field(default=" · ", repr=False, compare=False)

    def __post_init__(self) -> None:
        factors = tuple(self.factors)
        for f in factors:
            if not isinstance(f, Factor):
                raise TargetError(f"Factorization holds {f!r}: expected Factor objects")
        object.__setattr__(self, "factors", factors)

    @property
    def terms(self) -> tuple[Term, ...]:
        """The factors' terms, in order."""
        return tuple(f.term for f in self.factors)

    @property
    def exact(self) -> bool:
        """Whether every term is exact (the factorization holds on ``pD`` without Assumption 3)."""
        return all(t.exact for t in self.terms)

    @property
    def free(self) -> tuple[str, ...]:
        """The free variables of the product, in natural order."""
        return tuple(sorted({n for t in self.terms for n in t.free}, key=natural_key))

    def canonical(self) -> Factorization:
        """The same product with factors in a canonical order, for comparing results."""
        ordered = sorted(self.factors, key=lambda f: (f.to_text(), f.term.exact))
        return Factorization(tuple(ordered), self.proportional)

    def to_text(self) -> str:
        """Render as Unicode text: ``pD(x1, x2 | z1=1) · pD(z2=1 | x2) · ...``."""
        if not self.factors:
            return "1"
        return self._sep.join(f.to_text() for f in self.factors)

    def to_latex(self) -> str:
        """Render as LaTeX (factors joined by a thin space)."""
        if not self.factors:
            return "1"
        return r" \, ".join(f.to_latex() for f in self.factors)

    def latex(self) -> str:
        """Alias of :meth:`to_latex`, the name DESIGN.md gives."""
        return self.to_latex()

    def __str__(self) -> str:
        return self.to_text()

    def _repr_latex_(self) -> str:
        return f"${self.to_latex()}$"

    def evaluate(
        self,
        joint: pd.DataFrame,
        *,
        prob: str = "p",
        selection: str = "S",
        population: bool = False,
    ) -> pd.DataFrame:
        """Evaluate the product on a discrete joint probability table.

        A factor with positive power that is zero makes the product zero even where another
        factor is undefined (that assignment cannot occur); otherwise an undefined factor, or a
        zero raised to a negative power, makes the product NaN.
        A proportional factorization is normalised over its defined entries.

        :param joint: see :meth:`Term.evaluate`.
        :param prob: name of the probability column.
        :param selection: name of the selection column.
        :param population: evaluate every term as a population term (``source="P"``).
        :returns: a frame with one column per free variable and the value in ``prob``.

        >>> joint = pd.DataFrame({"x": [0, 1], "S": [1, 1], "p": [0.25, 0.75]})
        >>> f = Factorization((Factor(Term((Var("x"),))),))
        >>> f.evaluate(joint)["p"].tolist()
        [0.25, 0.75]
        """
        names = list(self.free)
        out = _grid(joint, names)
        value = np.ones(len(out))
        zero = np.zeros(len(out), dtype=bool)
        for factor in self.factors:
            part = factor.term.evaluate(
                joint, prob=prob, selection=selection, population=population
            )
            keys = list(factor.term.free)
            if keys:
                aligned = out[keys].merge(part, on=keys, how="left")[prob].to_numpy(dtype=float)
            else:
                aligned = np.full(len(out), float(part[prob].iloc[0]))
            # a zero numerator rules the assignment out; a zero denominator leaves it undefined
            if factor.power > 0:
                zero |= aligned == 0
            with np.errstate(divide="ignore", invalid="ignore"):
                powered = np.where(aligned == 0, np.nan, aligned) ** factor.power
            value = value * powered
        value = np.where(zero, 0.0, value)
        if self.proportional:
            total = np.nansum(value)
            if total > 0:
                value = value / total
        out[prob] = value
        return out

    @classmethod
    def from_terms(cls, terms: Iterable[Term], *, proportional: bool = False) -> Factorization:
        """Build a factorization of power-1 factors from terms."""
        return cls(tuple(Factor(t) for t in terms), proportional)


def events(target: Mapping[str, Any]) -> tuple[Var, ...]:
    """Event variables ``name = value`` for a target mapping, in natural order."""
    return _sorted_vars(Var(name, value) for name, value in target.items())
