"""What the spec likelihoods share (see :mod:`sedge_pyro.models.likelihoods`): bounds of
interval events in normalised units, the Normal CDF difference in log space, the mask of the
parents and the MLP density every likelihood but the flow builds on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from sedge_pyro.errors import DataError, TargetError
from sedge_pyro.models.base import ConditionalDensity
from sedge_pyro.models.masks import SigmoidMask
from sedge_pyro.models.nets import mlp

Bound = float | torch.Tensor | None


MaskArg = SigmoidMask | Mapping[str, Any] | bool | None


#: an infinite bound, in normalised units (keeps gradients finite where ``inf`` would not)
_BIG = 1e6


_FLOW_TRANSFORMS = ("spline", "affine")


def _bound(value: Bound, sign: float, like: torch.Tensor, name: str) -> torch.Tensor:
    """A bound as a tensor on ``like``'s device; ``None`` and infinities become ``sign * _BIG``."""
    if value is None:
        return torch.full((), sign * _BIG, dtype=like.dtype, device=like.device)
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if torch.isnan(t).any():
        raise TargetError(f"{name}={value!r}: expected a number or None (unbounded), not NaN")
    return t.clamp(-_BIG, _BIG)


def _log_ndtr_diff(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(\Phi(hi) - \Phi(lo))`, stable in both tails; ``-inf`` when ``lo >= hi``.

    Both ends in the right tail are reflected (:math:`\Phi(hi) - \Phi(lo) = \Phi(-lo) -
    \Phi(-hi)`) so the difference is always taken between two small log-CDFs.
    """
    lo, hi = torch.broadcast_tensors(lo, hi)
    flip = lo > 0
    lo_, hi_ = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    a, b = torch.special.log_ndtr(hi_), torch.special.log_ndtr(lo_)
    # an empty interval takes a finite stand-in branch, so its gradient is 0 rather than NaN
    empty = b >= a
    out = a + torch.log(-torch.expm1(torch.where(empty, torch.full_like(a, -1.0), b - a)))
    return torch.where(empty, torch.full_like(out, -torch.inf), out)


def _log_interval(
    u_lo: torch.Tensor | None, u_hi: torch.Tensor | None, like: torch.Tensor
) -> torch.Tensor:
    r""":math:`\log P(u_{lo} \le u \le u_{hi})` for :math:`u \sim \mathcal N(0, 1)`."""
    if u_lo is None and u_hi is None:
        return torch.zeros_like(like)
    if u_lo is None:
        return torch.special.log_ndtr(u_hi).expand_as(like)
    if u_hi is None:
        return torch.special.log_ndtr(-u_lo).expand_as(like)
    return _log_ndtr_diff(u_lo, u_hi)


def _discrete_log_event_prob(
    logp: torch.Tensor, low: Bound, high: Bound, values: torch.Tensor
) -> torch.Tensor:
    """``log sum_k p_k 1[low <= v_k <= high]`` over the last dimension of ``logp``."""
    lo = _bound(low, -1.0, logp, "low")
    hi = _bound(high, 1.0, logp, "high")
    inside = (values >= lo.unsqueeze(-1)) & (values <= hi.unsqueeze(-1))
    logp, inside = torch.broadcast_tensors(logp, inside)
    any_inside = inside.any(-1)
    # rows with no value inside get an all-true mask so their (discarded) branch stays finite
    # and back-propagates zeros rather than NaNs
    keep = inside | ~any_inside.unsqueeze(-1)
    out = torch.logsumexp(logp.masked_fill(~keep, -torch.inf), dim=-1)
    return torch.where(any_inside, out, torch.full_like(out, -torch.inf))


def _make_mask(mask: MaskArg, context_dim: int) -> SigmoidMask | None:
    if mask is None or mask is False:
        return None
    if mask is True:
        return SigmoidMask(context_dim)
    if isinstance(mask, Mapping):
        mask = SigmoidMask(**mask)
    if not isinstance(mask, SigmoidMask):
        raise TypeError(
            f"mask={mask!r}: expected a SigmoidMask, its config() dict, True, False or None"
        )
    if mask.n_in != context_dim:
        raise DataError(f"mask has n_in={mask.n_in} inputs: expected context_dim={context_dim}")
    return mask


class _ContextMixin:
    """Context checks and the optional mask, shared by every density here."""

    context_dim: int
    mask: SigmoidMask | None

    def _context(self, context: torch.Tensor) -> torch.Tensor:
        if context.dim() == 0 or context.shape[-1] != self.context_dim:
            got = tuple(context.shape)
            raise DataError(
                f"{type(self).__name__}: context of shape {got}; expected shape "
                f"(..., {self.context_dim}) (context_dim={self.context_dim})"
            )
        return context if self.mask is None else self.mask(context)

    def _mask_config(self) -> dict[str, Any] | None:
        return None if self.mask is None else self.mask.config()


class _MLPDensity(_ContextMixin, ConditionalDensity):
    """A density whose parameters are an MLP of the (masked) context."""

    def __init__(
        self,
        y_dim: int,
        context_dim: int,
        out_dim: int,
        hidden: Sequence[int],
        mask: MaskArg,
    ) -> None:
        super().__init__(y_dim, context_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.mask = _make_mask(mask, self.context_dim)
        self.net = mlp(self.context_dim, out_dim, self.hidden)

    def _out(self, context: torch.Tensor) -> torch.Tensor:
        return self.net(self._context(context))

    def _base_config(self) -> dict[str, Any]:
        return {"context_dim": self.context_dim, "hidden": list(self.hidden)}
