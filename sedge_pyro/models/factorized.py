"""A feature prior factorized along the graph's feature -> feature edges.

``p(X) = prod_j p(x_j | pa(x_j))``, each factor a Gaussian MLP or a one-dimensional
conditional flow given the feature's feature parents. It respects the
structure the graph declares among features (Sec. 3.1 allows arbitrary feature -> feature
edges) and, unlike a joint flow, keeps features in different components independent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import pyro
import torch
from torch import nn

from sedge_pyro.graph import SpecGraph
from sedge_pyro.models.base import ConditionalDensity, Prior, data_plate
from sedge_pyro.models.likelihoods import ConditionalFlow, GaussianMLP

__all__ = ["FactorizedPrior"]


class FactorizedPrior(Prior):
    """``prod_j p(x_j | pa(x_j))`` over the features of ``graph``.

    :param graph: the graph (its features and feature -> feature edges).
    :param per: feature -> ``"gaussian"`` or ``"flow"``.
    :param hidden: hidden sizes of the factors' networks.
    """

    def __init__(
        self, graph: SpecGraph, per: Mapping[str, str], hidden: Sequence[int] = (64, 64)
    ) -> None:
        features = list(graph.features)
        super().__init__(len(features))
        self.per = {x: per.get(x, "gaussian") for x in features}
        self.hidden = tuple(int(h) for h in hidden)
        fg = graph.feature_graph()
        self.order = [x for x in nx.lexicographical_topological_sort(fg)]
        index = {x: i for i, x in enumerate(features)}
        self.index = [index[x] for x in self.order]
        self.parent_index = [[index[p] for p in graph.parents(x) if p in index] for x in self.order]
        self.factors = nn.ModuleList()
        for x, pa in zip(self.order, self.parent_index, strict=True):
            if self.per[x] == "flow":
                self.factors.append(ConditionalFlow(1, len(pa), hidden=self.hidden))
            else:
                self.factors.append(GaussianMLP(len(pa), hidden=self.hidden))

    def config(self) -> dict[str, Any]:
        """Constructor arguments besides the graph (for saving)."""
        return {"per": dict(self.per), "hidden": list(self.hidden)}

    def _pairs(self) -> list[tuple[str, int, list[int], ConditionalDensity]]:
        return list(zip(self.order, self.index, self.parent_index, self.factors, strict=True))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_j log p(x_j | pa(x_j))``."""
        total = torch.zeros(x.shape[:-1], device=x.device, dtype=x.dtype)
        for _, j, pa, factor in self._pairs():
            total = total + factor.log_prob(x[..., j : j + 1], x[..., pa])
        return total

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling along the feature edges (seeded by torch's global RNG)."""
        device = next(self.parameters()).device
        x = torch.zeros(n, self.dim, device=device)
        with torch.no_grad():
            for _, j, pa, factor in self._pairs():
                d = factor.condition(x[:, pa])
                value = d.sample()
                x[:, j] = value if value.dim() == 1 else value.squeeze(-1)
        return x

    def model(self, x: torch.Tensor, *, name: str = "X", n_total: int | None = None) -> None:
        """Each factor observed: maximum likelihood by SVI with an empty guide."""
        pyro.module(name, self)
        with data_plate(f"{name}_data", x.shape[0], n_total):
            for feature, j, pa, factor in self._pairs():
                d = factor.condition(x[:, pa])
                obs = x[:, j] if d.event_shape == () else x[:, j : j + 1]
                pyro.sample(f"{name}_{feature}", d, obs=obs)
