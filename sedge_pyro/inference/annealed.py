r"""Annealed Langevin dynamics (Song and Ermon 2019, Algorithm 1) on the SEDGE posterior, with
the scores of a :class:`~sedge_pyro.models.DiffusionPrior` plus :math:`\nabla \ell`: the kind
``"annealed"`` of ``langevin`` (:func:`~sedge_pyro.inference.langevin.sample_langevin`), for
priors that have no density (see :func:`sample_annealed`).

:func:`kernel` binds the problem, the noise levels and the step and returns a
:class:`~sedge_pyro.inference.draws.Kernel` (``init(generator) -> AnnealedState``,
``step(state, generator) -> (AnnealedState, AnnealedInfo)``, one unadjusted move at the current
level); :func:`sample_annealed` is the loop, ending with the Metropolis-adjusted refinement of
:func:`~sedge_pyro.inference.refine.refine_walk` where the model's prior has a density.

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

References:
* Song and Ermon, Generative modeling by estimating gradients of the data distribution,
  NeurIPS 2019 (annealed Langevin dynamics, Algorithm 1).
* Jalal et al., Robust compressed sensing MRI with deep generative priors, NeurIPS 2021
  (annealed Langevin with a likelihood term).
* The SEDGE paper: App. C Algorithm 1, step 2(a) (initialisation from training rows).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from sedge_pyro.errors import OptionError
from sedge_pyro.inference.draws import Draws, Kernel, check_finite
from sedge_pyro.inference.mala import MAX_WALKERS, standard_normal
from sedge_pyro.inference.refine import prior_swapped, refine_moves, refine_walk
from sedge_pyro.inference.target import Problem
from sedge_pyro.models.priors import DiffusionPrior

__all__ = ["AnnealedInfo", "AnnealedState", "kernel", "sample_annealed"]

#: default epsilon of annealed Langevin: the step at noise level sigma is epsilon * sigma^2
EPSILON = 0.1


class AnnealedState(NamedTuple):
    """The walkers of annealed Langevin.

    :param y: positions in the diffusion's coordinates, shape ``(walkers, d)``.
    :param k: moves taken (the level is ``levels[k // steps_per_level]``).
    """

    y: torch.Tensor
    k: int


class AnnealedInfo(NamedTuple):
    r"""One move's diagnostics.

    :param t: the DDPM step whose noise level :math:`\sigma_t` the move used.
    :param step_size: the move's step :math:`\alpha = \epsilon \sigma_t^2`.
    """

    t: int
    step_size: float


def kernel(
    problem: Problem, walkers: int, levels: list[int], *, epsilon: float, steps_per_level: int
) -> Kernel:
    r"""Annealed Langevin as a :class:`~sedge_pyro.inference.draws.Kernel` over ``walkers``.

    ``init``: walkers at the model's own prior resampled by the likelihood where it has a
    density (``problem.density_prior``), else at random training rows, plus
    :math:`\mathcal N(0, \sigma_1^2 I)` noise; ``step``: one unadjusted move at the level of
    move ``k``, ``steps_per_level`` moves per DDPM step of ``levels`` (see
    :func:`sample_annealed`).
    """
    prior = problem.prior
    ab = prior.alpha_bar.to(problem.device)
    sigma = ((1 - ab) / ab).sqrt()
    train = problem.train_x

    def init(generator: torch.Generator) -> AnnealedState:
        own = problem.density_prior
        if own is not None:
            # the model's own prior resampled by the likelihood, as mala's walkers start
            with prior_swapped(problem, own):
                start = problem.start_points(walkers, generator)
        else:
            idx = torch.randint(
                train.shape[0], (walkers,), generator=generator, device=generator.device
            )
            start = train[idx.to(problem.device)]
        noise = standard_normal((walkers, problem.dim), train, generator)
        return AnnealedState(problem.to_prior(start) + float(sigma[levels[0]]) * noise, 0)

    def grad(y: torch.Tensor, t: int) -> torch.Tensor:
        a = ab[t].sqrt()
        with torch.no_grad():
            s = a * prior.score(a * y, t)
        with torch.enable_grad():
            yy = y.detach().requires_grad_(True)
            ll = problem.log_likelihood(problem.from_prior(yy))
            (g,) = torch.autograd.grad(ll.sum(), yy)
        return s + g.detach()

    def step(state: AnnealedState, generator: torch.Generator) -> tuple[AnnealedState, Any]:
        t = levels[state.k // steps_per_level]
        alpha = epsilon * float(sigma[t]) ** 2
        y = state.y
        noise = standard_normal(y.shape, y, generator)
        y = y + 0.5 * alpha * grad(y, t) + math.sqrt(alpha) * noise
        return AnnealedState(y, state.k + 1), AnnealedInfo(t, alpha)

    return Kernel(init, step)


def sample_annealed(
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

    See the module for the moves, the start and the refinement.

    :raises OptionError: without a diffusion prior, or ``refine > 0`` without a density.
    :raises SamplingError: when a walker becomes NaN or infinite (naming the move).
    """
    prior = problem.prior
    if not isinstance(prior, DiffusionPrior):
        raise OptionError(
            f"kind='annealed' needs a diffusion prior (its scores); the model's is "
            f"{type(prior).__name__}: fit with prior='diffusion', or use kind='mala'"
        )
    refine = refine_moves(problem, refine, warmup)
    eps = EPSILON if step_size is None else float(step_size)
    ab = prior.alpha_bar.to(problem.device)
    sigma = ((1 - ab) / ab).sqrt()
    ts = _levels(sigma, levels, sigma_max)
    B = chains * (min(int(n), MAX_WALKERS) if refine else n)
    annealed = kernel(problem, B, ts, epsilon=eps, steps_per_level=steps_per_level)
    state = annealed.init(generator)
    moves = len(ts) * steps_per_level
    bar = tqdm(total=moves, desc="langevin (annealed)", disable=not progress, leave=False)
    for k in range(1, moves + 1):
        state, _ = annealed.step(state, generator)
        check_finite(state.y, "langevin", k)
        bar.update()
    bar.close()
    with torch.no_grad():
        y = problem.from_prior(state.y)
    settings = {
        "epsilon": eps,
        "levels": len(ts),
        "sigma_max": float(sigma[ts[0]]),
        "sigma_min": float(sigma[ts[-1]]),
        "annealed_steps": moves,
    }
    if refine:
        out = refine_walk(problem, n, chains, generator, progress, refine, y)
        info = {**out.info, **settings, "kind": "annealed", "refine": refine}
        return Draws(out.x, out.stats, info)
    with torch.no_grad():
        ll = problem.log_likelihood(y)
    stats = {
        "log_likelihood": ll.reshape(chains, n),
        "step_size": torch.full(
            (chains, n), eps * float(sigma[ts[-1]]) ** 2, device=problem.device
        ),
    }
    info = {"kind": "annealed", **settings, "steps": moves, "refine": 0}
    return Draws(y.reshape(chains, n, problem.dim), stats, info)


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
