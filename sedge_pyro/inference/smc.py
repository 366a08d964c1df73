r"""The ``smc`` sampler: twisted diffusion sampling, a particle filter along the reverse chain.

The SEDGE posterior over the features is :math:`\pi(x_0) \propto p_\theta(x_0)\, \exp
\ell(x_0)`, the DDPM prior times the target's likelihood :math:`\ell(x) = \sum_{i \in T}
\log p(z_i \in A_i \mid V_i)` (Eq. (4)'s per-spec terms). ``dps`` (Algorithm 2) follows it
only approximately: it replaces :math:`p(z \mid x_t)` by :math:`p(z \mid \hat x_0(x_t))` and
never corrects the error. Twisted diffusion sampling (Wu, Trippe, Naesseth, Blei and
Cunningham 2023, Algorithm 1) keeps DPS's guess as a *proposal* and corrects it with
importance weights, so the draws follow :math:`\pi` as the particles grow (sequential Monte
Carlo on the extended target :math:`p_\theta(x_{0:T}) \exp \ell(x_0)`):

* **twisting functions** :math:`\log \tilde p_t(z \mid x_t) = \bar\alpha_t^{\kappa} \log
  \frac1m \sum_{j=1}^m \exp \ell(\hat x_0(x_t) + r_t \xi_j)`, :math:`r_t^2 = 1 - \bar
  \alpha_t`: the likelihood averaged over a Gaussian guess of :math:`p(x_0 \mid x_t)` around
  Tweedie's estimate (``smooth`` = :math:`m` points :math:`\xi_j`, drawn once per run;
  Song et al. 2023's Monte Carlo guidance; :math:`m = 0`: DPS's plug-in
  :math:`\ell(\hat x_0)`), tempered by :math:`\bar\alpha_t^{\kappa}` (``temper`` =
  :math:`\kappa`), a likelihood schedule that is flat in pure noise and exact at
  :math:`t = 0`; :math:`\tilde p_0 = \exp \ell` exactly. Any twisting function keeps the
  weights exact; a good one keeps them even. The plug-in one is overconfident at high noise
  (it ignores how little :math:`x_t` says about :math:`x_0`): particles were resampled on
  the strength of a guess the later steps contradicted, and on the tests' linear-Gaussian
  posterior (exact scores, 2,000 draws, 8 seeds) the draws' means scattered by 0.06-0.11
  around the truth, against 0.01-0.02 with the defaults :math:`m = 8`, :math:`\kappa = 2`
  (:math:`\kappa = 1`: 0.02-0.03; :math:`m = 0, \kappa = 2`: 0.02-0.03);
* **proposal** from :math:`x_t` to the next step :math:`x_s`: the prior's Gaussian step
  :math:`\mathcal N(\mu_t, \beta I)` shifted by :math:`\beta \nabla_{x_t} \log \tilde p_t`
  (the conditional score's DPS estimate times the step's variance: a guidance scale set by
  the diffusion's own noise, not a constant), the shift's norm capped at ``max_shift``
  :math:`\sqrt{\beta d}` so that an inaccurate gradient at a noisy step cannot throw a
  particle far (any proposal keeps the weights exact);
* **weights** :math:`w_s = \dfrac{p_\theta(x_s \mid x_t)\, \tilde p_s(z \mid x_s)}
  {q(x_s \mid x_t, z)\, \tilde p_t(z \mid x_t)}`, from :math:`w_T = \tilde p_T(z \mid x_T)`;
  the last step (:math:`t = 1`, deterministic in the prior) is taken unguided, weighted by
  :math:`\exp \ell(x_0) / \tilde p_1(z \mid x_1)`;
* **resampling** (systematic; Douc, Cappé and Moulines 2005) whenever the effective sample
  size :math:`(\sum w)^2 / \sum w^2` falls under ``ess_threshold`` times the particles, and
  at the end: the ``n`` draws are a systematic resample of the final weighted particles.

Each chain is its own particle system (``particles`` of them), so the chains are independent
runs of the whole procedure. The draws are exact in the limit of many particles for the
DDPM's own :math:`p_\theta`; with few particles, or a twisting function far from the true
:math:`p(z \mid x_t)`, the final weights concentrate on few particles: ``info["ess"]`` (the
final weights' effective sample size per chain) and ``info["distinct"]`` say how many
different draws the ``n`` rest on, and the verdict warns when it is under
:data:`~sedge_pyro.inference.verdict.ESS_MIN`. ``info["ess_path"]`` holds the smallest ESS
over chains at each step.

Kernels follow ``init(...) -> SMCState`` / ``step(state, ...) -> (SMCState, SMCInfo)``;
:func:`sample_smc` is the loop the registry of :func:`~sedge_pyro.inference.sample` calls.

References:
* Wu, Trippe, Naesseth, Blei and Cunningham, Practical and Asymptotically Exact Conditional
  Sampling in Diffusion Models, NeurIPS 2023 (twisted diffusion sampler, Algorithm 1).
* Chung, Kim, Mccann, Klasky and Ye, Diffusion Posterior Sampling for General Noisy Inverse
  Problems, ICLR 2023 (the twisting function's :math:`\hat x_0`).
* Song, Zhang, Yin, Mardani, Liu, Kautz, Chen and Vahdat, Loss-Guided Diffusion Models for
  Plug-and-Play Controllable Generation, ICML 2023 (Monte Carlo over :math:`p(x_0 \mid
  x_t)`).
* Douc, Cappé and Moulines, Comparison of resampling schemes for particle filtering, ISPA
  2005 (systematic resampling).
* The SEDGE paper, App. C, Algorithm 2 (the DDPM reverse chain it builds on).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from sedge_pyro.errors import OptionError, SamplingError
from sedge_pyro.inference.dps import reverse_steps
from sedge_pyro.inference.draws import Draws, Kernel, check_finite
from sedge_pyro.inference.mala import MAX_WALKERS
from sedge_pyro.inference.refine import refine_moves, refine_walk
from sedge_pyro.inference.target import Problem
from sedge_pyro.models.priors import DiffusionPrior
from sedge_pyro.options import fraction, number, whole

__all__ = [
    "MIN_PARTICLES",
    "SMCInfo",
    "SMCState",
    "init",
    "kernel",
    "sample_smc",
    "step",
]

#: particles per chain by default: as many as the draws, at least this many
MIN_PARTICLES = 1024
#: Metropolis-adjusted moves that end a run on a surrogate diffusion by default
_REFINE = 500
#: a twisting value under this is taken as this (an impossible particle keeps weight ~0
#: without turning the weight ratios into inf - inf)
_FLOOR = -1e6


class SMCState(NamedTuple):
    r"""The particles at step ``schedule[i]``.

    :param x: particles :math:`x_t`, shape ``(chains, particles, d)``.
    :param log_w: log importance weights, ``(chains, particles)``.
    :param twist: :math:`\log \tilde p_t(z \mid x_t)`, ``(chains, particles)``.
    :param grad: its gradient in :math:`x_t`, like ``x``.
    :param eps: the prior's :math:`\epsilon_\theta(x_t, t)`, like ``x``.
    :param i: the index of ``t`` in the schedule.
    :param log_evidence: the running estimate of :math:`\log p(z)` per chain.
    :param resamples: how many times the particles were resampled.
    :param xi: the smoothing's standard normal points ``(smooth, d)`` (see :func:`_xi`).
    """

    x: torch.Tensor
    log_w: torch.Tensor
    twist: torch.Tensor
    grad: torch.Tensor
    eps: torch.Tensor
    i: int
    log_evidence: torch.Tensor
    resamples: int
    xi: torch.Tensor


class SMCInfo(NamedTuple):
    """One step's diagnostics.

    :param t: the diffusion step moved from.
    :param ess: the effective sample size per chain before any resampling, ``(chains,)``.
    :param resampled: whether the particles were resampled before the move.
    """

    t: int
    ess: torch.Tensor
    resampled: bool


def _twist(
    problem: Problem, x: torch.Tensor, t: int, xi: torch.Tensor, temper: float
) -> tuple[torch.Tensor, ...]:
    r""":math:`\log \tilde p_t(z \mid x_t)`, its gradient in :math:`x_t`, and
    :math:`\epsilon_\theta(x_t, t)` (see :func:`sample_smc`).
    """
    prior = problem.prior
    ab = float(prior.alpha_bar[t])
    with torch.enable_grad():
        xt = x.detach().requires_grad_(True)
        eps = prior.eps(xt, t)
        x0 = prior.predict_x0(xt, t, eps)
        if len(xi):
            pts = x0.unsqueeze(-2) + math.sqrt(1.0 - ab) * xi.to(x0)
            ll = _floor(problem.log_likelihood(problem.from_prior(pts)))
            ll = torch.logsumexp(ll, -1) - math.log(len(xi))
        else:
            ll = _floor(problem.log_likelihood(problem.from_prior(x0)))
        ll = ab**temper * ll
        (g,) = torch.autograd.grad(ll.sum(), xt)
    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    return ll.detach(), g.detach(), eps.detach()


def _floor(ll: torch.Tensor) -> torch.Tensor:
    """Log-likelihoods with NaN and values under :data:`_FLOOR` set to it."""
    return torch.nan_to_num(ll, nan=_FLOOR, neginf=_FLOOR).clamp_min(_FLOOR)


def _exact(problem: Problem, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\ell(x_0)`, floored like :func:`_twist`."""
    with torch.no_grad():
        return _floor(problem.log_likelihood(problem.from_prior(x)))


def ess(log_w: torch.Tensor) -> torch.Tensor:
    r"""The effective sample size :math:`(\sum w)^2 / \sum w^2` over the last axis."""
    w = torch.softmax(log_w, dim=-1)
    return 1.0 / (w * w).sum(-1)


def systematic(log_w: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` indices per chain drawn by systematic resampling of weights ``exp(log_w)``
    ``(chains, particles)``: one uniform per chain, ``k`` evenly spaced points through the
    weights' cumulative sum.
    """
    w = torch.softmax(log_w.double(), dim=-1)
    cdf = w.cumsum(-1)
    cdf[..., -1] = 1.0
    u = torch.rand(
        (w.shape[0], 1), generator=generator, device=generator.device, dtype=torch.float64
    ).to(w.device)
    points = (u + torch.arange(k, device=w.device, dtype=torch.float64)) / k
    return torch.searchsorted(cdf, points).clamp_max(w.shape[-1] - 1)


def _take(v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``v[c, idx[c]]`` for every chain ``c``."""
    if v.dim() == 2:
        return torch.gather(v, 1, idx)
    return torch.gather(v, 1, idx.unsqueeze(-1).expand(*idx.shape, v.shape[-1]))


def _xi(problem: Problem, smooth: int, generator: torch.Generator) -> torch.Tensor:
    """``smooth`` standard normal points, drawn once per run and shared by every particle and
    step (common random numbers: the twisting function stays one smooth deterministic
    function of :math:`(x_t, t)`; fresh points at every step put their Monte Carlo noise into
    the weights and resampled five times as often on the tests' Gaussian model).
    """
    z = torch.randn(
        (smooth, problem.dim), generator=generator, device=generator.device, dtype=problem.dtype
    )
    return z.to(problem.device)


def init(
    problem: Problem,
    chains: int,
    particles: int,
    generator: torch.Generator,
    *,
    smooth: int = 0,
    temper: float = 0.0,
) -> SMCState:
    r""":math:`x_T \sim \mathcal N(0, I)` with weights :math:`\tilde p_T(z \mid x_T)`."""
    T = problem.prior.T
    x = torch.randn(
        chains * particles,
        problem.dim,
        generator=generator,
        device=generator.device,
        dtype=problem.dtype,
    ).to(problem.device)
    xi = _xi(problem, smooth, generator)
    twist, grad, eps = _twist(problem, x, T, xi, temper)
    shape = (chains, particles)
    return SMCState(
        x.reshape(*shape, -1),
        twist.reshape(shape).clone(),
        twist.reshape(shape),
        grad.reshape(*shape, -1),
        eps.reshape(*shape, -1),
        0,
        torch.zeros(chains, device=x.device, dtype=x.dtype),
        0,
        xi,
    )


def step(
    state: SMCState,
    problem: Problem,
    schedule: list[int],
    generator: torch.Generator,
    *,
    ess_threshold: float,
    max_shift: float,
    temper: float = 0.0,
) -> tuple[SMCState, SMCInfo]:
    r"""From :math:`x_t` to :math:`x_s` (the next step of ``schedule``, 0 after the last):
    resample if the ESS is low, propose, reweight (see the module docstring).
    """
    prior = problem.prior
    C, K, d = state.x.shape
    t = schedule[state.i]
    s = schedule[state.i + 1] if state.i + 1 < len(schedule) else 0
    x, log_w, twist, grad, eps = state.x, state.log_w, state.twist, state.grad, state.eps
    log_evidence, resamples = state.log_evidence, state.resamples
    # resample before moving: the step's weight ratio then starts from equal weights
    now = ess(log_w)
    resampled = bool((now < ess_threshold * K).any())
    if resampled:
        log_evidence = log_evidence + torch.logsumexp(log_w, -1) - math.log(K)
        idx = systematic(log_w, K, generator)
        x, twist, grad, eps = (_take(v, idx) for v in (x, twist, grad, eps))
        log_w = torch.zeros_like(log_w)
        resamples += 1
    ab_t = float(prior.alpha_bar[t])
    ab_s = float(prior.alpha_bar[s]) if s > 0 else 1.0
    alpha = ab_t / ab_s
    beta = 1.0 - alpha
    # the prior's mean of x_s given x_t (Algorithm 2, step (b).i.B; strided: DDPM posterior)
    mean = (x - beta / math.sqrt(1.0 - ab_t) * eps) / math.sqrt(alpha)
    if s > 0:
        shift = beta * grad
        cap = max_shift * math.sqrt(beta * d)
        norm = shift.norm(dim=-1, keepdim=True)
        shift = shift * (cap / norm.clamp_min(1e-30)).clamp_max(1.0)
        z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(
            x.device
        )
        noise = math.sqrt(beta) * z
        x_s = mean + shift + noise
        # log p(x_s | x_t) - log q(x_s | x_t, z): Gaussians of one variance beta, written
        # without the cancelling |noise|^2 terms (beta is small at the last steps)
        log_ratio = -((2 * noise + shift) * shift).sum(-1) / (2 * beta)
        twist_s, grad_s, eps_s = (
            v.reshape(C, K, *v.shape[1:])
            for v in _twist(problem, x_s.reshape(C * K, d), s, state.xi, temper)
        )
    else:
        # the prior's last step is deterministic: take it unguided, weigh by exp l(x_0)
        x_s = mean
        log_ratio = torch.zeros_like(twist)
        twist_s = _exact(problem, x_s.reshape(C * K, d)).reshape(C, K)
        grad_s, eps_s = torch.zeros_like(x_s), torch.zeros_like(x_s)
    log_w = log_w + log_ratio + twist_s - twist
    log_w = torch.nan_to_num(log_w, nan=-math.inf)
    new = SMCState(
        x_s, log_w, twist_s, grad_s, eps_s, state.i + 1, log_evidence, resamples, state.xi
    )
    return new, SMCInfo(t, now, resampled)


def sample_smc(
    problem: Problem,
    n: int,
    *,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    particles: int | None = None,
    steps: int | None = None,
    ess_threshold: float = 0.5,
    max_shift: float = 1.0,
    smooth: int = 8,
    temper: float = 2.0,
    refine: int | None = None,
) -> Draws:
    r"""Draw ``chains x n`` feature vectors from :math:`p_\theta(x) \exp \ell(x)` by twisted
    diffusion sampling (Wu et al. 2023) over the model's DDPM prior (see the module).

    :param particles: particles per chain (``None``: ``max(n,`` :data:`MIN_PARTICLES` ``)``).
        More particles: closer to the exact posterior, at a cost linear in them.
    :param steps: visit this many evenly spaced diffusion steps (a strided DDPM), or ``None``
        for all ``T`` of the prior.
    :param ess_threshold: resample when the ESS of some chain falls under this fraction of
        its particles.
    :param max_shift: the guidance shift's norm is capped at ``max_shift`` times the step's
        noise :math:`\sqrt{\beta d}` (the weights stay exact whatever the cap).
    :param smooth: points :math:`m` of the twisting function's average (0: the plug-in
        :math:`\ell(\hat x_0)`); the cost of the likelihoods grows with it.
    :param temper: the exponent :math:`\kappa \ge 0` of the twisting function's schedule
        :math:`\bar\alpha_t^\kappa` (0: untempered).
    :param refine: where the model's prior has a density and the diffusion is a surrogate
        fit for the run (:func:`~sedge_pyro.inference.selection.diffusion_surrogate`), the
        particles end with this many Metropolis-adjusted Langevin moves on the model's own
        posterior (resample-move; ``mala`` adapted as its warmup, as annealed Langevin's
        refinement), which remove the surrogate's error; ``None``: 500 there, else 0 (a model
        fit with ``prior="diffusion"`` has no density to refine on).
    :returns: :class:`~sedge_pyro.inference.Draws`; info ``particles``, ``steps``,
        ``resamples``, ``ess`` (the final weights' ESS per chain), ``ess_min`` (their
        smallest), ``ess_path`` (the smallest ESS over chains at each step, before any
        resampling), ``log_evidence`` (an estimate of :math:`\log p(z)` under the model, per
        chain) and ``distinct`` (distinct draws).
    :raises OptionError: for a bad option or a model whose prior is not a
        :class:`~sedge_pyro.models.DiffusionPrior` (a model fit with another prior samples
        a diffusion surrogate, as ``dps`` does).
    :raises SamplingError: when a particle becomes NaN or infinite (names the step ``t``).

    >>> import sedge_pyro as sp
    >>> seen, _, graph = sp.datasets.linear_gaussian(2000, seed=0)
    >>> options = {"T": 20, "hidden": (16,)}
    >>> model = sp.SEDGEModel(graph, prior="diffusion", hidden=(8,), prior_options=options)
    >>> model = model.fit(seen, steps=50, progress=False)
    >>> model.sample({"z1": 1.0}, n=10, method="smc", particles=64).values.shape
    (1, 10, 3)
    """
    o = _options(problem, n, particles, steps, ess_threshold, max_shift, smooth, temper, refine)
    K, schedule = o["particles"], o["schedule"]
    twisted = kernel(problem, int(chains), K, schedule, **o["kernel"])
    state = twisted.init(generator)
    path: list[float] = []
    bar = tqdm(total=len(schedule), desc="smc", disable=not progress, leave=False)
    while state.i < len(schedule):
        state, info = twisted.step(state, generator)
        check_finite(state.x, "smc", f"t={info.t}")
        path.append(float(info.ess.min()))
        bar.update()
    bar.close()
    x, info_out = _final_draws(problem, state, int(n), generator, path)
    info_out = {"particles": K, "steps": len(schedule), **info_out, "refine": o["refine"]}
    if o["refine"]:
        walkers = min(int(n), MAX_WALKERS)
        start = x[:, :walkers].reshape(-1, x.shape[-1])
        out = refine_walk(problem, int(n), int(chains), generator, progress, o["refine"], start)
        info_out.pop("distinct")  # the refined draws' own count is the verdict's
        return Draws(out.x, out.stats, {**out.info, **info_out, "kind": "smc"})
    return Draws(x, {}, info_out)


def kernel(
    problem: Problem,
    chains: int,
    particles: int,
    schedule: list[int],
    *,
    ess_threshold: float,
    max_shift: float,
    smooth: int,
    temper: float,
) -> Kernel:
    """Twisted diffusion sampling as a :class:`~sedge_pyro.inference.draws.Kernel` over
    ``chains x particles``: ``init`` is :func:`init`, ``step`` is :func:`step` along
    ``schedule`` with the options bound (see :func:`sample_smc` for them).
    """

    def init_particles(generator: torch.Generator) -> SMCState:
        return init(problem, chains, particles, generator, smooth=smooth, temper=temper)

    def move(state: SMCState, generator: torch.Generator) -> tuple[SMCState, SMCInfo]:
        return step(
            state,
            problem,
            schedule,
            generator,
            ess_threshold=ess_threshold,
            max_shift=max_shift,
            temper=temper,
        )

    return Kernel(init_particles, move)


def _options(
    problem: Problem,
    n: int,
    particles: int | None,
    steps: int | None,
    ess_threshold: float,
    max_shift: float,
    smooth: int,
    temper: float,
    refine: int | None,
) -> dict[str, Any]:
    """``sample_smc``'s options checked: ``particles`` per chain, the ``schedule``, the
    ``refine`` moves and the options of :func:`kernel` (``"kernel"``).
    """
    prior = problem.prior
    if not isinstance(prior, DiffusionPrior):
        raise OptionError(
            f"method 'smc' needs a DiffusionPrior; the model's prior is {type(prior).__name__}"
        )
    particles = whole("particles", particles, none_ok=True)
    K = max(int(n), MIN_PARTICLES) if particles is None else int(particles)
    steps = whole("steps", steps, none_ok=True)
    threshold = fraction("ess_threshold", ess_threshold)
    cap = number("max_shift", max_shift)
    smooth = whole("smooth", smooth, 0)
    schedule = reverse_steps(prior.T, steps)
    temper = number("temper", temper, positive=False)
    refine = refine_moves(problem, whole("refine", refine, 0, none_ok=True), _REFINE)
    options = {"ess_threshold": threshold, "max_shift": cap, "smooth": smooth, "temper": temper}
    return {"particles": K, "schedule": schedule, "refine": refine, "kernel": options}


def _final_draws(
    problem: Problem, state: SMCState, n: int, generator: torch.Generator, path: list[float]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``n`` draws per chain resampled systematically from the final weighted particles, in
    feature units and shuffled, with the info ``resamples``, ``ess``, ``ess_min``,
    ``ess_path`` (``path``, the smallest ESS at each step), ``log_evidence`` and ``distinct``.

    :raises SamplingError: when every particle of some chain has zero weight.
    """
    K = state.x.shape[1]
    final = ess(state.log_w)
    if not bool(torch.isfinite(state.log_w).any(-1).all()):
        raise SamplingError(
            "method 'smc': every particle of some chain has zero weight: the target is "
            "impossible under the fitted model's likelihoods"
        )
    log_evidence = state.log_evidence + torch.logsumexp(state.log_w, -1) - math.log(K)
    idx = systematic(state.log_w, n, generator)
    # systematic resampling returns the particles in order: shuffle, so that any part of
    # the draws (the first k, a half) is a draw of the whole
    order = torch.rand(idx.shape, generator=generator, device=generator.device).argsort(-1)
    idx = torch.gather(idx, 1, order.to(idx.device))
    x = _take(state.x, idx)
    distinct = sum(int(torch.unique(idx[c]).numel()) for c in range(idx.shape[0]))
    with torch.no_grad():
        x = problem.from_prior(x)
    info = {
        "resamples": state.resamples,
        "ess": [float(e) for e in final],
        "ess_min": float(final.min()),
        "ess_path": path,
        "log_evidence": [float(v) for v in log_evidence],
        "distinct": distinct,
    }
    return x, info
