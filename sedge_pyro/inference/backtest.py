r"""``backtest``: which sampler to trust on *your* data, from seen combinations held out.

A target :math:`Z_T \in A` that the training rows never show has no rows to score draws
against. Its closest analogues that *can* be scored are the other cells of the same shape:
for every target spec either the target's event :math:`A_i` or its complement (for a
category, the other values), e.g. for :math:`z_1 \le 0.8, z_2 \ge 1` the cells
:math:`(A_1, \lnot A_2)`, :math:`(\lnot A_1, A_2)` and :math:`(\lnot A_1, \lnot A_2)`.
:func:`backtest` takes the rarest of them that have enough rows, and for each one

1. removes its rows, which makes it unseen exactly as the selection variable :math:`S` makes the
   target unseen (paper Sec. 3);
2. fits a fresh :class:`~sedge_pyro.SEDGEModel` (the user's options) on the other rows;
3. samples the cell as the target with every method, and scores the draws against the rows
   held out: the standardised MMD (median bandwidth) and its ratio to the split-half floor of
   the held-out rows (1 is as good as a second sample of the truth), the share of draws
   outside the held-out rows' range (widened by 5%), the fitted satisfaction of the draws'
   verdict, and the number of warnings.

A cell whose removal leaves one of its values unseen (Assumption 1) is skipped: no method can
extrapolate to it, and :func:`~sedge_pyro.identify` says so (``IMPOSSIBLE``); a cell with too
few rows that would also leave a value unseen gives that reason first. Every skipped cell is
listed with its reason in :attr:`Backtest.skipped`, and the report's heading says why the
others were not held out: the rarest *usable* cell can be the most common one.

The held-out cells are rare, as the novel one is, but they are not the novel one: the backtest
is evidence of how each method extrapolates on this data and this graph, not a guarantee for
the target.

References: SEDGE paper, Sec. 3 (the selection variable), Sec. 5.1 (MMD against held-out
rows); Gretton et al., A Kernel Two-Sample Test, JMLR 2012.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sedge_pyro.assumptions import DEFAULT_TOLERANCE_SD, is_continuous
from sedge_pyro.diagnostics import mmd, mmd_floor
from sedge_pyro.errors import DataError, GraphError, OptionError, SedgeError, TargetError
from sedge_pyro.expr import Interval, Var
from sedge_pyro.graph import SpecGraph
from sedge_pyro.identify import Status, identify
from sedge_pyro.inference.sample import AUTO_METHODS, METHODS, default_method, sample
from sedge_pyro.inference.samples import Samples
from sedge_pyro.inference.target import Target, is_per_draw
from sedge_pyro.models.columns import as_frame
from sedge_pyro.models.sedge import SEDGEProgram

__all__ = ["OUTSIDE_MAX", "RELIABLE_RATIO", "Backtest", "Cell", "run_backtest", "sample_auto"]

#: a method whose median share of draws outside the held-out range exceeds this is never "best"
OUTSIDE_MAX = 0.01
#: above this many times the floor, even the best method is not reliable on the data
RELIABLE_RATIO = 3.0
#: the held-out range is widened by this fraction of its width on each side
MARGIN = 0.05
#: split-half repeats of the floor, and reference subsets the draws are scored against
FLOOR_REPEATS = 5
#: method aliases: name -> (sampler, its options)
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "langevin-annealed": ("langevin", {"kind": "annealed"}),
}
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


def run_backtest(
    graph: SpecGraph,
    data: Any,
    target: Mapping[str, Any],
    *,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    model: Mapping[str, Any] | SEDGEProgram | None = None,
    draws: int = 1000,
    min_rows: int = 50,
    max_combos: int = 3,
    seed: int = 0,
    steps: int | None = None,
    progress: bool = True,
    device: str = "cpu",
    build: Callable[..., SEDGEProgram] | None = None,
) -> Backtest:
    r"""Hold out rare *seen* combinations like the target, extrapolate to them, and score.

    See the module docstring for the procedure. The cells are those of the target's shape
    (per target spec: the target's event or its complement; a two-sided interval's complement
    is two cells, below and above; a category's complement is each other value; a point on a
    continuous spec is the event within 0.1 standard deviations of it), the target's own cell
    excluded. Cells with at least ``min_rows`` rows whose removal leaves the cell identifiable
    or conservatively so are held out, rarest first, up to ``max_combos``.

    :param graph: the feature -> specification graph.
    :param data: the training rows (S = 1): a DataFrame or dict of arrays.
    :param target: the novel target, spec -> value or :class:`~sedge_pyro.Interval`.
    :param methods: the sampling methods to compare: names (``plan``, ``opt``, ``dps``,
        ``langevin``, ``langevin-annealed``, ``svi``, ``nuts``, ``direct``), or a dict name ->
        sampler options. Default: every method the model supports (``dps`` and annealed
        Langevin only with a diffusion prior). A method that raises a
        :class:`~sedge_pyro.SedgeError` is recorded as unavailable, with its message.
    :param model: the :class:`~sedge_pyro.SEDGEModel` options (``likelihood``, ``prior``,
        ``structure``, ``hidden``, ``prior_options``), or a model whose options to reuse.
    :param draws: draws per method and cell.
    :param min_rows: the fewest rows a cell needs to be held out (the reference).
    :param max_combos: the most cells held out (each one is a fit).
    :param seed: seeds the fits, the draws and the floor's splits.
    :param steps: SVI steps per component of each fit (``None``: the model's default).
    :param progress: a progress bar over cells x methods.
    :param device: where to fit and sample.
    :param build: the model class each cell fits (default: the class of ``model`` when it is
        a model; ``sp.backtest`` passes :class:`~sedge_pyro.SEDGEModel`).
    :returns: a :class:`Backtest`.
    :raises TargetError: for an empty target, a spec not in the graph, or a per-draw value.
    :raises DataError: for empty data, a missing column, or no cell that can be held out (the
        message lists every cell with its rows and why it was skipped).
    :raises OptionError: for a bad number, method or model option.
    """
    if build is None and isinstance(model, SEDGEProgram):
        build = type(model)
    if build is None:
        raise OptionError(
            "build=None and model is not a model: expected the model class to fit "
            "(sp.backtest passes sp.SEDGEModel)"
        )
    if not isinstance(graph, SpecGraph):
        raise GraphError(f"graph is {type(graph).__name__}: expected an sp.SpecGraph")
    df = as_frame(data)
    if len(df) == 0:
        raise DataError("data has no rows: expected the training rows (S = 1)")
    target = _check_target(graph, target)
    missing = [c for c in (*graph.features, *graph.specs) if c not in df.columns]
    if missing:
        raise DataError(
            f"data has no column {missing[0]!r}: expected a column per feature and spec "
            f"({', '.join((*graph.features, *graph.specs))})"
        )
    for col in (*graph.features, *graph.specs):
        bad = int(df[col].isna().sum())
        if bad:
            raise DataError(f"column {col!r} has {bad} missing value(s): expected none")
    draws = _whole("draws", draws, 4)
    min_rows = _whole("min_rows", min_rows, 2)
    max_combos = _whole("max_combos", max_combos, 1)
    options = _model_options(model)
    # building the model checks its options before any fit
    template = build(graph, **options)
    plan = _methods(methods, template)

    cells, skipped = _choose_cells(graph, df, target, min_rows, max_combos)
    features = list(graph.features)
    rows: list[dict[str, Any]] = []
    heldout: dict[str, pd.Index] = {}
    models: dict[str, SEDGEProgram] = {}
    bar = tqdm(
        total=len(cells) * len(plan), desc="SEDGE backtest", disable=not progress, leave=False
    )
    try:
        for cell, mask in cells:
            heldout[cell.label] = df.index[mask]
            # step 1: the selection makes the cell unseen
            rest = df.loc[~mask].reset_index(drop=True)
            reference = df.loc[mask, features].reset_index(drop=True)
            bar.set_postfix(cell=cell.label, method="(fit)")
            start = time.perf_counter()
            try:
                # step 2: a fresh model on the other rows
                fitted = build(graph, **options).fit(
                    rest, steps=steps, seed=seed, progress=False, device=device
                )
            except SedgeError as err:
                for name in plan:
                    rows.append(_unavailable(cell, name, f"fit failed: {err}"))
                    bar.update()
                continue
            fit_seconds = time.perf_counter() - start
            models[cell.label] = fitted
            scorer = _Scorer(reference, draws, seed)
            # step 3: sample the cell with every method and score against its rows
            for name, (method, method_options) in plan.items():
                bar.set_postfix(cell=cell.label, method=name)
                start = time.perf_counter()
                try:
                    s = fitted.sample(
                        dict(cell.target), n=draws, method=method, seed=seed, **method_options
                    )
                except SedgeError as err:
                    rows.append(_unavailable(cell, name, f"{type(err).__name__}: {err}"))
                    bar.update()
                    continue
                seconds = time.perf_counter() - start
                row = {"cell": cell.label, "rows": cell.rows, "method": name, "status": "ok"}
                row.update(scorer.score(s.to_dataframe()[features]))
                sat = (s.info.get("diagnostics") or {}).get("satisfaction")
                row["satisfaction"] = float(sat) if sat is not None else math.nan
                row["warnings"] = len(s.warnings)
                row["seconds"] = seconds
                row["error"] = ""
                rows.append(row)
                bar.update()
            bar.set_postfix(cell=cell.label, fit=f"{fit_seconds:.1f}s")
    finally:
        bar.close()
    table = pd.DataFrame(rows, columns=_COLUMNS)
    settings = {
        "methods": list(plan),
        # label -> [sampler, its options]: what method="auto" runs for the best label
        "method_options": {k: [m, _jsonable(o)] for k, (m, o) in plan.items()},
        "model": _jsonable(options),
        "draws": draws,
        "min_rows": min_rows,
        "max_combos": max_combos,
        "seed": seed,
        "steps": steps,
        "device": str(device),
        "rows": len(df),
    }
    return Backtest(
        table=table,
        cells=[c for c, _ in cells],
        skipped=skipped,
        target=dict(target),
        settings=settings,
        heldout=heldout,
        models=models,
    )


# ---------------------------------------------------------------------- cells


def _check_target(graph: SpecGraph, target: Any) -> dict[str, Any]:
    if not isinstance(target, Mapping) or not target:
        raise TargetError(
            f"target is {target!r}: expected a non-empty dict spec -> value or sp.Interval"
        )
    for spec, value in target.items():
        if spec not in graph.specs:
            raise TargetError(
                f"target names {spec!r}, not a specification of the graph: expected one of "
                f"{', '.join(graph.specs)}"
            )
        if not isinstance(value, Interval) and np.ndim(value) != 0:
            raise TargetError(
                f"target {spec!r} is an array: the backtest needs one value or sp.Interval "
                "per spec (per-draw targets cannot define cells)"
            )
    return dict(target)


def _alternatives(spec: str, value: Any, column: pd.Series) -> list[tuple[Any, np.ndarray]]:
    """The target's event on ``spec`` first, then the pieces of its complement, each as
    ``(target value, row mask)``; the masks partition the rows (up to the closed bounds).
    """
    if isinstance(value, Interval) or is_continuous(column):
        if not pd.api.types.is_numeric_dtype(column):
            raise TargetError(f"target {spec!r} is an interval but column {spec!r} is not numeric")
        z = column.to_numpy(dtype=float)
        if not isinstance(value, Interval):
            tol = DEFAULT_TOLERANCE_SD * float(np.std(z))
            value = Interval(float(value) - tol, float(value) + tol)
        out = [(value, value.contains(z))]
        if value.low is not None:
            out.append((Interval(high=value.low), z < value.low))
        if value.high is not None:
            out.append((Interval(low=value.high), z > value.high))
        return out
    values = column.to_numpy()
    out = [(value, values == value)]
    for other in sorted(pd.unique(column), key=str):
        if other != value:
            other = other.item() if isinstance(other, np.generic) else other
            out.append((other, values == other))
    return out


def _choose_cells(
    graph: SpecGraph,
    df: pd.DataFrame,
    target: Mapping[str, Any],
    min_rows: int,
    max_combos: int,
) -> tuple[list[tuple[Cell, np.ndarray]], list[Cell]]:
    """The cells to hold out (rarest first, with their masks) and the skipped ones."""
    specs = list(target)
    options = [_alternatives(z, target[z], df[z]) for z in specs]
    candidates = []
    for order, combo in enumerate(itertools.product(*options)):
        if order == 0:
            continue  # every spec at its event: the target's own cell
        cell_target = {z: v for z, (v, _) in zip(specs, combo, strict=True)}
        mask = np.logical_and.reduce([m for _, m in combo])
        label = ", ".join(Var(z, v).to_text() for z, v in cell_target.items())
        unseen = [
            Var(z, v).to_text()
            for z, (v, m) in zip(specs, combo, strict=True)
            if not bool((m & ~mask).any())
        ]
        candidates.append((int(mask.sum()), order, label, cell_target, mask, unseen))
    candidates.sort(key=lambda c: (c[0], c[1]))
    picked: list[tuple[Cell, np.ndarray]] = []
    skipped: list[Cell] = []
    for count, _, label, cell_target, mask, unseen in candidates:
        if count < min_rows:
            reason = f"too few rows to score against (min_rows={min_rows})"
            status = ""
            if unseen:  # the more basic reason first: no rows would help
                rest = len(df) - count
                reason = (
                    f"removing its rows makes it impossible to identify: target value "
                    f"{' and '.join(unseen)} is never seen in the {rest} other rows (Assumption "
                    f"1 fails); it also has too few rows to score against (min_rows={min_rows})"
                )
                status = Status.IMPOSSIBLE.value
            skipped.append(Cell(label, cell_target, count, status=status, reason=reason))
            continue
        if len(picked) >= max_combos:
            reason = f"more common than the {max_combos} rarest held out (max_combos={max_combos})"
            skipped.append(Cell(label, cell_target, count, reason=reason))
            continue
        try:
            res = identify(graph, cell_target, df.loc[~mask])
        except SedgeError as err:
            skipped.append(Cell(label, cell_target, count, reason=f"cannot be identified: {err}"))
            continue
        if res.status is Status.IMPOSSIBLE:
            why = res.reason or "a value is never seen alone (Assumption 1)"
            reason = f"removing its rows makes it impossible to identify: {why}"
            skipped.append(Cell(label, cell_target, count, status=res.status.value, reason=reason))
            continue
        picked.append((Cell(label, cell_target, count, status=res.status.value), mask))
    if not picked:
        found = "; ".join(f"{c.label}: {c.rows} rows, {c.reason}" for c in skipped)
        raise DataError(
            f"no cell of the target's shape can be held out ({len(df)} rows): {found or 'none'}"
            f". Expected a seen combination with at least min_rows={min_rows} rows whose "
            "removal leaves each of its values seen"
        )
    return picked, skipped


# ---------------------------------------------------------------------- scoring


class _Scorer:
    """Scores draws against one cell's held-out rows.

    The MMD (standardised, median bandwidth, the V-statistic so it is never clipped at 0)
    compares ``k = min(draws, rows // 2)`` draws with ``k`` held-out rows, averaged over
    :data:`FLOOR_REPEATS` random subsets; the floor is the same MMD between two disjoint
    ``k``-row halves of the held-out rows (:func:`~sedge_pyro.mmd_floor`). Both carry the same
    finite-sample bias, so a perfect generator scores a ratio near 1 whatever ``k`` is. Every
    method is scored against the same reference subsets.
    """

    OPTIONS: dict[str, Any] = {"bandwidth": "median", "standardize": True, "unbiased": False}

    def __init__(self, reference: pd.DataFrame, draws: int, seed: int) -> None:
        m = len(reference)
        self.k = max(1, min(draws, m // 2))
        self.seed = seed
        self.floor = mmd_floor(reference, self.k, repeats=FLOOR_REPEATS, seed=seed, **self.OPTIONS)
        rng = np.random.default_rng(seed)
        self.refs = [
            reference.iloc[rng.choice(m, self.k, replace=False)] for _ in range(FLOOR_REPEATS)
        ]
        values = reference.to_numpy(dtype=float)
        lo, hi = values.min(axis=0), values.max(axis=0)
        width = np.where(hi > lo, hi - lo, np.maximum(np.abs(lo), 1.0))
        self.lo, self.hi = lo - MARGIN * width, hi + MARGIN * width

    def score(self, x: pd.DataFrame) -> dict[str, float]:
        values = x.to_numpy(dtype=float)
        outside = float(np.mean(((values < self.lo) | (values > self.hi)).any(axis=1)))
        rng = np.random.default_rng(self.seed + 1)
        k = min(self.k, len(x))
        d = float(
            np.mean(
                [
                    float(mmd(x.iloc[rng.choice(len(x), k, replace=False)], ref, **self.OPTIONS))
                    for ref in self.refs
                ]
            )
        )
        ratio = d / self.floor if self.floor > 0 else math.nan
        return {"mmd": d, "floor": self.floor, "ratio": ratio, "outside": outside}


def _unavailable(cell: Cell, method: str, message: str) -> dict[str, Any]:
    return {
        "cell": cell.label,
        "rows": cell.rows,
        "method": method,
        "status": "unavailable",
        "mmd": math.nan,
        "floor": math.nan,
        "ratio": math.nan,
        "satisfaction": math.nan,
        "outside": math.nan,
        "warnings": 0,
        "seconds": math.nan,
        "error": message,
    }


# ---------------------------------------------------------------------- options


def _whole(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise OptionError(f"{name}={value!r}: expected a whole number >= {least}")
    return int(value)


def _model_options(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    if isinstance(model, SEDGEProgram):
        return {
            "likelihood": dict(model.likelihood_choice),
            "prior": model.prior_choice,
            "structure": model.structure,
            "hidden": tuple(model.hidden),
            "prior_options": dict(model.prior_options),
        }
    if not isinstance(model, Mapping):
        raise OptionError(
            f"model is {type(model).__name__}: expected a dict of SEDGEModel options or a model"
        )
    allowed = ("likelihood", "prior", "structure", "hidden", "prior_options")
    unknown = [k for k in model if k not in allowed]
    if unknown:
        raise OptionError(
            f"model option {unknown[0]!r}: expected SEDGEModel options ({', '.join(allowed)})"
        )
    return dict(model)


def _default_methods(model: SEDGEProgram) -> list[str]:
    if model.structure in ("reverse", "reverse-factorized"):
        return ["direct"]
    names = ["plan"] if model.structure in ("sparse", "dense") else []
    names += ["langevin", "svi", "nuts", "opt"]
    if model.prior_choice == "diffusion":
        names += ["dps", "langevin-annealed"]
    return names


def _methods(
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None, model: SEDGEProgram
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Method label -> (sampler name, sampler options)."""
    if methods is None:
        methods = _default_methods(model)
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = [(k, dict(v or {})) for k, v in methods.items()]
    else:
        items = [(k, {}) for k in methods]
    if not items:
        raise OptionError("methods is empty: expected one or more sampling methods")
    known = [*METHODS, *ALIASES]
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, opts in items:
        if not isinstance(name, str) or name not in known:
            raise OptionError(f"method {name!r}: expected one of {', '.join(known)}")
        if name in out:
            raise OptionError(f"method {name!r} is given twice: expected each method once")
        sampler, base = ALIASES.get(name, (name, {}))
        out[name] = (sampler, {**base, **opts})
    return out


# ---------------------------------------------------------------------- JSON


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


def sample_auto(
    model: SEDGEProgram,
    target: Mapping[str, Any],
    n: int,
    *,
    backtest: Any = None,
    chains: int,
    seed: int,
    device: str | torch.device | None,
    tolerance: float | Mapping[str, float] | None,
    progress: bool,
    **options: Any,
) -> Samples:
    """``method="auto"``: the method :func:`backtest` finds best on the model's own
    training rows (rare seen combinations like the target, held out), with the options it ran
    with there. ``info["auto"]`` records the choice and the backtest's verdict; an unreliable
    backtest (even the best method above 3x the floor, or none qualifying) adds a warning.

    Without ``backtest=``, the backtest runs here over :data:`AUTO_METHODS` (those the model
    supports) with its defaults: one fit per held-out cell, so minutes on a CPU. To compare
    other methods or options, run :func:`~sedge_pyro.backtest` yourself and pass it.
    """
    if options:
        raise OptionError(
            f"method='auto' has no option {next(iter(options))!r}: it takes the options the "
            "backtest ran each method with; run sp.backtest(..., methods={name: options}) "
            "and pass it as backtest="
        )
    if backtest is not None and not isinstance(backtest, Backtest):
        raise OptionError(
            f"backtest is {type(backtest).__name__}: expected the sp.Backtest that "
            "sp.backtest returned"
        )
    if isinstance(target, Mapping) and any(is_per_draw(v) for v in target.values()):
        raise OptionError(
            "method='auto' chooses among samplers of one posterior: per-draw targets need "
            "method 'opt', 'dps' or 'direct'"
        )
    Target(model, target, tolerance=tolerance, n=int(n))  # a bad target names its culprit
    notes: list[str] = []
    candidates = [m for m in _default_methods(model) if m in AUTO_METHODS]
    if backtest is None and len(candidates) > 1:
        if model.seen is None:
            raise OptionError(
                "method='auto' backtests on the model's training rows, and this model keeps "
                "none: pass backtest=sp.backtest(graph, data, target) or name a method"
            )
        try:
            backtest = run_backtest(
                model.graph,
                model.seen,
                target,
                methods=candidates,
                model=model,
                seed=seed,
                progress=progress,
                device=model.device if device is None else device,
            )
        except DataError as err:  # no seen cell like the target can be held out
            notes.append(f"no backtest was possible ({err})")
    chosen, opts = None, {}
    if backtest is not None:
        best = backtest.best
        if best is not None:
            ran = backtest.settings.get("method_options", {}).get(best)
            chosen, opts = (ran[0], dict(ran[1] or {})) if ran else ALIASES.get(best, (best, {}))
        if not backtest.reliable:
            notes.append(backtest.verdict)
        asked = {Var(k, v).to_text() for k, v in target.items()}
        if {Var(k, v).to_text() for k, v in backtest.target.items()} != asked:
            notes.append("the backtest given was run for another target")
    if chosen is None:
        chosen = default_method(model) if len(candidates) != 1 else candidates[0]
        if backtest is not None or notes:
            notes.append(f"fell back to the default method {chosen!r}, unchecked")
    s = sample(
        model,
        target,
        n,
        chosen,
        chains=chains,
        seed=seed,
        device=device,
        tolerance=tolerance,
        progress=progress,
        **opts,
    )
    s.info["auto"] = {
        "method": chosen,
        "options": opts,
        "label": None if backtest is None else backtest.best,
        "verdict": None if backtest is None else backtest.verdict,
        "compared": [] if backtest is None else list(backtest.summary.index),
    }
    if notes:
        s.info["warnings"] = [*s.warnings, "method='auto': " + "; ".join(notes)]
    return s
