r"""The sampler-facing density: :class:`Problem`, a fitted model and a compiled target in the
model's normalised units.

How it differs from :class:`~sedge_pyro.inference.target.Target`: a ``Target`` is the user's
specification, checked and compiled (Assumption 1 against the training rows; per spec a
point, an interval or per-draw values; Algorithm 1, step 1), and its
:meth:`~sedge_pyro.inference.target.Target.log_likelihood` :math:`\ell(x)` is the guidance
term alone. A ``Problem`` is what a model-based sampler runs on: the target together with the
fitted prior, so that :meth:`Problem.log_density` is :math:`\log p(x) + \ell(x)`, the
unnormalised log-posterior :math:`\log p(x \mid Z_T = z)` of the SEDGE model (Sec. 3.1; the
generation of Sec. 4.2 and App. C), with the training rows, the walkers' start points, the
seen box and its unconstrained coordinates. Samplers take a ``Problem``
(``init(problem, generator)``); users write targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F

from sedge_pyro.errors import OptionError, SedgeError
from sedge_pyro.models.base import seen_box

if TYPE_CHECKING:
    from sedge_pyro.models.base import Prior
    from sedge_pyro.models.sedge import SEDGEProgram

__all__ = ["CompiledTarget", "Problem", "START_POOL", "START_POOL_MAX", "START_POOL_MIN"]


class CompiledTarget(Protocol):
    """What a :class:`Problem` and its samplers read of their target. Its one implementation
    is :class:`~sedge_pyro.inference.target.Target`, which this module does not import:
    ``target`` re-exports :class:`Problem`, and the two modules may not import each other.
    """

    #: the spec's events (:class:`~sedge_pyro.inference.target.SpecEvent`), in target order
    events: Sequence[Any]
    #: spec -> value, :class:`~sedge_pyro.Interval`, or per-draw array (normalised)
    target: Mapping[str, Any]
    #: the tolerance of point targets on continuous specs, as given
    tolerance: Any
    #: the draws per chain of a per-draw target, else ``None``
    n: int | None

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell(x)`, the target's log-likelihood at features ``x``."""
        ...

    def loss(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """The guidance loss of ``opt`` and ``dps`` (``squared`` or ``nll``)."""
        ...


#: :meth:`Problem.start_points`: the prior draws resampled are this many times the points
#: asked for, at least :data:`START_POOL_MIN` and at most :data:`START_POOL_MAX`
START_POOL = 20
START_POOL_MIN = 50_000
START_POOL_MAX = 200_000


@dataclass
class Problem:
    r"""What a model-based sampler needs: the fitted pieces in normalised units.

    :param model: the fitted model.
    :param target: the compiled target.
    :param device: where tensors live.
    :param dtype: their dtype.
    """

    model: SEDGEProgram
    target: CompiledTarget
    device: torch.device
    dtype: torch.dtype = torch.float32
    _train: torch.Tensor | None = field(default=None, repr=False)
    _box: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    #: whether the prior is a surrogate fit in the box's unconstrained coordinates (set by
    #: :func:`~sedge_pyro.inference.selection.diffusion_surrogate` while it runs)
    prior_in_box: bool = False
    #: while a surrogate prior runs, the model's own prior (with a density), else ``None``
    density_prior: Prior | None = None

    @property
    def dim(self) -> int:
        """Number of features."""
        return len(self.model.features)

    @property
    def prior(self) -> Prior:
        """The fitted feature prior."""
        return self.model.prior

    @property
    def train_x(self) -> torch.Tensor:
        """The normalised training features, shape ``(n, d)``."""
        if self._train is None:
            seen = self.model.seen
            if seen is None:
                raise SedgeError("the model keeps no training rows (fitted by an older version)")
            assert self.model.columns is not None
            self._train = self.model.columns.tensor(seen, self.model.features, device=self.device)
        return self._train

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell(x)`, the target's log-likelihood (see :class:`Target`)."""
        return self.target.log_likelihood(x)

    def start_rows(self, k: int, generator: torch.Generator) -> torch.Tensor:
        r"""``k`` training rows to start samplers from, drawn with probability proportional to
        :math:`\exp \ell(x)`, the target's likelihood at the row: a draw of the training rows
        given the target, so that walkers start dispersed over where the target is possible
        under the fitted model, not where it is not (a walker started where the likelihood is
        flat at 0 may never leave). Without replacement while enough rows have weight;
        uniform when no row has any (the likelihood underflows everywhere).
        """
        x = self.train_x
        with torch.no_grad():
            ll = self.log_likelihood(x).reshape(-1)
        w = (ll - ll.max()).exp() if bool(torch.isfinite(ll).any()) else None
        if w is None or not bool(torch.isfinite(w).all()) or float(w.sum()) <= 0:
            w = torch.ones(x.shape[0], device=x.device)
        replace = int((w > 0).sum()) < k
        rows = torch.multinomial(
            w.to(generator.device), k, replacement=replace, generator=generator
        )
        return rows.to(x.device)

    def start_points(self, k: int, generator: torch.Generator) -> torch.Tensor:
        r"""``k`` points, shape ``(k, d)``, to start walkers from: an approximate draw of
        :math:`p(x \mid Z_T = z)` by sampling-importance-resampling (Rubin 1988) from the
        fitted prior. A pool of :data:`START_POOL` times ``k`` prior draws (within
        ``[START_POOL_MIN, START_POOL_MAX]``) inside :attr:`box` is resampled with probability
        proportional to :math:`\exp \ell(x)`, with replacement (without, the picks would
        spread from the heavy draws to light ones and shift the mass between modes, which the
        walkers may never move back; twins part at the first move).

        Why not training rows: they are draws of :math:`p(x \mid S = 1)`, and the selection
        removed the target's region from them; weighted by :math:`\exp \ell` they sit on the
        edges of that region, where the fitted posterior can hold a metastable pocket (the
        grid's ``tanh`` variant: walkers started there still had a satisfaction 0.21 below the
        Oracle's after 3,000 MALA moves; started here, 0.003). The prior, selection-corrected
        where :mod:`~sedge_pyro.inference.selection` applies, puts mass in that region.

        Falls back to :meth:`start_rows` for a prior that cannot be sampled, or when no pool
        draw inside the box has weight (the target's likelihood underflows there).
        """
        try:
            pool = min(max(START_POOL * k, START_POOL_MIN), START_POOL_MAX)
            seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                x = self.prior.sample(pool).to(self.device, self.dtype)
                lo, hi = self.box
                x = x[((x > lo) & (x < hi)).all(-1)]
                ll = self.log_likelihood(x).reshape(-1) if len(x) else x[:, 0]
        except (NotImplementedError, OptionError):
            return self.train_x[self.start_rows(k, generator)].clone()
        finite = torch.isfinite(ll)
        if not bool(finite.any()):
            return self.train_x[self.start_rows(k, generator)].clone()
        w = torch.where(finite, ll - ll[finite].max(), -torch.inf).exp()
        pick = torch.multinomial(w.to(generator.device), k, replacement=True, generator=generator)
        return x[pick.to(x.device)].clone()

    def log_prior(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x)` of the fitted prior.

        :raises OptionError: for a prior without a density (empirical, diffusion).
        """
        prior = self.prior
        if not prior.has_log_prob:
            raise OptionError(
                f"this sampler needs a prior with a density; the model's is "
                f"{type(prior).__name__}: fit with prior='flow', 'factorized', 'gaussian' or 'dual'"
            )
        return prior.log_prob(x)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x) + \ell(x)`: the unnormalised :math:`\log p(x \mid Z_T = z)`."""
        return self.log_prior(x) + self.log_likelihood(x)

    def grad_log_density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_density(x), its gradient in x)``, both detached; ``x`` of shape (..., d)."""
        return _value_and_grad(self.log_density, x)

    # ------------------------------------------------------------------ the seen box

    @property
    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(low, high)``, shape ``(d,)``: the training features' range per feature,
        widened by :func:`box_margin` of its width on each side (normalised units).

        The samplers of :math:`p(x \mid Z_T = z)` (``langevin``, ``nuts``, ``svi``) run by
        default in the unconstrained coordinates :math:`u` of this box (:meth:`to_box`):
        the fitted prior and likelihoods are estimates from the training rows, and outside
        their range nothing checks them (a flow's tails, a likelihood's extrapolation).
        """
        if self._box is None:
            self._box = seen_box(self.train_x)
        return self._box

    def from_prior(self, y: torch.Tensor) -> torch.Tensor:
        """Features of a point in the prior's coordinates: :meth:`from_box` where the prior
        is a surrogate in the box (:attr:`prior_in_box`), the prior's own map where it has
        one (a :class:`~sedge_pyro.models.DiffusionPrior` fit with ``box=True``), else ``y``
        itself.
        """
        if self.prior_in_box:
            return self.from_box(y)
        own = getattr(self.prior, "from_internal", None)
        return own(y) if own is not None else y

    def to_prior(self, x: torch.Tensor) -> torch.Tensor:
        """The prior's coordinates of features ``x`` (inverse of :meth:`from_prior`)."""
        if self.prior_in_box:
            return self.to_box(x)
        own = getattr(self.prior, "to_internal", None)
        return own(x) if own is not None else x

    def from_box(self, u: torch.Tensor) -> torch.Tensor:
        r"""Features :math:`x = l + (h - l)\,\sigma(u)` of unconstrained ``u``."""
        lo, hi = self.box
        return lo + (hi - lo) * torch.sigmoid(u)

    def to_box(self, x: torch.Tensor) -> torch.Tensor:
        r"""Unconstrained :math:`u = \operatorname{logit}((x - l) / (h - l))` of features inside
        the box (values on or outside its edge are pulled just inside).
        """
        lo, hi = self.box
        t = ((x - lo) / (hi - lo)).clamp(1e-6, 1 - 1e-6)
        return torch.logit(t)

    def log_density_box(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x(u)) + \ell(x(u)) + \log |\partial x / \partial u|`: the target in
        the box's unconstrained coordinates, whose draws mapped by :meth:`from_box` are draws
        of :math:`p(x \mid Z_T = z)` restricted to the box.
        """
        return self.log_density(self.from_box(u)) + self.box_log_jacobian(u)

    def box_log_jacobian(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`\log |\partial x / \partial u|` of :meth:`from_box`, shape ``u.shape[:-1]``."""
        lo, hi = self.box
        return (torch.log(hi - lo) + F.logsigmoid(u) + F.logsigmoid(-u)).sum(-1)

    def grad_log_density_box(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_density_box(u), its gradient in u)``, both detached."""
        return _value_and_grad(self.log_density_box, u)


def _value_and_grad(fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(x), its gradient in x)``, both detached (``fn`` sums to a scalar per row)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        lp = fn(x)
        (g,) = torch.autograd.grad(lp.sum(), x)
    return lp.detach(), g.detach()
