"""The small networks every fitted component is built from.

The paper parameterises each likelihood's mean and scale by multi-layer perceptrons
(Sec. 4.1, Eq. (4)) and conditions its flows on an MLP of the masked context (App. D.2);
:func:`mlp` is that network, shared by every component so they all look alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sedge_pyro.errors import OptionError

__all__ = ["Constant", "mlp"]


class Constant(nn.Module):
    """A learned constant vector, broadcast over the batch: the MLP of an empty input.

    ``forward(x)`` with ``x`` of shape ``(..., 0)`` returns shape ``(..., out_dim)``, so a
    density with no conditioning values (``context_dim == 0``) needs no special case.

    :param out_dim: size of the output.
    """

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.out_dim = int(out_dim)
        self.bias = nn.Parameter(torch.zeros(self.out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The constant, expanded to ``x.shape[:-1] + (out_dim,)``."""
        return self.bias.expand(*x.shape[:-1], self.out_dim)


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.SiLU,
) -> nn.Sequential:
    """A multi-layer perceptron ``in_dim -> hidden... -> out_dim`` (Sec. 4.1, Eq. (4)).

    :param in_dim: number of inputs; 0 gives a learned constant (:class:`Constant`).
    :param out_dim: number of outputs (no activation on the last layer).
    :param hidden: sizes of the hidden layers (empty: a linear map).
    :param activation: the nonlinearity class put after each hidden layer.
    :returns: an ``nn.Sequential`` acting on the last dimension, any leading batch dimensions.
    :raises ValueError: when a size is negative or ``out_dim`` is not positive.

    >>> net = mlp(3, 2, hidden=(8,))
    >>> tuple(net(torch.zeros(5, 4, 3)).shape)
    (5, 4, 2)
    >>> tuple(mlp(0, 2)(torch.zeros(5, 0)).shape)
    (5, 2)
    """
    in_dim, out_dim = int(in_dim), int(out_dim)
    sizes = [int(h) for h in hidden]
    if in_dim < 0 or out_dim < 1 or any(h < 1 for h in sizes):
        raise OptionError(
            f"mlp(in_dim={in_dim}, out_dim={out_dim}, hidden={tuple(sizes)}): expected "
            "in_dim >= 0, out_dim >= 1 and positive hidden sizes"
        )
    if in_dim == 0:
        return nn.Sequential(Constant(out_dim))
    layers: list[nn.Module] = []
    width = in_dim
    for h in sizes:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
