r"""The backtest's engine, :func:`run_backtest`: for each held-out cell of the target's shape,
remove its rows (the selection variable :math:`S` of the paper's Sec. 3), fit a fresh model on
the others, sample the cell with every method and score the draws against the rows held out
(the MMD of Sec. 5.1). The procedure is told in :mod:`~sedge_pyro.inference.backtest`, which
re-exports this module's public names; the cells and their scoring are
:mod:`~sedge_pyro.inference.backtest_cells`, the result
:mod:`~sedge_pyro.inference.backtest_result`, and ``method="auto"``, which runs it,
:mod:`~sedge_pyro.inference.auto`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sedge_pyro.errors import DataError, GraphError, OptionError, SedgeError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.inference.backtest_cells import _check_target, _choose_cells, _Scorer
from sedge_pyro.inference.backtest_result import _COLUMNS, Backtest, Cell, _jsonable
from sedge_pyro.inference.sample import METHODS
from sedge_pyro.models.columns import as_frame
from sedge_pyro.models.sedge import SEDGEProgram

__all__ = ["ALIASES", "run_backtest"]

#: method aliases: name -> (sampler, its options)
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "langevin-annealed": ("langevin", {"kind": "annealed"}),
}


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
    build = _model_class(build, model)
    df, target = _checked_data(graph, data, target)
    draws = _whole("draws", draws, 4)
    min_rows = _whole("min_rows", min_rows, 2)
    max_combos = _whole("max_combos", max_combos, 1)
    options = _model_options(model)
    # building the model checks its options before any fit
    template = build(graph, **options)
    plan = _methods(methods, template)

    cells, skipped = _choose_cells(graph, df, target, min_rows, max_combos)
    run = _CellRun(graph, build, options, plan, draws, seed, steps, device, progress)
    table, heldout, models = _run_cells(run, df, cells)
    return Backtest(
        table=table,
        cells=[c for c, _ in cells],
        skipped=skipped,
        target=dict(target),
        settings=_settings(run, min_rows, max_combos, len(df)),
        heldout=heldout,
        models=models,
    )


def _model_class(
    build: Callable[..., SEDGEProgram] | None, model: Mapping[str, Any] | SEDGEProgram | None
) -> Callable[..., SEDGEProgram]:
    """The model class each cell fits: ``build``, else the class of ``model`` (a model)."""
    if build is None and isinstance(model, SEDGEProgram):
        build = type(model)
    if build is None:
        raise OptionError(
            "build=None and model is not a model: expected the model class to fit "
            "(sp.backtest passes sp.SEDGEModel)"
        )
    return build


def _checked_data(
    graph: SpecGraph, data: Any, target: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training rows as a frame and the target, checked against the graph."""
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
    return df, target


def _settings(run: _CellRun, min_rows: int, max_combos: int, rows: int) -> dict[str, Any]:
    """The backtest's settings as :attr:`Backtest.settings` records them (JSON-ready)."""
    return {
        "methods": list(run.plan),
        # label -> [sampler, its options]: what method="auto" runs for the best label
        "method_options": {k: [m, _jsonable(o)] for k, (m, o) in run.plan.items()},
        "model": _jsonable(run.options),
        "draws": run.draws,
        "min_rows": min_rows,
        "max_combos": max_combos,
        "seed": run.seed,
        "steps": run.steps,
        "device": str(run.device),
        "rows": rows,
    }


class _CellRun(NamedTuple):
    """What every held-out cell is fitted and sampled with (see :func:`run_backtest`)."""

    graph: SpecGraph
    build: Callable[..., SEDGEProgram]
    options: dict[str, Any]
    plan: dict[str, tuple[str, dict[str, Any]]]
    draws: int
    seed: int
    steps: int | None
    device: str
    progress: bool


def _run_cells(
    run: _CellRun, df: pd.DataFrame, cells: list[tuple[Cell, np.ndarray]]
) -> tuple[pd.DataFrame, dict[str, pd.Index], dict[str, SEDGEProgram]]:
    """Every held-out cell in turn (:func:`_run_cell`) under one progress bar: the table, the
    held-out rows' index per cell, and the model fitted without each cell's rows.
    """
    rows: list[dict[str, Any]] = []
    heldout: dict[str, pd.Index] = {}
    models: dict[str, SEDGEProgram] = {}
    bar = tqdm(
        total=len(cells) * len(run.plan),
        desc="SEDGE backtest",
        disable=not run.progress,
        leave=False,
    )
    try:
        for cell, mask in cells:
            heldout[cell.label] = df.index[mask]
            fitted = _run_cell(run, df, cell, mask, bar, rows)
            if fitted is not None:
                models[cell.label] = fitted
    finally:
        bar.close()
    return pd.DataFrame(rows, columns=_COLUMNS), heldout, models


def _run_cell(
    run: _CellRun,
    df: pd.DataFrame,
    cell: Cell,
    mask: np.ndarray,
    bar: Any,
    rows: list[dict[str, Any]],
) -> SEDGEProgram | None:
    """Steps 1-3 of the backtest on one cell: the cell's rows out, a fresh fit on the others,
    every method's draws scored against the rows held out (one table row each, appended to
    ``rows``; ``bar`` advanced once per method). Returns the fitted model, or ``None`` when
    the fit failed.
    """
    features = list(run.graph.features)
    # step 1: the selection makes the cell unseen
    rest = df.loc[~mask].reset_index(drop=True)
    reference = df.loc[mask, features].reset_index(drop=True)
    bar.set_postfix(cell=cell.label, method="(fit)")
    start = time.perf_counter()
    try:
        # step 2: a fresh model on the other rows
        fitted = run.build(run.graph, **run.options).fit(
            rest, steps=run.steps, seed=run.seed, progress=False, device=run.device
        )
    except SedgeError as err:
        for name in run.plan:
            rows.append(_unavailable(cell, name, f"fit failed: {err}"))
            bar.update()
        return None
    fit_seconds = time.perf_counter() - start
    scorer = _Scorer(reference, run.draws, run.seed)
    # step 3: sample the cell with every method and score against its rows
    for name, (method, method_options) in run.plan.items():
        bar.set_postfix(cell=cell.label, method=name)
        rows.append(_score_method(run, fitted, cell, scorer, name, method, method_options))
        bar.update()
    bar.set_postfix(cell=cell.label, fit=f"{fit_seconds:.1f}s")
    return fitted


def _score_method(
    run: _CellRun,
    fitted: SEDGEProgram,
    cell: Cell,
    scorer: _Scorer,
    name: str,
    method: str,
    method_options: dict[str, Any],
) -> dict[str, Any]:
    """Step 3 for one method: its draws of the cell scored, or why it could not draw."""
    start = time.perf_counter()
    try:
        s = fitted.sample(
            dict(cell.target), n=run.draws, method=method, seed=run.seed, **method_options
        )
    except SedgeError as err:
        return _unavailable(cell, name, f"{type(err).__name__}: {err}")
    seconds = time.perf_counter() - start
    row = {"cell": cell.label, "rows": cell.rows, "method": name, "status": "ok"}
    row.update(scorer.score(s.to_dataframe()[list(run.graph.features)]))
    sat = (s.info.get("diagnostics") or {}).get("satisfaction")
    row["satisfaction"] = float(sat) if sat is not None else math.nan
    row["warnings"] = len(s.warnings)
    row["seconds"] = seconds
    row["error"] = ""
    return row


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
