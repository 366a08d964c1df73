r"""Conditional densities :math:`p(y \mid c)`: the specification likelihoods and their kin.

Every class here is a :class:`~sedge_pyro.models.base.ConditionalDensity` acting on the model's
normalised float tensors, context shape ``(..., context_dim)`` with any leading batch
dimensions:

* :class:`GaussianMLP` -- Eq. (4): :math:`Z_i \sim \mathcal N(h^\mu_i(V_i), h^\sigma_i(V_i))`.
* :class:`BernoulliMLP`, :class:`CategoricalMLP` -- the same for binary and categorical
  specifications (logits from an MLP).
* :class:`ConditionalFlow` -- App. D.2's conditional normalizing flow, a spline flow on a
  standard Normal base whose parameters are an MLP of the context.
* :class:`JointGaussian` -- the paper's baseline C, :math:`p(Z \mid X)` as one correlated
  Gaussian.

The MLP likelihoods take an optional :class:`~sedge_pyro.models.masks.SigmoidMask` applied to
the context first, :math:`V_i = x \odot M_i` (Eq. (5)). Each class has ``config()``, its
constructor arguments, so ``cls(**m.config())`` followed by ``load_state_dict`` restores it.

Event probabilities :math:`P(low \le y \le high \mid c)` are closed form and differentiable in
the context (the samplers need their gradients); ``log_event_prob`` is their stable logarithm
(log-CDF differences via :func:`torch.special.log_ndtr`).

References: Eq. (4), Eq. (5) and App. D.2 of the SEDGE paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from sedge_pyro.errors import OptionError
from sedge_pyro.models.discrete_likelihoods import BernoulliMLP, CategoricalMLP, MonotoneBernoulli  # noqa: F401 (re-export)
from sedge_pyro.models.flow_likelihood import ConditionalFlow  # noqa: F401 (re-export)
from sedge_pyro.models.likelihood_base import (
    Bound,
    MaskArg,
    _bound,
    _log_interval,
    _MLPDensity,
)
from sedge_pyro.options import whole

__all__ = [
    "BernoulliMLP",
    "CategoricalMLP",
    "ConditionalFlow",
    "GaussianMLP",
    "JointGaussian",
    "MonotoneBernoulli",
]


# --------------------------------------------------------------------------- Gaussian


class GaussianMLP(_MLPDensity):
    r"""Eq. (4): :math:`y \mid c \sim \mathcal N(h^\mu(c), h^\sigma(c))`, both heads one MLP.

    :param context_dim: number of conditioning values :math:`V_i` (0: unconditional).
    :param hidden: hidden layer sizes of the MLP.
    :param min_scale: floor of the scale, :math:`h^\sigma = \mathrm{softplus}(\cdot) +
        min\_scale`, in normalised units.
    :param mask: a :class:`~sedge_pyro.models.masks.SigmoidMask` over the context, or
        its ``config()`` dict, or ``True`` for a fresh one (Eq. (5)); ``None``: no mask.

    Event shape ``()``; ``y_dim == 1``.

    References: Sec. 4.1, Eq. (4) (and Eq. (5) with a mask) of the SEDGE paper.

    >>> m = GaussianMLP(2, hidden=(8,))
    >>> tuple(m.condition(torch.zeros(5, 2)).batch_shape)
    (5,)
    >>> float(m.event_prob(torch.zeros(1, 2)).squeeze())
    1.0
    """

    def __init__(
        self,
        context_dim: int,
        hidden: Sequence[int] = (64, 64),
        min_scale: float = 1e-3,
        mask: MaskArg = None,
    ) -> None:
        super().__init__(1, context_dim, 2, hidden, mask)
        if not min_scale >= 0:
            raise OptionError(f"min_scale={min_scale!r}: expected a number >= 0")
        self.min_scale = float(min_scale)

    def loc_scale(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The mean :math:`h^\mu(c)` and scale :math:`h^\sigma(c)`, each shape ``(...)``."""
        out = self._out(context)
        return out[..., 0], F.softplus(out[..., 1]) + self.min_scale

    def condition(self, context: torch.Tensor) -> dist.Normal:
        """``Normal(h_mu(c), h_sigma(c))`` with batch shape ``context.shape[:-1]``."""
        loc, scale = self.loc_scale(context)
        return dist.Normal(loc, scale)

    def log_event_prob(
        self, context: torch.Tensor, low: Bound = None, high: Bound = None
    ) -> torch.Tensor:
        r""":math:`\log P(low \le y \le high \mid c)` by log-CDFs (stable for tiny values)."""
        loc, scale = self.loc_scale(context)
        u_lo = None if low is None else (_bound(low, -1.0, loc, "low") - loc) / scale
        u_hi = None if high is None else (_bound(high, 1.0, loc, "high") - loc) / scale
        return _log_interval(u_lo, u_hi, loc)

    def event_prob(
        self, context: torch.Tensor, low: Bound = None, high: Bound = None
    ) -> torch.Tensor:
        r""":math:`P(low \le y \le high \mid c) = \Phi(u_{high}) - \Phi(u_{low})`, shape ``(...)``.

        :param context: shape ``(..., context_dim)``.
        :param low: lower bound (a number or a tensor broadcasting to ``(...)``); ``None``:
            unbounded.
        :param high: upper bound, likewise.
        :returns: the probability, differentiable in ``context``; 0 for an empty interval.
        """
        return self.log_event_prob(context, low, high).exp()

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); ``mask`` is the mask's own config or ``None``."""
        return {
            **self._base_config(),
            "min_scale": self.min_scale,
            "mask": self._mask_config(),
        }


# --------------------------------------------------------------------------- joint


class JointGaussian(_MLPDensity):
    r"""The paper's baseline C: :math:`Z \mid X \sim \mathcal N(\mu(X), L(X) L(X)^\top)` jointly.

    One MLP gives the mean and the lower-triangular Cholesky factor :math:`L` (diagonal made
    positive by softplus + ``min_scale``), so the specifications are correlated given the
    features -- unlike SEDGE's factorised likelihoods (Eq. (4)).

    :param y_dim: number of specifications.
    :param context_dim: number of conditioning values.
    :param hidden: hidden layer sizes of the MLP.
    :param min_scale: floor of the Cholesky diagonal.

    Event shape ``(y_dim,)``. A box probability has no closed form for a correlated Gaussian:
    :meth:`event_prob` raises; :meth:`marginal` gives each coordinate's Normal.

    References: Sec. 5.1 (baseline C) of the SEDGE paper.

    >>> m = JointGaussian(2, 3, hidden=(8,))
    >>> tuple(m.condition(torch.zeros(4, 3)).event_shape)
    (2,)
    """

    def __init__(
        self,
        y_dim: int,
        context_dim: int,
        hidden: Sequence[int] = (64, 64),
        min_scale: float = 1e-3,
    ) -> None:
        d = int(y_dim)
        whole("y_dim", d, expected="at least 1")
        super().__init__(d, context_dim, d + d * (d + 1) // 2, hidden, None)
        self.min_scale = float(min_scale)
        rows, cols = torch.tril_indices(d, d)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def loc_scale_tril(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean ``(..., y_dim)`` and Cholesky factor ``(..., y_dim, y_dim)``."""
        out = self._out(context)
        d = self.y_dim
        loc, flat = out[..., :d], out[..., d:]
        tril = out.new_zeros(*out.shape[:-1], d, d)
        tril[..., self._rows, self._cols] = flat
        diag = F.softplus(torch.diagonal(tril, dim1=-2, dim2=-1)) + self.min_scale
        tril = torch.tril(tril, diagonal=-1) + torch.diag_embed(diag)
        return loc, tril

    def condition(self, context: torch.Tensor) -> dist.MultivariateNormal:
        """``MultivariateNormal(mu(c), scale_tril=L(c))``, batch shape ``context.shape[:-1]``."""
        loc, tril = self.loc_scale_tril(context)
        return dist.MultivariateNormal(loc, scale_tril=tril)

    def marginal(self, i: int, context: torch.Tensor) -> dist.Normal:
        r"""The Normal of coordinate ``i``: :math:`\mathcal N(\mu_i, \sqrt{(LL^\top)_{ii}})`."""
        if not 0 <= int(i) < self.y_dim:
            raise IndexError(f"i={i!r}: expected a coordinate in 0..{self.y_dim - 1}")
        loc, tril = self.loc_scale_tril(context)
        scale = tril[..., int(i), :].pow(2).sum(-1).sqrt()
        return dist.Normal(loc[..., int(i)], scale)

    def event_prob(
        self, context: torch.Tensor, low: Bound = None, high: Bound = None
    ) -> torch.Tensor:
        """Not available: a correlated Gaussian's box probability has no closed form.

        :raises NotImplementedError: always; use :meth:`marginal` for one coordinate or a
            Monte Carlo estimate from ``condition(context).sample()``.
        """
        raise NotImplementedError(
            "JointGaussian has no closed-form event probability for a correlated box: use "
            "marginal(i, context).cdf for one coordinate or Monte Carlo from "
            "condition(context).sample()"
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready)."""
        return {
            "y_dim": self.y_dim,
            **self._base_config(),
            "min_scale": self.min_scale,
        }
