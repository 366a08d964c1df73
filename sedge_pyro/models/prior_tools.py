"""Helpers the priors share: seeded noise on a generator's device, row checks, the box of the
training rows and buffers that take their shape from a loaded state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sedge_pyro.errors import DataError
from sedge_pyro.models.base import seen_box


def _randn(
    shape: Sequence[int],
    like: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Standard Normal noise with ``like``'s dtype and device, drawn with ``generator``."""
    if generator is None:
        return torch.randn(*shape, dtype=like.dtype, device=like.device)
    z = torch.randn(*shape, dtype=like.dtype, device=generator.device, generator=generator)
    return z.to(like.device)


def _randint(
    high: int,
    shape: Sequence[int],
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Uniform integers in ``[0, high)`` on ``device``, drawn with ``generator``."""
    if generator is None:
        return torch.randint(high, tuple(shape), device=device)
    i = torch.randint(high, tuple(shape), device=generator.device, generator=generator)
    return i.to(device)


def _check_rows(x: torch.Tensor, dim: int, who: str) -> None:
    """Raise :class:`DataError` unless ``x`` is a matrix with ``dim`` columns."""
    if x.dim() != 2 or x.shape[1] != dim:
        raise DataError(f"{who}: x has shape {tuple(x.shape)}: expected (n, {dim})")


def _resize_buffer_on_load(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, names: Sequence[str]
) -> None:
    """Give each named buffer the shape of its entry in ``state_dict`` before loading."""
    for name in names:
        value = state_dict.get(prefix + name)
        old = getattr(module, name)
        if isinstance(value, torch.Tensor) and value.shape != old.shape:
            setattr(module, name, torch.empty(value.shape, dtype=old.dtype, device=old.device))


def _register_box(module: nn.Module, dim: int) -> None:
    """The box and the standardisation of its unconstrained coordinates, as buffers (set by
    :func:`_setup_box`).
    """
    module.register_buffer("box_set", torch.zeros((), dtype=torch.bool))
    for name, fill in (("box_low", 0), ("box_high", 1), ("box_loc", 0), ("box_scale", 1)):
        module.register_buffer(name, torch.full((dim,), float(fill)))


def _setup_box(module: Any, x: torch.Tensor) -> None:
    """Set ``module``'s box from rows ``x`` (shape ``(n, dim)``, ``n >= 2``; else nothing):
    :func:`~sedge_pyro.models.base.seen_box`, and the mean and standard deviation of the rows'
    logit of their position in it.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        return
    with torch.no_grad():
        low, high = seen_box(x.to(module.box_low))
        u = torch.logit(((x.to(low) - low) / (high - low)).clamp(1e-6, 1 - 1e-6))
        module.box_low.copy_(low)
        module.box_high.copy_(high)
        module.box_loc.copy_(u.mean(0))
        module.box_scale.copy_(u.std(0).clamp_min(1e-3))
        module.box_set.fill_(True)
