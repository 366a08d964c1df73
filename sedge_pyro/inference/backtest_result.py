"""The result of a backtest: :class:`Cell` (one held-out combination of the target's shape)
and :class:`Backtest` (the scores per cell and method, the best method, the report).

The scores are those of the paper's evaluation (Sec. 5.1: the MMD of generated draws against
rows of the combination, here the held-out rows), read as a ratio to the split-half floor;
:func:`~sedge_pyro.inference.backtest.run_backtest` fills them in
(:mod:`~sedge_pyro.inference.backtest_engine`). Re-exported by
:mod:`~sedge_pyro.inference.backtest`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.expr import Interval, Var
from sedge_pyro.identify import Status
from sedge_pyro.models.sedge import SEDGEProgram

__all__ = ["OUTSIDE_MAX", "RELIABLE_RATIO", "Backtest", "Cell"]

#: a method whose median share of draws outside the held-out range exceeds this is never "best"
OUTSIDE_MAX = 0.01
#: above this many times the floor, even the best method is not reliable on the data
RELIABLE_RATIO = 3.0
_COLUMNS = [
    "cell",
    "rows",
    "method",
    "status",
    "mmd",
    "floor",
    "ratio",
    "satisfaction",
    "outside",
    "warnings",
    "seconds",
    "error",
]


@dataclass(frozen=True)
class Cell:
    """One cell of the target's shape: a combination of events on the target's specs.

    :ivar label: the cell as text, e.g. ``"z1 ≥ 0.8, z2 ≤ 1"``.
    :ivar target: spec -> value or :class:`~sedge_pyro.Interval`, the cell as a target.
    :ivar rows: training rows in the cell.
    :ivar status: :func:`~sedge_pyro.identify`'s status of the cell once its rows are removed
        (``""`` when not checked).
    :ivar reason: for a skipped cell, why.
    """

    label: str
    target: Mapping[str, Any]
    rows: int
    status: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The cell as JSON-ready data (an interval as ``{"low": ..., "high": ...}``)."""
        return {
            "label": self.label,
            "target": {k: _encode(v) for k, v in self.target.items()},
            "rows": int(self.rows),
            "status": self.status,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cell:
        """The inverse of :meth:`to_dict`."""
        target = {k: _decode(v) for k, v in d["target"].items()}
        return cls(d["label"], target, int(d["rows"]), d.get("status", ""), d.get("reason", ""))


@dataclass
class Backtest:
    """The result of :func:`backtest` (``print(bt)`` for the report).

    :ivar table: one row per cell x method: ``cell``, ``rows`` (held out), ``method``,
        ``status`` (``"ok"`` or ``"unavailable"``), ``mmd``, ``floor``, ``ratio``
        (``mmd / floor``), ``satisfaction``, ``outside``, ``warnings``, ``seconds``, ``error``.
    :ivar cells: the cells held out, rarest first.
    :ivar skipped: the cells not held out, each with its reason.
    :ivar target: the user's target.
    :ivar settings: the backtest's settings (methods, draws, min_rows, ...).
    :ivar heldout: cell label -> index (into the data) of its held-out rows.
    :ivar models: cell label -> the model fitted without the cell's rows.
    """

    table: pd.DataFrame
    cells: list[Cell]
    skipped: list[Cell]
    target: Mapping[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    heldout: dict[str, pd.Index] = field(default_factory=dict, repr=False)
    models: dict[str, SEDGEProgram] = field(default_factory=dict, repr=False)

    @property
    def summary(self) -> pd.DataFrame:
        """Per method: cells scored, median ratio, median outside share, total warnings."""
        if "method" not in self.table.columns:  # a table without rows or columns
            return pd.DataFrame(columns=_SUMMARY).set_index("method")
        rows = []
        for method, group in self.table.groupby("method", sort=False):
            ok = group[group["status"] == "ok"]
            rows.append(
                {
                    "method": method,
                    "cells": len(ok),
                    "ratio": _nanmedian(ok["ratio"]),
                    "mmd": _nanmedian(ok["mmd"]),
                    "outside": _nanmedian(ok["outside"]),
                    "satisfaction": _nanmedian(ok["satisfaction"]),
                    "warnings": int(ok["warnings"].sum()),
                }
            )
        return pd.DataFrame(rows, columns=_SUMMARY).set_index("method")

    @property
    def best(self) -> str | None:
        """The method with the lowest median ratio among those scored on every cell with a
        median share outside the held-out range of at most :data:`OUTSIDE_MAX`; ``None``
        when no method qualifies.
        """
        s = self.summary
        ok = s[(s["cells"] == len(self.cells)) & (s["outside"] <= OUTSIDE_MAX) & s["ratio"].notna()]
        if ok.empty:
            return None
        return str(ok["ratio"].astype(float).idxmin())

    @property
    def excluded(self) -> dict[str, str]:
        """The methods with a lower median ratio than :attr:`best` (any ratio, without a best)
        that ``best`` passed over, each with why: ``"plan 5.06x excluded: 2.0% of draws
        outside the held-out range (over 1%)"``.
        """
        s = self.summary
        best = self.best
        bar = math.inf if best is None else float(s.loc[best, "ratio"])
        out: dict[str, str] = {}
        for method, row in s.iterrows():
            ratio = float(row["ratio"])
            if method == best or not ratio < bar:  # NaN ratios never compare lower
                continue
            why = []
            if int(row["cells"]) < len(self.cells):
                why.append(f"ran on {int(row['cells'])} of {len(self.cells)} held-out cells")
            if not float(row["outside"]) <= OUTSIDE_MAX:
                why.append(
                    f"{float(row['outside']):.1%} of draws outside the held-out range (over "
                    f"{OUTSIDE_MAX:.0%})"
                )
            out[str(method)] = f"{method} {ratio:.2f}x excluded: {'; '.join(why)}"
        return out

    @property
    def best_ratio(self) -> float | None:
        """The best method's median ratio to the floor (``None`` without a best)."""
        best = self.best
        return None if best is None else float(self.summary.loc[best, "ratio"])

    @property
    def reliable(self) -> bool:
        """Whether the best method stays within :data:`RELIABLE_RATIO` times the floor."""
        ratio = self.best_ratio
        return ratio is not None and ratio <= RELIABLE_RATIO

    @property
    def verdict(self) -> str:
        """The one line to read: which method, how close, or a warning."""
        best, ratio = self.best, self.best_ratio
        excluded = "".join(f" ({why})" for why in self.excluded.values())
        if best is None:
            return (
                "backtest: warning: no method ran on every held-out cell with at most "
                f"{OUTSIDE_MAX:.0%} of its draws outside the held-out rows' range{excluded}: "
                "the package cannot extrapolate reliably on this data"
            )
        line = (
            f"backtest: method {best} reaches {ratio:.2f} x the floor on the held-out "
            f"combination{'s' if len(self.cells) != 1 else ''}{excluded}"
        )
        if ratio is not None and ratio > RELIABLE_RATIO:
            line += (
                f"; warning: even the best method is above {RELIABLE_RATIO:g} x the floor: the "
                "package cannot extrapolate reliably on this data"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (NaN as ``None``); :meth:`from_dict` reads it back."""
        return {
            "target": {k: _encode(v) for k, v in self.target.items()},
            "settings": _jsonable(self.settings),
            "cells": [c.to_dict() for c in self.cells],
            "skipped": [c.to_dict() for c in self.skipped],
            "table": [
                {k: _jsonable(v) for k, v in row.items()}
                for row in self.table.to_dict(orient="records")
            ],
            "best": self.best,
            "best_ratio": self.best_ratio,
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Backtest:
        """Rebuild a result from :meth:`to_dict` (without the fitted models)."""
        table = pd.DataFrame(list(d["table"]), columns=_COLUMNS)
        for col in ("mmd", "floor", "ratio", "satisfaction", "outside", "seconds"):
            table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
        return cls(
            table=table,
            cells=[Cell.from_dict(c) for c in d["cells"]],
            skipped=[Cell.from_dict(c) for c in d["skipped"]],
            target={k: _decode(v) for k, v in d["target"].items()},
            settings=dict(d.get("settings", {})),
        )

    def __str__(self) -> str:
        target = ", ".join(Var(k, v).to_text() for k, v in self.target.items())
        lines = [f"backtest for {target}: {self._heading()}"]
        for c in self.cells:
            lines.append(f"  held out  {c.label}: {c.rows} rows ({c.status})")
        for c in self.skipped:
            lines.append(f"  skipped   {c.label}: {c.rows} rows; {c.reason}")
        s = self.summary
        if not s.empty:
            lines.append("  method        cells  MMD/floor  outside  satisfaction  warnings")
            for method, row in s.iterrows():
                lines.append(
                    f"  {method:<13} {int(row['cells']):>5}  {_fmt(row['ratio'], '.2f'):>9}  "
                    f"{_fmt(row['outside'], '.1%'):>7}  {_fmt(row['satisfaction'], '.3f'):>12}"
                    f"  {int(row['warnings']):>8}"
                )
        bad = self.table[self.table["status"] != "ok"].drop_duplicates("method")
        for _, row in bad.iterrows():
            lines.append(f"  unavailable {row['method']} ({row['cell']}): {row['error']}")
        lines.append(self.verdict)
        return "\n".join(lines)

    def _heading(self) -> str:
        """How many cells were held out, and why the others were not, without calling the
        held-out cells rare when the rarer ones were skipped.
        """
        n = len(self.cells)
        text = f"cells held out: {n}"
        if n > 1:
            text += ", rarest first"
        if not self.skipped:
            return text
        kinds: dict[str, int] = {}
        for c in self.skipped:
            kinds[_skip_kind(c)] = kinds.get(_skip_kind(c), 0) + 1
        if len(kinds) == 1:
            (kind,) = kinds
            others = "the other" if len(self.skipped) == 1 else "the others"
            return f"{text} ({others} {_SKIP_VERBS[kind][len(self.skipped) > 1]})"
        parts = [f"{k} {_SKIP_VERBS[kind][k > 1]}" for kind, k in kinds.items()]
        return f"{text} (of the others, {'; '.join(parts)})"


def _skip_kind(cell: Cell) -> str:
    if cell.status == Status.IMPOSSIBLE.value:
        return "unseen"
    if cell.reason.startswith("too few rows"):
        return "few"
    if cell.reason.startswith("more common"):
        return "common"
    return "other"


#: a skipped cell's reason in the report's heading: (singular, plural)
_SKIP_VERBS = {
    "unseen": ("would leave a target value unseen", "would leave a target value unseen"),
    "few": ("has too few rows (min_rows)", "have too few rows (min_rows)"),
    "common": (
        "is more common than those held out (max_combos)",
        "are more common than those held out (max_combos)",
    ),
    "other": ("cannot be identified", "cannot be identified"),
}


_SUMMARY = ["method", "cells", "ratio", "mmd", "outside", "satisfaction", "warnings"]


def _encode(value: Any) -> Any:
    if isinstance(value, Interval):
        return {"low": value.low, "high": value.high}
    return _jsonable(value)


def _decode(value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) == {"low", "high"}:
        return Interval(value["low"], value["high"])
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _nanmedian(values: pd.Series) -> float:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(np.median(arr)) if arr.size else math.nan


def _fmt(value: Any, spec: str) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )
