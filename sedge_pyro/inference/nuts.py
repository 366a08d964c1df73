r"""The ``nuts`` sampler: Pyro's No-U-Turn sampler on the SEDGE posterior.

The target is the SEDGE model's posterior over the features, :math:`\pi(x) \propto p(x)\,
\exp \ell(x)` with :math:`\ell(x) = \sum_{i \in T} \log p(z_i \in A_i \mid V_i)` (the fitted
per-spec likelihoods of Eq. (4), Sec. 4.2), given to :class:`pyro.infer.mcmc.NUTS` as the
potential energy :math:`U(x) = -\log \pi(x)` of a single feature vector. NUTS (Hoffman and
Gelman 2014) adapts its step size by dual averaging towards ``target_accept`` and a diagonal
mass matrix during ``warmup``; it suits low-dimensional ``X`` (one gradient per leapfrog
step, no batching over draws).

Chains run one after another, each its own :class:`pyro.infer.MCMC` with ``num_chains=1``
(Pyro's ``num_chains > 1`` forks processes, and on two cores runs them sequentially anyway
with a warning). Chain ``c`` starts at a prior draw resampled by the target's likelihood
(:meth:`~sedge_pyro.inference.target.Problem.start_points`), drawn with the caller's
generator, and is seeded from an integer drawn from the same generator, inside
:func:`torch.random.fork_rng`, so a run is reproducible and the user's global torch RNG is
left as it was.

NUTS does not take the ``init`` / ``step`` shape of the other samplers: each chain is Pyro's
own :class:`~pyro.infer.MCMC` loop (set-up, warmup adaptation, hooks, clean-up), which stepping
:meth:`NUTS.sample <pyro.infer.mcmc.NUTS.sample>` by hand would re-implement.

References:
* Hoffman and Gelman, The No-U-Turn sampler, JMLR 2014.
* Bingham et al., Pyro: deep universal probabilistic programming, JMLR 2019.
* The SEDGE paper: Eq. (4), Sec. 4.2, App. C Algorithm 1 (initialisation from training rows).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from pyro.infer.mcmc import MCMC, NUTS

from sedge_pyro.inference.draws import Draws, check_finite
from sedge_pyro.inference.target import Problem
from sedge_pyro.options import flag, fraction, number, whole

__all__ = ["sample_nuts"]

_SITE = "x"


def sample_nuts(
    problem: Problem,
    n: int,
    *,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    warmup: int = 500,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    step_size: float | None = None,
    bounded: bool = True,
) -> Draws:
    r"""Draw ``n`` feature vectors per chain with Pyro's NUTS on :math:`-\log \pi(x)`.

    :param problem: the fitted model and compiled target (its prior needs a density).
    :param n: draws per chain (after warmup).
    :param warmup: adaptation steps per chain, discarded.
    :param target_accept: the acceptance probability the step-size adaptation aims at.
    :param max_tree_depth: the largest trajectory doubling (at most ``2**depth`` leapfrog
        steps per draw).
    :param step_size: the initial step size (``None``: Pyro's default 1, then its heuristic);
        adapted during warmup either way when ``warmup > 0``.
    :param bounded: run in the unconstrained coordinates of the training features' range
        barely widened (see ``langevin``'s option of the same name); ``False``: unbounded.
    :returns: :class:`Draws`; stats per draw ``log_density``, ``accept_prob``, ``diverging``
        and ``step_size``; info per chain ``divergences``, ``accept_rate``, ``step_size``,
        ``warmup_seconds`` and ``seeds``.
    :raises OptionError: for an out-of-range option or a prior without a density.
    :raises SamplingError: when a draw is NaN or infinite.

    >>> s = model.sample({"z1": 1.0}, n=500, method="nuts", chains=2)  # doctest: +SKIP
    """
    _check_options(warmup, target_accept, max_tree_depth, step_size)
    flag("bounded", bounded)
    problem.log_prior(problem.train_x[:1])  # OptionError for a prior without a density
    dev = problem.device
    points = problem.start_points(chains, generator)
    seeds = torch.randint(2**31 - 1, (chains,), generator=generator, device=generator.device)

    settings = {
        "warmup": warmup,
        "target_accept": target_accept,
        "max_tree_depth": max_tree_depth,
        "step_size": step_size,
        "bounded": bounded,
        "progress": progress,
    }
    runs = [_chain(problem, points[c], int(seeds[c]), n, c, **settings) for c in range(chains)]
    xs = [r[0] for r in runs]
    accept = [r[1].accept_prob for r in runs]
    diverging = [r[1].diverging for r in runs]
    divergences = [int(r[1].diverging.sum()) for r in runs]
    rates = [float(r[1].accept_prob.mean()) for r in runs]
    sizes = [r[2] for r in runs]
    warm = [r[1].warmup_seconds for r in runs]
    x = torch.stack(xs).to(dev)
    with torch.no_grad():
        lp = problem.log_density(x)
    stats = {
        "log_density": lp,
        "accept_prob": torch.stack(accept),
        "diverging": torch.stack(diverging),
        "step_size": torch.tensor(sizes).reshape(chains, 1).expand(chains, n),
    }
    info: dict[str, Any] = {
        "divergences": divergences,
        "accept_rate": rates,
        "step_size": sizes,
        "warmup_seconds": warm,
        "seeds": [int(s) for s in seeds],
        "bounded": bool(bounded),
    }
    return Draws(x, stats, info)


def _chain(
    problem: Problem,
    point: torch.Tensor,
    seed: int,
    n: int,
    c: int,
    *,
    warmup: int,
    target_accept: float,
    max_tree_depth: int,
    step_size: float | None,
    bounded: bool,
    progress: bool,
) -> tuple[torch.Tensor, _Recorder, float]:
    """Chain ``c``: Pyro's NUTS from ``point`` (features) under a torch RNG forked and seeded
    with ``seed``; returns its ``n`` draws (features), its recorder and its final step size.
    """
    dev, d = problem.device, problem.dim

    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        if bounded:
            return -problem.log_density_box(params[_SITE])
        return -problem.log_density(params[_SITE])

    x0 = point.detach().clone().to(dev)
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if dev.type == "cuda":
            torch.cuda.manual_seed(seed)
        kernel = NUTS(
            potential_fn=potential,
            step_size=1.0 if step_size is None else float(step_size),
            adapt_step_size=warmup > 0,
            adapt_mass_matrix=warmup > 0,
            target_accept_prob=float(target_accept),
            max_tree_depth=int(max_tree_depth),
        )
        record = _Recorder(n)
        mcmc = MCMC(
            kernel,
            num_samples=n,
            warmup_steps=warmup,
            initial_params={_SITE: problem.to_box(x0) if bounded else x0},
            num_chains=1,
            disable_progbar=not progress,
            hook_fn=record,
        )
        mcmc.run()
    x = mcmc.get_samples()[_SITE].reshape(n, d)
    if bounded:
        x = problem.from_box(x)
    check_finite(x, "nuts", f"chain {c}")
    return x, record, float(kernel.step_size)


class _Recorder:
    """A ``hook_fn`` for :class:`pyro.infer.MCMC`: per-draw acceptance and divergence.

    NUTS keeps a running mean of the acceptance probability and a list of divergent draws
    (post-warmup indices); the recorder reads both after every post-warmup step.
    """

    def __init__(self, n: int) -> None:
        self.accept_prob = torch.zeros(n)
        self.diverging = torch.zeros(n, dtype=torch.bool)
        self._mean = 0.0
        self._start = time.perf_counter()
        self.warmup_seconds = math.nan

    def __call__(self, kernel: NUTS, params: Any, stage: str, i: int) -> None:
        if stage.lower() != "sample":
            return
        if i == 0:
            self.warmup_seconds = time.perf_counter() - self._start
        # the kernel's mean is over post-warmup draws: recover the i-th term of the mean
        mean = float(kernel._mean_accept_prob)
        self.accept_prob[i] = (i + 1) * mean - i * self._mean
        self._mean = mean
        self.diverging[i] = bool(kernel._divergences) and kernel._divergences[-1] == i


def _check_options(
    warmup: int, target_accept: float, max_tree_depth: int, step_size: float | None
) -> None:
    whole("warmup", warmup, 0)
    fraction("target_accept", target_accept)
    whole("max_tree_depth", max_tree_depth)
    number("step_size", step_size, none_ok=True)
