"""``method="auto"``: sample with the method a backtest on the model's own training rows finds
best (:func:`sample_auto`).

The backtest (:mod:`~sedge_pyro.inference.backtest`) holds out rare seen combinations like
the target, as the selection variable :math:`S` of the paper's Sec. 3 holds out the target,
and scores each method's draws against them by the MMD of Sec. 5.1; this module is the
dispatcher that runs it (or reads one given), picks the best method with the options it ran
with, and samples. It sits above the backtest's engine
(:mod:`~sedge_pyro.inference.backtest_engine`) and below
:class:`~sedge_pyro.inference.model.SEDGEModel`, whose ``sample(method="auto")`` calls it;
:mod:`~sedge_pyro.inference.backtest` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.expr import Var
from sedge_pyro.inference.backtest_engine import ALIASES, _default_methods, run_backtest
from sedge_pyro.inference.backtest_result import Backtest
from sedge_pyro.inference.sample import AUTO_METHODS, default_method, sample
from sedge_pyro.inference.samples import Samples
from sedge_pyro.inference.target import Target, is_per_draw
from sedge_pyro.models.sedge import SEDGEProgram

__all__ = ["sample_auto"]


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
    _check_auto(model, target, n, backtest, tolerance, options)
    notes: list[str] = []
    candidates = [m for m in _default_methods(model) if m in AUTO_METHODS]
    if backtest is None and len(candidates) > 1:
        backtest = _own_backtest(model, target, candidates, seed, device, progress, notes)
    chosen, opts = _choice(backtest, target, notes)
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


def _check_auto(
    model: SEDGEProgram,
    target: Mapping[str, Any],
    n: int,
    backtest: Any,
    tolerance: float | Mapping[str, float] | None,
    options: Mapping[str, Any],
) -> None:
    """``method="auto"``'s arguments: no sampler options, an :class:`Backtest` or ``None``, a
    target of one posterior that compiles against the model.
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


def _own_backtest(
    model: SEDGEProgram,
    target: Mapping[str, Any],
    candidates: list[str],
    seed: int,
    device: str | torch.device | None,
    progress: bool,
    notes: list[str],
) -> Backtest | None:
    """The backtest over ``candidates`` on the model's own training rows, or ``None`` (with a
    note) when no seen cell like the target can be held out.
    """
    if model.seen is None:
        raise OptionError(
            "method='auto' backtests on the model's training rows, and this model keeps "
            "none: pass backtest=sp.backtest(graph, data, target) or name a method"
        )
    try:
        return run_backtest(
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
        return None


def _choice(
    backtest: Backtest | None, target: Mapping[str, Any], notes: list[str]
) -> tuple[str | None, dict[str, Any]]:
    """The backtest's best method with the options it ran with (``(None, {})`` without one),
    noting an unreliable backtest or one run for another target.
    """
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
    return chosen, opts
