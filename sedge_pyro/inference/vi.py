r"""The ``svi`` sampler: a normalizing-flow guide fit by SVI to the conditioned model.

The SEDGE posterior (Sec. 3.1) is :math:`p(x \mid Z_T = z) \propto p(x)\, \prod_{i \in T}
p(z_i \in A_i \mid V_i(x))`. As a Pyro program over the features alone, with the fitted
components frozen,

.. code-block:: python

    x = pyro.sample("X", dist.Normal(0, 1).expand([d]).to_event(1).mask(False))  # flat
    pyro.factor("target", problem.log_density(x))  # log p(x) + sum_i log p(z_i | V_i(x))

A guide :math:`q_\phi(x)` (an inverse autoregressive flow, :class:`~pyro.infer.autoguide.
AutoIAFNormal`, by default) is fit by maximising the ELBO :math:`\mathbb E_q[\log p(x, z) -
\log q(x)]` with :class:`~pyro.infer.Trace_ELBO` (vectorised particles) and ``ClippedAdam``;
then a pool of :data:`POOL` times ``n * chains`` draws comes from :math:`q`, each with its
importance log-weight :math:`\log p(x, z) - \log q(x)`. Their effective sample size and
Pareto :math:`\hat k` (Vehtari et al.) say how well :math:`q` covers the posterior. Where
:math:`\hat k <` :data:`KHAT_MAX` the ``n * chains`` draws are resampled from the pool with
probabilities proportional to the weights (sampling-importance-resampling, Rubin 1988): the
reverse KL that SVI minimises leaves :math:`q` narrower than the posterior and off its
centre, and the weights undo that (the paper's task: the guide's draws 3.7x the MMD floor,
their mean of ``x3`` 0.12 standard deviations off). Half the pool (:data:`DEFENSIVE`) is
drawn from the fitted prior instead, and every weight is taken against the mixture of guide
and prior (a defensive mixture, Hesterberg 1995): the reverse KL lets the guide drop a mode
of the posterior altogether, no weight brings back what the pool never holds, and the prior
holds every mode (the grid's ``sin`` and ``product`` variants: 12.9x and 22x the MMD floor
from the guide alone). The weights against that mixture are bounded (by :math:`p(z \mid x)
/ a`, at most :math:`1 / a` for an event), so their variance is finite and the pool is
resampled whatever :math:`\hat k` reads (it is still reported; the paper task's read 0.78
with the guide 1.5x the floor). Without the prior's half (a prior that cannot be sampled),
the weights are resampled only where :math:`\hat k <` :data:`KHAT_MAX`; above it they
cannot be trusted and the draws are the guide's own (``resample=False``: always).
A resampled set can hold a draw twice (``info["distinct"]`` counts them).

The fit runs in a private parameter-store scope (the user's ``pyro.get_param_store()`` is left
alone) and under :func:`torch.random.fork_rng` seeded from the run's generator. The model's
parameters are frozen while it runs (``requires_grad`` off, restored afterwards), so SVI never
touches them and no gradient accumulates on them.

References:
* Kingma, Salimans, Jozefowicz, Chen, Sutskever and Welling, Improved Variational Inference
  with Inverse Autoregressive Flow, NeurIPS 2016.
* Rezende and Mohamed, Variational Inference with Normalizing Flows, ICML 2015.
* Vehtari, Simpson, Gelman, Yao and Gabry, Pareto Smoothed Importance Sampling, JMLR 2024.
* Hesterberg, Weighted average importance sampling and defensive mixture distributions,
  Technometrics 1995.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoIAFNormal, AutoMultivariateNormal, init_to_value
from tqdm.auto import tqdm

from sedge_pyro import arviz_compat
from sedge_pyro.errors import OptionError
from sedge_pyro.inference.draws import Draws, Kernel, check_finite
from sedge_pyro.inference.target import Problem
from sedge_pyro.inference.verdict import KHAT_MAX  # resampled only below it (Vehtari et al.)
from sedge_pyro.options import choice, flag, number, whole

__all__ = [
    "DEFENSIVE",
    "GUIDES",
    "KHAT_MAX",
    "POOL",
    "conditioned_model",
    "SVIInfo",
    "SVIState",
    "importance_diagnostics",
    "kernel",
    "sample_svi",
]

#: the guide families: an IAF flow, or a full-covariance Gaussian
GUIDES = ("iaf", "mvn")
#: the learning rate falls by this factor over the fit (ClippedAdam's ``lrd``)
_LR_DECAY = 0.1
#: ``resample=True``: the pool drawn from the guide is this many times the draws ...
POOL = 10
#: ... and at most this many rows (never fewer than the draws)
POOL_MAX = 200_000
#: ... of which this share are draws of the fitted prior (a defensive mixture, Hesterberg
#: 1995): the guide, fit by the mode-seeking reverse KL, can miss a mode entirely, and no
#: weight brings back what the pool never holds (the grid's ``sin`` variant: 12.9x the MMD
#: floor from the guide alone)
DEFENSIVE = 0.5


def conditioned_model(problem: Problem, bounded: bool = False) -> Any:
    r"""The Pyro program of :math:`p(x \mid Z_T = z)` up to a constant, over the site ``X``.

    With ``bounded``, the site holds the unconstrained coordinates of the box
    (:meth:`~sedge_pyro.inference.target.Problem.log_density_box`) instead of the features.
    Vectorises over leading batch dimensions (Trace_ELBO's particle plate).
    """
    d = problem.dim
    zeros = torch.zeros(d, device=problem.device, dtype=problem.dtype)
    ones = torch.ones(d, device=problem.device, dtype=problem.dtype)

    def model() -> None:
        # a flat (improper) base: the Normal only seeds the guide's initialisation; masked,
        # its density does not enter the ELBO (ImproperUniform cannot be sampled, which
        # AutoIAFNormal's set-up needs)
        x = pyro.sample("X", dist.Normal(zeros, ones).to_event(1).mask(False))
        # the fitted components are plain modules; hide any param they might register
        with poutine.block(hide_types=["param"]):
            lp = problem.log_density_box(x) if bounded else problem.log_density(x)
        pyro.factor("target", lp)

    return model


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on ``module``'s parameters, restoring it afterwards."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


def importance_diagnostics(log_w: torch.Tensor) -> dict[str, float]:
    r"""Effective sample size :math:`(\sum w)^2 / \sum w^2` and Pareto :math:`\hat k` of
    importance log-weights ``log_w`` (flattened).

    :returns: ``{"ess", "ess_fraction", "khat"}`` (``khat`` is ``nan`` when ArviZ cannot
        fit the tail).
    """
    lw = log_w.detach().double().flatten()
    lw = lw[torch.isfinite(lw)]
    if lw.numel() == 0:
        return {"ess": 0.0, "ess_fraction": 0.0, "khat": math.inf}
    w = (lw - lw.max()).exp()
    ess = float(w.sum() ** 2 / (w * w).sum())
    khat = math.nan
    try:
        with warnings.catch_warnings():
            # psislw warns about a large k-hat, which is reported here rather than warned
            warnings.simplefilter("ignore")
            _, khat = arviz_compat.psislw(lw.cpu().numpy())
    except Exception:  # noqa: BLE001 - a diagnostic must not fail the draw
        pass
    return {"ess": ess, "ess_fraction": ess / lw.numel(), "khat": khat}


def _pool(
    problem: Problem, posterior: Any, pool: int, n_prior: int, bounded: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    r"""``pool`` draws of the proposal, ``(x, log q(x), log p(x, z), prior draws)`` in feature
    units.

    With ``n_prior`` the proposal is the mixture :math:`(1 - a)\, q + a\, p` of the guide
    and the fitted prior, :math:`a` = ``n_prior / pool``, drawn in those proportions (the
    guide's first; the balance heuristic of multiple importance sampling): the prior covers
    every mode of the posterior, so the weights are at most :math:`p(z \mid x) / a` and a
    guide that missed a mode no longer hides it. A prior draw outside the box (``bounded``)
    has weight 0. With ``n_prior=0``, or for a prior that cannot be sampled, the guide alone.
    """
    x_prior = None
    if n_prior:
        try:
            x_prior = problem.prior.sample(n_prior).to(problem.device, problem.dtype)
        except NotImplementedError:
            n_prior = 0
    u = posterior.sample((pool - n_prior,))
    # the guide's density of its own draws at the draws themselves (no round trip through
    # the box, which clamps far tails), the prior's draws mapped into the guide's coordinates
    log_q = posterior.log_prob(u)
    x = problem.from_box(u) if bounded else u
    if bounded:
        log_q = log_q - problem.box_log_jacobian(u)  # change of variables u -> x
    inside = torch.ones(pool, dtype=torch.bool, device=x.device)
    if x_prior is not None:
        if bounded:
            lo, hi = problem.box
            inside[pool - n_prior :] = ((x_prior > lo) & (x_prior < hi)).all(-1)
            v = problem.to_box(x_prior)
            log_q_prior = posterior.log_prob(v) - problem.box_log_jacobian(v)
        else:
            log_q_prior = posterior.log_prob(x_prior)
        x = torch.cat([x, x_prior])
        log_q = torch.cat([log_q, log_q_prior])
    log_p = problem.log_density(x)
    if n_prior:
        a = n_prior / pool
        log_q = torch.logaddexp(math.log1p(-a) + log_q, math.log(a) + problem.log_prior(x))
    log_p = torch.where(inside, log_p, -torch.inf)
    return x, log_q, log_p, n_prior


def sample_svi(
    problem: Problem,
    n: int,
    *,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    steps: int = 2000,
    lr: float = 0.01,
    num_particles: int = 64,
    guide: str = "iaf",
    num_transforms: int = 2,
    hidden: int | None = None,
    bounded: bool = True,
    resample: bool = True,
) -> Draws:
    r"""Draws from a guide :math:`q(x)` fit by SVI to :math:`p(x \mid Z_T = z)`, resampled
    by their importance weights where those can be trusted.

    The guide is fit for ``steps`` steps of ``ClippedAdam`` (learning rate ``lr``, decayed
    tenfold over the run) on ``Trace_ELBO(num_particles, vectorize_particles=True)``; the
    ``n * chains`` draws are then independent draws of :math:`q` (``chains`` only shapes the
    output: they are not independent fits).

    :param steps: SVI steps.
    :param lr: ClippedAdam's initial learning rate.
    :param num_particles: ELBO particles per step (vectorised).
    :param guide: ``"iaf"`` (:class:`~pyro.infer.autoguide.AutoIAFNormal`, a normalizing
        flow) or ``"mvn"`` (:class:`~pyro.infer.autoguide.AutoMultivariateNormal`).
    :param num_transforms: IAF layers (``guide="iaf"``).
    :param hidden: hidden width of each IAF layer's network (``None``: Pyro's default).
    :param bounded: fit the guide in the unconstrained coordinates of the training features'
        range, barely widened (see ``langevin``'s option of the same name), so its draws stay
        in that box; ``False``: a guide on the features themselves, unbounded.
    :param resample: resample the draws from a pool of :data:`POOL` times as many by their
        importance weights when Pareto :math:`\hat k <` :data:`KHAT_MAX` (see the module).
    :returns: :class:`~sedge_pyro.inference.Draws` with stats ``log_q``, ``log_density``
        (:math:`\log p(x) + \ell(x)`), ``log_weight`` (their difference) and
        ``log_likelihood``; info ``elbo`` (mean of the last 10% of steps), ``ess``,
        ``ess_fraction``, ``khat`` (Pareto :math:`\hat k` of the pool's importance weights),
        ``steps``, ``guide``, ``pool``, ``prior_draws`` (the pool's draws of the prior),
        ``resampled``, ``distinct``.
    :raises OptionError: for a bad option, or a prior without a density (empirical,
        diffusion).
    :raises SamplingError: when the ELBO or a draw becomes NaN or infinite.

    >>> import sedge_pyro as sp
    >>> seen, _, graph = sp.datasets.linear_gaussian(2000, seed=0)
    >>> model = sp.SEDGEModel(graph, prior="gaussian", hidden=(8,))
    >>> model = model.fit(seen, steps=50, progress=False)
    >>> s = model.sample({"z1": 1.0}, n=20, method="svi", steps=200)
    >>> s.values.shape
    (1, 20, 3)
    """
    _check(steps, lr, num_particles, guide, num_transforms, hidden, bounded, resample)
    with torch.no_grad():
        problem.log_density(problem.train_x[:1])  # OptionError now for a prior without a density
    total = chains * n
    options = {"lr": lr, "num_particles": num_particles, "bounded": bounded}
    svi = kernel(problem, steps, guide, num_transforms, hidden, **options)
    losses: list[float] = []
    with _isolated(problem):
        state = svi.init(generator)
        bar = tqdm(range(1, steps + 1), desc="svi", disable=not progress, leave=False)
        for step in bar:
            state, info = svi.step(state, generator)
            check_finite(torch.tensor([info.loss]), "svi", step)
            losses.append(info.loss)
            if step % 100 == 0:
                bar.set_postfix(elbo=f"{-info.loss:.3g}")
        with torch.no_grad():
            drawn = _draw(problem, state.guide, total, resample, bounded)
    tail = losses[-max(1, steps // 10) :]
    info = {"steps": steps, "guide": guide, "bounded": bool(bounded), "elbo": -float(np.mean(tail))}
    return _svi_draws(problem, drawn, info, chains, n)


def _svi_draws(
    problem: Problem, drawn: dict[str, Any], info: dict[str, Any], chains: int, n: int
) -> Draws:
    """:func:`_draw`'s draws as :class:`Draws`, their stats, and the info: ``info`` (the fit's)
    then the pool's entries and ``distinct``.
    """
    x, log_q, log_p, log_w, pick = drawn.pop("picked")
    with torch.no_grad():
        stats: dict[str, Any] = {
            "log_q": log_q.reshape(chains, n),
            "log_density": log_p.reshape(chains, n),
            "log_weight": log_w.reshape(chains, n),
        }
        try:
            stats["log_likelihood"] = problem.log_likelihood(x).reshape(chains, n)
        except OptionError:
            pass
    info = {**info, **drawn, "distinct": int(torch.unique(pick).numel())}
    return Draws(x.reshape(chains, n, problem.dim), stats, info)


class SVIState(NamedTuple):
    """The guide being fit.

    :param svi: Pyro's :class:`~pyro.infer.SVI` over the conditioned model and the guide
        (its optimiser holds the guide's parameters and moments; a step updates them in
        place).
    :param guide: the guide :math:`q`, an autoguide.
    :param k: SVI steps taken.
    """

    svi: SVI
    guide: Any
    k: int


class SVIInfo(NamedTuple):
    """One step's diagnostics.

    :param loss: the step's ELBO loss (the negative ELBO estimate), a float.
    """

    loss: float


def kernel(
    problem: Problem,
    steps: int,
    guide: str,
    num_transforms: int,
    hidden: int | None,
    *,
    lr: float,
    num_particles: int,
    bounded: bool,
) -> Kernel:
    """The guide's fit as a :class:`~sedge_pyro.inference.draws.Kernel`: ``init`` draws a
    seed from the generator, seeds torch with it and builds the guide, ``ClippedAdam``
    (decaying tenfold over ``steps``) and ``Trace_ELBO``; ``step`` is one ``SVI.step()``.
    Both draw Pyro's randomness from torch's global generator: run them inside
    :func:`_isolated`, which forks it and scopes the parameter store.
    """
    model = conditioned_model(problem, bounded)

    def init(generator: torch.Generator) -> SVIState:
        seed = int(torch.randint(2**62, (), generator=generator, device=generator.device).item())
        torch.manual_seed(seed)
        if guide == "iaf":
            q = AutoIAFNormal(model, hidden_dim=hidden, num_transforms=num_transforms)
        else:
            centre = problem.train_x.mean(0)
            start = init_to_value(values={"X": problem.to_box(centre) if bounded else centre})
            q = AutoMultivariateNormal(model, init_loc_fn=start, init_scale=0.1)
        q()  # create the guide's parameters now, to move them to the problem's device
        q.to(problem.device)
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": _LR_DECAY ** (1.0 / steps)})
        elbo = Trace_ELBO(
            num_particles=num_particles, vectorize_particles=True, max_plate_nesting=0
        )
        return SVIState(SVI(model, q, optim, elbo), q, 0)

    def step(state: SVIState, generator: torch.Generator) -> tuple[SVIState, SVIInfo]:
        loss = state.svi.step()
        return state._replace(k=state.k + 1), SVIInfo(loss)

    return Kernel(init, step)


@contextlib.contextmanager
def _isolated(problem: Problem) -> Iterator[None]:
    """Run the body under a forked torch RNG, in a private Pyro parameter-store scope, with
    the model's parameters frozen.
    """
    devices = [problem.device] if problem.device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        pyro.get_param_store().scope(),
        _frozen(problem.model),
    ):
        yield


def _draw(
    problem: Problem, guide: Any, total: int, resample: bool, bounded: bool
) -> dict[str, Any]:
    r"""``total`` draws after the fit: from a pool of the guide's (and the prior's) draws,
    resampled by their importance weights where those can be trusted (see the module).

    :returns: the info entries ``ess``, ``ess_fraction``, ``khat``, ``pool``,
        ``prior_draws`` and ``resampled``, and ``"picked"``: the draws ``x``, their
        ``log_q``, ``log_p``, ``log_w`` and the indices ``pick`` into the pool.
    """
    pool = max(total, min(POOL * total, POOL_MAX)) if resample else total
    posterior = guide.get_posterior()
    # the guide's draws alone are at least the output, for when the weights fail
    n_prior = min(round(DEFENSIVE * pool), pool - total) if resample else 0
    x, log_q, log_p, n_prior = _pool(problem, posterior, pool, n_prior, bounded)
    log_w = log_p - log_q
    diagnostics = importance_diagnostics(log_w)
    khat = diagnostics["khat"]
    # with the prior in the pool every weight is at most max p(z | x) / a: their
    # variance is finite whatever k-hat estimates, and the pool is resampled
    resampled = bool(resample and (n_prior > 0 or (math.isfinite(khat) and khat < KHAT_MAX)))
    if resampled:
        finite = torch.isfinite(log_w)
        w = torch.where(finite, log_w - log_w[finite].max(), -torch.inf).exp()
        pick = torch.multinomial(w, total, replacement=True)
    else:
        pick = torch.arange(total, device=x.device)
    picked = (x[pick], log_q[pick], log_p[pick], log_w[pick], pick)
    return {
        **diagnostics,
        "pool": pool,
        "prior_draws": n_prior,
        "resampled": resampled,
        "picked": picked,
    }


def _check(
    steps: int,
    lr: float,
    num_particles: int,
    guide: str,
    num_transforms: int,
    hidden: int | None,
    bounded: bool,
    resample: bool,
) -> None:
    """``sample_svi``'s option checks."""
    whole("steps", steps)
    whole("num_particles", num_particles)
    whole("num_transforms", num_transforms)
    whole("hidden", hidden, none_ok=True)
    number("lr", lr)
    choice("guide", guide, GUIDES)
    flag("bounded", bounded)
    flag("resample", resample)
