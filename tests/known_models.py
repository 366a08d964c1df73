"""Fitted-model stand-ins with known parameters, for samplers' known-answer tests.

:func:`exact_linear_gaussian` builds a :class:`~sedge_pyro.SEDGEModel` whose components *are*
the linear-Gaussian truth of :func:`sedge_pyro.datasets.linear_gaussian` (identity
normalisation, a Gaussian prior with the true mean and covariance, linear likelihoods with the
true weights and noise), so ``p(X | Z = z)`` of the model is the closed-form posterior.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import sedge_pyro as sp
from sedge_pyro.models.columns import Column, Columns


def exact_linear_gaussian(
    n: int = 20_000,
    seed: int = 0,
    unseen: dict[str, float] | None = None,
    cov: np.ndarray | None = None,
) -> tuple[sp.SEDGEModel, sp.datasets.LinearGaussian]:
    """The exact model and its data (``data.posterior(target)`` is the answer)."""
    data = sp.datasets.linear_gaussian(n, seed=seed, unseen=unseen, cov=cov)
    model = sp.SEDGEModel(data.graph, likelihood="gaussian", prior="gaussian", hidden=())
    names = list(data.graph.features) + list(data.graph.specs)
    model.columns = Columns([Column(c, "continuous", 0.0, 1.0) for c in names])
    model.seen = data.seen[names].copy()
    model._build()
    prior = model.components["prior"]
    prior.loc = torch.tensor(data.mean, dtype=torch.float32)
    prior.scale_tril = torch.linalg.cholesky(torch.tensor(data.cov, dtype=torch.float64)).float()
    with torch.no_grad():
        for z, (parents, w, b, s) in data.specs.items():
            lik = model.likelihood(z)
            assert model.context_of(z) == tuple(parents)
            (layer,) = [m for m in lik.modules() if isinstance(m, torch.nn.Linear)]
            layer.weight.zero_()
            layer.weight[0] = torch.tensor(w, dtype=torch.float32)
            layer.bias[0] = b
            # scale = softplus(bias) + min_scale
            layer.bias[1] = math.log(math.expm1(s - lik.min_scale))
    return model, data
