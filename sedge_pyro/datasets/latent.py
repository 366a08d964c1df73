"""App. B.1's latent setting (:func:`paper_latent`): :func:`paper_synthetic`'s X and Z observed
only through random linear mixtures ``Y_X = X A_X``, ``Y_Z = Z A_Z``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.datasets.mechanism import _column, _is_number
from sedge_pyro.datasets.tabular import SyntheticData, paper_synthetic
from sedge_pyro.errors import OptionError
from sedge_pyro.graph import SpecGraph

_LATENT_X = ("x1", "x2", "x3")
_LATENT_Z = ("z1", "z2")


@dataclass(frozen=True)
class LatentData:
    r"""App. B.1's latent problem: observed mixtures, and the latent truth kept apart.

    :param seen: training rows (S = 1): the observations ``yx_0 .. yx_{k-1}`` then
        ``yz_0 .. yz_{m-1}``.
    :param oracle: the rows the selection removed (S = 0), same columns.
    :param seen_latent: the latent truth of ``seen``, row for row: ``x1, x2, x3, z1, z2``
        (the rows of :func:`paper_synthetic`'s ``seen``).
    :param oracle_latent: the latent truth of ``oracle``.
    :param mixing_x: :math:`A_X`, shape ``(3, k)``: :math:`Y_X = X A_X` (+ noise).
    :param mixing_z: :math:`A_Z`, shape ``(2, m)``: :math:`Y_Z = Z A_Z` (+ noise).
    :param graph: the true :class:`SpecGraph` of the latent variables (Fig. 2(b)).
    :param noise: the standard deviation of the Gaussian observation noise.
    :param truth: the latent :class:`SyntheticData` (its mechanisms and Oracle region).
    """

    seen: pd.DataFrame
    oracle: pd.DataFrame
    seen_latent: pd.DataFrame
    oracle_latent: pd.DataFrame
    mixing_x: np.ndarray
    mixing_z: np.ndarray
    graph: SpecGraph
    noise: float = 0.0
    truth: SyntheticData | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Any]:  # allows ``seen, oracle, graph = paper_latent(...)``
        return iter((self.seen, self.oracle, self.graph))

    @property
    def columns_x(self) -> list[str]:
        """The names of the observations of X: ``yx_0, yx_1, ...``."""
        return [f"yx_{j}" for j in range(self.mixing_x.shape[1])]

    @property
    def columns_z(self) -> list[str]:
        """The names of the observations of Z: ``yz_0, yz_1, ...``."""
        return [f"yz_{j}" for j in range(self.mixing_z.shape[1])]

    def _observations(self, df: pd.DataFrame, columns: list[str]) -> np.ndarray:
        return np.column_stack([_column(df, c) for c in columns])

    def observations_x(self, df: pd.DataFrame) -> np.ndarray:
        """The matrix :math:`Y_X` of ``df`` (e.g. :attr:`seen`), shape ``(len(df), k)``.

        :raises DataError: when a column ``yx_j`` is missing or not finite.
        """
        return self._observations(df, self.columns_x)

    def observations_z(self, df: pd.DataFrame) -> np.ndarray:
        """The matrix :math:`Y_Z` of ``df``, shape ``(len(df), m)``.

        :raises DataError: when a column ``yz_j`` is missing or not finite.
        """
        return self._observations(df, self.columns_z)


def _dim(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise OptionError(
            f"{name}={value!r}: expected an integer >= {least} (the number of latent variables "
            "it mixes, so that the mixing can be injective)"
        )
    return int(value)


def paper_latent(
    n: int = 20_000,
    seed: int = 0,
    *,
    obs_x_dim: int = 20,
    obs_z_dim: int = 20,
    noise: float = 0.0,
) -> LatentData:
    r"""Simulate App. B.1's latent problem: Sec. 5.1's X and Z, seen only through mixtures.

    The latent :math:`X = (X_1, X_2, X_3)` and :math:`Z = (Z_1, Z_2)`, and the Seen / Oracle
    split, are exactly :func:`paper_synthetic` ``(n, seed)``'s. They are mixed linearly,
    :math:`Y_X = X A_X + \varepsilon_X` and :math:`Y_Z = Z A_Z + \varepsilon_Z`, with the
    entries of :math:`A_X` (``3 x obs_x_dim``) and :math:`A_Z` (``2 x obs_z_dim``) drawn from
    :math:`U(0, 1)` as in App. B.1, and :math:`\varepsilon \sim \mathcal N(0, \text{noise}^2)`
    independent per entry.

    Draw order: the latents come from ``np.random.default_rng(seed)`` (inside
    :func:`paper_synthetic`); a separate stream ``np.random.default_rng([seed, 1])`` then
    draws ``A_X`` (``uniform(0, 1, (3, obs_x_dim))``), ``A_Z`` (``uniform(0, 1, (2,
    obs_z_dim))``) and, only when ``noise > 0``, ``normal(0, noise, ...)`` for :math:`Y_X`
    then :math:`Y_Z`, each over the Seen rows followed by the Oracle rows. So the mixing
    matrices do not depend on ``noise`` or on the dimensions of the other block.

    App. B.1 calls the latent model linear Gaussian; this generator keeps Sec. 5.1's
    uniform model, whose split the paper says it reuses.

    :param n: population rows before the split.
    :param seed: seed of the latents and of the mixing stream.
    :param obs_x_dim: :math:`k`, the dimension of :math:`Y_X`, at least 3.
    :param obs_z_dim: :math:`m`, the dimension of :math:`Y_Z`, at least 2.
    :param noise: the standard deviation of the observation noise, ``>= 0``.
    :returns: :class:`LatentData` (unpacks as ``seen, oracle, graph``).
    :raises DataError: when ``n`` is not a positive integer.
    :raises OptionError: for a bad dimension or noise.

    References: Xie et al. 2025 (the identifiability conditions App. B.1 follows).

    >>> data = paper_latent(2000, seed=0, obs_x_dim=5, obs_z_dim=4)
    >>> data.seen.shape[1], data.mixing_x.shape, data.mixing_z.shape
    (9, (3, 5), (2, 4))
    >>> x = data.seen_latent[["x1", "x2", "x3"]].to_numpy()
    >>> bool(np.allclose(data.observations_x(data.seen), x @ data.mixing_x))
    True
    """
    k = _dim(obs_x_dim, "obs_x_dim", len(_LATENT_X))
    m = _dim(obs_z_dim, "obs_z_dim", len(_LATENT_Z))
    if not _is_number(noise) or noise < 0:
        raise OptionError(f"noise={noise!r}: expected a finite number >= 0")
    truth = paper_synthetic(n, seed)
    latent = list(_LATENT_X + _LATENT_Z)
    seen_latent = truth.seen[latent].copy()
    oracle_latent = truth.oracle[latent].copy()
    rng = np.random.default_rng([seed, 1])
    a_x = rng.uniform(0.0, 1.0, (len(_LATENT_X), k))
    a_z = rng.uniform(0.0, 1.0, (len(_LATENT_Z), m))
    both = pd.concat([seen_latent, oracle_latent], ignore_index=True)
    y_x = both[list(_LATENT_X)].to_numpy() @ a_x
    y_z = both[list(_LATENT_Z)].to_numpy() @ a_z
    if noise > 0:
        y_x = y_x + rng.normal(0.0, float(noise), y_x.shape)
        y_z = y_z + rng.normal(0.0, float(noise), y_z.shape)
    columns = [f"yx_{j}" for j in range(k)] + [f"yz_{j}" for j in range(m)]
    obs = pd.DataFrame(np.hstack([y_x, y_z]), columns=columns)
    n_seen = len(seen_latent)
    for a in (a_x, a_z):
        a.setflags(write=False)
    return LatentData(
        seen=obs.iloc[:n_seen].reset_index(drop=True),
        oracle=obs.iloc[n_seen:].reset_index(drop=True),
        seen_latent=seen_latent,
        oracle_latent=oracle_latent,
        mixing_x=a_x,
        mixing_z=a_z,
        graph=truth.graph,
        noise=float(noise),
        truth=truth,
    )
