r"""Learnable soft masks over a likelihood's inputs (Eq. (5), App. D.2).

When a specification's parents :math:`V_i` are unknown, its likelihood sees every feature
through a mask, :math:`V_i = x \odot M_i` with :math:`M_i = \sigma(w_i) \in [0, 1]^d`, and the
objective adds :math:`\beta L_s`, :math:`L_s = \sum_i \lVert M_i \rVert_1` (Eq. (5); App. D.2
writes :math:`M_{ij} = \sigma(w_{ij})`). The features whose weight stays above a threshold
are the learned parents (:func:`sedge_pyro.inference.structure.learn_parents`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sedge_pyro.errors import OptionError

__all__ = ["SigmoidMask"]


class SigmoidMask(nn.Module):
    r"""A soft mask :math:`M = \sigma(w)` multiplying the last dimension of its input (Eq. (5)).

    :param n_in: number of inputs (features) masked.
    :param init: the initial weight of every input, in ``(0, 1)``; the default 0.9 starts with
        every feature visible, so the likelihood first learns and the L1 penalty then removes.
    :param temperature: ``None`` (default): :math:`x \odot M` always, Eq. (5) as written. A
        positive number: while the module is in training mode each row gets its own random gate
        :math:`g_j \sim \mathrm{BinaryConcrete}(M_j, temperature)` (a relaxed Bernoulli with
        :math:`P(g_j \approx 1) = M_j`) and the output is :math:`x \odot g`; in eval mode it is
        :math:`x \odot M`. With gates, :math:`\lVert M \rVert_1` is the expected number of
        inputs used, and the network cannot undo a small weight by scaling its first layer up,
        so the penalised optimum keeps an input (:math:`M_j \to 1`) exactly when it is worth
        more than the L1 price and drops it (:math:`M_j \to 0`) otherwise.
    :raises ValueError: when ``n_in`` is negative, ``init`` is not in ``(0, 1)`` or
        ``temperature`` is not positive.

    References: Eq. (5) and App. D.2 ("Causal Mask") of the SEDGE paper.

    >>> m = SigmoidMask(3, init=0.5)
    >>> m(torch.ones(2, 3)).tolist()
    [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    >>> float(m.l1().detach())
    1.5
    """

    def __init__(self, n_in: int, init: float = 0.9, temperature: float | None = None) -> None:
        super().__init__()
        if int(n_in) < 0:
            raise OptionError(f"n_in={n_in!r}: expected a number of inputs >= 0")
        if not 0.0 < float(init) < 1.0:
            raise OptionError(f"init={init!r}: expected an initial mask weight in (0, 1)")
        if temperature is not None and not float(temperature) > 0:
            raise OptionError(f"temperature={temperature!r}: expected a positive number or None")
        self.n_in = int(n_in)
        self.init = float(init)
        self.temperature = None if temperature is None else float(temperature)
        self.logits = nn.Parameter(torch.full((self.n_in,), math.log(init / (1.0 - init))))

    @property
    def weights(self) -> torch.Tensor:
        r"""The mask :math:`M = \sigma(w)`, shape ``(n_in,)``."""
        return torch.sigmoid(self.logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`x \odot M` for ``x`` of shape ``(..., n_in)``.

        While training with a ``temperature``, :math:`x \odot g` with random gates instead.
        """
        if self.temperature is None or not self.training:
            return x * self.weights
        # binary concrete (Maddison et al. 2017): sigmoid((w + logit(u)) / temperature)
        u = torch.rand_like(x).clamp(1e-6, 1.0 - 1e-6)
        gate = torch.sigmoid((self.logits + torch.log(u) - torch.log1p(-u)) / self.temperature)
        return x * gate

    def l1(self) -> torch.Tensor:
        r""":math:`\lVert M \rVert_1`, the mask's share of :math:`L_s` in Eq. (5)."""
        return self.weights.sum()

    def selected(self, threshold: float = 0.5) -> list[int]:
        """Indices of the inputs whose weight exceeds ``threshold``, in input order."""
        return [int(i) for i in torch.nonzero(self.weights > threshold).flatten()]

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready)."""
        return {"n_in": self.n_in, "init": self.init, "temperature": self.temperature}

    def extra_repr(self) -> str:
        """Shown by ``repr``."""
        return f"n_in={self.n_in}, temperature={self.temperature}"
