"""``Samples``: what every sampler returns, with its ArviZ and pandas views.

Draws are held as ``(chain, draw, feature)`` in raw units, with per-draw statistics
(``sample_stats``: the target's log-likelihood, acceptance, loss, ...) and the method's
settings. :meth:`Samples.to_inference_data` gives ArviZ data (a variable per feature with dims
``chain, draw``): an ``xarray.DataTree`` under ArviZ 1.x, an ``arviz.InferenceData`` under
ArviZ 0.x (see :mod:`sedge_pyro.arviz_compat`), which round-trips through NetCDF
(:meth:`Samples.save`, :meth:`Samples.load`).

A per-draw target (one value per draw, see :mod:`~sedge_pyro.inference.sample`) is kept in
:attr:`Samples.target` as a numpy array of length ``draws``. In the ArviZ data its values
live only in ``observed_data`` (a variable named after the spec with dims ``("draw",)``); the
``target`` attribute marks the spec ``{"per_draw": n}`` rather than repeating the values, and
:meth:`Samples.from_inference_data` puts the array back.

Variable names cannot hold ``/`` (``DataTree`` forbids it, NetCDF too), which node names may:
there ``%`` is written ``%25`` and ``/`` ``%2F``, and the ``features`` attribute keeps the true
names in order (its presence marks the escaping when the data is read back).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from sedge_pyro import arviz_compat
from sedge_pyro.atomic import atomic_path
from sedge_pyro.errors import SedgeError
from sedge_pyro.expr import Interval
from sedge_pyro.inference.verdict import Verdict, agreement, is_markov

__all__ = ["Comparison", "Samples"]

#: summary columns that describe Markov chains
_CHAIN_COLUMNS = ("r_hat", "ess_bulk", "ess_tail", "mcse_mean", "mcse_sd")


class Comparison(NamedTuple):
    """Two sets of draws compared by :meth:`Samples.compare`.

    :param mmd: the standardised MMD between the two sets (half of each).
    :param floor: the larger MMD between the two halves of one set (what agreement scores).
    :param warning: a line saying they disagree, or ``None``.
    """

    mmd: float
    floor: float
    warning: str | None


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
        """The draws as ArviZ data: an ``xarray.DataTree`` (ArviZ 1.x) or an
        ``arviz.InferenceData`` (ArviZ 0.x), with ``posterior`` (a variable per feature, dims
        ``chain, draw``), ``sample_stats`` (per-draw statistics), ``observed_data`` (the
        target), and the method, target, feature names, settings (``setting_*``) and run
        figures (``info_*``) as attributes of the root and the posterior.

        >>> import numpy as np
        >>> s = Samples(np.zeros((2, 3, 1)), ["x1"], {"z1": 1.0}, "plan")
        >>> s.to_inference_data().posterior["x1"].dims
        ('chain', 'draw')
        """
        posterior = {_escape(f): self.values[:, :, j] for j, f in enumerate(self.features)}
        observed = dict(self.observed)
        per_draw = [k for k, v in self.target.items() if isinstance(v, np.ndarray)]
        observed.update({k: self.target[k] for k in per_draw})
        attrs = {
            "method": self.method,
            "target": _attr(_target_json(self.target)),
            "features": _attr(list(self.features)),
        }
        attrs.update({f"setting_{k}": _attr(v) for k, v in self.settings.items()})
        attrs.update({f"info_{k}": _attr(v) for k, v in self.info.items()})
        # ArviZ 0.x reads a file's attributes from its groups, not its root: the posterior
        # keeps its own copy
        return arviz_compat.from_groups(
            {
                "posterior": posterior,
                "sample_stats": {_escape(k): v for k, v in self.stats.items()},
                "observed_data": {_escape(k): v for k, v in observed.items()},
            },
            dims={_escape(k): ["draw"] for k in per_draw},
            attrs={"/": attrs, "posterior": attrs},
        )

    @property
    def warnings(self) -> list[str]:
        """The verdict's warnings (``info["warnings"]``), one line each; empty when all is
        well or when the draws carry no verdict.
        """
        return list(self.info.get("warnings") or [])

    def diagnose(self) -> Verdict:
        """The verdict on these draws, to read before using them: the share outside the
        training range per feature, the mean fitted probability of the target, the number
        of distinct draws, whether R-hat/ESS mean anything, and the warnings. ``print`` it.

        Recorded by :func:`~sedge_pyro.inference.sample` in ``info["diagnostics"]``; kept by
        :meth:`save` / :meth:`load`.

        >>> import numpy as np
        >>> print(Samples(np.zeros((1, 3, 1)), ["x1"], {"z1": 1.0}, "plan").diagnose())
        no verdict recorded for these draws by plan
        """
        diagnostics = self.info.get("diagnostics")
        return Verdict(
            self.method,
            dict(diagnostics) if isinstance(diagnostics, Mapping) else {},
            tuple(self.warnings),
        )

    def compare(
        self, other: Samples, *, max_rows: int = 1000, ratio: float = 2.0, seed: int = 0
    ) -> Comparison:
        r"""Whether two sets of draws (e.g. two methods on one model and target) agree.

        The MMD (:func:`~sedge_pyro.mmd`, standardised features, median bandwidth, biased
        estimate) between half of each set's draws, against a floor: the larger MMD between
        the two halves of either set (:func:`~sedge_pyro.inference.verdict.agreement`).
        Both are computed on equal numbers of rows, so their finite-sample bias is the same;
        the sets disagree when the MMD exceeds ``ratio`` times the floor. Markov chains
        (``langevin`` MALA/ULA, ``nuts``) are halved in draw order within each chain,
        independent draws at random. With the defaults, ``s.compare(plan_draws)`` gives the
        figures of the verdict's cross-check (``info["diagnostics"]["agreement"]``) when
        ``plan_draws`` are that check's reference.

        :param other: draws of the same features.
        :param max_rows: at most this many rows of each set are used (the MMD is quadratic).
        :param ratio: the MMD over the floor above which a warning is given.
        :param seed: seeds the choice of rows.
        :returns: a :class:`Comparison` (``mmd``, ``floor``, ``warning`` or ``None``).
        :raises SedgeError: when the features differ or a set has fewer than 4 draws.
        """
        if list(other.features) != list(self.features):
            raise SedgeError(
                f"other has features {list(other.features)}: expected {list(self.features)}"
            )
        if min(len(self), len(other)) < 4:
            raise SedgeError(
                f"the draws have {len(self)} and {len(other)} rows: comparing needs 4 or more each"
            )
        ordered = (is_markov(self.method, self.settings), is_markov(other.method, other.settings))
        value, floor = agreement(
            self.values, other.values, max_rows=max_rows, seed=seed, ordered=ordered
        )
        warning = None
        if value > ratio * floor:
            warning = (
                f"{self.method} and {other.method} disagree: MMD {value:.3f} between their "
                f"draws, {value / floor if floor else float('inf'):.1f}x the {floor:.3f} between "
                "halves of one set"
            )
        return Comparison(value, floor, warning)

    def summary(self, **kwargs: Any) -> pd.DataFrame:
        """R-hat, ESS and moments of each feature (R-hat and ESS need several chains).

        ``arviz.summary`` (ArviZ 0.x) or ``arviz_stats.summary`` (ArviZ 1.x) of
        :meth:`to_inference_data`, rows named by feature; ``kwargs`` go to that function
        (e.g. ``kind="diagnostics"``, ``round_to="none"``). Both give ``mean``, ``sd``,
        ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean`` and ``mcse_sd``.

        Where R-hat and ESS mean nothing (``info["rhat_ess"]`` is ``"n/a"``: independent
        optimisations, importance resampling, amortised draws, one chain; or, for
        ``"partial"``, the features not drawn by Markov chains) the columns ``r_hat``,
        ``ess_bulk``, ``ess_tail``, ``mcse_mean`` and ``mcse_sd`` are NaN in those rows
        (the columns stay, so code that reads them keeps working) and ``out.attrs["note"]``
        says why; ArviZ's own numbers are one call away:
        ``arviz_compat.summary(s.to_inference_data())``. Draws without a verdict (made
        before it was recorded, or built by hand) keep every number.
        """
        out = arviz_compat.summary(self.to_inference_data(), **kwargs)
        names = {_escape(f): f for f in self.features if _escape(f) != f}
        out = self._blank_meaningless(out)
        if names and isinstance(out, pd.DataFrame):
            fmt = getattr(out, "_fmt_map", None)  # arviz_stats 1.x: display digits per row
            out = out.rename(index=names)
            if isinstance(fmt, dict):
                out._fmt_map = {
                    c: {names.get(i, i): v for i, v in m.items()} for c, m in fmt.items()
                }
        return out

    def _blank_meaningless(self, out: Any) -> Any:
        """``out`` with R-hat/ESS/MCSE set to NaN where they mean nothing (see summary)."""
        kind = self.info.get("rhat_ess")
        if kind not in ("n/a", "partial") or not isinstance(out, pd.DataFrame):
            return out
        diagnostics = self.info.get("diagnostics")
        rhat = diagnostics.get("rhat_ess", {}) if isinstance(diagnostics, Mapping) else {}
        keep = {_escape(f) for f in rhat.get("features") or []} if kind == "partial" else set()
        rows = [i for i in out.index if i not in keep]
        cols = [c for c in _CHAIN_COLUMNS if c in out.columns]
        if rows and cols:
            fmt = getattr(out, "_fmt_map", None)  # arviz_stats 1.x: display digits per row
            out = out.copy()
            out[cols] = out[cols].astype(float)
            out.loc[rows, cols] = np.nan
            if fmt is not None:
                out._fmt_map = fmt
        out.attrs["note"] = (
            f"R-hat, ESS and MCSE are NaN for {', '.join(map(_unescape, rows))}: "
            f"{rhat.get('reason', 'the draws are no Markov chain')}"
        )
        return out

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the draws: NetCDF (``.nc``, the ArviZ form) or CSV (``.csv``, the draws).

        The file is written under a temporary name of its own in the same folder and then
        published, so a reader never sees half a file and concurrent writers do not mix.
        Without ``overwrite``, a file that appears at ``path`` meanwhile is kept, not replaced.

        :raises SedgeError: when the file exists and ``overwrite`` is false, when ``path`` is
            a directory, for another suffix, or when the file cannot be written.
        :raises ImportError: for ``.nc`` when h5netcdf or h5py is missing (ArviZ 1.x does not
            need them).
        """
        p = Path(path)
        if p.suffix not in (".nc", ".csv"):
            raise SedgeError(f"{str(p)!r}: expected a .nc (NetCDF) or .csv file")
        with atomic_path(p, overwrite=overwrite) as tmp:
            if p.suffix == ".nc":
                arviz_compat.to_netcdf(self.to_inference_data(), tmp)
            else:
                self.to_dataframe(index=True).to_csv(tmp, index=False)
        return p

    @classmethod
    def from_inference_data(cls, idata: Any) -> Samples:
        """Rebuild from the ArviZ data of :meth:`to_inference_data`: an ``xarray.DataTree``
        or an ``arviz.InferenceData``, under either ArviZ version.

        :raises SedgeError: when it has no ``posterior`` group or lacks a per-draw target's
            values.
        """
        post = arviz_compat.group(idata, "posterior")
        attrs = {**arviz_compat.root_attrs(idata), **dict(post.attrs)}
        if "features" in attrs:
            features = _unjson(attrs["features"])
            if not isinstance(features, list):
                raise SedgeError(
                    f"attribute 'features' is {attrs['features']!r}: expected a JSON list"
                )
            features, name = [str(f) for f in features], _unescape
            variables = [_escape(f) for f in features]
            missing = [
                f for f, v in zip(features, variables, strict=True) if v not in post.data_vars
            ]
            if missing:
                raise SedgeError(f"features {missing} are named but have no draws")
        else:  # written before names were escaped: the variables are the features
            features = variables = [str(v) for v in post.data_vars]
            name = str
        values = np.stack([post[v].values for v in variables], axis=-1)
        groups = arviz_compat.group_names(idata)
        stats, observed = {}, {}
        if "sample_stats" in groups:
            ds = arviz_compat.group(idata, "sample_stats")
            stats = {name(str(k)): ds[k].values for k in ds.data_vars}
        if "observed_data" in groups:
            ds = arviz_compat.group(idata, "observed_data")
            observed = {name(str(k)): ds[k].values for k in ds.data_vars}
        settings = {k[8:]: _unjson(v) for k, v in attrs.items() if k.startswith("setting_")}
        info = {k[5:]: _unjson(v) for k, v in attrs.items() if k.startswith("info_")}
        target = _target_from_json(json.loads(attrs.get("target", "{}")), observed)
        return cls(
            values, features, target, str(attrs.get("method", "")), settings, stats, info, observed
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Samples:
        """Read a NetCDF file written by :meth:`save` (by either ArviZ version).

        :raises SedgeError: naming ``path`` when it is missing, a directory, unreadable, not
            NetCDF, or not a file of samples.
        :raises ImportError: when h5netcdf or h5py is missing (ArviZ 1.x does not need them).
        """
        p = Path(path)
        if p.is_dir():
            raise SedgeError(f"{str(p)!r} is a directory: expected a NetCDF file of samples")
        if not p.exists():
            raise SedgeError(f"{str(p)!r} does not exist: expected a NetCDF file of samples")
        try:
            data = arviz_compat.from_netcdf(p)
        except ImportError:  # no NetCDF library: not the file's fault
            raise
        except Exception as err:  # the readers raise OSError, ValueError, KeyError, ...
            raise SedgeError(
                f"{str(p)!r} cannot be read as a NetCDF file of samples: {err}"
            ) from err
        try:
            return cls.from_inference_data(data)
        except SedgeError as err:
            raise SedgeError(f"{str(p)!r} is not a file of samples: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise SedgeError(f"{str(p)!r} is not a file of samples: {err!r}") from err


def _escape(name: str) -> str:
    """A variable name without ``/`` (``DataTree`` and NetCDF forbid it), reversibly."""
    return name.replace("%", "%25").replace("/", "%2F")


def _unescape(name: str) -> str:
    # each ``%`` of an escaped name starts ``%25`` or ``%2F``, so this order is exact
    return name.replace("%2F", "/").replace("%25", "%")


def _target_json(target: Mapping[str, Any]) -> dict[str, Any]:
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
