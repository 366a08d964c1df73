"""Likelihoods of discrete specifications (Eq. 4): Bernoulli, monotone Bernoulli and
categorical MLPs over the parents (see :mod:`sedge_pyro.models.likelihoods`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from sedge_pyro.errors import OptionError
from sedge_pyro.models.likelihood_base import (
    Bound,
    MaskArg,
    _discrete_log_event_prob,
    _MLPDensity,
)


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
