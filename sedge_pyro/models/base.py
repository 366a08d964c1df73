"""The interfaces every fitted component implements.

A :class:`ConditionalDensity` is ``p(y | context)``: a specification's likelihood
``p(Z_i | V_i)`` (Eq. 4), a baseline's ``p(X | Z)``, or a conditional feature density. A
:class:`Prior` is ``p(X)`` over the features. Both are plain ``torch.nn.Module`` s; their
``model`` method is the Pyro program their parameters are fit by (with an empty guide, SVI on
``Trace_ELBO`` is maximum likelihood), registered with :func:`pyro.module` only there, so a
fitted component used later by a sampler is not a Pyro parameter and stays frozen
(STACK-NOTES: freezing a network).

Everything works in the model's normalised units (Algorithm 1, step 1); the
:class:`~sedge_pyro.models.SEDGEModel` converts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyro
import pyro.distributions as dist
import torch
from torch import nn

__all__ = ["BOX_MARGIN", "ConditionalDensity", "Prior", "box_margin", "data_plate", "seen_box"]

#: the box the model-based samplers stay in is the training features' range widened on each
#: side by this fraction of its width, or by ``3 / rows`` where that is smaller: how far a
#: bounded feature's true edge plausibly lies past the rows' extremes (for a density bounded
#: away from 0 at its edge the gap is about ``width / rows``, and over ``3 width / rows`` with
#: probability about 5%). SEDGE extrapolates to unseen *combinations* inside the seen
#: features' range (the blocks' overlap, Prop. 2), not past it, and a wide margin costs
#: draws: a flow's smoothed edges put mass in it (the paper's task, 18,000 rows: 2% of MALA's
#: draws sat in a 5% margin; the grid's ``tanh`` variant, 24,718 rows: 2.4% of svi's in a
#: ``1 / sqrt(rows)`` one, all outside the features' true range)
BOX_MARGIN = 0.05


def box_margin(rows: int) -> float:
    """The box's margin as a fraction of each feature's range: :data:`BOX_MARGIN`, or
    ``3 / rows`` where smaller.

    >>> box_margin(20), box_margin(30_000)
    (0.05, 0.0001)
    """
    return min(BOX_MARGIN, 3.0 / max(int(rows), 1))


def seen_box(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``, shape ``(d,)``: the range of rows ``x`` (shape ``(n, d)``) per column,
    widened by :func:`box_margin` of its width on each side (a constant column by 1e-6).
    """
    lo, hi = x.min(0).values, x.max(0).values
    width = (hi - lo).clamp_min(1e-6)
    margin = box_margin(len(x))
    return lo - margin * width, hi + margin * width


@contextlib.contextmanager
def data_plate(name: str, n_batch: int, n_total: int | None) -> Iterator[None]:
    """A plate over a minibatch of ``n_batch`` rows standing for ``n_total`` rows.

    The log-likelihood is scaled by ``n_total / n_batch`` (Pyro's subsampling), so the loss of
    one step estimates the loss of the whole data set. The minibatch is drawn by the caller,
    so the plate is given it (``subsample``) rather than ``subsample_size``, with which Pyro
    would draw ``randperm(n_total)`` of its own at every step: 10 ms a step at 10^6 rows.
    """
    size = n_batch if n_total is None else int(n_total)
    with pyro.plate(name, size=size, subsample=torch.arange(n_batch)):
        yield


class ConditionalDensity(nn.Module):
    """``p(y | context)`` for ``y`` of ``y_dim`` values given ``context_dim`` values.

    :param y_dim: number of values of ``y`` (1 for one specification).
    :param context_dim: number of conditioning values (0 allowed: an unconditional density).

    Subclasses implement :meth:`condition`; the rest follows.
    """

    #: whether ``y`` takes discrete values (Bernoulli, categorical)
    discrete: bool = False

    def __init__(self, y_dim: int, context_dim: int) -> None:
        super().__init__()
        self.y_dim = int(y_dim)
        self.context_dim = int(context_dim)

    def condition(self, context: torch.Tensor) -> dist.Distribution:
        """The distribution of ``y`` given ``context`` of shape ``(..., context_dim)``.

        Batch shape ``context.shape[:-1]``; event shape ``()`` when ``y_dim == 1`` and the
        density is scalar, ``(y_dim,)`` otherwise (see :meth:`log_prob`).
        """
        raise NotImplementedError

    def log_prob(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``log p(y | context)`` with ``y`` of shape ``(..., y_dim)``; returns shape ``(...)``."""
        d = self.condition(context)
        if d.event_shape == ():
            return d.log_prob(y.squeeze(-1))
        return d.log_prob(y)

    def event_prob(
        self,
        context: torch.Tensor,
        low: float | None = None,
        high: float | None = None,
    ) -> torch.Tensor:
        """``P(low <= y <= high | context)`` for scalar ``y`` (``None``: unbounded).

        Closed form where one exists (Gaussian CDF, Bernoulli, categorical, monotone 1-D
        flows); differentiable in ``context``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no event probability")

    def model(
        self,
        y: torch.Tensor,
        context: torch.Tensor,
        *,
        name: str = "y",
        n_total: int | None = None,
    ) -> None:
        """The Pyro program fitting this density: ``y ~ p(. | context)`` observed."""
        pyro.module(name, self)
        d = self.condition(context)
        obs = y.squeeze(-1) if d.event_shape == () else y
        with data_plate(f"{name}_data", y.shape[0], n_total):
            pyro.sample(name, d, obs=obs)


class Prior(nn.Module):
    """``p(X)`` over ``dim`` features, in normalised units.

    :param dim: number of features.
    """

    #: whether :meth:`log_prob` is available (not for empirical or diffusion priors)
    has_log_prob: bool = True

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)

    def setup(self, x: torch.Tensor) -> None:
        """Prepare from the full training matrix before fitting (e.g. store rows). Optional."""

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws, shape ``(n, dim)``, on the module's device."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` for ``x`` of shape ``(..., dim)``."""
        raise NotImplementedError(f"{type(self).__name__} has no log-density")

    def model(self, x: torch.Tensor, *, name: str = "X", n_total: int | None = None) -> None:
        """The Pyro program fitting this prior (nothing to fit by default)."""

    @property
    def trainable(self) -> bool:
        """Whether the prior has parameters to fit."""
        return any(p.requires_grad for p in self.parameters())
