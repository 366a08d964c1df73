"""What :func:`~sedge_pyro.identify.identify` is asked and what it answers.

The question: a target (specification name -> value or :class:`~sedge_pyro.expr.Interval`),
checked by :func:`normalize_target`; a tolerance for continuous specs, checked by
:func:`validate_tolerance`; and the training rows (S = 1), checked by :func:`validate_seen`.

The answer: an :class:`Identification` with its :class:`Status` and its independent
:class:`Component` s. :mod:`sedge_pyro.identify` holds the algorithm between the two and
re-exports these names, so ``from sedge_pyro.identify import Identification`` keeps working.

References:
    Zhang et al., "SEDGE: Structural Extrapolated Data Generation", Sec. 3 and App. A.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.assumptions import Assumption, Check, refuse_stray_text
from sedge_pyro.errors import DataError, OptionError, TargetError
from sedge_pyro.expr import Factorization, Interval, Term
from sedge_pyro.graph import SpecGraph, natural_key

__all__ = [
    "Component",
    "Identification",
    "Status",
    "normalize_target",
    "validate_seen",
    "validate_tolerance",
]


def _sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)


def _set_text(names: Iterable[str]) -> str:
    return "{" + ", ".join(_sorted(names)) + "}"


# ---------------------------------------------------------------------------------------------
# The question: target, tolerance and training rows


def normalize_target(graph: SpecGraph, target: Mapping[str, Any]) -> dict[str, Any]:
    """The target in natural order of its specs, each value a Python scalar or an Interval.

    :param graph: the graph whose specifications the target may name.
    :param target: specification name -> value (number, bool or category) or Interval.
    :returns: a new dict; numpy scalars become Python ones.
    :raises TargetError: when ``target`` is not a non-empty mapping, names a feature or an
        unknown spec, or holds ``None``, NaN or a value of another type.
    """
    if not isinstance(target, Mapping):
        raise TargetError(
            f"target is {type(target).__name__}: expected a mapping spec -> value, "
            "e.g. {'z1': 1, 'z2': sp.Interval(low=1.0)}"
        )
    if not target:
        raise TargetError("target is empty: expected at least one specification")
    specs = set(graph.specs)
    out: dict[str, Any] = {}
    for name, value in target.items():
        if name not in specs:
            if name in graph:
                raise TargetError(
                    f"target names {name!r}, a {graph.role(name)}: expected a specification "
                    f"({', '.join(graph.specs)})"
                )
            raise TargetError(
                f"target names unknown specification {name!r}: expected one of "
                f"{', '.join(graph.specs)}"
            )
        if isinstance(value, Interval):
            out[name] = value
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or not isinstance(value, int | float | str | bool):
            raise TargetError(
                f"target value for {name!r} is {value!r}: expected a number, a category or "
                "sp.Interval(low, high)"
            )
        if isinstance(value, float) and np.isnan(value):
            raise TargetError(f"target value for {name!r} is NaN: expected a value")
        out[name] = value
    return {k: out[k] for k in _sorted(out)}


def validate_seen(graph: SpecGraph, seen: Any, target: Mapping[str, Any]) -> pd.DataFrame:
    """Check the training rows given to :func:`~sedge_pyro.identify.identify`.

    :param graph: the graph; its columns in ``seen`` must be complete and finite.
    :param seen: the training rows (S = 1), a DataFrame with a column per target spec.
    :param target: the normalized target.
    :returns: ``seen`` itself.
    :raises DataError: when ``seen`` is not a DataFrame, is empty, lacks a target column,
        holds NaN or infinite values or a few text cells in a target column of numbers, or
        holds rows with S other than 1.
    """
    if not isinstance(seen, pd.DataFrame):
        raise DataError(f"seen is {type(seen).__name__}: expected a pandas DataFrame of S=1 rows")
    if len(seen) == 0:
        raise DataError("seen has no rows: expected the training rows (S=1), at least one")
    for name in target:
        if name not in seen.columns:
            raise DataError(
                f"seen has no column {name!r} for target specification {name!r}: "
                f"columns are {', '.join(map(str, seen.columns))}"
            )
    _check_nan(graph, seen)
    for name in target:
        refuse_stray_text(seen[name], name)
    sel = graph.selection
    if sel in seen.columns and not (seen[sel] == 1).all():
        raise DataError(
            f"column {sel!r} of seen holds values other than 1: expected only training rows (S=1)"
        )
    return seen


def validate_tolerance(tolerance: Any, target: Mapping[str, Any]) -> None:
    """Check a tolerance for point targets on continuous specs.

    :param tolerance: ``None``, a number >= 0, or a dict target spec -> number >= 0 (or None).
    :param target: the normalized target.
    :raises OptionError: when a value is negative or not a number, or a key is no target spec.
    """
    values = tolerance.items() if isinstance(tolerance, Mapping) else [("tolerance", tolerance)]
    for name, value in values:
        if isinstance(tolerance, Mapping) and name not in target:
            raise OptionError(
                f"tolerance names {name!r}, which is not a target specification: expected one "
                f"of {', '.join(target)}"
            )
        if value is None and not isinstance(tolerance, Mapping):
            continue
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if not ok or not value >= 0:
            where = "tolerance" if name == "tolerance" else f"tolerance for {name!r}"
            raise OptionError(f"{where} is {value!r}: expected a number >= 0 (or None)")


def _check_nan(graph: SpecGraph, data: pd.DataFrame) -> None:
    cols = [c for c in data.columns if c in graph]
    counts = data[cols].isna().sum()
    for col in cols:
        if counts[col]:
            raise DataError(
                f"column {col!r} holds {int(counts[col])} NaN value(s): expected complete rows"
            )
        values = data[col]
        if pd.api.types.is_float_dtype(values):
            inf = int(np.isinf(values.to_numpy(dtype=float)).sum())
            if inf:
                raise DataError(
                    f"column {col!r} holds {inf} infinite value(s): expected finite numbers"
                )


# ---------------------------------------------------------------------------------------------
# The answer: status, components and the identification


class Status(str, enum.Enum):
    """Whether p(X | Z_T = z) can be constructed from the training distribution."""

    IDENTIFIABLE = "identifiable"
    CONSERVATIVE = "conservative"
    IMPOSSIBLE = "impossible"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Component:
    """One independent part of p(X | Z_T): features, target specs and how they were split.

    :param features: the component's features ``F_a``.
    :param specs: its target specifications ``Z_Ba`` (empty for the features joined to none).
    :param seen: whether the target combination of ``specs`` occurs in the training rows.
    :param shared: the shared features ``X_c`` (empty unless novel).
    :param blocks: the specification blocks ``B_r`` (one block when seen).
    :param groups: each block's private features ``G_r`` given ``X_c``, aligned with
        ``blocks``; for a seen component, all of ``features``.
    """

    features: frozenset[str]
    specs: frozenset[str]
    seen: bool
    shared: frozenset[str] = frozenset()
    blocks: tuple[frozenset[str], ...] = ()
    groups: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class Identification:
    """The answer of :func:`~sedge_pyro.identify.identify`.

    :param graph: the graph identified on.
    :param target: the target, specification name -> value or :class:`~sedge_pyro.expr.Interval`.
    :param status: the :class:`Status`.
    :param blocks: the target specs partitioned into blocks (Thm 1 subsets; for novel
        components, the blocks that are independent given ``X_c``, Thm 2/3).
    :param shared: the shared features ``X_c`` (empty when identifiable).
    :param factorization: the factorization of ``query`` (``None`` when impossible).
    :param assumptions: what the result rests on, each checkable on data.
    :param components: the independent components with their details.
    :param query: the population term ``p(X | Z_T = z)`` being identified.
    :param reason: for ``IMPOSSIBLE``, why.
    :param seen: the training rows the assumptions are checked on (``None``: none given).

    :attr:`ok` is ``False`` when a check fails on ``seen``; :meth:`failures` lists them.
    """

    graph: SpecGraph
    target: Mapping[str, Any]
    status: Status
    blocks: list[frozenset[str]]
    shared: frozenset[str]
    factorization: Factorization | None
    assumptions: list[Assumption]
    components: tuple[Component, ...] = ()
    query: Term | None = None
    reason: str = ""
    seen: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    # the checks on ``seen``, computed once (ok, explain and to_dict all read them)
    _seen_checks: list = field(default_factory=list, init=False, repr=False, compare=False)

    def checks(self, data: pd.DataFrame | None = None) -> list[tuple[Assumption, Check]]:
        """Check every assumption on ``data`` (default: the rows given to ``identify``).

        A check that needs a column ``data`` lacks is unverified (``ok=None``, its detail
        starting "not checked").

        :param data: training rows, or ``None`` to use ``seen``.
        :returns: pairs of assumption and check; empty when there is no data.
        """
        if data is None:
            if self.seen is None:
                return []
            if not self._seen_checks:
                self._seen_checks.extend(self._run_checks(self.seen))
            return list(self._seen_checks)
        return self._run_checks(data)

    def _run_checks(self, data: pd.DataFrame) -> list[tuple[Assumption, Check]]:
        out = []
        for a in self.assumptions:
            try:
                out.append((a, a.check(data)))
            except DataError as err:
                # e.g. training rows without the X_c columns: say so rather than fail the report
                out.append((a, Check(None, f"not checked: {err}")))
        return out

    def failures(self, data: pd.DataFrame | None = None) -> list[tuple[Assumption, Check]]:
        """The assumptions whose check fails on ``data`` (default: ``seen``).

        :param data: training rows, or ``None`` to use ``seen``.
        :returns: pairs of assumption and failed check, in the order of ``assumptions``.
        """
        return [(a, c) for a, c in self.checks(data) if c.ok is False]

    @property
    def ok(self) -> bool | None:
        """Whether the assumptions hold on ``seen``: ``False`` when a check fails.

        ``True`` when none fails; a check that the training rows cannot decide (``unverified``,
        e.g. rarity) does not make it ``False``, but :meth:`explain` reports it. ``None`` when
        :func:`~sedge_pyro.identify.identify` was given no rows, so nothing was checked.
        """
        if self.seen is None:
            return None
        return not self.failures()

    def explain(self, data: pd.DataFrame | None = None) -> str:
        """A multi-line account a person reads: status, blocks, X_c, terms and assumptions.

        :param data: training rows to check the assumptions on (default: ``seen``).
        :returns: the text.
        """
        query = self.query.to_text() if self.query is not None else "p(X | target)"
        lines = [f"{query}: {self.status.name}"]
        checked = self.checks(data)
        failed = [(a, c) for a, c in checked if c.ok is False]
        if len(failed) == 1:
            a, c = failed[0]
            lines.append(f"WARNING: 1 assumption check failed: {a.name}: {c.detail}")
        elif failed:
            lines.append(f"WARNING: {len(failed)} assumption checks failed:")
            lines.extend(f"  {a.name}: {c.detail}" for a, c in failed)
        if self.status is Status.IMPOSSIBLE:
            lines.append(f"  {self.reason}")
        else:
            meaning = {
                Status.IDENTIFIABLE: "every term equals its population counterpart "
                "(Prop. 1, Thm 1)",
                Status.CONSERVATIVE: "terms marked ≈ equal their population counterpart only "
                "under the rarity assumption (Prop. 4, Thm 3)",
            }[self.status]
            lines.append(f"  {meaning}")
            lines.append("blocks: " + " | ".join(_set_text(b) for b in self.blocks))
            lines.append(
                "shared features X_c: " + (_set_text(self.shared) if self.shared else "none")
            )
            assert self.factorization is not None
            sign = "∝" if self.factorization.proportional else "="
            lines.append(f"{query} {sign} {self.factorization}")
            lines.append("terms:")
            width = max(len(t.to_text()) for t in self.factorization.terms)
            sel = self.graph.selection
            for t in self.factorization.terms:
                lhs = _set_text(v.name for v in t.lhs)
                given = " | " + _set_text(v.name for v in t.rhs) if t.rhs else ""
                why = f"{lhs} ⟂ {sel}{given}" if t.exact else f"{lhs} not ⟂ {sel}{given}"
                mark = "exact" if t.exact else "≈    "
                lines.append(f"  {t.to_text():<{width}}  {mark}  {why}")
        checks = dict((a.name, c) for a, c in checked)
        if self.assumptions:
            lines.append("assumptions:")
        for a in self.assumptions:
            c = checks.get(a.name)
            label = f"[{c.label}]" if c is not None else "[unchecked]"
            lines.append(f"  {label} {a.name}: {a.statement}")
            if c is not None:
                lines.append(f"      {c.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (status, ok, blocks, shared, factorization, terms and checks).

        ``ok`` is :attr:`ok`; each check has its ``name``, ``ok``, ``label`` (``ok``, ``FAIL``
        or ``unverified``) and ``detail``.
        """
        fac = self.factorization
        checked = self.checks()
        return {
            "status": self.status.name,
            "ok": self.ok,
            "target": {k: _value_json(v) for k, v in self.target.items()},
            "blocks": [_sorted(b) for b in self.blocks],
            "shared": _sorted(self.shared),
            "factorization": None if fac is None else fac.to_text(),
            "latex": None if fac is None else fac.to_latex(),
            "proportional": None if fac is None else fac.proportional,
            "terms": []
            if fac is None
            else [
                {
                    "text": f.term.to_text(),
                    "lhs": [v.name for v in f.term.lhs],
                    "rhs": [v.name for v in f.term.rhs],
                    "source": f.term.source,
                    "exact": f.term.exact,
                    "power": f.power,
                }
                for f in fac.factors
            ],
            "reason": self.reason,
            "checks": [
                {"name": a.name, "ok": c.ok, "label": c.label, "detail": c.detail}
                for a, c in checked
            ],
        }


def _value_json(value: Any) -> Any:
    if isinstance(value, Interval):
        return {"low": value.low, "high": value.high}
    if isinstance(value, np.generic):
        return value.item()
    return value
