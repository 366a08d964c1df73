r"""The ``dps`` sampler: Algorithm 2 of App. C (diffusion posterior sampling, Chung et al. 2023).

It runs the DDPM prior's reverse chain from noise and shifts each step's mean by the gradient of
the guidance loss :math:`L` (:meth:`Target.loss <sedge_pyro.inference.Target.loss>`, squared
error of the predicted specs or their negative log-likelihood) at Tweedie's estimate
:math:`\hat x_0(x_t)`. It samples approximately: with ``guidance=0`` it is the prior, with
``guidance > 0`` the draws move toward the target, but no setting is the exact posterior (the
DPS approximation :math:`p(z \mid x_t) \approx p(z \mid \hat x_0(x_t))`, and for the squared
loss the likelihood's noise scale is ignored altogether).

:func:`kernel` binds the problem, the schedule and the options and returns a
:class:`~sedge_pyro.inference.draws.Kernel` (``init(generator) -> DPSState``, ``step(state,
generator) -> (DPSState, DPSInfo)``, one reverse step); :func:`sample_dps` is the thin loop the
registry of :func:`~sedge_pyro.inference.sample` calls. Gradients are taken with respect to the
particles only, so the fitted components' parameters are never updated.

**What it samples.** ``guidance=0`` is the prior's ancestral sampler. Otherwise the
draws are pulled toward the target but follow :math:`p(X \mid Z_T = z)` only
approximately: DPS replaces :math:`p(z \mid x_t)` by :math:`p(z \mid \hat x_0(x_t))`,
and with the squared loss (the paper's) the guidance ignores the likelihood's noise scale,
so :math:`\lambda` trades target satisfaction against fidelity to the prior. Measured on
the linear-Gaussian model (3 features, two point targets, ``T=100``) with the defaults:
the draws' mean lies within 0.13 of the analytic posterior mean per feature, but their
spread is too small (standard deviations 0.33-0.64 against 0.50-0.73). ``loss="nll"``
with ``guidance_schedule="beta"`` (a step :math:`\lambda \beta_t \nabla \log p(z \mid
\hat x_0)`, the DPS form of the conditional score at :math:`\lambda = 1`) is offered
but diverges with ``guide_on="x0"`` for the reason below.

**Pitfalls (``normalize``, ``guide_on``).** The gradient of the loss at
:math:`\hat x_0(x_t)` carries the factor :math:`1 / \sqrt{\bar\alpha_t}` of Tweedie's
estimate, huge at the first (noisiest) steps: a constant :math:`\lambda` on the plain
gradient (``normalize=False``) blows up (measured on the linear-Gaussian model with
``T=100``: :math:`\lambda = 0.05` gives draws of order :math:`10^4`). Chung et al. divide
the step by the residual norm, :math:`\zeta / \lVert y - A(\hat x_0) \rVert` times the
gradient of the *squared* norm; their code takes the gradient of the *norm* (half that
step). The norm must be **per particle**: the norm of a whole batch's residual couples
the particles and shrinks each one's step as the batch grows. ``normalize=True`` (the
default) uses the per-particle gradient of :math:`\sqrt{L}` (the code's form;
``loss="squared"`` only), so ``guidance`` is :math:`\zeta`. Algorithm 2 as printed
evaluates the predictions at :math:`V_i^{(t)}`, i.e. at :math:`x_t` itself, with a
constant :math:`\lambda` on the gradient of :math:`L`: that is ``guide_on="xt",
normalize=False`` (stable, as the gradient then has no :math:`1/\sqrt{\bar\alpha_t}`).

References:
* The SEDGE paper, App. C, Algorithm 2.
* Chung, Kim, Mccann, Klasky and Ye, Diffusion Posterior Sampling for General Noisy Inverse
  Problems, ICLR 2023.
* Ho, Jain and Abbeel, Denoising Diffusion Probabilistic Models, NeurIPS 2020.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from sedge_pyro.errors import OptionError
from sedge_pyro.inference.draws import Draws, Kernel, check_finite, loss_stats
from sedge_pyro.inference.target import LOSSES, Problem
from sedge_pyro.models.priors import DiffusionPrior
from sedge_pyro.options import choice, flag, number, whole

__all__ = [
    "GUIDANCE_SCHEDULES",
    "GUIDE_ON",
    "DPSInfo",
    "DPSState",
    "dps_init",
    "dps_step",
    "kernel",
    "sample_dps",
    "reverse_steps",
]

#: how the DPS guidance step scales with the diffusion step
GUIDANCE_SCHEDULES = ("constant", "beta")
#: where DPS evaluates the loss: Tweedie's :math:`\hat x_0(x_t)` or :math:`x_t` itself
GUIDE_ON = ("x0", "xt")


class DPSState(NamedTuple):
    """The reverse chain at step ``t``.

    :param x: the particles :math:`x_t`, shape ``(particles, d)``.
    :param i: the index of ``t`` in the schedule (its length once the chain has ended).
    """

    x: torch.Tensor
    i: int


class DPSInfo(NamedTuple):
    """One step's diagnostics.

    :param t: the diffusion step moved from.
    :param loss: the guidance loss per particle at that step, shape ``(particles,)``.
    """

    t: int
    loss: torch.Tensor


def reverse_steps(T: int, steps: int | None) -> list[int]:
    """The diffusion steps visited, descending from ``T`` to 1 (all of them when ``None``)."""
    if steps is None or steps >= T:
        return list(range(T, 0, -1))
    ts = torch.linspace(1, T, steps).round().long().unique().tolist()
    return sorted(ts, reverse=True)


def dps_init(problem: Problem, particles: int, generator: torch.Generator) -> DPSState:
    r"""Algorithm 2, step 2(a): :math:`x_T \sim \mathcal N(0, I)`."""
    z = torch.randn(
        particles, problem.dim, generator=generator, device=generator.device, dtype=problem.dtype
    )
    return DPSState(z.to(problem.device), 0)


def dps_step(
    state: DPSState,
    problem: Problem,
    schedule: list[int],
    generator: torch.Generator,
    *,
    guidance: float,
    loss: str,
    normalize: bool,
    guidance_schedule: str,
    guide_on: str,
) -> tuple[DPSState, DPSInfo]:
    r"""One step of Algorithm 2, 2(b).i-iii, from :math:`x_t` to :math:`x_s` (``s = t - 1``
    on the full schedule).

    (i) :math:`\hat\epsilon = \epsilon_\theta(x_t, t)`, :math:`\mu_t` (step (b).i.B);
    (ii) :math:`g = \nabla_{x_t} L(\hat x_0(x_t))` (steps (b).ii.A-C), normalised per particle
    when ``normalize``; :math:`\mu_t \leftarrow \mu_t - \lambda_t g` (step (b).ii.D), with
    :math:`\lambda_t = \lambda` (``"constant"``) or :math:`\lambda \beta_t` (``"beta"``);
    (iii) :math:`x_s = \mu_t + \sigma_t z` (no noise at the last step).

    On a strided schedule (``s < t - 1``) the step is the DDPM posterior
    :math:`q(x_s \mid x_t, \hat x_0)` with :math:`\alpha = \bar\alpha_t / \bar\alpha_s`,
    :math:`\beta = 1 - \alpha` and variance :math:`\beta` (the choice :meth:`DiffusionPrior.step
    <sedge_pyro.models.DiffusionPrior.step>` makes on the full schedule).
    """
    prior = problem.prior
    t = schedule[state.i]
    s = schedule[state.i + 1] if state.i + 1 < len(schedule) else 0
    with torch.enable_grad():
        x_t = state.x.detach().requires_grad_(True)
        eps = prior.eps(x_t, t)  # step (b).i.A
        point = prior.predict_x0(x_t, t, eps) if guide_on == "x0" else x_t
        L = problem.target.loss(problem.from_prior(point), loss)  # steps (b).ii.A-B
        if guidance > 0:
            (g,) = torch.autograd.grad(L.sum(), x_t)  # step (b).ii.C
        else:
            g = torch.zeros_like(x_t)
    if normalize:
        # grad sqrt(L) = grad L / (2 sqrt(L)), per particle; a particle that meets its
        # target (L = 0, e.g. inside an interval) gets no guidance rather than 0 / 0
        root = L.detach().clamp_min(0).sqrt().unsqueeze(-1)
        g = torch.where(root > 0, g / (2 * root.clamp_min(1e-30)), torch.zeros_like(g))
    eps = eps.detach()
    x_t = x_t.detach()
    if s == t - 1:
        mean = prior.posterior_mean(x_t, t, eps)  # step (b).i.B
        beta = float(prior.betas[t])
    else:
        ab_t = float(prior.alpha_bar[t])
        ab_s = float(prior.alpha_bar[s]) if s > 0 else 1.0
        alpha = ab_t / ab_s
        beta = 1.0 - alpha
        mean = (x_t - beta / math.sqrt(1.0 - ab_t) * eps) / math.sqrt(alpha)
    scale = guidance * (beta if guidance_schedule == "beta" else 1.0)
    mean = mean - scale * g  # step (b).ii.D
    # step (b).iii
    if s == t - 1:
        x_s = prior.step(x_t, t, generator=generator, mean=mean)
    elif s > 0:
        z = torch.randn(
            mean.shape, generator=generator, device=generator.device, dtype=mean.dtype
        ).to(mean.device)
        x_s = mean + math.sqrt(beta) * z
    else:
        x_s = mean
    return DPSState(x_s, state.i + 1), DPSInfo(t, L.detach())


def sample_dps(
    problem: Problem,
    n: int,
    *,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    guidance: float = 0.1,
    loss: str = "squared",
    normalize: bool = True,
    guidance_schedule: str = "constant",
    guide_on: str = "x0",
    steps: int | None = None,
) -> Draws:
    r"""Algorithm 2 (diffusion posterior sampling, Chung et al. 2023) with the model's DDPM
    prior.

    From :math:`x_T \sim \mathcal N(0, I)`, each reverse step computes the prior's mean
    :math:`\mu_t` and moves it against the gradient, in :math:`x_t`, of the guidance loss at
    Tweedie's :math:`\hat x_0(x_t)`: :math:`\mu_t \leftarrow \mu_t - \lambda_t \nabla_{x_t}
    L(\hat x_0(x_t))`, then adds the step's noise (see :func:`dps_step`).

    See the module for what it samples and for the pitfalls ``normalize`` and ``guide_on``
    avoid.

    :param guidance: the scale :math:`\lambda \ge 0` (:math:`\zeta` when ``normalize``).
    :param loss: ``"squared"`` (Algorithm 2, step (b).ii.B) or ``"nll"``.
    :param normalize: guide by the per-particle residual norm (see the pitfalls).
    :param guidance_schedule: ``"constant"`` (:math:`\lambda_t = \lambda`, Algorithm 2) or
        ``"beta"`` (:math:`\lambda_t = \lambda \beta_t`).
    :param guide_on: ``"x0"`` (the loss at :math:`\hat x_0(x_t)`, Chung et al.) or ``"xt"``
        (at :math:`x_t` itself, a literal reading of Algorithm 2's :math:`V_i^{(t)}`).
    :param steps: visit this many evenly spaced diffusion steps (a strided DDPM), or ``None``
        for all ``T`` of the prior.

    Per-draw targets (arrays of ``n`` values): the particle of draw ``i`` in every chain is
    guided by the loss of the ``i``-th values; the noise is drawn as for a scalar target, so
    arrays holding one constant reproduce the scalar run draw for draw.

    :returns: :class:`~sedge_pyro.inference.Draws` with stats ``loss`` (the guidance loss at
        the final draws) and ``log_likelihood``, and info ``steps``, ``loss_mean``.
    :raises OptionError: for a bad option or a model whose prior is not a
        :class:`~sedge_pyro.models.DiffusionPrior`.
    :raises SamplingError: when a particle becomes NaN or infinite (names the step ``t``).

    >>> import sedge_pyro as sp
    >>> seen, _, graph = sp.datasets.linear_gaussian(2000, seed=0)
    >>> options = {"T": 20, "hidden": (16,)}
    >>> model = sp.SEDGEModel(graph, prior="diffusion", hidden=(8,), prior_options=options)
    >>> model = model.fit(seen, steps=50, progress=False)
    >>> model.sample({"z1": 1.0}, n=10, method="dps", guidance=0.5).values.shape
    (1, 10, 3)
    """
    kind, settings = _options(problem, guidance, loss, normalize, guidance_schedule, guide_on)
    schedule = reverse_steps(problem.prior.T, whole("steps", steps, none_ok=True))
    dps = kernel(problem, chains * n, schedule, loss=kind, **settings)
    state = dps.init(generator)
    with torch.no_grad():
        # fail early for a loss the model lacks (a per-draw target needs a whole chain)
        problem.target.loss(state.x[: problem.target.n or 1], kind)
    bar = tqdm(total=len(schedule), desc="dps", disable=not progress, leave=False)
    while state.i < len(schedule):
        state, info = dps.step(state, generator)
        check_finite(state.x, "dps", f"t={info.t}")
        bar.update()
    bar.close()
    with torch.no_grad():
        x = problem.from_prior(state.x.detach())
    final, stats = loss_stats(problem, x, kind, chains, n)
    info_out = {"steps": len(schedule), "loss_mean": float(final.mean())}
    return Draws(x.reshape(chains, n, problem.dim), stats, info_out)


def kernel(
    problem: Problem,
    particles: int,
    schedule: list[int],
    *,
    guidance: float,
    loss: str,
    normalize: bool,
    guidance_schedule: str,
    guide_on: str,
) -> Kernel:
    """Algorithm 2 as a :class:`~sedge_pyro.inference.draws.Kernel` over ``particles``:
    ``init`` is :func:`dps_init`, ``step`` is :func:`dps_step` along ``schedule`` with the
    options bound (see :func:`sample_dps` for them).
    """

    def init(generator: torch.Generator) -> DPSState:
        return dps_init(problem, particles, generator)

    def step(state: DPSState, generator: torch.Generator) -> tuple[DPSState, DPSInfo]:
        return dps_step(
            state,
            problem,
            schedule,
            generator,
            guidance=guidance,
            loss=loss,
            normalize=normalize,
            guidance_schedule=guidance_schedule,
            guide_on=guide_on,
        )

    return Kernel(init, step)


def _options(
    problem: Problem,
    guidance: float,
    loss: str,
    normalize: bool,
    guidance_schedule: str,
    guide_on: str,
) -> tuple[str, dict[str, Any]]:
    """``sample_dps``'s checks: the loss and the other options of :func:`kernel`."""
    prior = problem.prior
    if not isinstance(prior, DiffusionPrior):
        raise OptionError(
            f"method 'dps' needs a DiffusionPrior; the model's prior is {type(prior).__name__}: "
            "fit with prior='diffusion'"
        )
    guidance = number("guidance", guidance, positive=False)
    kind = choice("loss", loss, LOSSES)
    normalize = flag("normalize", normalize)
    if normalize and kind != "squared":
        raise OptionError(
            f"normalize=True with loss={kind!r}: expected loss='squared' (the residual norm "
            "of Chung et al. is defined for the squared error)"
        )
    choice("guidance_schedule", guidance_schedule, GUIDANCE_SCHEDULES)
    choice("guide_on", guide_on, GUIDE_ON)
    settings = {
        "guidance": guidance,
        "normalize": normalize,
        "guidance_schedule": guidance_schedule,
        "guide_on": guide_on,
    }
    return kind, settings
