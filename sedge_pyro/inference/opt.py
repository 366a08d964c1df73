r"""The ``opt`` sampler: Algorithm 1 of App. C (optimisation-based extrapolated generation).

Every particle starts at a random training row and runs Adam on the guidance loss :math:`L(x)`
of the target (:meth:`Target.loss <sedge_pyro.inference.Target.loss>`): the paper's squared
error of the likelihoods' predicted means, :math:`L = \frac1n \sum_i \lVert \hat z_i(V_i) - z_i
\rVert^2` (``loss="squared"``), or the negative log-likelihood :math:`-\sum_i \log p(z_i \in A_i
\mid V_i)` (``loss="nll"``), plus, optionally, :math:`-w \log p(x)`. It is a **mode-seeker, not
a sampler of** :math:`p(X \mid Z_T = z)`: each particle ends at a local minimum of the loss near
its starting row (with the squared loss, roughly a projection of the row onto the set where the
predicted specs equal the target). Its spread comes from the starting rows, not from the
posterior; with ``loss="nll"`` and ``prior_weight=1`` every particle converges to the posterior
*mode*.

:func:`kernel` binds the problem and the options and returns a
:class:`~sedge_pyro.inference.draws.Kernel` (``init(generator) -> OptState``, ``step(state,
generator) -> (OptState, OptInfo)``, one Adam step); :func:`sample_opt` is the thin loop the
registry of :func:`~sedge_pyro.inference.sample` calls. Gradients are taken with
:func:`torch.autograd.grad` with respect to the particles only, so the fitted components'
parameters are never updated and never accumulate ``.grad``.

References:
* The SEDGE paper, App. C, Algorithm 1.
* Kingma and Ba, Adam: A Method for Stochastic Optimization, ICLR 2015.
* Loshchilov and Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, ICLR 2017.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from sedge_pyro.errors import OptionError
from sedge_pyro.inference.draws import Draws, Kernel, check_finite, loss_stats
from sedge_pyro.inference.target import LOSSES, Problem
from sedge_pyro.options import choice, number, whole

__all__ = ["OPT_STEPS", "OptInfo", "OptState", "kernel", "opt_init", "opt_step", "sample_opt"]

#: Algorithm 1's example number of optimisation steps, :math:`T_{opt} = 1000`
OPT_STEPS = 1000
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


class OptState(NamedTuple):
    """Algorithm 1's particles and Adam's moments.

    :param x: particles, shape ``(particles, d)`` (normalised units).
    :param m: Adam's first moment, shape of ``x``.
    :param v: Adam's second moment, shape of ``x``.
    :param k: steps taken.
    """

    x: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    k: int


class OptInfo(NamedTuple):
    """One step's diagnostics.

    :param loss: the objective per particle before the update, shape ``(particles,)``.
    """

    loss: torch.Tensor


def opt_init(problem: Problem, particles: int, generator: torch.Generator) -> OptState:
    """Algorithm 1, step 2(a): each particle starts at a random training row.

    Rows are drawn without replacement while there are enough of them, so particles start
    (and, the loss being deterministic, stay) distinct.
    """
    rows = problem.train_x
    n_rows = rows.shape[0]
    if particles <= n_rows:
        idx = torch.randperm(n_rows, generator=generator, device=generator.device)[:particles]
    else:
        idx = torch.randint(n_rows, (particles,), generator=generator, device=generator.device)
    x = rows[idx.to(rows.device)].clone()
    zeros = torch.zeros_like(x)
    return OptState(x, zeros, zeros.clone(), 0)


def opt_step(
    state: OptState, objective: Callable[[torch.Tensor], torch.Tensor], lr: float
) -> tuple[OptState, OptInfo]:
    r"""Algorithm 1, steps 2(b).i-v: the loss, its gradient in ``x``, one Adam update.

    The objective is a sum over particles, so each particle's Adam update is its own (Adam is
    coordinate-wise).

    :param objective: ``x -> loss`` per particle, differentiable in ``x``.
    :param lr: Adam's learning rate :math:`\eta`.
    """
    with torch.enable_grad():
        x = state.x.detach().requires_grad_(True)
        loss = objective(x)
        (g,) = torch.autograd.grad(loss.sum(), x)
    b1, b2 = _ADAM_BETAS
    k = state.k + 1
    m = b1 * state.m + (1 - b1) * g
    v = b2 * state.v + (1 - b2) * g * g
    m_hat = m / (1 - b1**k)
    v_hat = v / (1 - b2**k)
    x_new = state.x - lr * m_hat / (v_hat.sqrt() + _ADAM_EPS)
    return OptState(x_new, m, v, k), OptInfo(loss.detach())


def _cosine(start: float, end: float, step: int, steps: int) -> float:
    """Cosine annealing (Loshchilov and Hutter 2017) from ``start`` at step 1 to ``end``."""
    frac = (step - 1) / max(steps - 1, 1)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * frac))


def sample_opt(
    problem: Problem,
    n: int,
    *,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    steps: int = OPT_STEPS,
    lr: float = 0.1,
    lr_decay: float = 0.01,
    loss: str = "squared",
    prior_weight: float = 0.0,
) -> Draws:
    r"""Algorithm 1 (optimisation-based extrapolated generation): Adam on the guidance loss
    from random training rows.

    Each of the ``chains * n`` particles minimises

    .. math:: J(x) = L(x) - w \log p(x)

    from its own training row, where :math:`L` is the guidance loss (see the module) and
    :math:`w` is ``prior_weight``. This is a **mode-seeker / projection, not a posterior
    sampler**: with the squared loss a particle stops where the predicted specs meet the
    target, close to where it started (the draws keep the training rows' spread in the
    directions the specs do not constrain); with ``loss="nll"`` and ``prior_weight=1``,
    :math:`J = -\log p(x \mid Z_T = z) + c` and every particle converges to the posterior's
    mode. Use ``plan``, ``langevin``, ``svi`` or ``nuts`` for draws *from* the posterior.

    :param steps: Adam steps, :math:`T_{opt}` (Algorithm 1 gives 1000 as its example).
    :param lr: Adam's initial learning rate :math:`\eta` in normalised units (the paper
        gives none).
    :param lr_decay: the learning rate follows a cosine from ``lr`` down to ``lr * lr_decay``
        at the last step (1: constant, Algorithm 1 as written). A constant rate leaves Adam
        circling the minimum at a distance of order ``lr`` (measured: 3e-3 with ``lr=0.05``
        on the linear-Gaussian model); the decay lets particles settle (1e-6).
    :param loss: ``"squared"`` (Algorithm 1, step 2(b).iii) or ``"nll"``.
    :param prior_weight: :math:`w \ge 0`; :math:`w > 0` needs a prior with a density.

    Per-draw targets (arrays of ``n`` values; see :mod:`~sedge_pyro.inference.sample`): the
    particle of draw ``i`` in every chain minimises the loss of the ``i``-th values.

    :returns: :class:`~sedge_pyro.inference.Draws` with stats ``loss`` (the final
        :math:`L`) and ``log_likelihood``, and info ``loss_mean``, ``loss_max``, ``steps``.
    :raises OptionError: for a bad option, or ``prior_weight > 0`` with a prior without a
        density (empirical, diffusion).
    :raises SamplingError: when a particle or its loss becomes NaN or infinite (names the
        step).

    >>> import sedge_pyro as sp
    >>> seen, _, graph = sp.datasets.linear_gaussian(2000, seed=0)
    >>> model = sp.SEDGEModel(graph, prior="gaussian", hidden=(8,))
    >>> model = model.fit(seen, steps=50, progress=False)
    >>> s = model.sample({"z1": 1.0}, n=20, method="opt", steps=300)
    >>> s.values.shape
    (1, 20, 3)
    """
    steps, lr, lr_decay, kind, w = _options(steps, lr, lr_decay, loss, prior_weight)
    opt = kernel(problem, chains * n, steps=steps, lr=lr, lr_decay=lr_decay, loss=kind, w=w)
    state = opt.init(generator)
    _probe(problem, state.x, kind, w)
    for step in tqdm(range(1, steps + 1), desc="opt", disable=not progress, leave=False):
        state, info = opt.step(state, generator)
        check_finite(info.loss.unsqueeze(-1), "opt", step)
        check_finite(state.x, "opt", step)
    x = state.x.detach()
    final, stats = loss_stats(problem, x, kind, chains, n)
    info_out = {
        "steps": steps,
        "loss_mean": float(final.mean()),
        "loss_max": float(final.max()),
    }
    return Draws(x.reshape(chains, n, problem.dim), stats, info_out)


def kernel(
    problem: Problem, particles: int, *, steps: int, lr: float, lr_decay: float, loss: str, w: float
) -> Kernel:
    r"""Algorithm 1 as a :class:`~sedge_pyro.inference.draws.Kernel` over ``particles``.

    ``init`` is :func:`opt_init`; ``step`` is :func:`opt_step` on :math:`J(x) = L(x) - w \log
    p(x)` with the learning rate of step ``k`` on the cosine from ``lr`` to ``lr * lr_decay``
    over ``steps`` (the generator is not used: the steps are deterministic).
    """
    target = problem.target

    def objective(x: torch.Tensor) -> torch.Tensor:
        out = target.loss(x, loss)
        return out - w * problem.log_prior(x) if w > 0 else out

    def init(generator: torch.Generator) -> OptState:
        return opt_init(problem, particles, generator)

    def step(state: OptState, generator: torch.Generator) -> tuple[OptState, OptInfo]:
        return opt_step(state, objective, _cosine(lr, lr * lr_decay, state.k + 1, steps))

    return Kernel(init, step)


def _options(
    steps: int, lr: float, lr_decay: float, loss: str, prior_weight: float
) -> tuple[int, float, float, str, float]:
    """``sample_opt``'s options checked: ``steps, lr, lr_decay, loss, prior_weight``."""
    steps = whole("steps", steps)
    lr = number("lr", lr, positive=True)
    lr_decay = number("lr_decay", lr_decay, positive=True)
    if lr_decay > 1:
        raise OptionError(f"lr_decay={lr_decay!r}: expected a number in (0, 1]")
    kind = choice("loss", loss, LOSSES)
    w = number("prior_weight", prior_weight, positive=False)
    return steps, lr, lr_decay, kind, w


def _probe(problem: Problem, x: torch.Tensor, kind: str, w: float) -> None:
    """Fail early (before the loop) when the loss or the prior cannot be evaluated at the
    first particles (a per-draw target needs a whole chain's particles).
    """
    first = x[: problem.target.n or 1]
    with torch.no_grad():
        problem.target.loss(first, kind)
        if w > 0:
            problem.log_prior(first)
