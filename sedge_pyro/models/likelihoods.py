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

from collections.abc import Mapping, Sequence
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.transforms import (
    ConditionalAffineAutoregressive,
    ConditionalSpline,
    ConditionalSplineAutoregressive,
)
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from sedge_pyro.errors import DataError, OptionError, TargetError
from sedge_pyro.models.base import ConditionalDensity
from sedge_pyro.models.masks import SigmoidMask
from sedge_pyro.models.nets import mlp
from sedge_pyro.options import whole

__all__ = [
    "BernoulliMLP",
    "CategoricalMLP",
    "ConditionalFlow",
    "GaussianMLP",
    "JointGaussian",
    "MonotoneBernoulli",
]

Bound = float | torch.Tensor | None
MaskArg = SigmoidMask | Mapping[str, Any] | bool | None

#: an infinite bound, in normalised units (keeps gradients finite where ``inf`` would not)
_BIG = 1e6
_FLOW_TRANSFORMS = ("spline", "affine")


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- discrete


class _DiscreteMLP(_MLPDensity):
    discrete = True

    def _logp_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def log_event_prob(
        self, context: torch.Tensor, low: Bound = None, high: Bound = None
    ) -> torch.Tensor:
        r""":math:`\log P(low \le y \le high \mid c)`: log-sum of the masses inside."""
        logp, values = self._logp_values(context)
        return _discrete_log_event_prob(logp, low, high, values)

    def event_prob(
        self, context: torch.Tensor, low: Bound = None, high: Bound = None
    ) -> torch.Tensor:
        r""":math:`P(low \le y \le high \mid c)`: the summed mass of the values inside.

        :param context: shape ``(..., context_dim)``.
        :param low: lower bound on the value (a number or a tensor broadcasting to
            ``(...)``); ``None``: unbounded.
        :param high: upper bound, likewise.
        :returns: the probability, shape ``(...)``, differentiable in ``context``.
        """
        return self.log_event_prob(context, low, high).exp()

    def prob_of(self, value: float | torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``P(y = value | c)`` for a point value (0 for a value ``y`` never takes)."""
        return self.event_prob(context, value, value)


class BernoulliMLP(_DiscreteMLP):
    r""":math:`y \mid c \sim \mathrm{Bernoulli}(\sigma(h(c)))` for a binary specification.

    :param context_dim: number of conditioning values (0: unconditional).
    :param hidden: hidden layer sizes of the MLP.
    :param mask: a :class:`~sedge_pyro.models.masks.SigmoidMask` over the context, or
        its ``config()`` dict, or ``True`` for a fresh one (Eq. (5)); ``None``: no mask.

    ``y`` takes the values 0 and 1; event shape ``()``. :meth:`event_prob` has value
    semantics: it sums the masses of 0 and 1 that lie in ``[low, high]``.

    References: Sec. 4.1 (Eq. (4) with a Bernoulli likelihood) of the SEDGE paper.

    >>> m = BernoulliMLP(1, hidden=(4,))
    >>> c = torch.zeros(3, 1)
    >>> bool(torch.allclose(m.prob_of(0, c) + m.prob_of(1, c), torch.ones(3)))
    True
    """

    def __init__(
        self,
        context_dim: int,
        hidden: Sequence[int] = (64, 64),
        mask: MaskArg = None,
    ) -> None:
        super().__init__(1, context_dim, 1, hidden, mask)

    def logits(self, context: torch.Tensor) -> torch.Tensor:
        """The logit of ``P(y = 1 | c)``, shape ``(...)``."""
        return self._out(context)[..., 0]

    def condition(self, context: torch.Tensor) -> dist.Bernoulli:
        """``Bernoulli(logits=h(c))`` with batch shape ``context.shape[:-1]``."""
        return dist.Bernoulli(logits=self.logits(context))

    def _logp_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.logits(context)
        logp = torch.stack([F.logsigmoid(-logit), F.logsigmoid(logit)], dim=-1)
        return logp, torch.arange(2, dtype=logp.dtype, device=logp.device)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); ``mask`` is the mask's own config or ``None``."""
        return {**self._base_config(), "mask": self._mask_config()}


class _MonotoneNet(nn.Module):
    r"""An MLP non-decreasing in each input of :math:`s \odot c`, :math:`s = \tanh(\theta)`
    learned: positive weights (softplus of free parameters) and increasing activations (tanh),
    so its output is monotone in every input, in the direction :math:`\operatorname{sign}(s_j)`
    (Sill 1998; Daniels and Velikova 2010). One output.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        sizes = [int(in_dim), *(int(h) for h in hidden), 1]
        self.direction = nn.Parameter(torch.zeros(int(in_dim)))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            # softplus(-1 +- 0.5) ~ 0.2-0.5: a layer's outputs start on the scale of its inputs
            self.weights.append(nn.Parameter(torch.randn(b, a) * 0.5 - 1.0))
            self.biases.append(nn.Parameter(torch.zeros(b)))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        h = c * torch.tanh(self.direction)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ F.softplus(w).T + b
            if i < last:
                h = torch.tanh(h)
        return h


class MonotoneBernoulli(BernoulliMLP):
    r""":math:`y \mid c \sim \mathrm{Bernoulli}(\sigma(h(c)))` with :math:`h` monotone in every
    parent: for a threshold specification (``obese = bmi >= 30``; a spec that turns on as a
    score of its parents rises). Each parent's direction is learned (:math:`s_j =
    \tanh(\theta_j)`, either sign, or flat at 0), the network has positive weights and
    increasing activations, so :math:`P(y = 1 \mid c)` never turns back where the data stop:
    an unconstrained MLP fit on the rows may say anything in the parents' combinations no row
    has (the selection's hole) and at their edges (on scikit-learn's diabetes table a
    Bernoulli MLP gave ``P(obese | bmi <= 12) ~ 1``).

    :param context_dim: number of conditioning values (at least 1).
    :param hidden: hidden layer sizes of the monotone network.
    :param mask: as :class:`BernoulliMLP` (a positive scaling of the context, which keeps the
        monotonicity).

    >>> m = MonotoneBernoulli(2, hidden=(4,))
    >>> c = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> p = m.prob_of(1, c).detach()  # rises with the first parent where its direction > 0
    >>> bool((p[1] - p[0]) * m.directions()[0] >= 0)
    True
    """

    def __init__(
        self,
        context_dim: int,
        hidden: Sequence[int] = (64, 64),
        mask: MaskArg = None,
    ) -> None:
        if int(context_dim) < 1:
            raise OptionError(
                f"context_dim={context_dim!r}: a monotone likelihood needs at least one parent"
            )
        super().__init__(context_dim, hidden, mask)
        self.net = _MonotoneNet(self.context_dim, self.hidden)

    def directions(self) -> torch.Tensor:
        r"""Each parent's learned direction :math:`s_j \in (-1, 1)`, shape ``(context_dim,)``."""
        return torch.tanh(self.net.direction).detach()


class CategoricalMLP(_DiscreteMLP):
    r""":math:`y \mid c \sim \mathrm{Categorical}(\mathrm{softmax}(h(c)))` on codes ``0..K-1``.

    :param context_dim: number of conditioning values (0: unconditional).
    :param n_classes: number of classes :math:`K \ge 2`.
    :param hidden: hidden layer sizes of the MLP.
    :param mask: a :class:`~sedge_pyro.models.masks.SigmoidMask` over the context, or
        its ``config()`` dict, or ``True`` for a fresh one (Eq. (5)); ``None``: no mask.

    Event shape ``()``; the model maps category labels to the codes. :meth:`event_prob` sums
    the masses of the codes in ``[low, high]``.

    References: Sec. 4.1 (Eq. (4) with a categorical likelihood) of the SEDGE paper.

    >>> m = CategoricalMLP(2, 3, hidden=(4,))
    >>> round(float(m.event_prob(torch.zeros(2)).detach()), 6)
    1.0
    """

    def __init__(
        self,
        context_dim: int,
        n_classes: int,
        hidden: Sequence[int] = (64, 64),
        mask: MaskArg = None,
    ) -> None:
        if int(n_classes) < 2:
            raise OptionError(f"n_classes={n_classes!r}: expected at least 2 classes")
        super().__init__(1, context_dim, int(n_classes), hidden, mask)
        self.n_classes = int(n_classes)

    def logits(self, context: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-probabilities of the classes, shape ``(..., n_classes)``."""
        return self._out(context)

    def condition(self, context: torch.Tensor) -> dist.Categorical:
        """``Categorical(logits=h(c))`` with batch shape ``context.shape[:-1]``."""
        return dist.Categorical(logits=self.logits(context))

    def _logp_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(self.logits(context), dim=-1)
        return logp, torch.arange(self.n_classes, dtype=logp.dtype, device=logp.device)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); ``mask`` is the mask's own config or ``None``."""
        return {
            **self._base_config(),
            "n_classes": self.n_classes,
            "mask": self._mask_config(),
        }


# --------------------------------------------------------------------------- flow


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
