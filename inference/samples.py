"""``Samples``: what every sampler returns, with its ArviZ and pandas views.

Draws are held as ``(chain, draw, feature)`` in raw units, with per-draw statistics
(``sample_stats``: the target's log-likelihood, acceptance, loss, ...) and the method's
settings. :meth:`Samples.to_inference_data` gives ArviZ's ``InferenceData`` (a variable per
feature with dims ``chain, draw``), which round-trips through NetCDF (:meth:`Samples.save`,
:meth:`Samples.load`).

A per-draw target (one value per draw, see :mod:`~sedge_pyro.inference.sample`) is kept in
:attr:`Samples.target` as a numpy array of length ``draws``. In ``InferenceData`` its values
live only in ``observed_data`` (a variable named after the spec with dims ``("draw",)``); the
``target`` attribute marks the spec ``{"per_draw": n}`` rather than repeating the values, and
:meth:`Samples.from_inference_data` puts the array back.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import SedgeError

__all__ = ["Samples"]


def _attr(value: Any) -> Any:
    """A NetCDF-safe attribute: numbers and strings as they are, the rest as JSON."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.dumps(value, default=str)


class Samples:
    """Draws of the features for a target, from one method.

    :param values: shape ``(chains, draws, features)``, raw units.
    :param features: the feature names, in order.
    :param target: the target, spec -> value, :class:`~sedge_pyro.Interval`, or a per-draw
        array of ``draws`` values (kept as a numpy array).
    :param method: the sampler's name.
    :param settings: the method's settings (recorded as attributes).
    :param stats: per-draw statistics, name -> array ``(chains, draws)``.
    :param info: per-run figures (e.g. ``ess``, ``seconds``).
    :param observed: the target as arrays for ``observed_data``.

    >>> import numpy as np
    >>> s = Samples(np.zeros((2, 3, 2)), ["x1", "x2"], {"z1": 1.0}, "plan")
    >>> len(s), s.chains, s.draws, list(s.to_dataframe().columns)
    (6, 2, 3, ['x1', 'x2'])
    """

    def __init__(
        self,
        values: np.ndarray,
        features: Sequence[str],
        target: Mapping[str, Any],
        method: str,
        settings: Mapping[str, Any] | None = None,
        stats: Mapping[str, np.ndarray] | None = None,
        info: Mapping[str, Any] | None = None,
        observed: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        values = np.asarray(values, dtype=float)
        if values.ndim != 3 or values.shape[2] != len(features):
            raise SedgeError(
                f"values have shape {values.shape}: expected (chains, draws, {len(features)})"
            )
        self.values = values
        self.features = tuple(features)
        self.target = {k: _per_draw_array(v) for k, v in target.items()}
        for k, v in self.target.items():
            if isinstance(v, np.ndarray) and v.shape != (values.shape[1],):
                raise SedgeError(
                    f"per-draw target {k!r} has shape {v.shape}: expected ({values.shape[1]},), "
                    "one value per draw"
                )
        self.method = method
        self.settings = dict(settings or {})
        self.stats = {k: np.asarray(v) for k, v in (stats or {}).items()}
        for k, v in self.stats.items():
            if v.shape != values.shape[:2]:
                raise SedgeError(f"stat {k!r} has shape {v.shape}: expected {values.shape[:2]}")
        self.info = dict(info or {})
        self.observed = dict(observed or {})

    @property
    def chains(self) -> int:
        """Number of chains."""
        return self.values.shape[0]

    @property
    def draws(self) -> int:
        """Draws per chain."""
        return self.values.shape[1]

    def __len__(self) -> int:
        return self.chains * self.draws

    def __repr__(self) -> str:
        return (
            f"Samples(method={self.method!r}, chains={self.chains}, draws={self.draws}, "
            f"features={list(self.features)})"
        )

    def to_numpy(self) -> np.ndarray:
        """All draws as one array ``(chains * draws, features)``, chain after chain."""
        return self.values.reshape(-1, len(self.features))

    def to_dataframe(self, *, index: bool = False) -> pd.DataFrame:
        """All draws as a DataFrame with a column per feature.

        :param index: add ``chain`` and ``draw`` columns.
        """
        df = pd.DataFrame(self.to_numpy(), columns=list(self.features))
        if index:
            c, d = np.meshgrid(np.arange(self.chains), np.arange(self.draws), indexing="ij")
            df.insert(0, "draw", d.ravel())
            df.insert(0, "chain", c.ravel())
        return df

    def to_inference_data(self) -> Any:
        """An ``arviz.InferenceData``: ``posterior`` (a variable per feature, dims ``chain,
        draw``), ``sample_stats`` (per-draw statistics), ``observed_data`` (the target), and
        the method, target and settings as attributes.
        """
        import arviz as az

        posterior = {f: self.values[:, :, j] for j, f in enumerate(self.features)}
        observed = dict(self.observed)
        per_draw = [k for k, v in self.target.items() if isinstance(v, np.ndarray)]
        observed.update({k: self.target[k] for k in per_draw})
        attrs = {"method": self.method, "target": _attr(_target_json(self.target))}
        attrs.update({f"setting_{k}": _attr(v) for k, v in self.settings.items()})
        attrs.update({f"info_{k}": _attr(v) for k, v in self.info.items()})
        # ArviZ 0.2x puts ``attrs`` on the root and observed_data only: the posterior needs its
        # own copy, as from_inference_data and NetCDF readers look there. The per-draw target
        # log-likelihood is a sample statistic here (one number per draw, not ArviZ's pointwise
        # log_likelihood group), which ArviZ flags with a PendingDeprecationWarning.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "log_likelihood variable found", PendingDeprecationWarning
            )
            return az.from_dict(
                posterior=posterior,
                sample_stats=self.stats or None,
                observed_data=observed or None,
                dims={k: ["draw"] for k in per_draw} or None,
                attrs=dict(attrs),
                posterior_attrs=dict(attrs),
            )

    def summary(self, **kwargs: Any) -> pd.DataFrame:
        """``arviz.summary`` of the draws (R-hat and ESS need several chains)."""
        import arviz as az

        return az.summary(self.to_inference_data(), **kwargs)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the draws: NetCDF (``.nc``, the ArviZ form) or CSV (``.csv``, the draws).

        :raises SedgeError: when the file exists and ``overwrite`` is false, or for another
            suffix.
        """
        p = Path(path)
        if p.suffix not in (".nc", ".csv"):
            raise SedgeError(f"{str(p)!r}: expected a .nc (NetCDF) or .csv file")
        if p.exists() and not overwrite:
            raise SedgeError(f"{str(p)!r} exists; pass overwrite=True to replace it")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        try:
            if p.suffix == ".nc":
                self.to_inference_data().to_netcdf(str(tmp))
            else:
                self.to_dataframe(index=True).to_csv(tmp, index=False)
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)
        return p

    @classmethod
    def from_inference_data(cls, idata: Any) -> Samples:
        """Rebuild from an ``InferenceData`` written by :meth:`to_inference_data`."""
        post = idata.posterior
        attrs = {**dict(getattr(idata, "attrs", None) or {}), **dict(post.attrs)}
        features = list(post.data_vars)
        values = np.stack([post[f].values for f in features], axis=-1)
        stats = {}
        if "sample_stats" in idata.groups():
            stats = {k: idata.sample_stats[k].values for k in idata.sample_stats.data_vars}
        observed = {}
        if "observed_data" in idata.groups():
            observed = {k: idata.observed_data[k].values for k in idata.observed_data.data_vars}
        settings = {k[8:]: _unjson(v) for k, v in attrs.items() if k.startswith("setting_")}
        info = {k[5:]: _unjson(v) for k, v in attrs.items() if k.startswith("info_")}
        target = _target_from_json(json.loads(attrs.get("target", "{}")), observed)
        return cls(
            values, features, target, str(attrs.get("method", "")), settings, stats, info, observed
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Samples:
        """Read a NetCDF file written by :meth:`save`."""
        import arviz as az

        p = Path(path)
        if not p.is_file():
            raise SedgeError(f"{str(p)!r} does not exist: expected a NetCDF file of samples")
        return cls.from_inference_data(az.from_netcdf(str(p)))


def _target_json(target: Mapping[str, Any]) -> dict[str, Any]:
    from sedge_pyro.expr import Interval

    out: dict[str, Any] = {}
    for k, v in target.items():
        if isinstance(v, np.ndarray):
            out[k] = {"per_draw": len(v)}  # the values are in observed_data
        elif isinstance(v, Interval):
            out[k] = {"low": v.low, "high": v.high}
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _target_from_json(
    data: Mapping[str, Any], observed: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    from sedge_pyro.expr import Interval

    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and "per_draw" in v:
            if observed is None or k not in observed:
                raise SedgeError(
                    f"per-draw target {k!r} has no values: expected a variable {k!r} in "
                    "observed_data"
                )
            out[k] = np.asarray(observed[k])
        elif isinstance(v, dict):
            out[k] = Interval(**v)
        else:
            out[k] = v
    return out


def _per_draw_array(value: Any) -> Any:
    """A per-draw target (array-like of one dimension or more) as a numpy array."""
    if isinstance(value, list | tuple | pd.Series | np.ndarray):
        arr = np.asarray(value)
        return arr if arr.ndim else arr.item()
    if type(value).__module__.startswith("torch") and getattr(value, "ndim", 0) > 0:
        return value.detach().cpu().numpy()
    return value


def _unjson(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value
