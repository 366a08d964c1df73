"""The dual space of :class:`~sedge_pyro.models.dual.DualDivergencePrior` and its samplers: the
embedding of rows by the critic (:class:`DualEmbedding`), the walk kernel (:func:`walk_init`,
:func:`walk_step`) and the prior's sampling methods (walk, Langevin), kept apart from the
critic's fit in :mod:`sedge_pyro.models.dual` (see its docstring for the method and
references).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from sedge_pyro.errors import DataError, OptionError, SamplingError
from sedge_pyro.models.prior_tools import _check_rows, _randint, _randn
from sedge_pyro.options import choice, number, whole


class _WalkPrior(Protocol):
    """What a walk moves on: the critic's value and the marginals' support."""

    def log_ratio(self, x: torch.Tensor) -> torch.Tensor: ...

    def support(self) -> tuple[torch.Tensor, torch.Tensor]: ...


SAMPLERS = ("walk", "langevin")
STARTS = ("marginals", "train")
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
    prior: _WalkPrior, x: torch.Tensor, target: torch.Tensor, step_size: float
) -> WalkState:
    """Walkers at ``x`` heading for the levels ``target``."""
    with torch.no_grad():
        t = prior.log_ratio(x)
    step = torch.full_like(t, float(step_size))
    return WalkState(x, t, target.to(t), step, torch.zeros_like(t, dtype=torch.bool))


def walk_step(
    prior: _WalkPrior,
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


class _DualSampling:
    """The sampling methods of :class:`~sedge_pyro.models.dual.DualDivergencePrior` (a mixin:
    ``self`` is the prior, with its rows, critic and options).
    """

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
