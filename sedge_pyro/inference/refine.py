"""The refinement that ends annealed Langevin and ``smc`` on a surrogate diffusion:
Metropolis-adjusted Langevin moves (:mod:`~sedge_pyro.inference.mala`) on the model's own
posterior, the prior being the one with a density that the surrogate stands in for
(resample-move; Gilks and Berzuini 2001).

References:
* Gilks and Berzuini, Following a moving target: Monte Carlo inference for dynamic Bayesian
  models, JRSS B 2001 (resample-move).
* Roberts and Tweedie, Exponential convergence of Langevin distributions and their discrete
  approximations, Bernoulli 1996 (MALA).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from sedge_pyro.errors import OptionError
from sedge_pyro.inference.draws import Draws
from sedge_pyro.inference.mala import walk
from sedge_pyro.inference.target import Problem

__all__ = ["prior_swapped", "refine_moves", "refine_walk"]


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
    with prior_swapped(problem, own):
        return walk(
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
def prior_swapped(problem: Problem, prior: Any) -> Iterator[None]:
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
