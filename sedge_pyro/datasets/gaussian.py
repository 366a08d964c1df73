"""A linear-Gaussian feature -> specification model with a closed-form ``p(X | Z = z)``: the
known answer every sampler is tested against (:func:`linear_gaussian`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.options import whole


@dataclass(frozen=True)
class LinearGaussian:
    r"""A linear-Gaussian feature -> specification model with a closed-form ``p(X | Z = z)``.

    :math:`X \sim \mathcal N(\mu, \Sigma)` and :math:`Z_i = w_i^\top V_i + b_i + s_i
    \varepsilon_i`, so :math:`p(X \mid Z_T = z)` is Gaussian (:meth:`posterior`): the known
    answer every sampler is tested against.

    :param seen: training rows (S = 1).
    :param oracle: rows the selection removed (S = 0); empty without a selection.
    :param graph: the graph (Fig. 2(b): ``z1 <- x1, x2``, ``z2 <- x2, x3``).
    :param mean: :math:`\mu`, shape ``(3,)``.
    :param cov: :math:`\Sigma`, shape ``(3, 3)``.
    :param specs: spec -> ``(parents, weights, bias, scale)``.
    """

    seen: pd.DataFrame
    oracle: pd.DataFrame
    graph: SpecGraph
    mean: np.ndarray
    cov: np.ndarray
    specs: dict[str, tuple[tuple[str, ...], np.ndarray, float, float]] = field(repr=False)

    def __iter__(self):  # allows ``seen, oracle, graph = linear_gaussian(...)``
        return iter((self.seen, self.oracle, self.graph))

    def _design(self, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = list(self.graph.features)
        a = np.zeros((len(names), len(features)))
        b = np.zeros(len(names))
        s = np.zeros(len(names))
        for r, z in enumerate(names):
            parents, w, bias, scale = self.specs[z]
            for f, wf in zip(parents, w, strict=True):
                a[r, features.index(f)] = wf
            b[r], s[r] = bias, scale
        return a, b, s

    def posterior(self, target: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        r"""Mean and covariance of :math:`p(X \mid Z_T = z)` for point targets.

        :math:`C = (\Sigma^{-1} + A^\top D^{-1} A)^{-1}`, :math:`m = C(\Sigma^{-1}\mu +
        A^\top D^{-1}(z - b))`.
        """
        names = list(target)
        unknown = [k for k in names if k not in self.specs]
        if unknown:
            raise DataError(f"target names {unknown[0]!r}: expected one of {list(self.specs)}")
        a, b, s = self._design(names)
        z = np.array([float(target[k]) for k in names])
        prec0 = np.linalg.inv(self.cov)
        prec = prec0 + a.T @ np.diag(1 / s**2) @ a
        cov = np.linalg.inv(prec)
        mean = cov @ (prec0 @ self.mean + a.T @ ((z - b) / s**2))
        return mean, (cov + cov.T) / 2

    def sample_posterior(self, target: Mapping[str, float], n: int, seed: int = 0) -> np.ndarray:
        r"""``n`` exact draws of :math:`p(X \mid Z_T = z)`, shape ``(n, 3)``."""
        mean, cov = self.posterior(target)
        return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def linear_gaussian(
    n: int = 20_000,
    seed: int = 0,
    *,
    unseen: Mapping[str, float] | None = None,
    cov: np.ndarray | None = None,
) -> LinearGaussian:
    """Simulate a linear-Gaussian model on Fig. 2(b)'s graph (correlated features).

    :param n: population rows.
    :param seed: seed of the simulation.
    :param unseen: optional thresholds, spec -> value: rows with every listed spec above its
        threshold are removed by the selection (the Oracle), making that corner novel.
    :param cov: the features' covariance, 3 x 3 symmetric positive definite (default: the
        built-in one, in which ``x1`` and ``x3`` are dependent given ``x2``).
    :returns: :class:`LinearGaussian` (unpacks as ``seen, oracle, graph``).

    >>> data = linear_gaussian(1000, seed=0)
    >>> mean, cov = data.posterior({"z1": 1.0, "z2": -1.0})
    >>> mean.shape, cov.shape
    ((3,), (3, 3))
    """
    whole("n", n, error=DataError, expected="a positive integer number of rows")
    graph = SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
    mean = np.array([0.5, -0.3, 0.2])
    if cov is None:
        cov = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, -0.4], [0.0, -0.4, 1.5]])
    cov = np.asarray(cov, dtype=float)
    if cov.shape != (3, 3) or not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
        raise DataError(
            f"cov of shape {cov.shape}: expected a 3 x 3 symmetric positive definite matrix"
        )
    specs = {
        "z1": (("x1", "x2"), np.array([1.0, 0.7]), 0.1, 0.5),
        "z2": (("x2", "x3"), np.array([-0.8, 0.6]), -0.2, 0.4),
    }
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(mean, cov, size=n)
    df = pd.DataFrame(x, columns=["x1", "x2", "x3"])
    for z, (parents, w, b, s) in specs.items():
        df[z] = df[list(parents)].to_numpy() @ w + b + s * rng.standard_normal(n)
    novel = np.zeros(n, dtype=bool)
    if unseen:
        for z in unseen:
            if z not in specs:
                raise DataError(f"unseen names {z!r}: expected one of {list(specs)}")
        novel = np.all([df[z].to_numpy() > float(c) for z, c in unseen.items()], axis=0)
    return LinearGaussian(
        df.loc[~novel].reset_index(drop=True),
        df.loc[novel].reset_index(drop=True),
        graph,
        mean,
        cov,
        specs,
    )
