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
import inspect
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sedge_pyro.errors import OptionError, SedgeError
from sedge_pyro.inference.direct import sample_direct
from sedge_pyro.inference.dps import sample_dps
from sedge_pyro.inference.draws import Draws, check_finite
from sedge_pyro.inference.langevin import sample_langevin
from sedge_pyro.inference.nuts import sample_nuts
from sedge_pyro.inference.opt import sample_opt
from sedge_pyro.inference.plan import sample_plan
from sedge_pyro.inference.samples import Samples
from sedge_pyro.inference.selection import CORRECTED, corrected, diffusion_surrogate
from sedge_pyro.inference.smc import sample_smc
from sedge_pyro.inference.target import PER_DRAW_METHODS, Problem, Target, is_per_draw
from sedge_pyro.inference.verdict import AGREEMENT_ROWS, verdict
from sedge_pyro.inference.vi import sample_svi
from sedge_pyro.options import device as check_device
from sedge_pyro.options import seed as check_seed

if TYPE_CHECKING:
    from sedge_pyro.models.sedge import SEDGEProgram

__all__ = ["AUTO_METHODS", "METHODS", "Draws", "check_finite", "sample"]

#: method name -> its sampler, ``fn(problem, n, *, chains, generator, progress, **options) ->
#: Draws``
METHODS: dict[str, Callable[..., Draws]] = {
    "plan": sample_plan,
    "opt": sample_opt,
    "dps": sample_dps,
    "smc": sample_smc,
    "langevin": sample_langevin,
    "svi": sample_svi,
    "nuts": sample_nuts,
    "direct": sample_direct,
}

#: the methods ``method="auto"`` backtests when it runs the backtest itself: the samplers of
#: the posterior that stay within minutes (``opt`` and ``dps`` are approximate, ``nuts`` can
#: stall at its maximum tree depth; pass your own backtest to compare them)
AUTO_METHODS: tuple[str, ...] = ("plan", "langevin", "svi", "direct")


def _resolve(method: str) -> Any:
    if method not in METHODS:
        raise OptionError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    return METHODS[method]


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


def default_method(model: SEDGEProgram) -> str:
    """The method ``sample`` uses when none is given: ``plan`` for models A/B, ``direct`` for
    D/E, and for C ``langevin`` (a prior with a density) or ``opt``.
    """
    if model.structure in ("reverse", "reverse-factorized"):
        return "direct"
    if model.structure == "joint":
        return "langevin" if model.prior.has_log_prob else "opt"
    return "plan"


def sample(
    model: SEDGEProgram,
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
        raise OptionError(
            "method='auto' chooses by a backtest, which sits above this dispatcher: call "
            "model.sample(target, method='auto')"
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


def _verdict(
    model: SEDGEProgram,
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
