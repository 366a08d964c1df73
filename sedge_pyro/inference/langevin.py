r"""The ``langevin`` sampler: Langevin dynamics on the SEDGE posterior :math:`p(x \mid Z_T = z)`.

The SEDGE model's posterior over the features is :math:`\pi(x) \propto p(x)\, \exp \ell(x)`,
the fitted prior times the target's likelihood :math:`\ell(x) = \sum_{i \in T} \log p(z_i \mid
V_i)` (Eq. (4)'s per-spec terms, Sec. 4.2's "maximize the conditional probability p(Z | X)").
Algorithm 1 ascends :math:`\ell` from training rows and finds modes; this sampler adds the
prior and noise so that the draws follow :math:`\pi` itself. Three kinds:

* ``"mala"`` -- the Metropolis-adjusted Langevin algorithm (Roberts and Tweedie 1996) with a
  diagonal preconditioner :math:`M`: the proposal :math:`x' = x + \tfrac h2 M \nabla \log
  \pi(x) + \sqrt h\, M^{1/2} \xi` is accepted with probability
  :math:`\min\{1, \pi(x') q(x \mid x') / \pi(x) q(x' \mid x)\}`, the proposal densities using
  the gradient at both ends, so :math:`\pi` is invariant exactly;
* ``"ula"`` -- the same move always accepted (unadjusted Langevin): cheaper to reason about,
  biased by :math:`O(h)`;
* ``"annealed"`` -- annealed Langevin dynamics (Song and Ermon 2019, Algorithm 1) with the
  scores of a :class:`~sedge_pyro.models.DiffusionPrior` plus :math:`\nabla \ell`, for
  priors that have no density (see :func:`_annealed`).

**Batched design (mala, ula).** Every chain runs ``walkers`` independent walkers, all
``chains x walkers`` of them one tensor; by default as many as the chain's draws (up to
:data:`MAX_WALKERS`), so that after warmup each walker records one or a few draws and the
draws are nearly independent. Few long walkers are the other way to spend the same moves,
and a worse one here: a walker's draws are correlated, so 16 walkers of 63 draws each carry
the bias of 16 starting points and a few hundred effective draws (the paper's task, 1,000
draws, 6 seeds: MMD 0.4-4.0x the floor with 16 walkers, 0.25-1.0x with 1,000, in the same
time: a step of 1,000 walkers costs little more than one of 16). The walkers start at an
approximate draw of the posterior itself: prior draws resampled by the target's likelihood
(:meth:`~sedge_pyro.inference.target.Problem.start_points`; training rows weighted by the
likelihood, Algorithm 1 step 2(a), where the prior cannot be sampled), so they begin
dispersed over where the target is possible under the fitted model, and warmup has little
to travel (started on training rows, which the selection kept out of the target's region,
walkers on the grid's ``tanh`` variant stayed in a pocket of the posterior for thousands of
moves). All chains' walkers come from one resampled pool; the step size :math:`h` and the
preconditioner are adapted *per chain* during ``warmup`` from that chain's own walkers, so
the chains are independent replicas of the whole procedure and R-hat over chains is
meaningful. After warmup every walker records :math:`\lceil n / walkers \rceil` draws,
``thin`` moves apart (by default 1 when that is one draw, else :data:`SPACING`); a chain's
``n`` draws are its walkers' trajectories laid end to end (walker after walker, so the draws
ArviZ sees as neighbours are neighbours in time and its ESS is not inflated).

**Adaptation (step_size=None).** Dual averaging (Hoffman and Gelman 2014, Algorithm 5) of
:math:`\log h` towards the chain's mean acceptance probability ``target_accept`` (0.574,
the optimal MALA rate of Roberts and Rosenthal 1998), in two windows: in the first half of
warmup with :math:`M = I`, after which :math:`M` is set to the per-feature variance of the
chain's walkers over the second quarter of warmup, and the step is adapted again in the
second half. ``ula`` adapts with Metropolis-adjusted moves too (ULA has no acceptance rate
to tune), towards ``target_accept=0.98`` by default, then samples without correction. MALA's
acceptance is a poor proxy for ULA's bias (it stays high while the bias is already
visible), hence the strict default: on the 3-d linear-Gaussian posterior of the tests ULA's
variances came out 1-4% too large at 0.98 (step about 0.05, 7x smaller than MALA's) and
9-10% too large at 0.9.

References:
* Roberts and Tweedie, Exponential convergence of Langevin distributions and their discrete
  approximations, Bernoulli 1996.
* Roberts and Rosenthal, Optimal scaling of discrete approximations to Langevin diffusions,
  JRSS B 1998.
* Hoffman and Gelman, The No-U-Turn sampler, JMLR 2014 (dual averaging, Algorithm 5).
* Song and Ermon, Generative modeling by estimating gradients of the data distribution,
  NeurIPS 2019 (annealed Langevin dynamics, Algorithm 1).
* Jalal et al., Robust compressed sensing MRI with deep generative priors, NeurIPS 2021
  (annealed Langevin with a likelihood term).
* The SEDGE paper: Eq. (4), Sec. 4.2, App. C Algorithm 1 (initialisation from training rows).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from sedge_pyro.errors import OptionError
from sedge_pyro.inference.draws import Draws, check_finite
from sedge_pyro.inference.target import Problem
from sedge_pyro.models.priors import DiffusionPrior
from sedge_pyro.options import choice, flag, fraction, number, whole

__all__ = [
    "KINDS",
    "MAX_WALKERS",
    "SPACING",
    "LangevinInfo",
    "LangevinState",
    "init",
    "sample_langevin",
    "step",
]

KINDS = ("mala", "ula", "annealed")
#: default acceptance targets of the step-size adaptation
_TARGET_ACCEPT = {"mala": 0.574, "ula": 0.98}
#: walkers per chain by default: one per draw up to this many (a larger ``n`` records
#: ``ceil(n / MAX_WALKERS)`` draws per walker)
MAX_WALKERS = 1024
#: moves between a walker's recorded draws by default when it records several (``n`` over
#: the walkers): one MALA move is rejected about 43% of the time at the adapted rate, so
#: neighbouring moves as draws are often exact copies (measured: 2,000 draws of 1,024
#: walkers on the paper's task, 21.6% of them repeated rows with thin=1, 0.5% with 20, for
#: 40 more moves than the 500 of warmup)
SPACING = 20
#: first step size tried by the adaptation, in normalised units
_INITIAL_STEP = 0.1
#: warmup needed before a preconditioner is estimated (shorter: step size only)
_MIN_WARMUP_METRIC = 40
#: default epsilon of annealed Langevin: the step at noise level sigma is epsilon * sigma^2
_ANNEALED_EPSILON = 0.1

LogDensityGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------- the kernel


class LangevinState(NamedTuple):
    r"""Walkers and what the next move needs at their positions.

    :param x: positions, shape ``(B, d)``.
    :param log_density: :math:`\log \pi(x)`, shape ``(B,)``.
    :param grad: :math:`\nabla \log \pi(x)`, shape ``(B, d)``.
    """

    x: torch.Tensor
    log_density: torch.Tensor
    grad: torch.Tensor


class LangevinInfo(NamedTuple):
    """Diagnostics of one move, each of shape ``(B,)``.

    :param accept_prob: the Metropolis acceptance probability (``ula``: what it would have
        been; 0 where the proposal's density is not finite).
    :param accepted: whether the walker moved.
    """

    accept_prob: torch.Tensor
    accepted: torch.Tensor


def init(x: torch.Tensor, fn: LogDensityGrad) -> LangevinState:
    """The state at positions ``x`` (B, d); ``fn`` returns ``(log pi, grad log pi)``."""
    lp, g = fn(x)
    return LangevinState(x, lp, g)


def _log_q(to: torch.Tensor, frm: LangevinState, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    r""":math:`\log q(to \mid frm)` up to a constant shared by both directions."""
    r = to - frm.x - 0.5 * h * m * frm.grad
    return -0.5 * (r * r / (h * m)).sum(-1)


def step(
    state: LangevinState,
    fn: LogDensityGrad,
    h: torch.Tensor,
    m: torch.Tensor,
    generator: torch.Generator,
    *,
    adjust: bool = True,
) -> tuple[LangevinState, LangevinInfo]:
    r"""One (preconditioned) Langevin move of every walker.

    :param state: the walkers.
    :param fn: ``x -> (log pi(x), grad)``.
    :param h: step sizes, broadcasting to ``(B, 1)``.
    :param m: diagonal preconditioner :math:`M`, broadcasting to ``(B, d)``.
    :param generator: draws the noise and the Metropolis uniforms.
    :param adjust: Metropolis-adjust the move (MALA) or not (ULA).
    :returns: the new state and the move's :class:`LangevinInfo`.
    """
    x = state.x
    noise = _randn(x.shape, x, generator)
    prop = x + 0.5 * h * m * state.grad + (h * m).sqrt() * noise
    # a non-finite proposal is not evaluated (distributions reject NaN arguments): MALA
    # rejects it below, ULA passes it on for the caller's finiteness check to report
    bad = ~torch.isfinite(prop).all(-1, keepdim=True)
    lp, g = fn(torch.where(bad, x, prop))
    new = LangevinState(prop, lp, g)
    log_ratio = lp - state.log_density + _log_q(x, new, h, m) - _log_q(prop, state, h, m)
    # a proposal with a NaN or -inf density is never accepted by MALA
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf, posinf=0.0)
    log_ratio = log_ratio.masked_fill(bad.squeeze(-1), -math.inf)
    accept_prob = log_ratio.clamp(max=0.0).exp()
    if not adjust:
        ones = torch.ones_like(accept_prob, dtype=torch.bool)
        return new, LangevinInfo(accept_prob, ones)
    u = _rand(accept_prob.shape, x, generator)
    accepted = u < accept_prob
    keep = accepted.unsqueeze(-1)
    out = LangevinState(
        torch.where(keep, prop, x),
        torch.where(accepted, lp, state.log_density),
        torch.where(keep, g, state.grad),
    )
    return out, LangevinInfo(accept_prob, accepted)


class _DualAveraging:
    """Hoffman and Gelman (2014), Algorithm 5: one step size per chain."""

    def __init__(self, h0: torch.Tensor, target: float) -> None:
        self.target = target
        self.mu = (10 * h0).log()
        self.log_h = h0.log()
        self.log_h_bar = torch.zeros_like(h0)
        self.H_bar = torch.zeros_like(h0)
        self.t = 0

    def update(self, accept: torch.Tensor) -> torch.Tensor:
        """Move towards the target given the chains' mean acceptance; returns the next h."""
        gamma, t0, kappa = 0.05, 10.0, 0.75
        self.t += 1
        t = self.t
        w = 1.0 / (t + t0)
        self.H_bar = (1 - w) * self.H_bar + w * (self.target - accept)
        self.log_h = self.mu - math.sqrt(t) / gamma * self.H_bar
        eta = t**-kappa
        self.log_h_bar = eta * self.log_h + (1 - eta) * self.log_h_bar
        return self.log_h.exp()

    @property
    def final(self) -> torch.Tensor:
        """The averaged step size, used after warmup."""
        return self.log_h_bar.exp()


# --------------------------------------------------------------------------- the sampler


def sample_langevin(
    problem: Problem,
    n: int,
    *,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    kind: str = "mala",
    step_size: float | None = None,
    warmup: int = 500,
    walkers: int | None = None,
    thin: int | None = None,
    target_accept: float | None = None,
    precondition: bool = True,
    levels: int = 50,
    steps_per_level: int = 50,
    sigma_max: float = 1.0,
    refine: int | None = None,
    bounded: bool = True,
) -> Draws:
    r"""Draw ``chains x n`` feature vectors from :math:`p(x) \exp \ell(x)` by Langevin dynamics.

    :param problem: the fitted model and compiled target.
    :param n: draws per chain.
    :param kind: ``"mala"``, ``"ula"`` or ``"annealed"`` (see the module docstring).
    :param step_size: mala/ula: the step :math:`h` in normalised units, fixed (no adaptation,
        :math:`M = I`); ``None``: adapted per chain during warmup. annealed: :math:`\epsilon`
        in the step :math:`\alpha_i = \epsilon \sigma_i^2` (``None``: 0.1).
    :param warmup: mala/ula: moves before recording (adaptation when ``step_size`` is
        ``None``, which needs ``warmup >= 1``).
    :param walkers: mala/ula: parallel walkers per chain (``None``: ``min(n,``
        :data:`MAX_WALKERS` ``)``).
    :param thin: mala/ula: moves per recorded draw (``None``: 1 when every walker records
        one draw, else :data:`SPACING`, so that a walker's draws are not its neighbouring,
        often rejected, moves).
    :param target_accept: mala/ula: acceptance rate the adaptation aims at (``None``: 0.574
        for mala, 0.98 for ula).
    :param precondition: mala/ula: adapt a diagonal preconditioner during warmup (needs
        ``step_size=None`` and ``warmup >= 40``).
    :param levels: annealed: number of noise levels.
    :param steps_per_level: annealed: Langevin moves per level.
    :param sigma_max: annealed: the largest noise level, in the diffusion's coordinates
        (normalised units; for a diffusion fit for the run, the box's logit coordinates).
    :param refine: annealed: Metropolis-adjusted moves on the model's own posterior after
        the last level (step size and preconditioner adapted over them, as mala's warmup),
        from the annealed draws; ``None``: ``warmup`` where the model's prior has a density
        (a diffusion fit for the run, :func:`~sedge_pyro.inference.selection.
        diffusion_surrogate`), else 0 (a model fit with ``prior="diffusion"``: no density).
    :param bounded: mala/ula: move in the unconstrained coordinates of the training
        features' range, barely widened (:meth:`~sedge_pyro.inference.target.Problem.box`), so
        every draw stays where the fitted prior and likelihoods were fit; the target is the
        same posterior restricted to that box. ``False``: move in the features themselves,
        unbounded (the fitted tails decide how far draws go).
    :returns: :class:`Draws`; stats ``log_density`` (mala/ula, else ``log_likelihood``),
        ``accept_prob``, ``accepted`` and ``step_size`` per draw; info ``kind``,
        ``accept_rate`` and ``step_size`` per chain, ``warmup_seconds``, ``walkers``.
    :raises OptionError: for an unknown kind or an out-of-range option; mala/ula with a prior
        without a density; annealed without a diffusion prior.
    :raises SamplingError: when a walker becomes NaN or infinite (naming the step).

    >>> import sedge_pyro as sp  # doctest: +SKIP
    >>> s = model.sample({"z1": 1.0}, n=1000, method="langevin", chains=4)  # doctest: +SKIP
    """
    _check_options(
        kind, step_size, warmup, walkers, thin, target_accept, levels, steps_per_level, sigma_max
    )
    flag("bounded", bounded)
    whole("refine", refine, 0, none_ok=True)
    if kind == "annealed":
        return _annealed(
            problem,
            n,
            chains,
            generator,
            progress,
            step_size,
            levels,
            steps_per_level,
            sigma_max,
            refine,
        )
    return _walk(
        problem,
        n,
        chains,
        generator,
        progress,
        kind,
        step_size,
        warmup,
        walkers,
        thin,
        target_accept,
        precondition,
        bounded,
    )


def _walk(
    problem: Problem,
    n: int,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    kind: str,
    step_size: float | None,
    warmup: int,
    walkers: int | None,
    thin: int | None,
    target_accept: float | None,
    precondition: bool,
    bounded: bool,
    start: torch.Tensor | None = None,
) -> Draws:
    """Kinds mala and ula (see :func:`sample_langevin`); ``start``: the walkers' first points
    (``chains x walkers`` rows, features), else :meth:`~sedge_pyro.inference.target.Problem.
    start_points`.
    """
    problem.log_prior(problem.train_x[:1])  # OptionError for a prior without a density
    target = _TARGET_ACCEPT[kind] if target_accept is None else float(target_accept)
    dev, d = problem.device, problem.dim
    W = min(int(n), MAX_WALKERS) if walkers is None else int(walkers)
    B = chains * W
    fn = problem.grad_log_density_box if bounded else problem.grad_log_density
    start_x = problem.start_points(B, generator) if start is None else start
    state = init(problem.to_box(start_x) if bounded else start_x, fn)
    check_finite(state.x, "langevin", 0)
    adapt = step_size is None
    h = torch.full((chains, 1, 1), _INITIAL_STEP if adapt else float(step_size), device=dev)
    m = torch.ones(chains, 1, d, device=dev)
    metric = adapt and precondition and warmup >= _MIN_WARMUP_METRIC
    half = warmup // 2 if metric else warmup
    da = _DualAveraging(h.reshape(chains), target) if adapt else None
    s1 = torch.zeros(chains, d, device=dev)
    s2 = torch.zeros(chains, d, device=dev)
    count = 0

    def move(state: LangevinState, adjust: bool, i: int) -> tuple[LangevinState, LangevinInfo]:
        hb = h.expand(chains, W, 1).reshape(B, 1)
        mb = m.expand(chains, W, d).reshape(B, d)
        state, info = step(state, fn, hb, mb, generator, adjust=adjust)
        check_finite(state.x, "langevin", i)
        return state, info

    steps = math.ceil(n / W)
    if thin is None:
        thin = 1 if steps == 1 else SPACING
    total = warmup + steps * thin
    bar = tqdm(total=total, desc=f"langevin ({kind})", disable=not progress, leave=False)
    start = time.perf_counter()
    for i in range(warmup):
        # ula adapts with adjusted moves too: it has no acceptance rate of its own to tune
        state, info = move(state, kind == "mala" or adapt, i + 1)
        if da is not None:
            h = da.update(info.accept_prob.reshape(chains, W).mean(1)).reshape(chains, 1, 1)
            if metric and warmup // 4 <= i < half:
                pos = state.x.reshape(chains, W, d)
                s1 += pos.sum(1)
                s2 += (pos * pos).sum(1)
                count += W
            if metric and i == half - 1:
                mean = s1 / count
                var = (s2 / count - mean * mean).clamp_min(1e-6)
                # the step size is relative to the metric: restart the adaptation on its scale
                m = var.reshape(chains, 1, d) / var.mean(-1).reshape(chains, 1, 1)
                da = _DualAveraging(h.reshape(chains), target)
        bar.update()
    if da is not None:
        h = da.final.reshape(chains, 1, 1)
    warmup_seconds = time.perf_counter() - start

    xs, accept, accepted, lps = [], [], [], []
    for k in range(steps * thin):
        state, info = move(state, kind == "mala", warmup + k + 1)
        if (k + 1) % thin == 0:
            xs.append(state.x)
            accept.append(info.accept_prob)
            accepted.append(info.accepted)
            lps.append(state.log_density)
        bar.update()
    bar.close()

    def arrange(values: list[torch.Tensor]) -> torch.Tensor:
        # (steps, B, ...) -> (chains, walkers * steps, ...), walker after walker
        v = torch.stack(values, 0)
        v = v.reshape(steps, chains, W, *v.shape[2:]).movedim(0, 2)
        return v.reshape(chains, W * steps, *v.shape[3:])[:, :n]

    x = arrange(xs)
    acc = arrange(accept)
    if bounded:
        x = problem.from_box(x)
        with torch.no_grad():
            log_density = problem.log_density(x)
    else:
        log_density = arrange(lps)
    stats = {
        "log_density": log_density,
        "accept_prob": acc,
        "accepted": arrange(accepted),
        "step_size": h.reshape(chains, 1).expand(chains, n),
    }
    info = {
        "kind": kind,
        "accept_rate": acc.mean(1).tolist(),
        "step_size": h.reshape(chains).tolist(),
        "preconditioner": m.reshape(chains, d).tolist(),
        "warmup_seconds": warmup_seconds,
        "walkers": W,
        "thin": thin,
        "steps": steps * thin,
        "bounded": bool(bounded),
    }
    return Draws(x, stats, info)


def _annealed(
    problem: Problem,
    n: int,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    step_size: float | None,
    levels: int,
    steps_per_level: int,
    sigma_max: float,
    refine: int | None = None,
    warmup: int = 500,
) -> Draws:
    r"""Annealed Langevin dynamics (Song and Ermon 2019, Algorithm 1) guided by :math:`\ell`.

    The DDPM's :math:`x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\epsilon` is,
    rescaled, :math:`y = x_t / \sqrt{\bar\alpha_t} = x_0 + \sigma_t \epsilon` with
    :math:`\sigma_t^2 = (1 - \bar\alpha_t) / \bar\alpha_t`, whose density :math:`q_{\sigma_t}`
    (the prior smoothed by :math:`\mathcal N(0, \sigma_t^2 I)`) has the score
    :math:`\nabla_y \log q_{\sigma_t}(y) = \sqrt{\bar\alpha_t}\, s_\theta(\sqrt{\bar\alpha_t}
    y, t)` (:meth:`~sedge_pyro.models.DiffusionPrior.score`). For geometrically spaced levels
    :math:`\sigma_1 > \dots > \sigma_L` (DDPM steps with :math:`\sigma_t \le` ``sigma_max``
    down to :math:`t = 1`), every walker makes ``steps_per_level`` unadjusted moves

    .. math:: y \leftarrow y + \tfrac{\alpha_i}{2}\big(\nabla_y \log q_{\sigma_i}(y) +
        \nabla \ell(y)\big) + \sqrt{\alpha_i}\, \xi, \qquad \alpha_i = \epsilon \sigma_i^2,

    i.e. ULA on :math:`\pi_i \propto q_{\sigma_i} \exp \ell`, which tends to the posterior
    :math:`p(x) \exp \ell(x)` as :math:`\sigma \to 0`. The likelihood is evaluated at the
    noisy point (Jalal et al. 2021 instead widen a linear likelihood by the level's noise;
    a generic likelihood has no closed form for that). Walkers start at random training
    rows plus :math:`\mathcal N(0, \sigma_1^2 I)` noise (Algorithm 1, step 2(a)), or, where
    the model's own prior has a density, at its draws resampled by the likelihood
    (:meth:`~sedge_pyro.inference.target.Problem.start_points`) plus that noise. Every walker
    is one draw (``chains x n`` walkers); there is no Metropolis correction, so the draws
    carry the bias of the last levels' discretisation and of the annealing's lag behind the
    shrinking noise. With exact scores on the tests' 3-d linear-Gaussian posterior and the
    defaults (:math:`\epsilon = 0.1`, 50 moves per level, about 40 levels from
    :math:`\sigma = 1` to 0.016), means were within 0.011 of the truth and variances 2-5% too
    large (at 20 moves per level: 7-10%); more moves per level shrink the lag.

    **Refinement.** Where the model has a prior with a density (the diffusion is then a
    surrogate fit for the run), the annealed walkers end with ``refine`` Metropolis-adjusted
    moves on the model's own posterior :math:`p(x) \exp \ell(x)` (mala, in the box,
    adapted as its warmup; ``chains x min(n, MAX_WALKERS)`` walkers), which remove what the
    surrogate's score error and the unadjusted moves leave (the grid's ``tanh`` variant, one
    fitted model: 2.05x the MMD floor and a satisfaction 0.046 under the Oracle's without,
    0.81x and 0.005 with).
    The annealing still decides where the walkers start; it moves mass between modes, and
    on the grid's two-mode ``sin`` variant not always rightly (one fitted model: 2.97x
    started at training rows, 2.26x at the resampled prior draws; ``mala`` alone 1.11x).
    """
    prior = problem.prior
    if not isinstance(prior, DiffusionPrior):
        raise OptionError(
            f"kind='annealed' needs a diffusion prior (its scores); the model's is "
            f"{type(prior).__name__}: fit with prior='diffusion', or use kind='mala'"
        )
    own = problem.density_prior
    refine = refine_moves(problem, refine, warmup)
    eps = _ANNEALED_EPSILON if step_size is None else float(step_size)
    dev, d = problem.device, problem.dim
    ab = prior.alpha_bar.to(dev)
    sigma = ((1 - ab) / ab).sqrt()
    ts = _levels(sigma, levels, sigma_max)
    B = chains * (min(int(n), MAX_WALKERS) if refine else n)
    train = problem.train_x
    if own is not None:
        # the model's own prior resampled by the likelihood, as mala's walkers start
        with _prior(problem, own):
            start = problem.start_points(B, generator)
    else:
        rows = torch.randint(train.shape[0], (B,), generator=generator, device=generator.device)
        start = train[rows.to(dev)]
    y = problem.to_prior(start) + float(sigma[ts[0]]) * _randn((B, d), train, generator)

    def grad(y: torch.Tensor, t: int) -> torch.Tensor:
        a = ab[t].sqrt()
        with torch.no_grad():
            s = a * prior.score(a * y, t)
        with torch.enable_grad():
            yy = y.detach().requires_grad_(True)
            ll = problem.log_likelihood(problem.from_prior(yy))
            (g,) = torch.autograd.grad(ll.sum(), yy)
        return s + g.detach()

    bar = tqdm(
        total=len(ts) * steps_per_level,
        desc="langevin (annealed)",
        disable=not progress,
        leave=False,
    )
    k = 0
    for t in ts:
        alpha = eps * float(sigma[t]) ** 2
        for _ in range(steps_per_level):
            k += 1
            noise = _randn(y.shape, y, generator)
            y = y + 0.5 * alpha * grad(y, t) + math.sqrt(alpha) * noise
            check_finite(y, "langevin", k)
            bar.update()
    bar.close()
    with torch.no_grad():
        y = problem.from_prior(y)
    annealed = {
        "epsilon": eps,
        "levels": len(ts),
        "sigma_max": float(sigma[ts[0]]),
        "sigma_min": float(sigma[ts[-1]]),
        "annealed_steps": len(ts) * steps_per_level,
    }
    if refine:
        out = refine_walk(problem, n, chains, generator, progress, refine, y)
        info = {**out.info, **annealed, "kind": "annealed", "refine": refine}
        return Draws(out.x, out.stats, info)
    with torch.no_grad():
        ll = problem.log_likelihood(y)
    x = y.reshape(chains, n, d)
    stats = {
        "log_likelihood": ll.reshape(chains, n),
        "step_size": torch.full((chains, n), eps * float(sigma[ts[-1]]) ** 2, device=dev),
    }
    info = {"kind": "annealed", **annealed, "steps": len(ts) * steps_per_level, "refine": 0}
    return Draws(x, stats, info)


def refine_moves(problem: Problem, refine: int | None, default: int) -> int:
    """The refining moves a run on ``problem`` makes: ``default`` where the diffusion is a
    surrogate of a prior with a density (``problem.density_prior``), else 0, when ``refine``
    is ``None``; ``refine`` itself otherwise.

    :raises OptionError: for ``refine > 0`` without a density to refine on.
    """
    own = problem.density_prior
    if refine is None:
        return default if own is not None else 0
    if refine and own is None:
        raise OptionError(
            f"refine={refine}: the model's prior ({type(problem.prior).__name__}) has no "
            "density to refine on; expected refine=0"
        )
    return int(refine)


def refine_walk(
    problem: Problem,
    n: int,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    moves: int,
    start: torch.Tensor,
) -> Draws:
    """``moves`` Metropolis-adjusted Langevin moves (mala, in the box, step size and
    preconditioner adapted over them as mala's warmup) on the model's own posterior, the
    prior being ``problem.density_prior``, from ``start`` (``chains x min(n, MAX_WALKERS)``
    rows, features): the refinement that ends annealed Langevin and ``smc`` on a surrogate
    diffusion.
    """
    own = problem.density_prior
    if own is None:
        raise OptionError("no prior with a density to refine on; expected refine=0")
    with _prior(problem, own):
        return _walk(
            problem,
            int(n),
            int(chains),
            generator,
            progress,
            kind="mala",
            step_size=None,
            warmup=int(moves),
            walkers=None,
            thin=None,
            target_accept=None,
            precondition=True,
            bounded=True,
            start=start,
        )


@contextlib.contextmanager
def _prior(problem: Problem, prior: Any) -> Iterator[None]:
    """Run the body with ``prior`` (in feature coordinates) as the model's prior."""
    model = problem.model
    saved, in_box = model.components["prior"], problem.prior_in_box
    model.components["prior"] = prior
    problem.prior_in_box = False
    try:
        yield
    finally:
        model.components["prior"] = saved
        problem.prior_in_box = in_box


def _levels(sigma: torch.Tensor, levels: int, sigma_max: float) -> list[int]:
    r"""DDPM steps whose noise levels are near a geometric grid from ``sigma_max`` down to
    :math:`\sigma_1`, distinct, in decreasing order.
    """
    T = sigma.shape[0] - 1
    below = [t for t in range(1, T + 1) if float(sigma[t]) <= sigma_max]
    top = max(below) if below else 1
    grid = torch.logspace(
        math.log10(float(sigma[top])), math.log10(float(sigma[1])), int(levels), dtype=torch.float64
    )
    s = sigma[1 : top + 1].double()
    picked = [int((s - g).abs().argmin()) + 1 for g in grid]
    return sorted(set(picked), reverse=True)


# --------------------------------------------------------------------------- helpers


def _check_options(
    kind: str,
    step_size: float | None,
    warmup: int,
    walkers: int | None,
    thin: int | None,
    target_accept: float | None,
    levels: int,
    steps_per_level: int,
    sigma_max: float,
) -> None:
    choice("kind", kind, KINDS)
    number("step_size", step_size, none_ok=True)
    whole("warmup", warmup, 0)
    whole("walkers", walkers, none_ok=True)
    whole("thin", thin, none_ok=True)
    for name, value in (
        ("levels", levels),
        ("steps_per_level", steps_per_level),
    ):
        whole(name, value)
    if kind != "annealed" and step_size is None and warmup < 1:
        raise OptionError(
            "warmup=0 with step_size=None: the step size is adapted during warmup; expected "
            "warmup >= 1 or a fixed step_size"
        )
    fraction("target_accept", target_accept, none_ok=True)
    number("sigma_max", sigma_max)


def _randn(shape: Any, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    z = torch.randn(tuple(shape), dtype=like.dtype, device=generator.device, generator=generator)
    return z.to(like.device)


def _rand(shape: Any, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(tuple(shape), dtype=like.dtype, device=generator.device, generator=generator)
    return u.to(like.device)
