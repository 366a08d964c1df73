r"""``sample``: one entry point over the samplers, returning :class:`Samples`.

Every sampler is a function ``fn(problem, n, *, chains, generator, progress, **options) ->
Draws`` in normalised units; this module compiles the target, seeds, runs the sampler, checks
the draws are finite, converts them to raw units, records the settings and the draws' verdict
(:mod:`~sedge_pyro.inference.verdict`: ``info["diagnostics"]`` and ``info["warnings"]``, see
:meth:`Samples.diagnose`). The methods:

============  ===========================================================================
``plan``      follows :func:`~sedge_pyro.identify`'s factorization term by term (exact when
              identifiable); needs no prior density
``opt``       Algorithm 1: Adam on the guidance loss from training rows (a mode-seeker)
``dps``       Algorithm 2: diffusion posterior sampling with the DDPM prior
``smc``       twisted diffusion sampling: DPS as the proposal of a particle filter whose
              weights correct it (asymptotically exact for the DDPM prior)
``langevin``  unadjusted / Metropolis-adjusted Langevin on :math:`\log p(x) + \ell(x)`, or
              annealed Langevin with the diffusion prior's scores
``svi``       a normalizing-flow guide fit by SVI to the conditioned model
``nuts``      Pyro's NUTS on the conditioned model (low-dimensional X)
``direct``    models D/E: draws from the fitted :math:`p(X \mid Z)` itself
``auto``      the method :func:`~sedge_pyro.backtest` finds best on the model's training
              rows (or on ``backtest=`` a result of yours), with the options it ran with
============  ===========================================================================

**Per-draw targets.** A target value may be a 1-D array of ``n`` points (numpy array, list,
pandas Series or torch tensor) instead of one value: draw ``i`` of every chain is generated for
the ``i``-th values (the paper's Sec. 5.1 generates one sample per held-out Oracle row).
Scalars and intervals may be mixed in and hold for every draw. Only ``opt``, ``dps`` and
``direct`` take them, as their particles are independent given their targets; the samplers of
one posterior (``plan``, ``langevin``, ``svi``, ``nuts``) raise
:class:`~sedge_pyro.OptionError`. :attr:`Samples.target` keeps the arrays.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from sedge_pyro.errors import DataError, OptionError, SamplingError, SedgeError
from sedge_pyro.expr import Var
from sedge_pyro.inference.samples import Samples
from sedge_pyro.inference.selection import CORRECTED, corrected, diffusion_surrogate
from sedge_pyro.inference.target import PER_DRAW_METHODS, Problem, Target, is_per_draw
from sedge_pyro.inference.verdict import AGREEMENT_ROWS, verdict
from sedge_pyro.options import device as check_device
from sedge_pyro.options import seed as check_seed

if TYPE_CHECKING:
    from sedge_pyro.models.sedge import SEDGEModel

__all__ = ["AUTO_METHODS", "METHODS", "Draws", "check_finite", "sample"]

#: method name -> "module:function" (loaded on first use)
METHODS: dict[str, str] = {
    "plan": "sedge_pyro.inference.plan:sample_plan",
    "opt": "sedge_pyro.inference.guided:sample_opt",
    "dps": "sedge_pyro.inference.guided:sample_dps",
    "smc": "sedge_pyro.inference.smc:sample_smc",
    "langevin": "sedge_pyro.inference.langevin:sample_langevin",
    "svi": "sedge_pyro.inference.vi:sample_svi",
    "nuts": "sedge_pyro.inference.nuts:sample_nuts",
    "direct": "sedge_pyro.inference.direct:sample_direct",
}

#: the methods ``method="auto"`` backtests when it runs the backtest itself: the samplers of
#: the posterior that stay within minutes (``opt`` and ``dps`` are approximate, ``nuts`` can
#: stall at its maximum tree depth; pass your own backtest to compare them)
AUTO_METHODS: tuple[str, ...] = ("plan", "langevin", "svi", "direct")


class Draws(NamedTuple):
    """A sampler's output in normalised units.

    :param x: draws, shape ``(chains, draws, features)``.
    :param stats: per-draw statistics, name -> tensor or array ``(chains, draws)``.
    :param info: per-run figures (effective sample size, acceptance rate, step size, ...).
    :param raw: optionally, the draws in raw units (e.g. training values copied exactly);
        ``None``: decoded from ``x``.
    """

    x: torch.Tensor
    stats: dict[str, Any]
    info: dict[str, Any]
    raw: np.ndarray | None = None


def check_finite(x: torch.Tensor, method: str, step: int | str) -> None:
    """Raise :class:`~sedge_pyro.SamplingError` when ``x`` holds a NaN or infinity.

    :param method: the sampler's name, for the message.
    :param step: the step (or stage) reached, for the message.
    """
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(-1).sum()) if x.dim() else 1
        raise SamplingError(
            f"method {method!r} diverged at step {step}: {bad} draw(s) are NaN or infinite; "
            "lower the step size or learning rate, or raise the number of steps"
        )


def _resolve(method: str) -> Any:
    if method not in METHODS:
        raise OptionError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def _settings(fn: Any, method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    params = {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("chains", "generator", "progress")
    }
    unknown = [k for k in options if k not in params]
    if unknown:
        raise OptionError(
            f"method {method!r} has no option {unknown[0]!r}: expected one of "
            f"{', '.join(params) or '(none)'}"
        )
    return {**params, **options}


def default_method(model: SEDGEModel) -> str:
    """The method ``sample`` uses when none is given: ``plan`` for models A/B, ``direct`` for
    D/E, and for C ``langevin`` (a prior with a density) or ``opt``.
    """
    if model.structure in ("reverse", "reverse-factorized"):
        return "direct"
    if model.structure == "joint":
        return "langevin" if model.prior.has_log_prob else "opt"
    return "plan"


def sample(
    model: SEDGEModel,
    target: Mapping[str, Any],
    n: int = 1000,
    method: str | None = None,
    *,
    chains: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
    tolerance: float | Mapping[str, float] | None = None,
    progress: bool = False,
    **options: Any,
) -> Samples:
    """Draw features for a target from a fitted model (see :meth:`SEDGEModel.sample`).

    A target value may be a 1-D array of ``n`` points, one per draw (see the module).

    :raises OptionError: for per-draw targets with a method other than ``opt``, ``dps`` or
        ``direct``.
    """
    if not model.fitted:
        raise SedgeError("the model is not fitted: call model.fit(data) first")
    if method == "auto":
        return _sample_auto(
            model,
            target,
            n,
            chains=chains,
            seed=seed,
            device=device,
            tolerance=tolerance,
            progress=progress,
            **options,
        )
    method = default_method(model) if method is None else method
    fn = _resolve(method)
    selection = None
    if method in CORRECTED and options.get("kind", "mala") != "annealed":
        options = dict(options)
        selection = options.pop("selection", "auto")
    settings = _settings(fn, method, options)
    if selection is not None:
        settings["selection"] = selection
    per_draw = isinstance(target, Mapping) and any(is_per_draw(v) for v in target.values())
    if per_draw and method not in PER_DRAW_METHODS:
        raise OptionError(
            f"method {method!r} draws from one posterior: per-draw targets need method 'opt', "
            "'dps' or 'direct'"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise OptionError(f"n={n!r}: expected a positive whole number of draws per chain")
    if isinstance(chains, bool) or not isinstance(chains, int | np.integer) or chains < 1:
        raise OptionError(f"chains={chains!r}: expected a positive whole number")
    seed = check_seed(seed)
    dev = model.device if device is None else check_device(device)
    t = Target(model, target, tolerance=tolerance, n=int(n))
    model.to(dev)
    problem = Problem(model, t, dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    start = time.perf_counter()
    fixed: Any = contextlib.nullcontext({})
    if selection is not None:
        fixed = corrected(problem, selection, seed=seed, progress=progress)
    elif method in ("dps", "smc") or (method == "langevin" and options.get("kind") == "annealed"):
        fixed = diffusion_surrogate(problem, seed=seed, progress=progress)
    with fixed as selection_info:
        draws = fn(
            problem, int(n), chains=int(chains), generator=generator, progress=progress, **options
        )
    seconds = time.perf_counter() - start
    x = draws.x.detach()
    check_finite(x, method, "end")
    if x.shape != (chains, n, problem.dim):
        raise SedgeError(
            f"method {method!r} returned shape {tuple(x.shape)}: expected "
            f"({chains}, {n}, {problem.dim})"
        )
    stats = {k: _np(v) for k, v in draws.stats.items()}
    if "log_likelihood" not in stats and model.structure in ("sparse", "dense", "joint"):
        try:
            with torch.no_grad():
                stats["log_likelihood"] = _np(t.log_likelihood(x))
        except OptionError:
            pass  # model C with intervals on several specs has no closed-form likelihood
    assert model.columns is not None
    raw = draws.raw
    if raw is None:
        raw = np.stack(
            [model.columns[f].decode(_np(x[..., j])) for j, f in enumerate(model.features)],
            axis=-1,
        )
    info = {"seconds": seconds, "seed": int(seed), "device": str(dev), **draws.info}
    info.update(selection_info)
    info.update(_verdict(model, raw, t.target, method, settings, info, tolerance))
    return Samples(
        raw, model.features, t.target, method, settings, stats, info, observed=t.observed()
    )


def _sample_auto(
    model: SEDGEModel,
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
    """``method="auto"``: the method :func:`~sedge_pyro.backtest` finds best on the model's own
    training rows (rare seen combinations like the target, held out), with the options it ran
    with there. ``info["auto"]`` records the choice and the backtest's verdict; an unreliable
    backtest (even the best method above 3x the floor, or none qualifying) adds a warning.

    Without ``backtest=``, the backtest runs here over :data:`AUTO_METHODS` (those the model
    supports) with its defaults: one fit per held-out cell, so minutes on a CPU. To compare
    other methods or options, run :func:`~sedge_pyro.backtest` yourself and pass it.
    """
    # the backtest fits and samples models: it sits above this module, so it loads here
    from sedge_pyro.backtest import ALIASES, Backtest, _default_methods
    from sedge_pyro.backtest import backtest as run_backtest

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


def _verdict(
    model: SEDGEModel,
    raw: np.ndarray,
    target: Mapping[str, Any],
    method: str,
    settings: Mapping[str, Any],
    info: Mapping[str, Any],
    tolerance: float | Mapping[str, float] | None,
) -> dict[str, Any]:
    """The draws' verdict (:mod:`~sedge_pyro.inference.verdict`) as ``info`` entries:
    ``diagnostics``, ``warnings`` and ``rhat_ess`` (``"mcmc"``, ``"partial"`` or ``"n/a"``).

    The cross-check's reference is ``plan`` through :func:`sample` itself (its public
    behaviour, with its own verdict, which draws no reference for ``plan``): as many draws as
    these, at most :data:`~sedge_pyro.inference.verdict.AGREEMENT_ROWS`, one chain, seed 0,
    the same target and tolerance.
    """

    def reference() -> Samples:
        n = min(int(raw.shape[0] * raw.shape[1]), AGREEMENT_ROWS)
        return sample(model, target, n=n, method="plan", seed=0, tolerance=tolerance)

    try:
        diagnostics, warnings = verdict(
            model,
            raw,
            model.features,
            target,
            method,
            settings=settings,
            info=info,
            tolerance=tolerance,
            reference=reference,
        )
    except Exception as err:  # a diagnostic's failure must not break sampling, nor go unsaid
        message = f"{type(err).__name__}: {err}"
        diagnostics = {"errors": {"verdict": message}}
        warnings = [f"the draws' verdict could not be computed ({message}): they are unchecked"]
    kind = diagnostics.get("rhat_ess", {}).get("kind", "n/a")
    return {"diagnostics": diagnostics, "warnings": warnings, "rhat_ess": kind}


def _np(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)
