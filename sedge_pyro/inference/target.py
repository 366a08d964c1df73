r"""A target ``Z_T = z`` compiled against a fitted model: the pieces every sampler shares.

A target maps specifications to points (a number, a category) or :class:`~sedge_pyro.Interval`
events. :class:`Target` checks it against the model's training rows (Assumption 1: each value
seen alone, else :class:`~sedge_pyro.TargetError`) and turns it into the model's normalised
units (Algorithm 1, step 1). Its :meth:`Target.log_likelihood` is the guidance term every
model-based sampler follows,

.. math:: \ell(x) = \sum_{i \in T} \log p(z_i \in A_i \mid V_i(x)),

a log-density for a point on a continuous spec, the log of a probability for a category or an
interval (the likelihood's CDF). This module holds the user's specification;
:class:`~sedge_pyro.inference.problem.Problem` (:mod:`~sedge_pyro.inference.problem`,
re-exported here) adds the prior for the samplers: :meth:`Problem.log_density` is
:math:`\log p(x) + \ell(x)`, the unnormalised log-posterior :math:`\log p(x \mid Z_T = z)` of
the SEDGE model (Sec. 3.1), and the target of ``langevin``, ``svi`` and ``nuts``.
Each spec's value becomes a :class:`SpecEvent` (:mod:`~sedge_pyro.inference.spec_event`,
re-exported here, with :func:`is_per_draw`).

**Per-draw targets.** A value may also be a 1-D array of ``n`` points (a numpy array, list,
pandas Series or torch tensor): draw ``i`` of every chain is then generated for the ``i``-th
value, as Sec. 5.1 and App. D.1 generate one sample per held-out Oracle row. Such a spec's
:attr:`SpecEvent.low` and :attr:`SpecEvent.high` are tensors of shape ``(n,)``; the terms lay
them out on a sampler's batch of ``(..., n)`` particles as they are, and on a flat batch of
``chains * n`` chain-major particles repeated once per chain. Scalars and intervals keep their
float bounds (and their speed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from sedge_pyro.assumptions import Coverage, _tolerance, is_continuous
from sedge_pyro.errors import OptionError, SedgeError, TargetError
from sedge_pyro.expr import Interval, Var
from sedge_pyro.identify import normalize_target, validate_tolerance
from sedge_pyro.inference.problem import START_POOL as START_POOL
from sedge_pyro.inference.problem import START_POOL_MAX as START_POOL_MAX
from sedge_pyro.inference.problem import START_POOL_MIN as START_POOL_MIN
from sedge_pyro.inference.problem import Problem
from sedge_pyro.inference.spec_event import (
    SpecEvent,
    _as_array,
    _item,
    _normalise_array,
    _normalise_value,
    is_per_draw,
)
from sedge_pyro.models.base import BOX_MARGIN, box_margin

if TYPE_CHECKING:
    from sedge_pyro.models.sedge import SEDGEProgram

__all__ = [
    "BOX_MARGIN",
    "box_margin",
    "LOSSES",
    "PER_DRAW_METHODS",
    "Problem",
    "SpecEvent",
    "Target",
    "is_per_draw",
]


#: the guidance losses of ``opt`` and ``dps``: the paper's squared error of the predicted
#: mean (Algorithms 1-2) or the negative log-likelihood of the target
LOSSES = ("squared", "nll")
#: the methods that take per-draw targets (one target value per draw)
PER_DRAW_METHODS = ("opt", "dps", "direct")


class Target:
    r"""A target compiled against a fitted model.

    :param model: a fitted :class:`~sedge_pyro.SEDGEModel` (models A-C: a likelihood per
        spec or a joint one).
    :param target: specification -> value, :class:`~sedge_pyro.Interval`, or a 1-D array of
        ``n`` points (one per draw; see the module).
    :param tolerance: for point targets on continuous specs, the distance within which a
        training value counts as the target value when checking Assumption 1 (as in
        :func:`~sedge_pyro.identify`).
    :param n: the number of draws per chain a per-draw array must have (``None``: the arrays'
        common length).
    :raises TargetError: for an unknown spec, a feature named as a target, a value outside a
        categorical's levels or a binary's {0, 1}, an interval holding no level, a value
        never seen alone in the training rows (Assumption 1), or a per-draw array of the wrong
        length or holding intervals.
    :raises OptionError: for a negative or non-numeric tolerance, or one naming a non-target.

    >>> import sedge_pyro as sp
    >>> from sedge_pyro.inference import Target
    >>> seen, _, graph = sp.datasets.paper_synthetic(500, seed=0)
    >>> model = sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=20, progress=False)
    >>> t = Target(model, {"z1": sp.Interval(high=0.8), "z2": 1.0})
    >>> [e.spec for e in t.events], t.events[1].point
    (['z1', 'z2'], True)
    """

    def __init__(
        self,
        model: SEDGEProgram,
        target: Mapping[str, Any],
        *,
        tolerance: float | Mapping[str, float] | None = None,
        n: int | None = None,
    ) -> None:
        if not model.fitted:
            raise SedgeError("the model is not fitted: call model.fit(data) first")
        self.model = model
        arrays: dict[str, np.ndarray] = {}
        if isinstance(target, Mapping):
            for k, v in target.items():
                if is_per_draw(v):
                    arrays[k] = _as_array(k, v, n)
                    n = len(arrays[k]) if n is None else n
        #: draws per chain of the per-draw targets (``None``: no per-draw target)
        self.n: int | None = n if arrays else None
        # names and scalars are checked by identify's rules, an array via its first value
        codes: dict[str, np.ndarray] = {}
        if arrays:
            rep = {k: _item(arrays[k][0]) if k in arrays else v for k, v in target.items()}
            normal = normalize_target(model.graph, rep)
            for k, arr in arrays.items():
                codes[k], arrays[k] = _normalise_array(model, k, arr)
            self.target = {k: arrays.get(k, v) for k, v in normal.items()}
        else:
            self.target = normalize_target(model.graph, target)
        validate_tolerance(tolerance, self.target)
        self.tolerance = tolerance
        self.events = [self._event(k, v, codes.get(k)) for k, v in self.target.items()]
        self._check_seen()

    @property
    def per_draw(self) -> bool:
        """Whether some spec has one target value per draw."""
        return self.n is not None

    def _event(self, spec: str, value: Any, codes: np.ndarray | None = None) -> SpecEvent:
        assert self.model.columns is not None
        ctx = tuple(self.model.features.index(f) for f in self.model.context_of(spec))
        kind = self.model.columns[spec].kind
        if codes is not None:
            t = torch.as_tensor(codes, dtype=torch.float64)
            return SpecEvent(spec, kind, value, t, t, ctx, per_draw=True)
        low, high = _normalise_value(self.model, spec, value)
        return SpecEvent(spec, kind, value, low, high, ctx)

    def _per_draw(self, value: Any, x: torch.Tensor) -> Any:
        """A bound laid out on ``x``'s batch ``x.shape[:-1]``: a scalar as it is; a per-draw
        tensor ``(n,)`` as is on a batch ``(..., n)``, repeated per chain on a flat batch of
        ``chains * n`` chain-major particles.
        """
        if not isinstance(value, torch.Tensor):
            return value
        assert self.n is not None
        v = value.to(dtype=x.dtype, device=x.device)
        batch = x.shape[:-1]
        size = batch[-1] if batch else 0
        if size == self.n:
            return v.expand(batch)
        if len(batch) == 1 and size % self.n == 0:
            return v.repeat(size // self.n)
        raise SedgeError(
            f"a per-draw target of {self.n} draws cannot be laid out on a batch of shape "
            f"{tuple(batch)}: expected (..., {self.n}) or (chains * {self.n},)"
        )

    def _check_seen(self) -> None:
        seen = self.model.seen
        if seen is None:
            return
        scalars = {k: v for k, v in self.target.items() if not isinstance(v, np.ndarray)}
        for k, v in self.target.items():
            if isinstance(v, np.ndarray):
                self._check_seen_array(seen, k, v)
        cov = Coverage(seen, scalars, self.tolerance)
        for k, v in scalars.items():
            if cov.count([k]) == 0:
                raise TargetError(
                    f"target value {Var(k, v).to_text()} is never seen in the {cov.n} training "
                    "rows (Assumption 1): p(X | target) is not identifiable and no sampler can "
                    "produce it; pick a value the data covers"
                )

    def _check_seen_array(self, seen: pd.DataFrame, spec: str, values: np.ndarray) -> None:
        """Assumption 1 for every value of a per-draw target (sorted values + searchsorted)."""
        col = seen[spec]
        if values.dtype.kind in "biuf" and is_continuous(col):
            tol = _tolerance(spec, col, self.tolerance)
            train = np.sort(col.to_numpy(dtype=float))
            v = values.astype(float)
            i = np.searchsorted(train, v - tol, side="left")
            hit = train[np.minimum(i, len(train) - 1)]
            ok = (i < len(train)) & (hit <= v + tol)
        else:
            ok = pd.Series(values).isin(pd.unique(col.to_numpy())).to_numpy()
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            shown = Var(spec, _item(values[i]))
            raise TargetError(
                f"per-draw target value {shown.to_text()} (draw {i}) is never seen in the "
                f"{len(seen)} training rows (Assumption 1): p(X | target) is not identifiable "
                "and no sampler can produce it; pick values the data covers"
            )

    # ------------------------------------------------------------------ likelihood terms

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i \log p(z_i \in A_i \mid V_i(x))` for normalised ``x`` (..., d).

        Differentiable in ``x``; shape ``x.shape[:-1]``.
        """
        return sum(self.terms(x).values(), torch.zeros(x.shape[:-1], device=x.device))

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""Each spec's :math:`\log p(z_i \in A_i \mid V_i(x))`, shape ``x.shape[:-1]``."""
        m = self.model
        if m.structure == "joint":
            return {"joint": self._joint_log_likelihood(x)}
        if m.structure not in ("sparse", "dense"):
            raise OptionError(
                f"structure {m.structure!r} models p(X | Z) directly: sample it with "
                "method='direct'"
            )
        out = {}
        for e in self.events:
            lik = m.likelihood(e.spec)
            ctx = x[..., list(e.context)]
            if e.density and e.per_draw:
                out[e.spec] = lik.log_prob(self._per_draw(e.low, x).unsqueeze(-1), ctx)
            elif e.density:
                y = torch.full((*x.shape[:-1], 1), e.low, dtype=x.dtype, device=x.device)
                out[e.spec] = lik.log_prob(y, ctx)
            else:
                low, high = self._per_draw(e.low, x), self._per_draw(e.high, x)
                out[e.spec] = lik.log_event_prob(ctx, low, high)
        return out

    def _joint_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        joint = self.model.components["joint"]
        idx = [self.model.specs.index(e.spec) for e in self.events]
        if all(e.point for e in self.events):
            loc, tril = joint.loc_scale_tril(x)
            cov = tril @ tril.transpose(-1, -2)
            sub = cov[..., idx, :][..., :, idx]
            d = torch.distributions.MultivariateNormal(loc[..., idx], covariance_matrix=sub)
            if self.per_draw:
                batch = x.shape[:-1]
                z = torch.stack(
                    [torch.as_tensor(self._per_draw(e.low, x)).expand(batch) for e in self.events],
                    dim=-1,
                ).to(dtype=x.dtype, device=x.device)
            else:
                z = torch.tensor([e.low for e in self.events], dtype=x.dtype, device=x.device)
            return d.log_prob(z)
        if len(self.events) == 1:
            (e,) = self.events
            d = joint.marginal(idx[0], x)
            lo = -torch.inf if e.low is None else e.low
            hi = torch.inf if e.high is None else e.high
            p = d.cdf(torch.as_tensor(hi, dtype=x.dtype)) - d.cdf(
                torch.as_tensor(lo, dtype=x.dtype)
            )
            return p.clamp_min(torch.finfo(x.dtype).tiny).log()
        raise OptionError(
            "structure 'joint' (model C) takes interval targets on one specification only: "
            "the event probability of a correlated Gaussian has no closed form"
        )

    def squared_error(self, x: torch.Tensor) -> torch.Tensor:
        r"""The paper's guidance loss (Algorithms 1-2): :math:`\frac1n\sum_i \lVert \hat z_i(x)
        - z_i \rVert^2` in normalised units, shape ``x.shape[:-1]``.

        :math:`\hat z_i` is the likelihood's mean :math:`h_i^\mu(V_i)` (a one-dimensional
        flow's median :math:`T_c(0)`); for an interval, the
        squared distance of the mean to it; for a discrete spec, :math:`(1 - P(z_i \in A_i
        \mid V_i))^2`.

        Model C (``structure="joint"``): :math:`\hat z` is the joint Gaussian's mean vector,
        continuous specs only.

        :raises OptionError: for a likelihood without a point prediction, a discrete
            spec of model C, or models D/E.
        """
        m = self.model
        if m.structure not in ("sparse", "dense", "joint"):
            raise OptionError(
                f"loss='squared' needs a likelihood of the specs; structure {m.structure!r} "
                "has none: use method='direct'"
            )
        joint_loc = m.components["joint"].loc_scale_tril(x)[0] if m.structure == "joint" else None
        total = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for e in self.events:
            low, high = self._per_draw(e.low, x), self._per_draw(e.high, x)
            if joint_loc is not None:
                if e.kind != "continuous":
                    raise OptionError(
                        f"loss='squared' with structure 'joint' needs continuous specs; "
                        f"{e.spec!r} is {e.kind}: use loss='nll'"
                    )
                loc = joint_loc[..., m.specs.index(e.spec)]
                below = torch.zeros_like(loc) if low is None else (low - loc).clamp_min(0)
                above = torch.zeros_like(loc) if high is None else (loc - high).clamp_min(0)
                total = total + (below + above).pow(2)
                continue
            lik = m.likelihood(e.spec)
            ctx = x[..., list(e.context)]
            if e.kind != "continuous":
                total = total + (1 - lik.log_event_prob(ctx, low, high).exp()).pow(2)
                continue
            if hasattr(lik, "loc_scale"):
                loc = lik.loc_scale(ctx)[0]
            elif hasattr(lik, "median") and getattr(lik, "y_dim", 0) == 1:
                loc = lik.median(ctx)  # a flow's point prediction
            else:
                raise OptionError(
                    f"loss='squared' needs a likelihood with a point prediction (Gaussian or "
                    f"one-dimensional flow); {e.spec!r} has {type(lik).__name__}: use loss='nll'"
                )
            below = torch.zeros_like(loc) if low is None else (low - loc).clamp_min(0)
            above = torch.zeros_like(loc) if high is None else (loc - high).clamp_min(0)
            total = total + (below + above).pow(2)
        return total / len(self.events)

    def loss(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """The guidance loss ``kind`` (one of :data:`LOSSES`), shape ``x.shape[:-1]``."""
        if kind == "squared":
            return self.squared_error(x)
        if kind == "nll":
            return -self.log_likelihood(x)
        raise OptionError(f"loss={kind!r}: expected one of {', '.join(LOSSES)}")

    def event_probabilities(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""Each spec's :math:`P(z_i \in A_i \mid V_i(x))` for normalised ``x`` (..., d).

        A point on a continuous spec is widened to the window of Assumption 1 (``value +-
        tolerance``, the training rows' tolerance), so every term is a probability.
        """
        m = self.model
        if m.structure not in ("sparse", "dense"):
            raise OptionError(
                f"structure {m.structure!r} has no per-spec likelihood to score samples with"
            )
        tol = self._tolerances()
        assert m.columns is not None
        out = {}
        for e in self.events:
            lik = m.likelihood(e.spec)
            ctx = x[..., list(e.context)]
            low, high = self._per_draw(e.low, x), self._per_draw(e.high, x)
            if e.density:
                t = tol[e.spec] if isinstance(tol, dict) else tol
                t = 0.0 if t is None else float(t) / m.columns[e.spec].std
                low, high = low - t, high + t
            out[e.spec] = lik.log_event_prob(ctx, low, high).exp()
        return out

    # ------------------------------------------------------------------ checks and records

    def satisfied(self, z: pd.DataFrame) -> np.ndarray:
        """Whether each row's specs meet the target (points on continuous specs: within the
        identification tolerance), shape ``(len(z),)``.

        With per-draw targets the rows are draws in chain-major order (``chains * n`` of
        them), each checked against its own draw's values.
        """
        tol = self._tolerances()
        scalars = {k: v for k, v in self.target.items() if not isinstance(v, np.ndarray)}
        ok = Coverage(z, scalars, tol).mask(scalars)
        for k, v in self.target.items():
            if not isinstance(v, np.ndarray):
                continue
            if len(z) % len(v):
                raise SedgeError(
                    f"{len(z)} rows cannot be matched to a per-draw target of {len(v)} draws: "
                    f"expected chains * {len(v)} rows"
                )
            want = np.tile(v, len(z) // len(v))
            col = z[k]
            if v.dtype.kind in "biuf" and is_continuous(col):
                t = _tolerance(k, col, tol)
                ok &= np.abs(col.to_numpy(dtype=float) - want.astype(float)) <= t
            else:
                ok &= col.to_numpy() == want
        return ok

    def _tolerances(self) -> dict[str, float] | float | None:
        """Absolute tolerances computed on the training rows (not on the rows checked)."""
        seen = self.model.seen
        if seen is None or isinstance(self.tolerance, int | float):
            return self.tolerance
        # a tolerance widens points on continuous specs only (labels match exactly)
        return {
            k: _tolerance(k, seen[k], self.tolerance) for k in self.target if is_continuous(seen[k])
        }

    def observed(self) -> dict[str, np.ndarray]:
        """The target as arrays for ArviZ's ``observed_data`` (an interval as two bounds, a
        per-draw target as its ``n`` values).
        """
        out: dict[str, np.ndarray] = {}
        for k, v in self.target.items():
            if isinstance(v, np.ndarray):
                out[k] = v.copy()
            elif isinstance(v, Interval):
                out[f"{k}_low"] = np.array([-np.inf if v.low is None else v.low])
                out[f"{k}_high"] = np.array([np.inf if v.high is None else v.high])
            else:
                out[k] = np.array([v])
        return out

    def __repr__(self) -> str:
        body = ", ".join(
            f"{k}=<{len(v)} per-draw values>" if isinstance(v, np.ndarray) else Var(k, v).to_text()
            for k, v in self.target.items()
        )
        return f"Target({body})"
