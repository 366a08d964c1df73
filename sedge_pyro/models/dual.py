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

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from sedge_pyro.errors import DataError, OptionError, SamplingError
from sedge_pyro.models.base import Prior, data_plate
from sedge_pyro.models.nets import mlp
from sedge_pyro.models.priors import _check_rows, _randint, _randn, _resize_buffer_on_load
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
SAMPLERS = ("walk", "langevin")
STARTS = ("marginals", "train")
#: largest number of kernel centres per marginal (a fixed random subset beyond it)
_KDE_ROWS = 1000
#: negatives per evaluation (the held-out loss, the normaliser, the divergence estimate)
_EVAL_NEGATIVES = 8192
#: bisection halvings that put a walker that crossed its level onto it
_BISECTIONS = 12


def _rand(shape: Sequence[int], like: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) noise like ``like``, drawn with ``g`` (priors' ``_randn`` for uniforms)."""
    if g is None:
        return torch.rand(*shape, dtype=like.dtype, device=like.device)
    return torch.rand(*shape, dtype=like.dtype, device=g.device, generator=g).to(like.device)


def _log_mean_exp(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


def _bandwidth(values: torch.Tensor) -> torch.Tensor:
    r"""Silverman's rule per column: :math:`0.9 \min(\hat\sigma, \mathrm{IQR}/1.34)\,
    n^{-1/5}`, with :math:`\hat\sigma` alone when the IQR is 0, floored at ``1e-3``.
    """
    n = values.shape[0]
    sd = values.std(0) if n > 1 else torch.ones(values.shape[1:], dtype=values.dtype)
    q = torch.quantile(values, torch.tensor([0.25, 0.75], dtype=values.dtype), dim=0)
    iqr = (q[1] - q[0]) / 1.34
    spread = torch.where(iqr > 0, torch.minimum(sd, iqr), sd)
    return (0.9 * spread * n ** (-0.2)).clamp(min=1e-3)


# --------------------------------------------------------------------------- the embedding


@dataclass(frozen=True)
class DualEmbedding:
    """The training rows in the 1-D dual space, with their end points and clusters.

    :param values: the calibrated :math:`T` (the log-ratio to the product of marginals) of
        each training row, in row order, shape ``(n,)``.
    :param low: the lower end point (smallest value).
    :param high: the upper end point (largest value).
    :param clusters: ``(start, end, count)`` of each cluster, in increasing order.
    :param gaps: ``(start, end)`` of each gap between consecutive clusters.
    """

    values: torch.Tensor
    low: float
    high: float
    clusters: tuple[tuple[float, float, int], ...]
    gaps: tuple[tuple[float, float], ...]

    @classmethod
    def from_values(cls, values: torch.Tensor, gap_factor: float = 2.0) -> DualEmbedding:
        """Sort ``values``, and split them at gaps wider than ``gap_factor`` bandwidths.

        The bandwidth is Silverman's for the values (a Gaussian kernel density of the values
        has a trough in a gap more than about two bandwidths wide).

        >>> e = DualEmbedding.from_values(torch.tensor([0.0, 0.25, 0.5, 5.0, 5.25]))
        >>> [c[2] for c in e.clusters], e.gaps
        ([3, 2], ((0.5, 5.0),))
        """
        v = values.detach().flatten().double().cpu()
        if v.numel() == 0:
            raise DataError("DualEmbedding: no values")
        s = torch.sort(v).values
        width = float(_bandwidth(s.unsqueeze(-1))[0]) if s.numel() > 1 else 1.0
        breaks = [i for i in range(1, s.numel()) if float(s[i] - s[i - 1]) > gap_factor * width]
        edges = [0, *breaks, s.numel()]
        clusters = tuple(
            (float(s[a]), float(s[b - 1]), b - a)
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        )
        gaps = tuple((clusters[i][1], clusters[i + 1][0]) for i in range(len(clusters) - 1))
        return cls(values.detach().cpu(), float(s[0]), float(s[-1]), clusters, gaps)

    def levels(
        self, n: int, *, gap_preference: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""``n`` target levels :math:`\tau` inside ``[low, high]``.

        Each level is uniform between two consecutive sorted values picked at random (the
        training rows' distribution in the dual space, smoothed, never one of its values);
        with probability ``gap_preference`` it is uniform inside a gap between clusters
        instead (picked with probability proportional to its width), when there is one.
        """
        s = torch.sort(self.values.double()).values
        u = _rand((n,), s, generator)
        if s.numel() == 1:
            return s.expand(n).clone()
        i = _randint(s.numel() - 1, (n,), s.device, generator)
        tau = s[i] + u * (s[i + 1] - s[i])
        if self.gaps and gap_preference > 0:
            lo = torch.tensor([g[0] for g in self.gaps], dtype=s.dtype)
            hi = torch.tensor([g[1] for g in self.gaps], dtype=s.dtype)
            cdf = torch.cumsum(hi - lo, 0) / (hi - lo).sum()
            pick = torch.searchsorted(cdf, _rand((n,), s, generator)).clamp(max=len(lo) - 1)
            in_gap = lo[pick] + _rand((n,), s, generator) * (hi[pick] - lo[pick])
            use = _rand((n,), s, generator) < gap_preference
            tau = torch.where(use, in_gap, tau)
        return tau

    def plot(self, samples: torch.Tensor | None = None, ax: Any = None) -> Any:
        """Draw the embedding: a histogram of the values, clusters shaded, end points marked.

        :param samples: dual-space values of generated rows (e.g. ``prior.log_ratio(x)``),
            drawn as a second histogram.
        :param ax: a matplotlib ``Axes`` (a new figure when ``None``).
        :returns: the ``Axes``.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 2.6))
        v = self.values.double().numpy()
        bins = max(10, min(60, v.size // 4))
        s = None if samples is None else samples.detach().double().cpu().numpy()
        edges = np.histogram_bin_edges(v if s is None else np.concatenate([v, s]), bins=bins)
        kw = {"bins": edges, "density": True}
        ax.hist(v, color="0.35", alpha=0.8, label=f"training rows ({v.size})", **kw)
        if s is not None:
            ax.hist(s, color="tab:orange", alpha=0.55, label=f"generated ({s.size})", **kw)
        for k, (a, b, _) in enumerate(self.clusters):
            ax.axvspan(a, b, color="tab:blue", alpha=0.12, label="clusters" if k == 0 else None)
        for x in (self.low, self.high):
            ax.axvline(x, color="tab:red", lw=1.2)
        ax.set_xlabel("dual space: T(x), the log-ratio to the product of marginals")
        ax.set_ylabel("density")
        ax.set_title(f"{len(self.clusters)} cluster(s); end points {self.low:.2f}, {self.high:.2f}")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        return ax


# --------------------------------------------------------------------------- the walk kernel


class WalkState(NamedTuple):
    r"""A batch of gradient walkers.

    :param x: positions, ``(n, dim)``.
    :param t: the dual-space value (calibrated :math:`T`) at ``x``, ``(n,)``.
    :param target: each walker's level :math:`\tau`, ``(n,)``.
    :param step: each walker's step length (a move is ``step * sqrt(dim)`` long), ``(n,)``.
    :param done: whether the walker has reached its level, ``(n,)``.
    """

    x: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    step: torch.Tensor
    done: torch.Tensor


class WalkInfo(NamedTuple):
    """What one :func:`walk_step` did.

    :param accepted: walkers whose move brought them closer to their level (or across it).
    :param arrived: walkers that reached their level at this step.
    """

    accepted: torch.Tensor
    arrived: torch.Tensor


def walk_init(
    prior: DualDivergencePrior, x: torch.Tensor, target: torch.Tensor, step_size: float
) -> WalkState:
    """Walkers at ``x`` heading for the levels ``target``."""
    with torch.no_grad():
        t = prior.log_ratio(x)
    step = torch.full_like(t, float(step_size))
    return WalkState(x, t, target.to(t), step, torch.zeros_like(t, dtype=torch.bool))


def walk_step(
    prior: DualDivergencePrior,
    state: WalkState,
    *,
    noise: float = 0.5,
    max_step: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[WalkState, WalkInfo]:
    r"""One move of every walker not yet at its level.

    A walker at :math:`x` with value :math:`t` and level :math:`\tau` proposes
    :math:`x' = x + h\sqrt{d}\,\mathrm{sign}(\tau - t)\, g / \lVert g \rVert + \eta h \xi`,
    :math:`g = \nabla_x T(x)`, :math:`\xi \sim \mathcal N(0, I)`. A move that crosses the
    level is bisected back onto it (so the walker stops at :math:`T(x) \approx \tau`, inside
    the training rows' range); a move that ends closer to the level is taken and the step
    grows by 10% (up to ``max_step``); a move that ends farther away is refused and the step
    halves. Moves are clipped to the marginals' support (:meth:`DualDivergencePrior.support`):
    an MLP critic extrapolates, so :math:`T` can keep growing far from the data, where
    :math:`p = 0`.

    :param noise: :math:`\eta`, the noise's size relative to the step.
    :param max_step: the largest step :math:`h`.
    :returns: the new state and a :class:`WalkInfo`.
    """
    x, t, tau, h, done = state
    active = ~done
    if not bool(active.any()):
        return state, WalkInfo(torch.zeros_like(done), torch.zeros_like(done))
    xa = x[active].detach().requires_grad_(True)
    with torch.enable_grad():
        g = torch.autograd.grad(prior.log_ratio(xa).sum(), xa)[0]
    ta, ha, taua = t[active], h[active], tau[active]
    direction = (
        torch.sign(taua - ta).unsqueeze(-1) * g / g.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    )
    d = x.shape[-1]
    move = ha.unsqueeze(-1) * (math.sqrt(d) * direction + noise * _randn(g.shape, g, generator))
    with torch.no_grad():
        # outside the marginals' support p(x) = 0 whatever T says (an MLP critic extrapolates)
        low, high = prior.support()
        xn = torch.minimum(torch.maximum(xa.detach() + move, low), high)
        tn = prior.log_ratio(xn)
        crossed = (tn - taua) * (ta - taua) <= 0
        closer = (tn - taua).abs() < (ta - taua).abs()
        if bool(crossed.any()):
            # bisect the segment [x, x'] on which T passes through tau
            lo, hi = xa.detach()[crossed], xn[crossed]
            tlo, level = ta[crossed], taua[crossed]
            below = tlo < level
            for _ in range(_BISECTIONS):
                mid = 0.5 * (lo + hi)
                tm = prior.log_ratio(mid)
                same_side = (tm < level) == below
                lo = torch.where(same_side.unsqueeze(-1), mid, lo)
                hi = torch.where(same_side.unsqueeze(-1), hi, mid)
            xn[crossed] = hi
            tn[crossed] = prior.log_ratio(hi)
        take = crossed | closer
        x_new, t_new = x.clone(), t.clone()
        idx = active.nonzero().squeeze(-1)
        x_new[idx[take]] = xn[take]
        t_new[idx[take]] = tn[take]
        h_new = h.clone()
        grown = (ha * 1.1).clamp(max=max_step)
        h_new[idx] = torch.where(take & ~crossed, grown, torch.where(take, ha, ha * 0.5))
        arrived = torch.zeros_like(done)
        arrived[idx[crossed]] = True
    accepted = torch.zeros_like(done)
    accepted[idx[take]] = True
    return WalkState(x_new, t_new, tau, h_new, done | arrived), WalkInfo(accepted, arrived)


# --------------------------------------------------------------------------- the prior


class DualDivergencePrior(Prior):
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

    # ------------------------------------------------------------------ the embedding

    def embedding(self, x: torch.Tensor | None = None) -> DualEmbedding:
        """The rows ``x`` (default: the training rows) in the dual space, with end points and
        clusters (:class:`DualEmbedding`).
        """
        self._need_rows("embedding")
        x = self.rows if x is None else x
        _check_rows(x, self.dim, "DualDivergencePrior.embedding")
        with torch.no_grad():
            return DualEmbedding.from_values(self.log_ratio(x), self.gap_factor)

    # ------------------------------------------------------------------ sampling

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        method: str | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """``n`` new rows by :meth:`walk` (or :meth:`langevin`; default: ``sampler``).

        :param options: keyword arguments of the chosen method.
        """
        method = choice("method", self.sampler if method is None else method, SAMPLERS)
        run = self.walk if method == "walk" else self.langevin
        known = set(inspect.signature(run).parameters) - {"n", "generator"}
        for key in options:
            if key not in known:
                raise OptionError(
                    f"{key}={options[key]!r}: not an option of {method}; expected "
                    f"one of {', '.join(sorted(known))}"
                )
        return run(whole("n", n, low=0), generator=generator, **options)

    def walk(
        self,
        n: int,
        *,
        start: str = "marginals",
        steps: int = 300,
        step_size: float = 0.05,
        noise: float = 0.5,
        batch_size: int = 4096,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""``n`` rows by gradient walks in the dual space (:func:`walk_step`).

        Each walker starts at a draw of the product of marginals (``start="marginals"``) or at
        a training row (``"train"``), gets a level :math:`\tau` from
        :meth:`DualEmbedding.levels` (inside the training rows' range, preferring the gaps
        between clusters by ``gap_preference``), and walks along :math:`\pm\nabla_x T` until
        :math:`T(x)` reaches it. Walkers are batched, ``batch_size`` at a time.

        :param steps: moves per walker at most; a walker still short of its level then starts
            again from a new point once; one still short after that is kept where it stopped,
            and a warning counts those whose :math:`T` is outside the training range.
        :param step_size: initial step :math:`h`, in normalised units per feature.
        :param noise: noise relative to the step.
        """
        choice("start", start, STARTS)
        n, steps, batch_size = (
            whole("n", n, low=0),
            whole("steps", steps),
            whole("batch_size", batch_size),
        )
        number("step_size", step_size)
        number("noise", noise, positive=False)
        if n == 0:
            return self.rows.new_empty(0, self.dim)
        emb = self.embedding()
        out: list[torch.Tensor] = []
        failed = 0
        for lo in range(0, n, batch_size):
            m = min(batch_size, n - lo)
            tau = emb.levels(m, gap_preference=self.gap_preference, generator=generator)
            tau = tau.to(self.rows)
            x, done = self._walk(
                self._starts(m, start, generator), tau, steps, step_size, noise, generator
            )
            if not bool(done.all()):
                # walkers stuck on a plateau of T get one new start
                left = ~done
                x2, done2 = self._walk(
                    self._starts(int(left.sum()), start, generator),
                    tau[left],
                    steps,
                    step_size,
                    noise,
                    generator,
                )
                x[left] = x2
                if not bool(done2.all()):
                    # short of its level is fine inside the range (the seed's criterion)
                    with torch.no_grad():
                        t = self.log_ratio(x2[~done2])
                    failed += int(((t < emb.low) | (t > emb.high)).sum())
            out.append(x.detach())
        if failed:
            warnings.warn(
                f"DualDivergencePrior.walk: {failed} of {n} walkers ended outside the training "
                f"rows' dual range [{emb.low:.3g}, {emb.high:.3g}] after {steps} steps; try a "
                "larger steps or step_size",
                RuntimeWarning,
                stacklevel=2,
            )
        return torch.cat(out)

    def _walk(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        steps: int,
        step_size: float,
        noise: float,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Walk ``x`` to the levels ``tau``; the end points and which walkers arrived."""
        state = walk_init(self, x, tau, step_size)
        for _ in range(int(steps)):
            state, _ = walk_step(self, state, noise=noise, generator=generator)
            if bool(state.done.all()):
                break
        return state.x, state.done

    def _starts(self, m: int, start: str, generator: torch.Generator | None) -> torch.Tensor:
        if start == "train":
            return self.rows[
                _randint(self.rows.shape[0], (m,), self.rows.device, generator)
            ].clone()
        return self.product_of_marginals(m, generator=generator, smooth=True)

    def langevin(
        self,
        n: int,
        *,
        steps: int = 500,
        step_size: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""``n`` rows by the unadjusted Langevin algorithm on :meth:`log_prob`.

        :math:`x \leftarrow x + \epsilon \nabla_x \log p(x) + \sqrt{2\epsilon}\,\xi` from draws
        of the smoothed product of marginals, ``steps`` times (Roberts and Tweedie 1996).

        :param step_size: :math:`\epsilon`; default a quarter of the smallest squared kernel
            bandwidth, so each move stays within the marginals' resolution.
        """
        n, steps = whole("n", n, low=0), whole("steps", steps)
        eps = number("step_size", step_size, none_ok=True) or 0.25 * float(self.widths.min()) ** 2
        x = self.product_of_marginals(n, generator=generator, smooth=True)
        for i in range(steps):
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                grad = torch.autograd.grad(self.log_prob(x).sum(), x)[0]
            x = x.detach() + eps * grad + math.sqrt(2 * eps) * _randn(x.shape, x, generator)
            if not bool(torch.isfinite(x).all()):
                raise SamplingError(
                    f"DualDivergencePrior.langevin: draws became non-finite at step {i + 1}; "
                    f"try a smaller step_size than {eps:.3g}"
                )
        return x.detach()

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
