r"""Priors :math:`p(X)` over the features, in the model's normalised units.

Three :class:`~sedge_pyro.models.base.Prior` s, each with ``config()`` (its constructor
arguments, JSON-ready) so that ``cls(**prior.config())`` followed by ``load_state_dict``
restores it (the flow lives in :mod:`~sedge_pyro.models.flow_prior`, the DDPM in
:mod:`~sedge_pyro.models.diffusion_prior`; both are importable from here):

* :class:`EmpiricalPrior` -- the training rows themselves, resampled with replacement (plus
  optional Gaussian jitter). Nothing to fit, no density.
* :class:`FlowPrior` -- a normalizing flow built from Pyro's transforms, fit by maximum
  likelihood; it has a log-density, so Langevin, NUTS and importance weights can use it.
* :class:`DiffusionPrior` -- a DDPM (Ho et al. 2020): an epsilon network
  :math:`\epsilon_\theta(x_t, t)` fit by the "simple" denoising loss, with the reverse-chain
  pieces Algorithm 2 (DPS) and annealed Langevin need (:meth:`DiffusionPrior.eps`,
  :meth:`~DiffusionPrior.score`, :meth:`~DiffusionPrior.posterior_mean`,
  :meth:`~DiffusionPrior.step`). No density.

Every ``sample`` takes an optional :class:`torch.Generator`; the base noise is drawn with it on
the generator's device and moved to the module's device, so a CPU generator seeds a CUDA model
too.

References:
* Ho, Jain and Abbeel, Denoising Diffusion Probabilistic Models, NeurIPS 2020.
* Nichol and Dhariwal, Improved Denoising Diffusion Probabilistic Models, ICML 2021.
* Durkan, Bekasov, Murray and Papamakarios, Neural Spline Flows, NeurIPS 2019.
* Papamakarios, Pavlakou and Murray, Masked Autoregressive Flow for Density Estimation,
  NeurIPS 2017.
* The SEDGE paper, App. C, Algorithm 2 (diffusion posterior sampling).
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch

from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.models.base import Prior
from sedge_pyro.models.diffusion_prior import SCHEDULES, DiffusionPrior  # noqa: F401 (re-export)
from sedge_pyro.models.flow_prior import FLOW_KINDS, FlowPrior  # noqa: F401 (re-export)
from sedge_pyro.models.prior_tools import (
    _check_rows,
    _randint,
    _randn,
    _resize_buffer_on_load,
)
from sedge_pyro.options import whole

#: FlowPrior and DiffusionPrior live in their own modules; imported here, where they always were
__all__ = ["DiffusionPrior", "EmpiricalPrior", "FlowPrior", "GaussianPrior"]


# --------------------------------------------------------------------------- empirical


class EmpiricalPrior(Prior):
    """The empirical distribution of the training rows, optionally smoothed by Gaussian jitter.

    :param dim: number of features.
    :param jitter: standard deviation of the Gaussian noise added to each resampled row, in
        normalised units (0: the rows exactly).

    :meth:`setup` stores the rows in the persistent buffer ``rows``, so ``state_dict()`` saves
    them and ``load_state_dict`` accepts rows of any count. There is nothing to fit and no
    log-density (``has_log_prob`` is ``False``).

    >>> p = EmpiricalPrior(2)
    >>> p.setup(torch.arange(6.0).reshape(3, 2))
    >>> tuple(p.sample(5).shape)
    (5, 2)
    """

    has_log_prob = False

    def __init__(self, dim: int, jitter: float = 0.0) -> None:
        super().__init__(dim)
        whole("dim", self.dim, expected="at least 1")
        if not jitter >= 0:
            raise OptionError(f"jitter={jitter!r}: expected a number >= 0")
        self.jitter = float(jitter)
        self.rows: torch.Tensor
        self.register_buffer("rows", torch.empty(0, self.dim), persistent=True)

    def setup(self, x: torch.Tensor) -> None:
        """Store the training rows ``x`` of shape ``(n, dim)`` (a detached copy)."""
        _check_rows(x, self.dim, "EmpiricalPrior.setup")
        if x.shape[0] == 0:
            raise DataError("EmpiricalPrior.setup: x has no rows: expected at least one")
        self.rows = x.detach().to(self.rows.device, self.rows.dtype).clone()

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` rows drawn uniformly with replacement, plus ``N(0, jitter^2)`` noise."""
        if self.rows.shape[0] == 0:
            raise DataError("EmpiricalPrior.sample: no rows stored: call setup(x) first")
        idx = _randint(self.rows.shape[0], (int(n),), self.rows.device, generator)
        x = self.rows[idx]
        if self.jitter > 0:
            x = x + self.jitter * _randn(x.shape, x, generator)
        return x

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _resize_buffer_on_load(self, state_dict, prefix, ["rows"])
        super()._load_from_state_dict(state_dict, prefix, *args)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); the rows travel in ``state_dict()``."""
        return {"dim": self.dim, "jitter": self.jitter}


class GaussianPrior(Prior):
    r"""A full-covariance Gaussian :math:`\mathcal N(\mu, LL^\top)` over the features.

    Its maximum-likelihood fit is closed form, so :meth:`setup` sets the sample mean and the
    Cholesky factor of the (biased) sample covariance and there is nothing left to fit; the
    parameters are buffers, so they can also be set by hand (a known model).

    :param dim: number of features.

    >>> p = GaussianPrior(2)
    >>> p.setup(torch.tensor([[0.0, 1.0], [2.0, 3.0], [1.0, 2.0]]))
    >>> p.loc.tolist()
    [1.0, 2.0]
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        whole("dim", self.dim, expected="at least 1")
        self.loc: torch.Tensor
        self.scale_tril: torch.Tensor
        self.register_buffer("loc", torch.zeros(self.dim))
        self.register_buffer("scale_tril", torch.eye(self.dim))

    def setup(self, x: torch.Tensor) -> None:
        """Set the maximum-likelihood mean and covariance of the rows ``x`` (n, dim)."""
        _check_rows(x, self.dim, "GaussianPrior.setup")
        if x.shape[0] < 2:
            raise DataError("GaussianPrior.setup: x has fewer than 2 rows: expected at least 2")
        x = x.detach().to(self.loc.device, torch.float64)
        loc = x.mean(0)
        cov = (x - loc).T @ (x - loc) / x.shape[0]
        cov = cov + 1e-9 * torch.eye(self.dim, dtype=cov.dtype, device=cov.device)
        self.loc = loc.to(self.scale_tril.dtype)
        self.scale_tril = torch.linalg.cholesky(cov).to(self.loc.dtype)

    def distribution(self) -> dist.MultivariateNormal:
        """The prior as a Pyro distribution (event shape ``(dim,)``)."""
        return dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` for ``x`` of shape ``(..., dim)``; differentiable in ``x``."""
        return self.distribution().log_prob(x)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws ``loc + L u``, ``u`` standard normal drawn with ``generator``."""
        u = _randn((int(n), self.dim), self.loc, generator)
        return self.loc + u @ self.scale_tril.T

    @property
    def trainable(self) -> bool:
        """Nothing to fit: :meth:`setup` is the maximum-likelihood estimate."""
        return False

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); the parameters travel in ``state_dict()``."""
        return {"dim": self.dim}
