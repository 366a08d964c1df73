"""ArviZ 0.x and 1.x behind one small interface.

``arviz>=0.23,<2`` resolves to ArviZ 0.x on Python 3.10-3.11 and to ArviZ 1.x on Python
3.12 and later. The two keep draws in different containers:

- **ArviZ 1.x** (its converters in ``arviz_base``, its statistics in ``arviz_stats``):
  ``from_dict({group: {var: array}}, dims=..., attrs=...)`` returns an
  :class:`xarray.DataTree`; NetCDF is written by ``DataTree.to_netcdf`` and read by
  :func:`xarray.open_datatree`; ``arviz_stats.summary`` gives R-hat and ESS.
- **ArviZ 0.x**: ``from_dict(posterior=..., sample_stats=..., ...)`` returns an
  ``arviz.InferenceData``; ``az.from_netcdf`` and ``az.summary``.

The rule: when ``arviz_base`` is importable (:data:`DATATREE` is true) the 1.x API builds and
reads the data, otherwise ArviZ 0.x. The helpers that take data (:func:`group`,
:func:`group_names`, :func:`to_netcdf`, :func:`summary`) look at its type instead, so either
container is accepted under either API. Both containers expose ``.posterior``,
``.sample_stats`` and ``.observed_data`` as attributes; :func:`group` gives the plain
:class:`xarray.Dataset` of a group under both.

References
----------
- ArviZ migration guide: https://python.arviz.org/en/latest/user_guide/migration_guide.html

>>> import numpy as np
>>> data = from_groups({"posterior": {"x1": np.zeros((2, 3))}}, attrs={"/": {"method": "plan"}})
>>> group_names(data), group(data, "posterior")["x1"].dims
(['posterior'], ('chain', 'draw'))
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sedge_pyro.errors import SedgeError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DATATREE",
    "from_groups",
    "from_netcdf",
    "group",
    "group_names",
    "psislw",
    "root_attrs",
    "summary",
    "to_netcdf",
]

#: True when ``arviz_base`` (ArviZ 1.x) is importable: data is built as an ``xarray.DataTree``.
DATATREE: bool = importlib.util.find_spec("arviz_base") is not None


def _arviz() -> Any:
    """``import arviz`` (0.x) without its once-a-day FutureWarning about the 1.x refactor."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "(?s).*ArviZ is undergoing", FutureWarning)
        import arviz

    return arviz


def _is_datatree(data: Any) -> bool:
    # no DataTree exists unless xarray was imported, and importing it here would cost ~0.3 s
    tree = getattr(sys.modules.get("xarray"), "DataTree", None)
    return tree is not None and isinstance(data, tree)


def from_groups(
    groups: Mapping[str, Mapping[str, np.ndarray]],
    *,
    dims: Mapping[str, Sequence[str]] | None = None,
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """Draws as ArviZ data: an ``xarray.DataTree`` (1.x) or an ``arviz.InferenceData`` (0.x).

    :param groups: group name (``posterior``, ``sample_stats``, ``observed_data``) -> variable
        name -> array; ``posterior`` and ``sample_stats`` arrays have leading dims ``chain,
        draw``. Empty groups are left out. Variable names must not contain ``/``.
    :param dims: variable name -> its dimension names, for variables that need them.
    :param attrs: group name -> attributes; the key ``"/"`` is the root's.
    :returns: the data, with a group per non-empty entry of ``groups``.
    """
    groups = {g: dict(v) for g, v in groups.items() if v}
    attrs = {g: dict(a) for g, a in (attrs or {}).items() if g == "/" or g in groups}
    if DATATREE:
        from arviz_base import from_dict

        return from_dict(groups, dims=dict(dims or {}), attrs=attrs)
    az = _arviz()
    kwargs: dict[str, Any] = dict(groups)  # 0.x takes a keyword per group, and its attributes
    kwargs.update({f"{g}_attrs": a for g, a in attrs.items() if g != "/"})
    # a per-draw statistic named log_likelihood is a sample statistic here (one number per
    # draw), not ArviZ's pointwise log_likelihood group, which 0.x flags as pending deprecation
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "log_likelihood variable found", PendingDeprecationWarning
        )
        return az.from_dict(**kwargs, dims=dict(dims or {}) or None, attrs=attrs.get("/"))


def group_names(data: Any) -> list[str]:
    """The groups of ``data`` (``DataTree`` children or ``InferenceData.groups()``)."""
    if _is_datatree(data):
        return list(data.children)
    return list(data.groups())


def group(data: Any, name: str) -> xr.Dataset:
    """Group ``name`` of ``data`` as an :class:`xarray.Dataset`.

    :raises SedgeError: when ``data`` has no such group.
    """
    if name not in group_names(data):
        raise SedgeError(f"no group {name!r}: the data has groups {group_names(data)}")
    if _is_datatree(data):
        return data[name].to_dataset()
    return getattr(data, name)


def root_attrs(data: Any) -> dict[str, Any]:
    """The root's attributes (empty for an ``InferenceData`` read by ArviZ 0.x)."""
    return dict(getattr(data, "attrs", None) or {})


def _need_h5netcdf() -> None:
    """ArviZ 0.x depends on h5netcdf and h5py; ArviZ 1.x does not (they are extras there)."""
    missing = [m for m in ("h5netcdf", "h5py") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"NetCDF files need {' and '.join(missing)}, which ArviZ 1.x does not install: "
            "pip install 'h5netcdf[h5py]'"
        )


def to_netcdf(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ``data`` (either container) to the NetCDF-4 file ``path``, a group per group.

    :raises ImportError: when h5netcdf or h5py is missing.
    """
    if _is_datatree(data):
        _need_h5netcdf()
        data.to_netcdf(os.fspath(path), engine="h5netcdf")
    else:
        data.to_netcdf(os.fspath(path))


def from_netcdf(path: str | os.PathLike[str]) -> Any:
    """Read a NetCDF file of groups into memory (the file is closed on return).

    :returns: an ``xarray.DataTree`` when :data:`DATATREE`, else an ``arviz.InferenceData``.
    :raises ImportError: when h5netcdf or h5py is missing.
    """
    if DATATREE:
        import xarray as xr

        _need_h5netcdf()

        with xr.open_datatree(os.fspath(path), engine="h5netcdf") as tree:
            return tree.load()
    az = _arviz()
    with az.rc_context({"data.load": "eager"}):  # 0.x reads lazily by default: the file stays open
        return az.from_netcdf(os.fspath(path))


def summary(data: Any, **kwargs: Any) -> Any:
    """R-hat, ESS and moments of the posterior: ``arviz_stats.summary`` for a ``DataTree``,
    ``arviz.summary`` for an ``InferenceData``; ``kwargs`` go to that function.

    Both give a DataFrame indexed by variable with ``mean``, ``sd``, ``ess_bulk``,
    ``ess_tail``, ``r_hat``, ``mcse_mean`` and ``mcse_sd``; the interval columns differ
    (0.x: ``hdi_3%``, ``hdi_97%``; 1.x: ``eti89_lb``, ``eti89_ub``).

    :raises ImportError: for a ``DataTree`` when ``arviz_stats`` (with xarray-einstats) is
        missing.
    """
    if not _is_datatree(data):
        return _arviz().summary(data, **kwargs)
    try:
        from arviz_stats import summary as stats_summary
    except ImportError as err:
        raise ImportError(
            "summaries of ArviZ 1.x data need arviz-stats: pip install 'arviz-stats[xarray]'"
        ) from err
    return stats_summary(data, **kwargs)


def psislw(log_weights: np.ndarray) -> tuple[np.ndarray, float]:
    r"""Pareto-smoothed importance sampling of one vector of log-weights.

    :param log_weights: importance log-weights, one dimension.
    :returns: the smoothed, normalised log-weights and the Pareto :math:`\hat k` of the tail.

    References: Vehtari, Simpson, Gelman, Yao, Gabry (2024), "Pareto smoothed importance
    sampling", JMLR 25(72).
    """
    lw = np.asarray(log_weights, dtype=float).reshape(-1)
    if DATATREE:
        try:
            from arviz_stats.base import array_stats
        except ImportError as err:
            raise ImportError(
                "PSIS with ArviZ 1.x needs arviz-stats: pip install arviz-stats"
            ) from err
        # arviz_stats smooths the log-ratios of ``-ary`` (its input is a log-likelihood)
        smoothed, khat = array_stats.psislw(-lw)
    else:
        smoothed, khat = _arviz().psislw(lw)
    return np.asarray(smoothed), float(np.asarray(khat).reshape(-1)[0])
