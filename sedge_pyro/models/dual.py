r"""A dual-divergence prior :math:`p(X)` for small samples (seed 003: Garg et al.).

The KL divergence between the data distribution :math:`p` and the product of its marginals
:math:`q = \prod_j p_j` has the Donsker-Varadhan (DV) dual form

.. math::

    \mathrm{KL}(p \,\|\, q) = \sup_T \; \mathbb E_p[T(X)] - \log \mathbb E_q[e^{T(X)}],

attained at :math:`T^*(x) = \log p(x) / q(x) + c`. A network :math:`T` fit on this bound
embeds every row in one dimension (the *dual space*), and, with 1-D densities of the
marginals, gives a density

.. math::

    \log p(x) = \sum_j \log p_j(x_j) + T(x) - \log \mathbb E_q[e^{T}].

:class:`DualDivergencePrior` is that prior. New rows are made by a *gradient walk*: start
from draws of :math:`q` (or from training rows) and move along :math:`\nabla_x T` until
:math:`T(x)` reaches a level inside the range the training rows span in the dual space
(the seed's "any sample embedded between those two end points is in-distribution"); a
Langevin variant samples the full :meth:`~DualDivergencePrior.log_prob` instead.

The seed is an abstract; where it is silent these are the choices made, from the KL-dual
literature:

* **Objectives** (``objective=``): ``"dv"``, the DV bound with the minibatch's
  log-mean-exp (Donsker and Varadhan 1983; Belghazi et al. 2018); ``"mine"``, the same value
  with MINE's moving-average correction of the gradient of :math:`\log \mathbb E_q e^T`
  (lower-variance, less biased gradients; Belghazi et al. 2018, Sec. 3.2); ``"nwj"``, the
  :math:`f`-divergence bound :math:`\mathbb E_p T - \mathbb E_q e^{T-1}` (Nguyen, Wainwright
  and Jordan 2010), a sum of per-row terms with no log of an average, so unbiased on a
  minibatch.
* **Negatives**: rows of :math:`q` are made by drawing every column from an independent row
  of the training set (independent column permutations), from all stored rows, not only the
  minibatch.
* **Path-based, localized estimation** (``path_steps=K``): the seed's path-based estimator,
  read as telescoping density-ratio estimation (Rhodes, Xu and Gutmann 2020). The DV bound's
  variance grows exponentially with the divergence (McAllester and Stratos 2020), and the
  divergence to the product of marginals of a 64-pixel image is large. Waymarks
  :math:`x_k = \sqrt{1 - \alpha_k^2}\, x + \alpha_k\, \tilde x`, :math:`x \sim p`,
  :math:`\tilde x \sim q`, :math:`\alpha_k = k / K`, form a path from :math:`p` (``k = 0``) to
  :math:`q` (``k = K``); one head :math:`T_k` of a shared network estimates each *local*
  divergence between neighbours :math:`p_k, p_{k+1}`, and
  :math:`\log p / q = \sum_k \log p_k / p_{k+1}`, so :math:`T = \sum_k T_k`. ``K = 1`` is the
  direct estimator. ``benchmarks/dual_estimator.py`` measures the effect on the estimate's
  spread.
* **Marginals**: a Gaussian kernel density estimate per column (Silverman's rule for the
  bandwidth), as a batched :class:`pyro.distributions.MixtureSameFamily`.
* **The embedding** (:meth:`~DualDivergencePrior.embedding`): :math:`T` (calibrated to the
  log-ratio) of every training row, its two end points (minimum and maximum), and its
  clusters: runs of sorted values separated by gaps wider than ``gap_factor`` times the
  values' kernel bandwidth.
* **Walk targets**: a walker stops at a level :math:`\tau` drawn between two consecutive
  sorted training embeddings (so the levels follow the training rows' distribution in the
  dual space but never repeat a training row's value); a share ``gap_preference`` of walkers
  aim at the gaps between clusters instead, where the seed places novel samples.

References:
* Garg, Schneider, Raj, Rasul, Nevmyvaka, Gopal, Dhurandhar, Cecchi and Rish, Deep Generative
  Sampling in the Dual Divergence Space: A Data-efficient & Interpretative Approach for
  Generative AI (seed 003).
* Donsker and Varadhan, Asymptotic evaluation of certain Markov process expectations for large
  time IV, Comm. Pure Appl. Math. 1983.
* Belghazi et al., Mutual Information Neural Estimation, ICML 2018.
* Nguyen, Wainwright and Jordan, Estimating divergence functionals and the likelihood ratio by
  convex risk minimization, IEEE Trans. Inf. Theory 2010.
* Rhodes, Xu and Gutmann, Telescoping Density-Ratio Estimation, NeurIPS 2020.
* McAllester and Stratos, Formal Limitations on the Measurement of Mutual Information,
  AISTATS 2020.
* Roberts and Tweedie, Exponential convergence of Langevin distributions and their discrete
  approximations, Bernoulli 1996 (the unadjusted Langevin algorithm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.models.base import Prior, data_plate
from sedge_pyro.models.dual_walk import (  # noqa: F401 (re-exported: public names of this module)
    SAMPLERS,
    STARTS,
    DualEmbedding,
    WalkInfo,
    WalkState,
    _bandwidth,
    _DualSampling,
    _log_mean_exp,
    walk_init,
    walk_step,
)
from sedge_pyro.models.nets import mlp
from sedge_pyro.models.prior_tools import _check_rows, _randint, _randn, _resize_buffer_on_load
from sedge_pyro.options import choice, number, whole

__all__ = [
    "DualDivergencePrior",
    "DualEmbedding",
    "WalkInfo",
    "WalkState",
    "walk_init",
    "walk_step",
]

OBJECTIVES = ("dv", "mine", "nwj")
#: largest number of kernel centres per marginal (a fixed random subset beyond it)
_KDE_ROWS = 1000
#: negatives per evaluation (the held-out loss, the normaliser, the divergence estimate)
_EVAL_NEGATIVES = 8192


# --------------------------------------------------------------------------- the prior


class DualDivergencePrior(_DualSampling, Prior):
    r"""A prior from the KL divergence to the product of marginals in its dual form.

    :param dim: number of features.
    :param objective: the bound :math:`T` maximises: ``"dv"`` (Donsker-Varadhan), ``"mine"``
        (DV with MINE's moving-average gradient correction) or ``"nwj"``.
    :param path_steps: ``K``, the number of local divergences on the path from the data to
        the product of marginals (telescoping, one head per step); 1 is the direct estimate.
    :param hidden: hidden layer sizes of the network (an MLP with SiLU, ``K`` outputs).
    :param n_negatives: product-of-marginals rows per training step.
    :param ma_rate: the moving average's rate for ``objective="mine"``.
    :param bandwidth: the marginals' kernel bandwidth in normalised units; ``None``:
        Silverman's rule per column.
    :param sampler: what :meth:`sample` runs: ``"walk"`` (:meth:`walk`) or ``"langevin"``
        (:meth:`langevin`).
    :param gap_preference: the share of walkers aiming at gaps between clusters.
    :param gap_factor: the width, in kernel bandwidths of the embedding, of a gap that
        separates two clusters.

    :meth:`setup` stores the training rows (the product-of-marginals negatives are drawn from
    them) and the marginals' bandwidths; :meth:`model` is the bound as a :func:`pyro.factor`,
    so :func:`~sedge_pyro.inference.fit_component` (SVI with an empty guide) maximises it, and
    its loss per row is minus the divergence estimate.

    >>> p = DualDivergencePrior(2, hidden=(8,))
    >>> p.setup(torch.randn(50, 2))
    >>> tuple(p.log_prob(torch.zeros(3, 2)).shape), tuple(p.sample(4).shape)
    ((3,), (4, 2))
    """

    def __init__(
        self,
        dim: int,
        objective: str = "dv",
        path_steps: int = 1,
        hidden: Sequence[int] = (128, 128),
        n_negatives: int = 512,
        ma_rate: float = 0.01,
        bandwidth: float | None = None,
        sampler: str = "walk",
        gap_preference: float = 0.0,
        gap_factor: float = 2.0,
        smoothness: float = 0.01,
    ) -> None:
        super().__init__(whole("dim", dim))
        if not 0 < number("ma_rate", ma_rate) <= 1:
            raise OptionError(f"ma_rate={ma_rate!r}: expected a number in (0, 1]")
        if not number("gap_preference", gap_preference, positive=False) <= 1:
            raise OptionError(f"gap_preference={gap_preference!r}: expected a number in [0, 1]")
        self.hidden = tuple(whole("hidden", h) for h in hidden)
        self.objective = choice("objective", objective, OBJECTIVES)
        self.path_steps = whole("path_steps", path_steps)
        self.n_negatives = whole("n_negatives", n_negatives, low=2)
        self.ma_rate = float(ma_rate)
        self.bandwidth = number("bandwidth", bandwidth, none_ok=True)
        self.sampler = choice("sampler", sampler, SAMPLERS)
        self.gap_preference = float(gap_preference)
        self.gap_factor = number("gap_factor", gap_factor)
        self.smoothness = number("smoothness", smoothness, positive=False)
        self.net = mlp(self.dim, self.path_steps, self.hidden)
        self.rows: torch.Tensor
        self.centres: torch.Tensor
        self.widths: torch.Tensor
        self.log_ma: torch.Tensor
        self.register_buffer("rows", torch.empty(0, self.dim))
        self.register_buffer("centres", torch.empty(0, self.dim))
        self.register_buffer("widths", torch.ones(self.dim))
        self.register_buffer("log_ma", torch.full((self.path_steps,), math.nan))
        self._cache: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ data

    def setup(self, x: torch.Tensor) -> None:
        """Store the training rows ``x`` (n, dim) and the marginals' kernel centres and
        bandwidths.
        """
        _check_rows(x, self.dim, "DualDivergencePrior.setup")
        if x.shape[0] < 2:
            raise DataError(
                f"DualDivergencePrior.setup: x has {x.shape[0]} rows: expected at least 2"
            )
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).any(0).nonzero()[0])
            raise DataError(f"DualDivergencePrior.setup: column {bad} of x has NaN or inf values")
        x = x.detach().to(self.widths.device, self.widths.dtype)
        self.rows = x.clone()
        if x.shape[0] > _KDE_ROWS:
            keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
            x = x[keep[:_KDE_ROWS].to(x.device)]
        self.centres = x.clone()
        if self.bandwidth is None:
            self.widths = _bandwidth(self.rows).to(self.widths)
        else:
            self.widths = torch.full_like(self.widths, self.bandwidth)
        self.log_ma = torch.full_like(self.log_ma, math.nan)
        self._cache = None

    def _need_rows(self, who: str) -> None:
        if self.rows.shape[0] == 0:
            raise DataError(f"DualDivergencePrior.{who}: no rows stored: call setup(x) first")

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _resize_buffer_on_load(self, state_dict, prefix, ["rows", "centres"])
        self._cache = None
        super()._load_from_state_dict(state_dict, prefix, *args)

    # ------------------------------------------------------------------ distributions

    def marginals(self) -> dist.MixtureSameFamily:
        """The 1-D kernel density estimates of the columns, batch shape ``(dim,)``."""
        self._need_rows("marginals")
        c = self.centres.T
        mix = dist.Categorical(logits=torch.zeros_like(c))
        return dist.MixtureSameFamily(mix, dist.Normal(c, self.widths.unsqueeze(-1)))

    def marginal_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_j \log p_j(x_j)` under the kernel density estimates, shape
        ``x.shape[:-1]``.
        """
        return self.marginals().log_prob(x).sum(-1)

    def product_of_marginals(
        self, n: int, *, generator: torch.Generator | None = None, smooth: bool = False
    ) -> torch.Tensor:
        r"""``n`` rows of :math:`q = \prod_j p_j`: each column from an independent random row.

        :param smooth: add each column's kernel noise (draws of the kernel density estimates)
            instead of repeating stored values.
        """
        self._need_rows("product_of_marginals")
        idx = _randint(self.rows.shape[0], (int(n), self.dim), self.rows.device, generator)
        x = torch.gather(self.rows, 0, idx)
        if smooth:
            x = x + self.widths * _randn(x.shape, x, generator)
        return x

    def support(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature bounds outside which every marginal's density is negligible: the
        training rows' minimum and maximum, widened by three kernel bandwidths.
        """
        self._need_rows("support")
        pad = 3 * self.widths
        return self.rows.min(0).values - pad, self.rows.max(0).values + pad

    def _waymark(self, k: int, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        a = k / self.path_steps
        return math.sqrt(max(0.0, 1 - a * a)) * x + a * q

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """The raw network outputs :math:`T_k(x)`, shape ``x.shape[:-1] + (path_steps,)``."""
        return self.net(x)

    # ------------------------------------------------------------------ the bound

    def _bound(
        self, x: torch.Tensor, generator: torch.Generator | None, negatives: int, train: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row positive terms (summed over path steps) and the negatives' total term."""
        self._need_rows("model")
        n = x.shape[0]
        pos = torch.zeros(n, dtype=x.dtype, device=x.device)
        neg_total = torch.zeros((), dtype=x.dtype, device=x.device)
        xr = self.rows[_randint(self.rows.shape[0], (negatives,), self.rows.device, generator)]
        q_pos = self.product_of_marginals(n, generator=generator)
        q_neg = self.product_of_marginals(negatives, generator=generator)
        for k in range(self.path_steps):
            t_pos = self.critic(self._waymark(k, x, q_pos))[..., k]
            t_neg = self.critic(self._waymark(k + 1, xr, q_neg))[..., k]
            pos = pos + t_pos
            if self.objective == "nwj":
                neg_total = neg_total + torch.exp(t_neg - 1).mean()
                continue
            lme = _log_mean_exp(t_neg)
            if self.objective == "mine" and train:
                with torch.no_grad():
                    old = self.log_ma[k]
                    r = self.ma_rate
                    new = (
                        lme
                        if torch.isnan(old)
                        else torch.logaddexp(old + math.log1p(-r), lme + math.log(r))
                    )
                    self.log_ma[k] = new
                # the value is DV's; the gradient divides by the moving average
                surrogate = torch.exp(t_neg - new).mean()
                lme = lme.detach() + surrogate - surrogate.detach()
            neg_total = neg_total + lme
        return pos, neg_total

    def model(self, x: torch.Tensor, *, name: str = "X", n_total: int | None = None) -> None:
        """The bound as a Pyro program: ``pyro.factor(name, ...)`` per row of ``x`` (n, dim).

        Each row contributes its positive term minus the negatives' term, so the plate's sum,
        scaled by ``n_total / batch``, is ``n_total`` times the bound. A training step (with
        gradients) draws negatives from torch's global RNG; an evaluation (no gradients, the
        held-out loss of :func:`~sedge_pyro.inference.fit_component`) uses a fixed generator
        and more negatives, so checkpoints are compared on the same draws.
        """
        _check_rows(x, self.dim, "DualDivergencePrior.model")
        pyro.module(name, self)
        self._cache = None
        if torch.is_grad_enabled():
            pos, neg = self._bound(x, None, self.n_negatives, train=True)
            if self.smoothness > 0:
                neg = neg + self.smoothness * self._roughness(x)
        else:
            g = torch.Generator(device=x.device).manual_seed(0)
            pos, neg = self._bound(x, g, _EVAL_NEGATIVES, train=False)
        with data_plate(f"{name}_data", x.shape[0], n_total):
            pyro.factor(name, pos - neg)

    def _roughness(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbb E \lVert \nabla_x T \rVert^2` over the rows ``x`` and as many rows of
        :math:`q`, differentiable in the parameters.
        """
        pts = torch.cat([x.detach(), self.product_of_marginals(x.shape[0])]).requires_grad_(True)
        grad = torch.autograd.grad(self.critic(pts).sum(), pts, create_graph=True)[0]
        return grad.pow(2).sum(-1).mean()

    @torch.no_grad()
    def divergence(self, x: torch.Tensor | None = None) -> float:
        r"""The estimate of :math:`\mathrm{KL}(p \,\|\, q)` in nats: the mean of
        :meth:`log_ratio` over rows of :math:`p`.

        With ``path_steps=1`` this is the DV bound :math:`\mathbb E_p T - \log \mathbb E_q
        e^T`; on a path it is :math:`\mathbb E_p \sum_k (T_k - c_k)`, the telescoped
        log-ratio averaged over the data (each local bound is between neighbouring waymarks,
        so the local bounds themselves do not add up to the divergence). For two features
        this is their mutual information; in general the total correlation.

        :param x: rows of :math:`p` (default: the stored training rows).
        """
        x = self.rows if x is None else x
        _check_rows(x, self.dim, "DualDivergencePrior.divergence")
        return float(self.log_ratio(x).mean())

    # ------------------------------------------------------------------ densities

    def _fingerprint(self) -> tuple:
        # every in-place update (an optimiser step, load_state_dict, setup) bumps a tensor's
        # version counter, and .to(device) makes new tensors: either invalidates the cache
        return tuple((id(p), p._version) for p in [*self.parameters(), self.rows])

    def _constants(self) -> torch.Tensor:
        r""":math:`c_k = \log \mathbb E_{p_{k+1}}[e^{T_k}]`, cached until a parameter changes."""
        key = self._fingerprint()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        self._need_rows("log_ratio")
        g = torch.Generator(device=self.rows.device).manual_seed(0)
        with torch.no_grad():
            xr = self.rows[_randint(self.rows.shape[0], (_EVAL_NEGATIVES,), self.rows.device, g)]
            q = self.product_of_marginals(_EVAL_NEGATIVES, generator=g)
            c = torch.stack(
                [
                    _log_mean_exp(self.critic(self._waymark(k + 1, xr, q))[..., k])
                    for k in range(self.path_steps)
                ]
            )
        self._cache = (key, c)
        return c

    def log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        r"""The dual-space value: :math:`\sum_k T_k(x) - c_k \approx \log p(x) / q(x)`,
        shape ``x.shape[:-1]``; differentiable in ``x``.
        """
        return (self.critic(x) - self._constants()).sum(-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x) = \sum_j \log p_j(x_j) + \log p(x)/q(x)`, shape ``x.shape[:-1]``.

        Normalised up to the error of the ratio estimate (exactly so when :math:`T` is the
        bound's maximiser); differentiable in ``x``.
        """
        return self.marginal_log_prob(x) + self.log_ratio(x)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); rows and bandwidths travel in ``state_dict()``."""
        return {
            "dim": self.dim,
            "objective": self.objective,
            "path_steps": self.path_steps,
            "hidden": list(self.hidden),
            "n_negatives": self.n_negatives,
            "ma_rate": self.ma_rate,
            "bandwidth": self.bandwidth,
            "sampler": self.sampler,
            "gap_preference": self.gap_preference,
            "gap_factor": self.gap_factor,
            "smoothness": self.smoothness,
        }
