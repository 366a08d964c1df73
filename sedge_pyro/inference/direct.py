r"""The ``direct`` sampler: draws from a fitted :math:`p(X \mid Z)` (the paper's models D, E).

The reverse baselines of Sec. 5.1 model the features given *all* specifications, so a target
on some of them is completed from the training rows: each draw takes the specifications of a
random training row, sets the target's points, and for an interval draws the spec's value
from the training values inside it. :math:`X` is then drawn from the fitted conditional.
Nothing here uses the graph, which is why these baselines extrapolate poorly (Fig. 3).
A per-draw target (an array of ``n`` values) sets draw ``i`` of every chain to its ``i``-th
value, as the paper's baselines generate one sample per held-out Oracle row (Sec. 5.1).

:func:`kernel`'s ``init`` completes the specifications of every draw; its ``step`` draws one
batch of :math:`X` given them (there is no chain to move).

References: the SEDGE paper, Sec. 5.1 (models D and E, the reverse baselines).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from sedge_pyro.errors import OptionError
from sedge_pyro.expr import Interval
from sedge_pyro.inference.draws import Draws, Kernel, check_finite, component_key
from sedge_pyro.inference.target import Problem

__all__ = ["DirectInfo", "DirectState", "kernel", "sample_direct"]


def sample_direct(
    problem: Problem, n: int, *, chains: int, generator: torch.Generator, progress: bool
) -> Draws:
    r"""Draw ``chains x n`` rows of :math:`X \sim p(X \mid Z = z)` from a reverse model.

    :raises OptionError: when the model is not ``structure="reverse"`` or
        ``"reverse-factorized"``.
    """
    direct = kernel(problem, chains, n)
    state, _ = direct.step(direct.init(generator), generator)
    assert state.x is not None
    check_finite(state.x, "direct", "draw")
    return Draws(state.x.reshape(chains, n, problem.dim), {}, {})


class DirectState(NamedTuple):
    r"""The conditioning of every draw and the draws.

    :param z: the completed specifications, one-hot encoded, one row per draw
        (``chains x n`` rows, chain-major).
    :param x: the draws of :math:`X \mid Z = z` (normalised units), ``None`` before a step.
    """

    z: torch.Tensor
    x: torch.Tensor | None


class DirectInfo(NamedTuple):
    """One batch's diagnostics.

    :param seed: the seed of torch's global generator the fitted conditional drew with.
    """

    seed: int


def kernel(problem: Problem, chains: int, n: int) -> Kernel:
    """``direct`` as a :class:`~sedge_pyro.inference.draws.Kernel`: ``init`` completes the
    target's specifications with those of random training rows (drawn with the generator),
    ``step`` draws the batch from the fitted conditional under torch's global generator,
    seeded from the run's and restored afterwards.

    :raises OptionError: when the model is not ``structure="reverse"`` or
        ``"reverse-factorized"``.
    """
    model = problem.model
    if model.structure not in ("reverse", "reverse-factorized"):
        raise OptionError(
            f"method 'direct' needs a reverse model (structure 'reverse' or "
            f"'reverse-factorized'); this one is {model.structure!r}: use 'plan' or another "
            "method"
        )
    assert model.seen is not None and model.columns is not None
    total = chains * n
    seen = model.seen

    def init(generator: torch.Generator) -> DirectState:
        pick = torch.randint(len(seen), (total,), generator=generator, device=generator.device)
        specs = seen[list(model.specs)].iloc[pick.cpu().numpy()].reset_index(drop=True)
        for name, value in problem.target.target.items():
            if isinstance(value, Interval):
                pool = seen[name].to_numpy()
                pool = pool[value.contains(pool.astype(float))]
                idx = torch.randint(
                    len(pool), (total,), generator=generator, device=generator.device
                )
                specs[name] = pool[idx.cpu().numpy()]
            elif isinstance(value, np.ndarray):
                # a per-draw target: draw j of every chain (chain-major) takes value[j]
                specs[name] = np.tile(value, chains)
                specs[name] = specs[name].astype(seen[name].dtype)
            else:
                specs[name] = np.repeat(np.asarray([value], dtype=object), total)
                specs[name] = specs[name].astype(seen[name].dtype)
        columns = model.columns
        assert columns is not None
        z = columns.tensor(pd.DataFrame(specs), model.specs, one_hot=True, device=problem.device)
        return DirectState(z, None)

    def step(state: DirectState, generator: torch.Generator) -> tuple[DirectState, DirectInfo]:
        zc = state.z
        with torch.no_grad():
            torch_state = torch.random.get_rng_state()
            seed = int(torch.randint(2**31, (1,), generator=generator))
            torch.manual_seed(seed)
            try:
                if model.structure == "reverse":
                    x = model.components["reverse"].condition(zc).sample()
                else:
                    cols = [
                        model.components[component_key(f)].condition(zc).sample()
                        for f in model.features
                    ]
                    x = torch.stack(cols, dim=-1)
            finally:
                torch.random.set_rng_state(torch_state)
        return DirectState(zc, x), DirectInfo(seed)

    return Kernel(init, step)
