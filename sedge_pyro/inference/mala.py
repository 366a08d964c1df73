r"""MALA and ULA on the SEDGE posterior :math:`p(x \mid Z_T = z)`: the kernel and the walk of
``langevin``'s kinds ``"mala"`` and ``"ula"`` (:func:`~sedge_pyro.inference.langevin.
sample_langevin` runs them; annealed Langevin is :mod:`~sedge_pyro.inference.annealed`).

The SEDGE model's posterior over the features is :math:`\pi(x) \propto p(x)\, \exp \ell(x)`,
the fitted prior times the target's likelihood :math:`\ell(x) = \sum_{i \in T} \log p(z_i \mid
V_i)` (Eq. (4)'s per-spec terms, Sec. 4.2).

* ``"mala"`` -- the Metropolis-adjusted Langevin algorithm (Roberts and Tweedie 1996) with a
  diagonal preconditioner :math:`M`: the proposal :math:`x' = x + \tfrac h2 M \nabla \log
  \pi(x) + \sqrt h\, M^{1/2} \xi` is accepted with probability
  :math:`\min\{1, \pi(x') q(x \mid x') / \pi(x) q(x' \mid x)\}`, the proposal densities using
  the gradient at both ends, so :math:`\pi` is invariant exactly;
* ``"ula"`` -- the same move always accepted (unadjusted Langevin): cheaper to reason about,
  biased by :math:`O(h)`.

:func:`kernel` binds the problem and returns a :class:`~sedge_pyro.inference.draws.Kernel`
over :class:`WalkState` (the walkers with their chain's step size and preconditioner, which
the adaptation replaces); :func:`walk` is the loop: warmup with dual averaging, then the
recorded moves. The batched design, the start points and the adaptation are described in
:mod:`~sedge_pyro.inference.langevin`.

References:
* Roberts and Tweedie, Exponential convergence of Langevin distributions and their discrete
  approximations, Bernoulli 1996.
* Roberts and Rosenthal, Optimal scaling of discrete approximations to Langevin diffusions,
  JRSS B 1998.
* Hoffman and Gelman, The No-U-Turn sampler, JMLR 2014 (dual averaging, Algorithm 5).
* The SEDGE paper: Eq. (4), Sec. 4.2, App. C Algorithm 1 (initialisation from training rows).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from sedge_pyro.inference.draws import Draws, Kernel, check_finite
from sedge_pyro.inference.target import Problem

__all__ = [
    "MAX_WALKERS",
    "SPACING",
    "LangevinInfo",
    "LangevinState",
    "WalkState",
    "init",
    "kernel",
    "standard_normal",
    "step",
    "walk",
]

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
    noise = standard_normal(x.shape, x, generator)
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


class WalkState(NamedTuple):
    """Every chain's walkers with the chain's step size and preconditioner.

    :param walkers: the :class:`LangevinState` of all ``B = chains x walkers`` walkers,
        chain-major (a chain's walkers are consecutive rows).
    :param h: the step size :math:`h` of each chain, shape ``(chains, 1, 1)``.
    :param m: the diagonal preconditioner :math:`M` of each chain, shape ``(chains, 1, d)``.
    """

    walkers: LangevinState
    h: torch.Tensor
    m: torch.Tensor


def kernel(
    problem: Problem,
    chains: int,
    walkers: int,
    *,
    step_size: float,
    adjust: bool,
    bounded: bool,
    start: torch.Tensor | None = None,
) -> Kernel:
    """MALA (``adjust``) or ULA on the posterior as a :class:`~sedge_pyro.inference.draws.
    Kernel` over :class:`WalkState`.

    ``init`` places ``chains x walkers`` walkers at ``start`` (rows, features), else at
    :meth:`~sedge_pyro.inference.target.Problem.start_points` drawn with the generator, with
    step size ``step_size`` and :math:`M = I`; ``step`` is one :func:`step` of every walker
    with its chain's ``h`` and ``m`` (which an adaptation replaces in the state between
    steps). ``bounded``: the walkers move in the box's unconstrained coordinates.
    """
    fn = problem.grad_log_density_box if bounded else problem.grad_log_density
    dev, d = problem.device, problem.dim
    B = chains * walkers

    def init_walkers(generator: torch.Generator) -> WalkState:
        start_x = problem.start_points(B, generator) if start is None else start
        state = init(problem.to_box(start_x) if bounded else start_x, fn)
        check_finite(state.x, "langevin", 0)
        h = torch.full((chains, 1, 1), float(step_size), device=dev)
        return WalkState(state, h, torch.ones(chains, 1, d, device=dev))

    def move(state: WalkState, generator: torch.Generator) -> tuple[WalkState, LangevinInfo]:
        hb = state.h.expand(chains, walkers, 1).reshape(B, 1)
        mb = state.m.expand(chains, walkers, d).reshape(B, d)
        moved, info = step(state.walkers, fn, hb, mb, generator, adjust=adjust)
        return WalkState(moved, state.h, state.m), info

    return Kernel(init_walkers, move)


def walk(
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
    """Kinds mala and ula (see :func:`~sedge_pyro.inference.langevin.sample_langevin`):
    ``warmup`` moves (adapting the step size and preconditioner when ``step_size`` is
    ``None``), then ``ceil(n / walkers) x thin`` moves, every ``thin``-th recorded. ``start``:
    the walkers' first points (``chains x walkers`` rows, features), else
    :meth:`~sedge_pyro.inference.target.Problem.start_points`.
    """
    problem.log_prior(problem.train_x[:1])  # OptionError for a prior without a density
    target = _TARGET_ACCEPT[kind] if target_accept is None else float(target_accept)
    W = min(int(n), MAX_WALKERS) if walkers is None else int(walkers)
    adapt = step_size is None
    h0 = _INITIAL_STEP if adapt else float(step_size)
    # ula adapts with adjusted moves too: it has no acceptance rate of its own to tune
    options = {"step_size": h0, "bounded": bounded, "start": start}
    warm = kernel(problem, chains, W, adjust=kind == "mala" or adapt, **options)
    run = kernel(problem, chains, W, adjust=kind == "mala", **options)
    state = warm.init(generator)
    steps = math.ceil(n / W)
    if thin is None:
        thin = 1 if steps == 1 else SPACING
    total = warmup + steps * thin
    bar = tqdm(total=total, desc=f"langevin ({kind})", disable=not progress, leave=False)
    began = time.perf_counter()
    metric = adapt and precondition and warmup >= _MIN_WARMUP_METRIC
    state = _warmup(warm, state, generator, bar, warmup, target if adapt else None, metric)
    warmup_seconds = time.perf_counter() - began
    record = _record(run, state, generator, bar, steps * thin, thin, warmup)
    bar.close()
    draws = _walk_draws(problem, n, chains, W, kind, state, record, bounded, thin, steps)
    draws.info["warmup_seconds"] = warmup_seconds
    return draws


def _warmup(
    kern: Kernel,
    state: WalkState,
    generator: torch.Generator,
    bar: Any,
    warmup: int,
    target: float | None,
    metric: bool,
) -> WalkState:
    """``warmup`` moves; with an acceptance ``target``, dual averaging of each chain's step
    size (restarted on the preconditioner's scale once it is set at half of warmup, from the
    walkers' variance over its second quarter, when ``metric``); returns the state with the
    averaged step size.
    """
    chains, _, d = state.m.shape
    W = state.walkers.x.shape[0] // chains
    half = warmup // 2 if metric else warmup
    da = _DualAveraging(state.h.reshape(chains), target) if target is not None else None
    s1 = torch.zeros(chains, d, device=state.m.device)
    s2 = torch.zeros(chains, d, device=state.m.device)
    count = 0
    for i in range(warmup):
        state, info = kern.step(state, generator)
        check_finite(state.walkers.x, "langevin", i + 1)
        if da is not None:
            h = da.update(info.accept_prob.reshape(chains, W).mean(1)).reshape(chains, 1, 1)
            state = state._replace(h=h)
            if metric and warmup // 4 <= i < half:
                pos = state.walkers.x.reshape(chains, W, d)
                s1 += pos.sum(1)
                s2 += (pos * pos).sum(1)
                count += W
            if metric and i == half - 1:
                mean = s1 / count
                var = (s2 / count - mean * mean).clamp_min(1e-6)
                # the step size is relative to the metric: restart the adaptation on its scale
                m = var.reshape(chains, 1, d) / var.mean(-1).reshape(chains, 1, 1)
                state = state._replace(m=m)
                da = _DualAveraging(h.reshape(chains), da.target)
        bar.update()
    if da is not None:
        state = state._replace(h=da.final.reshape(chains, 1, 1))
    return state


class _Record(NamedTuple):
    """The recorded moves: the state after the last, and per recorded move (in time order)
    the positions, acceptance probabilities, acceptances and log-densities of every walker.
    """

    state: WalkState
    xs: list[torch.Tensor]
    accept: list[torch.Tensor]
    accepted: list[torch.Tensor]
    lps: list[torch.Tensor]


def _record(
    kern: Kernel,
    state: WalkState,
    generator: torch.Generator,
    bar: Any,
    moves: int,
    thin: int,
    warmup: int,
) -> _Record:
    """``moves`` moves after warmup, every ``thin``-th recorded."""
    xs, accept, accepted, lps = [], [], [], []
    for k in range(moves):
        state, info = kern.step(state, generator)
        check_finite(state.walkers.x, "langevin", warmup + k + 1)
        if (k + 1) % thin == 0:
            xs.append(state.walkers.x)
            accept.append(info.accept_prob)
            accepted.append(info.accepted)
            lps.append(state.walkers.log_density)
        bar.update()
    return _Record(state, xs, accept, accepted, lps)


def _walk_draws(
    problem: Problem,
    n: int,
    chains: int,
    W: int,
    kind: str,
    adapted: WalkState,
    record: _Record,
    bounded: bool,
    thin: int,
    steps: int,
) -> Draws:
    """The recorded moves as :class:`Draws`: a chain's ``n`` draws are its walkers'
    trajectories laid end to end (walker after walker), with the step size and
    preconditioner the warmup ``adapted``.
    """
    h, m, d = adapted.h, adapted.m, problem.dim

    def arrange(values: list[torch.Tensor]) -> torch.Tensor:
        # (steps, B, ...) -> (chains, walkers * steps, ...), walker after walker
        v = torch.stack(values, 0)
        v = v.reshape(steps, chains, W, *v.shape[2:]).movedim(0, 2)
        return v.reshape(chains, W * steps, *v.shape[3:])[:, :n]

    x = arrange(record.xs)
    acc = arrange(record.accept)
    if bounded:
        x = problem.from_box(x)
        with torch.no_grad():
            log_density = problem.log_density(x)
    else:
        log_density = arrange(record.lps)
    stats = {
        "log_density": log_density,
        "accept_prob": acc,
        "accepted": arrange(record.accepted),
        "step_size": h.reshape(chains, 1).expand(chains, n),
    }
    info = {
        "kind": kind,
        "accept_rate": acc.mean(1).tolist(),
        "step_size": h.reshape(chains).tolist(),
        "preconditioner": m.reshape(chains, d).tolist(),
        "warmup_seconds": math.nan,
        "walkers": W,
        "thin": thin,
        "steps": steps * thin,
        "bounded": bool(bounded),
    }
    return Draws(x, stats, info)


def standard_normal(shape: Any, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal draws of ``shape`` from ``generator``, with ``like``'s dtype and device."""
    z = torch.randn(tuple(shape), dtype=like.dtype, device=generator.device, generator=generator)
    return z.to(like.device)


def _rand(shape: Any, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(tuple(shape), dtype=like.dtype, device=generator.device, generator=generator)
    return u.to(like.device)
