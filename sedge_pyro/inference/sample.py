r"""``sample``: one entry point over the samplers, returning :class:`Samples`.

Every sampler is a function ``fn(problem, n, *, chains, generator, progress, **options) ->
Draws`` in normalised units, a thin loop over its module's :class:`~sedge_pyro.inference.draws.
Kernel` (one file per sampler: ``plan``, ``opt``, ``dps``, ``smc``, ``langevin`` with ``mala``
and ``annealed``, ``vi``, ``nuts``, ``direct``); this module compiles the target, seeds, runs
the sampler, checks the draws are finite, converts them to raw units, records the settings and
the draws' verdict (:mod:`~sedge_pyro.inference.verdict`: ``info["diagnostics"]`` and
``info["warnings"]``, see :meth:`Samples.diagnose`). The methods:

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
import textwrap
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from sedge_pyro.errors import OptionError, SedgeError
from sedge_pyro.inference.direct import sample_direct
from sedge_pyro.inference.distributed import World, world
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
from sedge_pyro.options import whole

if TYPE_CHECKING:
    from sedge_pyro.models.sedge import SEDGEProgram

__all__ = [
    "AUTO_METHODS",
    "METHODS",
    "PARAMETERS",
    "RETURNS",
    "Draws",
    "chain_seed",
    "check_finite",
    "sample",
    "shares_parameters",
]

F = TypeVar("F", bound=Callable[..., Any])

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


#: the parameters :func:`sample` and :meth:`SEDGEModel.sample
#: <sedge_pyro.inference.model.SEDGEModel.sample>` share, documented once: each docstring holds
#: a line ``{parameters}`` that :func:`shares_parameters` replaces with this block (and a line
#: ``{returns}`` for :data:`RETURNS`)
PARAMETERS = """:param target: specification -> value (a number or category) or
    :class:`~sedge_pyro.Interval`, on any subset of the specs; or a 1-D array of ``n``
    values, one per draw (see :mod:`~sedge_pyro.inference.sample`).
:param n: draws per chain.
:param method: ``"plan"`` (default for models A/B: follows :func:`~sedge_pyro.identify`'s
    factorization), ``"opt"`` (Algorithm 1), ``"dps"`` (Algorithm 2), ``"langevin"``,
    ``"svi"``, ``"nuts"``, ``"direct"`` (models D/E), or ``"auto"``: the method
    :func:`~sedge_pyro.backtest` finds best on the model's own training rows (rare
    seen combinations like the target, held out; one fit per held-out cell, so
    minutes), or on ``backtest=`` a result you ran; an unreliable backtest adds a
    warning, and ``info["auto"]`` records the choice (``"auto"`` is
    :meth:`SEDGEModel.sample <sedge_pyro.inference.model.SEDGEModel.sample>`'s); see
    :mod:`sedge_pyro.inference.sample`.
:param chains: independent chains (ArviZ's ``chain`` dimension). Under ``torchrun`` the
    chains are spread over the processes, chain ``c`` drawn from its own seed, and every
    process gets all of them (a multiple of the processes keeps them all busy).
:param seed: seeds the draws.
:param device: where to sample (default: the model's device).
:param tolerance: for point targets on continuous specs, how close a training value
    must be to count as the target (as in :func:`~sedge_pyro.identify`).
:param progress: show a progress bar.
:param options: the method's own options (e.g. ``steps``, ``step_size``)."""

#: what :func:`sample` and ``SEDGEModel.sample`` return and raise (the line ``{returns}``)
RETURNS = """:returns: :class:`~sedge_pyro.inference.Samples`, shape ``(chains, n)`` per feature.
:raises TargetError: for an unknown spec, a value outside a categorical's levels, an
    interval holding no value, or a value never seen alone (Assumption 1).
:raises SamplingError: when the sampler diverges (names the method and step).
:raises OptionError: for an unknown method or option, ``n`` or ``chains`` not a whole
    number >= 1, or per-draw targets with a method other than ``opt``, ``dps`` or
    ``direct``."""


def shares_parameters(fn: F) -> F:
    """Put :data:`PARAMETERS` and :data:`RETURNS`, each indented as the line it replaces, in
    place of the lines ``{parameters}`` and ``{returns}`` of ``fn``'s docstring.
    """
    blocks = {"{parameters}": PARAMETERS, "{returns}": RETURNS}
    lines = []
    for line in (fn.__doc__ or "").split("\n"):
        if line.strip() in blocks:
            indent = line[: len(line) - len(line.lstrip())]
            line = textwrap.indent(blocks[line.strip()], indent)
        lines.append(line)
    fn.__doc__ = "\n".join(lines)
    return fn


@shares_parameters
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
    """Draw features for a target from a fitted model: the dispatcher behind
    :meth:`SEDGEModel.sample <sedge_pyro.inference.model.SEDGEModel.sample>`, which also
    runs ``method="auto"`` and sets torch's threads.

    :param model: the fitted model (its Pyro program).
    {parameters}
    {returns}
    """
    if not model.fitted:
        raise SedgeError("the model is not fitted: call model.fit(data) first")
    if method == "auto":
        raise OptionError(
            "method='auto' chooses by a backtest, which sits above this dispatcher: call "
            "model.sample(target, method='auto')"
        )
    method = default_method(model) if method is None else method
    fn, settings, selection, options = _call(method, options)
    per_draw = isinstance(target, Mapping) and any(is_per_draw(v) for v in target.values())
    if per_draw and method not in PER_DRAW_METHODS:
        raise OptionError(
            f"method {method!r} draws from one posterior: per-draw targets need method 'opt', "
            "'dps' or 'direct'"
        )
    n, chains, seed = whole("n", n), whole("chains", chains), check_seed(seed)
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
    where = world(dev)
    with fixed as selection_info:
        if where.distributed and chains > 1:
            draws = _spread(fn, problem, n, chains, seed, where, progress, options)
        else:
            draws = fn(problem, n, chains=chains, generator=generator, progress=progress, **options)
    info = {"seconds": time.perf_counter() - start, "seed": int(seed), "device": str(dev)}
    if where.distributed:
        info["processes"] = where.size
    raw, stats = _checked(model, t, method, draws, (chains, n, problem.dim))
    info.update(draws.info)
    info.update(selection_info)
    info.update(_verdict(model, raw, t.target, method, settings, info, tolerance))
    return Samples(
        raw, model.features, t.target, method, settings, stats, info, observed=t.observed()
    )


def chain_seed(seed: int, chain: int) -> int:
    """The seed of chain ``chain`` when chains are spread over processes: from
    ``numpy.random.SeedSequence([seed, chain])``, so it depends on neither the number of
    processes nor the chains a process runs.

    >>> chain_seed(0, 0) != chain_seed(0, 1)
    True
    """
    state = np.random.SeedSequence([int(seed), int(chain)]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def _spread(
    fn: Callable[..., Draws],
    problem: Problem,
    n: int,
    chains: int,
    seed: int,
    where: World,
    progress: bool,
    options: Mapping[str, Any],
) -> Draws:
    """The chains spread over the processes of a ``torchrun`` job, gathered in every process.

    Process ``r`` runs chains ``r, r + P, ...`` one at a time, chain ``c`` from its own
    generator (:func:`chain_seed`), so the draws of a seed are the same with 2 processes or 8
    (one process runs all chains in one call from one generator, which gives other draws of
    the same distribution). ``info`` holds rank 0's figures.
    """
    mine = list(range(where.rank, chains, where.size))
    parts = []
    for c in mine:
        gen = torch.Generator(device=problem.device).manual_seed(chain_seed(seed, c))
        parts.append(
            fn(problem, n, chains=1, generator=gen, progress=progress and where.main, **options)
        )
    local = {
        c: (
            d.x.detach().cpu(),
            {k: _np(v) for k, v in d.stats.items()},
            None if d.raw is None else np.asarray(d.raw),
        )
        for c, d in zip(mine, parts, strict=True)
    }
    gathered: list[Any] = [None] * where.size
    dist.all_gather_object(gathered, local)
    every = {c: v for part in gathered for c, v in part.items()}
    order = [every[c] for c in range(chains)]
    x = torch.cat([o[0] for o in order]).to(problem.device)
    stats = {k: np.concatenate([o[1][k] for o in order]) for k in order[0][1]}
    raws = [o[2] for o in order]
    raw = None if any(r is None for r in raws) else np.concatenate(raws)
    info = dict(parts[0].info) if parts else {}
    return Draws(x, stats, info, raw)


def _call(
    method: str, options: Mapping[str, Any]
) -> tuple[Callable[..., Draws], dict[str, Any], str | None, dict[str, Any]]:
    """The sampler of ``method``, its settings (defaults and ``options``), the selection
    correction asked for (``None`` where the method takes none) and the options the sampler
    itself takes (``options`` without ``selection``, which the dispatcher applies).
    """
    fn = _resolve(method)
    selection = None
    options = dict(options)
    if method in CORRECTED and options.get("kind", "mala") != "annealed":
        selection = options.pop("selection", "auto")
    settings = _settings(fn, method, options)
    if selection is not None:
        settings["selection"] = selection
    return fn, settings, selection, options


def _checked(
    model: SEDGEProgram, t: Target, method: str, draws: Draws, shape: tuple[int, int, int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The draws checked (finite, of ``shape``) and converted: raw values and stats.

    :raises SedgeError: for draws of another shape.
    """
    x = draws.x.detach()
    check_finite(x, method, "end")
    if x.shape != shape:
        raise SedgeError(
            f"method {method!r} returned shape {tuple(x.shape)}: expected "
            f"({shape[0]}, {shape[1]}, {shape[2]})"
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
    return raw, stats


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
