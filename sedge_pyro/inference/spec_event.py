"""One target specification as an event in the model's normalised units: :class:`SpecEvent`,
and the checks that turn what a user writes (a point, a category, an
:class:`~sedge_pyro.Interval`, a per-draw array) into one.

The per-spec half of compiling a target (Algorithm 1, step 1: the target in the model's
units); :class:`~sedge_pyro.inference.target.Target` composes the events of all its specs,
checks them against the training rows (Assumption 1) and re-exports :class:`SpecEvent` and
:func:`is_per_draw`. Per-draw arrays follow Sec. 5.1 and App. D.1, one target per generated
sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from sedge_pyro.errors import TargetError
from sedge_pyro.expr import Interval

if TYPE_CHECKING:
    from sedge_pyro.models.sedge import SEDGEProgram

__all__ = ["SpecEvent", "is_per_draw"]


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
