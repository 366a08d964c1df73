r"""A target ``Z_T = z`` compiled against a fitted model: the pieces every sampler shares.

A target maps specifications to points (a number, a category) or :class:`~sedge_pyro.Interval`
events. :class:`Target` checks it against the model's training rows (Assumption 1: each value
seen alone, else :class:`~sedge_pyro.TargetError`) and turns it into the model's normalised
units (Algorithm 1, step 1). Its :meth:`Target.log_likelihood` is the guidance term every
model-based sampler follows,

.. math:: \ell(x) = \sum_{i \in T} \log p(z_i \in A_i \mid V_i(x)),

a log-density for a point on a continuous spec, the log of a probability for a category or an
interval (the likelihood's CDF). :class:`Problem` adds the prior: :meth:`Problem.log_density`
is :math:`\log p(x) + \ell(x)`, the unnormalised log-posterior :math:`\log p(x \mid Z_T = z)` of
the SEDGE model (Sec. 3.1), and the target of ``langevin``, ``svi`` and ``nuts``.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sedge_pyro.assumptions import Coverage, _tolerance, is_continuous
from sedge_pyro.errors import OptionError, SedgeError, TargetError
from sedge_pyro.expr import Interval, Var
from sedge_pyro.identify import normalize_target, validate_tolerance
from sedge_pyro.models.base import BOX_MARGIN, box_margin, seen_box

if TYPE_CHECKING:
    from sedge_pyro.models.base import Prior
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


#: :meth:`Problem.start_points`: the prior draws resampled are this many times the points
#: asked for, at least :data:`START_POOL_MIN` and at most :data:`START_POOL_MAX`
START_POOL = 20
START_POOL_MIN = 50_000
START_POOL_MAX = 200_000

#: the guidance losses of ``opt`` and ``dps``: the paper's squared error of the predicted
#: mean (Algorithms 1-2) or the negative log-likelihood of the target
LOSSES = ("squared", "nll")
#: the methods that take per-draw targets (one target value per draw)
PER_DRAW_METHODS = ("opt", "dps", "direct")


def is_per_draw(value: Any) -> bool:
    """Whether a target value is a per-draw array (numpy array, list, tuple, pandas Series or
    torch tensor of one or more dimensions) rather than a point or an interval.
    """
    if isinstance(value, np.ndarray | torch.Tensor):
        return value.ndim > 0
    return isinstance(value, list | tuple | pd.Series | pd.Index)


def _as_array(spec: str, value: Any, n: int | None) -> np.ndarray:
    """A per-draw target value as a 1-D numpy array of length ``n`` (checked)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value.to_numpy() if isinstance(value, pd.Series | pd.Index) else value)
    if arr.dtype == object:
        flat = [v for v in arr.ravel()] if arr.ndim else []
        if any(isinstance(v, Interval) for v in flat):
            raise TargetError(
                f"per-draw target for {spec!r} holds an Interval: per-draw targets are points "
                "(numbers or levels); give one Interval for all draws instead"
            )
    if arr.ndim != 1:
        raise TargetError(
            f"per-draw target for {spec!r} has shape {arr.shape}: expected a 1-D array of "
            f"{'n' if n is None else n} values"
        )
    if n is not None and len(arr) != n:
        raise TargetError(
            f"per-draw target for {spec!r} has length {len(arr)}: expected n={n} (one value "
            "per draw)"
        )
    if len(arr) == 0:
        raise TargetError(f"per-draw target for {spec!r} is empty: expected one value per draw")
    if arr.dtype.kind in "fc" and np.isnan(arr).any():
        i = int(np.flatnonzero(np.isnan(arr))[0])
        raise TargetError(f"per-draw target for {spec!r} is NaN at draw {i}: expected a value")
    return arr


@dataclass(frozen=True)
class SpecEvent:
    """One target specification in the model's normalised units.

    :param spec: the specification's name.
    :param kind: its column kind (``continuous``, ``binary``, ``categorical``).
    :param value: the target as the user gave it (raw units).
    :param low: normalised lower bound (``None``: unbounded); equal to ``high`` for a point;
        for a per-draw target, a tensor of shape ``(n,)``.
    :param high: normalised upper bound (``None``: unbounded).
    :param context: indices of the features the likelihood sees (``V_i``).
    :param per_draw: whether ``low`` and ``high`` hold one point per draw.
    """

    spec: str
    kind: str
    value: Any
    low: float | torch.Tensor | None
    high: float | torch.Tensor | None
    context: tuple[int, ...]
    per_draw: bool = False

    @property
    def point(self) -> bool:
        """Whether the event is a single value (a density for a continuous spec)."""
        if self.per_draw:
            return True
        return self.low is not None and self.low == self.high

    @property
    def density(self) -> bool:
        """Whether the likelihood term is a density (a point on a continuous spec)."""
        return self.point and self.kind == "continuous"


def _normalise_value(
    model: SEDGEProgram, spec: str, value: Any
) -> tuple[float | None, float | None]:
    """A raw target value or interval as normalised ``(low, high)``."""
    assert model.columns is not None
    col = model.columns[spec]
    if isinstance(value, Interval):
        if col.kind == "categorical":
            cats = col.categories
            if not all(isinstance(c, int | float) and not isinstance(c, bool) for c in cats):
                raise TargetError(
                    f"target for {spec!r} is an interval, but its categories {cats} are not "
                    "numbers: expected one category"
                )
            inside = [i for i, c in enumerate(cats) if value.contains([c])[0]]
            if not inside:
                raise TargetError(
                    f"target for {spec!r} is {value}, which holds none of its categories {cats}"
                )
            return float(inside[0]), float(inside[-1])
        if col.kind == "binary":
            inside = [v for v in (0, 1) if value.contains([v])[0]]
            if not inside:
                raise TargetError(f"target for {spec!r} is {value}, which holds neither 0 nor 1")
            return float(inside[0]), float(inside[-1])
        return col.encode_bound(value.low), col.encode_bound(value.high)
    if col.kind == "categorical":
        if value not in col.categories:
            raise TargetError(
                f"target value {value!r} for {spec!r} is not one of its categories {col.categories}"
            )
        code = float(col.categories.index(value))
        return code, code
    if isinstance(value, str) or isinstance(value, bool):
        value = int(value) if isinstance(value, bool) else value
    if not isinstance(value, int | float):
        raise TargetError(f"target value {value!r} for {spec!r}: expected a number")
    if col.kind == "binary":
        if value not in (0, 1):
            raise TargetError(f"target value {value!r} for {spec!r}: expected 0 or 1 (binary)")
        return float(value), float(value)
    v = col.encode_bound(float(value))
    return v, v


def _normalise_array(model: SEDGEProgram, spec: str, arr: np.ndarray) -> tuple[np.ndarray, Any]:
    """A per-draw target as ``(normalised float64 codes, the array as kept)`` (checked)."""
    assert model.columns is not None
    col = model.columns[spec]
    if col.kind == "categorical":
        lookup = {c: i for i, c in enumerate(col.categories)}
        values = arr.tolist()
        codes = np.array([lookup.get(v, -1) if _hashable(v) else -1 for v in values], dtype=float)
        if (codes < 0).any():
            i = int(np.flatnonzero(codes < 0)[0])
            raise TargetError(
                f"per-draw target value {values[i]!r} (draw {i}) for {spec!r} is not one of its "
                f"categories {col.categories}"
            )
        return codes, arr
    if arr.dtype.kind not in "biuf":
        raise TargetError(
            f"per-draw target for {spec!r} has dtype {arr.dtype}: expected numbers ({col.kind})"
        )
    num = arr.astype(float)
    if col.kind == "binary":
        bad = ~np.isin(num, (0.0, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TargetError(
                f"per-draw target value {arr[i].item()!r} (draw {i}) for {spec!r}: expected 0 "
                "or 1 (binary)"
            )
        return num, arr
    if not np.isfinite(num).all():
        i = int(np.flatnonzero(~np.isfinite(num))[0])
        raise TargetError(
            f"per-draw target value {num[i]!r} (draw {i}) for {spec!r}: expected a finite number"
        )
    return (num - col.mean) / col.std, num


def _item(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


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


@dataclass
class Problem:
    r"""What a model-based sampler needs: the fitted pieces in normalised units.

    :param model: the fitted model.
    :param target: the compiled target.
    :param device: where tensors live.
    :param dtype: their dtype.
    """

    model: SEDGEProgram
    target: Target
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
