"""What every sampler shares: the :class:`Kernel` protocol, what it returns (:class:`Draws`),
:func:`check_finite`, and the key of a node's component in a model (:func:`component_key`).

Every sampler module offers a builder, in the manner of BlackJAX (``blackjax.mala(logdensity,
step_size)``), that binds the problem and the options and returns a :class:`Kernel`:
``init(generator) -> State`` and ``step(state, generator) -> (State, Info)``, ``State`` and
``Info`` named tuples; its ``sample_<method>`` function is the thin loop over that kernel which
the registry :data:`~sedge_pyro.inference.sample.METHODS` calls.

A small module at the bottom of the samplers, so that each sampler imports it and the
dispatcher (:mod:`sedge_pyro.inference.sample`) imports the samplers, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from sedge_pyro.errors import OptionError, SamplingError
from sedge_pyro.models.sedge import component_key

__all__ = ["Draws", "Kernel", "check_finite", "component_key", "loss_stats"]


class Kernel(NamedTuple):
    """A sampler with its problem and options bound (BlackJAX's ``SamplingAlgorithm``).

    :param init: ``init(generator) -> State``: the first state, drawing any randomness from
        ``generator``.
    :param step: ``step(state, generator) -> (State, Info)``: one move (or one batch), the
        sampler's named-tuple ``Info`` holding its diagnostics.
    """

    init: Callable[[torch.Generator], Any]
    step: Callable[[Any, torch.Generator], tuple[Any, Any]]


class Draws(NamedTuple):
    """A sampler's output in normalised units.

    :param x: draws, shape ``(chains, draws, features)``.
    :param stats: per-draw statistics, name -> tensor or array ``(chains, draws)``.
    :param info: per-run figures (effective sample size, acceptance rate, step size, ...).
    :param raw: optionally, the draws in raw units (e.g. training values copied exactly);
        ``None``: decoded from ``x``.
    """

    x: torch.Tensor
    stats: dict[str, Any]
    info: dict[str, Any]
    raw: np.ndarray | None = None


def check_finite(x: torch.Tensor, method: str, step: int | str) -> None:
    """Raise :class:`~sedge_pyro.SamplingError` when ``x`` holds a NaN or infinity.

    :param method: the sampler's name, for the message.
    :param step: the step (or stage) reached, for the message.
    """
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(-1).sum()) if x.dim() else 1
        raise SamplingError(
            f"method {method!r} diverged at step {step}: {bad} draw(s) are NaN or infinite; "
            "lower the step size or learning rate, or raise the number of steps"
        )


def loss_stats(
    problem: Any, x: torch.Tensor, loss: str, chains: int, n: int
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The guidance loss at the final draws ``x`` (normalised units) and the per-draw stats of
    the guided samplers: ``loss`` and, where the model has it, ``log_likelihood``.

    :param problem: the :class:`~sedge_pyro.inference.target.Problem` sampled.
    :returns: the loss per draw (flat) and the stats, each shaped ``(chains, n)``.
    """
    with torch.no_grad():
        final = problem.target.loss(x, loss)
        stats: dict[str, Any] = {"loss": final.reshape(chains, n)}
        try:
            stats["log_likelihood"] = problem.log_likelihood(x).reshape(chains, n)
        except OptionError:
            pass
    return final, stats
