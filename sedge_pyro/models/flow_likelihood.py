"""The conditional normalizing flow likelihood of a continuous specification (App. D.2; see
:mod:`sedge_pyro.models.likelihoods`).

References: Durkan, Bekasov, Murray and Papamakarios, Neural Spline Flows, NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import (
    ConditionalAffineAutoregressive,
    ConditionalSpline,
    ConditionalSplineAutoregressive,
)
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from sedge_pyro.errors import OptionError
from sedge_pyro.models.base import ConditionalDensity
from sedge_pyro.models.likelihood_base import (
    _FLOW_TRANSFORMS,
    Bound,
    MaskArg,
    _bound,
    _ContextMixin,
    _log_interval,
    _make_mask,
)
from sedge_pyro.models.nets import mlp
from sedge_pyro.options import whole


class _SplineParams(nn.Module):
    """An MLP of the context returning a rational linear spline's four parameter blocks."""

    def __init__(self, context_dim: int, count_bins: int, hidden: Sequence[int]) -> None:
        super().__init__()
        k = int(count_bins)
        self.sizes = [k, k, k - 1, k]  # widths, heights, derivatives, lambdas
        self.net = mlp(context_dim, sum(self.sizes), hidden)
        last = self.net[-1]
        # start near a fixed spline, whatever the context, so early steps are tame
        for p in (last.weight, last.bias) if isinstance(last, nn.Linear) else ():
            nn.init.zeros_(p)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(self.net(context), self.sizes, dim=-1))


class ConditionalFlow(_ContextMixin, ConditionalDensity):
    r"""App. D.2's conditional normalizing flow :math:`p(y \mid c)` on a standard Normal base.

    :math:`y = T_c(u)`, :math:`u \sim \mathcal N(0, I)`, with Pyro's conditional transforms:

    * ``y_dim == 1``: ``n_transforms`` rational linear splines
      (:class:`pyro.distributions.transforms.ConditionalSpline`) whose bin widths, heights,
      derivatives and lambdas are an MLP of the context (App. D.2: :math:`c_i = MLP_i(x \odot
      M_i)`). Monotone, so :meth:`event_prob` is exact: :math:`P(y \le b \mid c) =
      \Phi(T_c^{-1}(b))`. Inside :math:`[-bound, bound]` the spline is learned, outside it
      is the identity.
    * ``y_dim > 1``: ``n_transforms`` conditional autoregressive layers (``transform=
      "spline"``: :class:`~pyro.distributions.transforms.ConditionalSplineAutoregressive`;
      ``"affine"``: :class:`~pyro.distributions.transforms.ConditionalAffineAutoregressive`),
      alternating the variable order.

    :param y_dim: number of values of ``y``.
    :param context_dim: number of conditioning values (0: unconditional).
    :param count_bins: spline segments (at least 2).
    :param bound: half-width of the spline's box, in normalised units.
    :param hidden: hidden layer sizes of the conditioning networks.
    :param n_transforms: number of transforms; default 1 for ``y_dim == 1``, 2 otherwise.
    :param transform: ``"spline"`` or ``"affine"`` (autoregressive layers, ``y_dim > 1``).
    :param mask: a :class:`~sedge_pyro.models.masks.SigmoidMask` over the context, or
        its ``config()`` dict, or ``True`` for a fresh one (App. D.2's soft mask); ``None``:
        no mask.

    Event shape ``(y_dim,)`` -- also ``(1,)`` for one value (the spline acts on vectors);
    :meth:`log_prob` takes ``y`` of shape ``(..., y_dim)`` either way. The transforms are
    submodules (``self.transforms``), so ``parameters()`` and ``state_dict()`` see them.

    References: App. D.2 ("Likelihood Predictor") of the SEDGE paper; Durkan et al., Neural
    Spline Flows (2019); Dolatabadi et al., linear rational splines (2020).

    >>> f = ConditionalFlow(1, 2, hidden=(8,))
    >>> tuple(f.condition(torch.zeros(5, 2)).sample().shape)
    (5, 1)
    """

    def __init__(
        self,
        y_dim: int,
        context_dim: int,
        count_bins: int = 8,
        bound: float = 4.0,
        hidden: Sequence[int] = (64, 64),
        n_transforms: int | None = None,
        transform: str = "spline",
        mask: MaskArg = None,
    ) -> None:
        super().__init__(y_dim, context_dim)
        whole("y_dim", self.y_dim, expected="at least 1")
        if int(count_bins) < 2:
            raise OptionError(f"count_bins={count_bins!r}: expected at least 2")
        if not bound > 0:
            raise OptionError(f"bound={bound!r}: expected a positive number")
        if transform not in _FLOW_TRANSFORMS:
            raise OptionError(f"transform={transform!r}: expected one of {_FLOW_TRANSFORMS}")
        n = (1 if self.y_dim == 1 else 2) if n_transforms is None else int(n_transforms)
        whole("n_transforms", n, expected="at least 1")
        self.count_bins, self.bound, self.n_transforms = int(count_bins), float(bound), n
        self.hidden = tuple(int(h) for h in hidden)
        self.transform = transform
        self.mask = _make_mask(mask, self.context_dim)
        self.transforms = nn.ModuleList(self._layer(i) for i in range(n))

    def _layer(self, i: int) -> nn.Module:
        k, d = self.count_bins, self.y_dim
        if d == 1:
            params = _SplineParams(self.context_dim, k, self.hidden)
            return ConditionalSpline(params, 1, k, bound=self.bound, order="linear")
        order = torch.arange(d) if i % 2 == 0 else torch.arange(d - 1, -1, -1)
        if self.transform == "affine":
            arn = ConditionalAutoRegressiveNN(
                d, self.context_dim, list(self.hidden), permutation=order
            )
            return ConditionalAffineAutoregressive(arn)
        arn = ConditionalAutoRegressiveNN(
            d,
            self.context_dim,
            list(self.hidden),
            param_dims=[k, k, k - 1, k],
            permutation=order,
        )
        return ConditionalSplineAutoregressive(d, arn, count_bins=k, bound=self.bound)

    def condition(self, context: torch.Tensor) -> dist.TransformedDistribution:
        """The flow conditioned on ``context``: batch shape ``context.shape[:-1]``."""
        c = self._context(context)
        base = dist.Normal(
            torch.zeros(*c.shape[:-1], self.y_dim, dtype=c.dtype, device=c.device), 1.0
        ).to_event(1)
        return dist.ConditionalTransformedDistribution(base, list(self.transforms)).condition(c)

    def median(self, context: torch.Tensor) -> torch.Tensor:
        r"""The median :math:`T_c(0)` for ``y_dim == 1`` (the transforms are monotone), shape
        ``context.shape[:-1]``; differentiable in ``context``. The flow's point prediction,
        as a Gaussian's mean is its own (the guidance loss ``"squared"`` of Algorithm 1).

        :raises NotImplementedError: when ``y_dim > 1``.
        """
        if self.y_dim != 1:
            raise NotImplementedError(f"ConditionalFlow with y_dim={self.y_dim} has no median")
        d = self.condition(context)
        y = torch.zeros(*d.batch_shape, 1, dtype=context.dtype, device=context.device)
        for t in d.transforms:
            y = t(y)
        return y[..., 0]

    def _base_value(self, d: dist.TransformedDistribution, y: torch.Tensor) -> torch.Tensor:
        """:math:`T_c^{-1}(y)`, through the transforms in reverse order."""
        for t in reversed(d.transforms):
            y = t.inv(y)
        return y

    def log_event_prob(
        self, context: torch.Tensor, low: Bound = None, high: Bound = None
    ) -> torch.Tensor:
        r""":math:`\log P(low \le y \le high \mid c)` for ``y_dim == 1``, stable in the tails.

        :math:`\log(\Phi(T_c^{-1}(high)) - \Phi(T_c^{-1}(low)))`: the spline is monotone
        increasing.
        """
        if self.y_dim != 1:
            raise NotImplementedError(
                f"ConditionalFlow with y_dim={self.y_dim} has no closed-form event "
                "probability: estimate it by Monte Carlo from condition(context).sample()"
            )
        d = self.condition(context)
        like = torch.zeros(d.batch_shape + (1,), dtype=context.dtype, device=context.device)

        def through(value: Bound, sign: float, name: str) -> torch.Tensor | None:
            if value is None:
                return None
            b = _bound(value, sign, like, name)
            b = b.unsqueeze(-1) if b.dim() else b
            return self._base_value(d, b.expand_as(like).contiguous())[..., 0]

        return _log_interval(through(low, -1.0, "low"), through(high, 1.0, "high"), like[..., 0])

    def event_prob(
        self, context: torch.Tensor, low: Bound = None, high: Bound = None
    ) -> torch.Tensor:
        r""":math:`P(low \le y \le high \mid c)` exactly, for ``y_dim == 1``.

        :param context: shape ``(..., context_dim)``.
        :param low: lower bound (a number or a tensor broadcasting to ``(...)``); ``None``:
            unbounded.
        :param high: upper bound, likewise.
        :returns: the probability, shape ``(...)``, differentiable in ``context``.
        :raises NotImplementedError: when ``y_dim > 1``.
        """
        return self.log_event_prob(context, low, high).exp()

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); ``mask`` is the mask's own config or ``None``."""
        return {
            "y_dim": self.y_dim,
            "context_dim": self.context_dim,
            "count_bins": self.count_bins,
            "bound": self.bound,
            "hidden": list(self.hidden),
            "n_transforms": self.n_transforms,
            "transform": self.transform,
            "mask": self._mask_config(),
        }
