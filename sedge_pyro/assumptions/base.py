"""What every assumption check shares: the thresholds, the :class:`Check` result and the
:class:`Assumption` it belongs to, and the checks of a target's columns (see
:mod:`sedge_pyro.assumptions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sedge_pyro.errors import DataError
from sedge_pyro.graph import natural_key

#: A continuous point target matches training values within this many standard deviations.
DEFAULT_TOLERANCE_SD = 0.1


#: The rarity check flags blocks that would co-occur in more than this share of rows.
RARITY_THRESHOLD = 0.05


#: The independence check's family-wise significance level (Bonferroni over the pairs tested).
INDEPENDENCE_ALPHA = 1e-3


#: ... and the smallest absolute correlation it calls a dependence, so that a huge table does not
#: fail on a negligible r = 0.01.
INDEPENDENCE_MIN_R = 0.1


#: Columns of integers or text with at most this many distinct values are categories.
MAX_CATEGORIES = 50


Tolerance = float | Mapping[str, float] | None


def _names(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)


def _set_text(names: Iterable[str]) -> str:
    return "{" + ", ".join(_names(names)) + "}"


@dataclass(frozen=True)
class Check:
    """The result of checking an assumption on data.

    :param ok: ``True`` (holds), ``False`` (fails), or ``None`` (unverified: cannot be checked
        on S = 1 rows alone, or a column the check needs is missing).
    :param detail: what was measured, in a sentence a person reads.
    """

    ok: bool | None
    detail: str

    def __bool__(self) -> bool:
        return self.ok is True

    @property
    def label(self) -> str:
        """``ok``, ``FAIL`` or ``unverified``."""
        return {True: "ok", False: "FAIL", None: "unverified"}[self.ok]


@dataclass(frozen=True)
class Assumption:
    """An assumption the identification rests on, with a check on data.

    :param name: short name (``coverage``, ``positivity``, ``overlap``, ``rarity``).
    :param statement: the assumption in words, citing the paper.
    """

    name: str
    statement: str
    _checker: Callable[[pd.DataFrame], Check] = field(repr=False, compare=False)

    def check(self, data: pd.DataFrame) -> Check:
        """Evaluate the assumption on training rows (S = 1).

        :param data: a frame with the columns the assumption needs.
        :returns: a :class:`Check`.
        :raises DataError: when ``data`` lacks a needed column or holds NaNs.
        """
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data is {type(data).__name__}: expected a pandas DataFrame")
        return self._checker(data)


def _require(data: pd.DataFrame, target: Mapping[str, Any]) -> None:
    for name in target:
        if name not in data.columns:
            raise DataError(f"data has no column {name!r} for target specification {name!r}")
        if data[name].isna().any():
            raise DataError(f"column {name!r} holds NaN values: expected complete rows")
    if len(data) == 0:
        raise DataError("data has no rows: expected training rows (S=1)")
