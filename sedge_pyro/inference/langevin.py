r"""The ``langevin`` sampler: Langevin dynamics on the SEDGE posterior :math:`p(x \mid Z_T = z)`.

The SEDGE model's posterior over the features is :math:`\pi(x) \propto p(x)\, \exp \ell(x)`,
the fitted prior times the target's likelihood :math:`\ell(x) = \sum_{i \in T} \log p(z_i \mid
V_i)` (Eq. (4)'s per-spec terms, Sec. 4.2's "maximize the conditional probability p(Z | X)").
Algorithm 1 ascends :math:`\ell` from training rows and finds modes; this sampler adds the
prior and noise so that the draws follow :math:`\pi` itself. Three kinds:

* ``"mala"`` -- the Metropolis-adjusted Langevin algorithm (Roberts and Tweedie 1996) with a
  diagonal preconditioner, :math:`\pi` invariant exactly (:mod:`~sedge_pyro.inference.mala`);
* ``"ula"`` -- the same move always accepted (unadjusted Langevin), biased by :math:`O(h)`;
* ``"annealed"`` -- annealed Langevin dynamics (Song and Ermon 2019, Algorithm 1) with the
  scores of a :class:`~sedge_pyro.models.DiffusionPrior` plus :math:`\nabla \ell`, for
  priors that have no density (:mod:`~sedge_pyro.inference.annealed`).

One file per kind of algorithm: the MALA/ULA kernel and its walk are
:mod:`~sedge_pyro.inference.mala`, annealed Langevin :mod:`~sedge_pyro.inference.annealed`;
this module is ``langevin``'s entry point, :func:`sample_langevin`, and keeps the kernel's names
importable from here.

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

import torch

from sedge_pyro.errors import OptionError
from sedge_pyro.inference.annealed import sample_annealed
from sedge_pyro.inference.draws import Draws
from sedge_pyro.inference.mala import (
    MAX_WALKERS,
    SPACING,
    LangevinInfo,
    LangevinState,
    init,
    step,
    walk,
)
from sedge_pyro.inference.refine import refine_moves, refine_walk
from sedge_pyro.inference.target import Problem
from sedge_pyro.options import choice, flag, fraction, number, whole

__all__ = [
    "KINDS",
    "MAX_WALKERS",
    "SPACING",
    "LangevinInfo",
    "LangevinState",
    "init",
    "refine_moves",
    "refine_walk",
    "sample_langevin",
    "step",
]

KINDS = ("mala", "ula", "annealed")


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
    run = (problem, n, chains, generator, progress)
    if kind == "annealed":
        return sample_annealed(*run, step_size, levels, steps_per_level, sigma_max, refine)
    walking = (kind, step_size, warmup, walkers, thin, target_accept, precondition, bounded)
    return walk(*run, *walking)


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
