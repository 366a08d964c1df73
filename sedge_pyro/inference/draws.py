"""What every sampler returns and checks: :class:`Draws`, :func:`check_finite`, and the key of
a node's component in a model (:func:`component_key`).

A small module at the bottom of the samplers, so that each sampler imports it and the
dispatcher (:mod:`sedge_pyro.inference.sample`) imports the samplers, never the reverse.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from sedge_pyro.errors import SamplingError
from sedge_pyro.models.sedge import component_key

__all__ = ["Draws", "check_finite", "component_key"]


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
