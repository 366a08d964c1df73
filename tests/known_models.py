"""Fitted-model stand-ins with known parameters, for samplers' known-answer tests.

:func:`exact_linear_gaussian` builds a :class:`~sedge_pyro.SEDGEModel` whose components *are*
the linear-Gaussian truth of :func:`sedge_pyro.datasets.linear_gaussian` (identity
normalisation, a Gaussian prior with the true mean and covariance, linear likelihoods with the
true weights and noise), so ``p(X | Z = z)`` of the model is the closed-form posterior.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

import sedge_pyro as sp
from sedge_pyro.models.columns import Column, Columns
from sedge_pyro.models.priors import DiffusionPrior


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


#: an event target in the linear-Gaussian tests; :func:`interval_reference` draws it exactly
INTERVAL = {"z1": sp.Interval(low=1.5), "z2": sp.Interval(high=0.0)}


def predicted_specs(data, v):
    r"""The likelihoods' means :math:`h_i^\mu(V_i)` at draws ``v`` (the exact model's)."""
    out = {}
    for z, (parents, w, b, _) in data.specs.items():
        idx = [list(data.graph.features).index(p) for p in parents]
        out[z] = v[:, idx] @ w + b
    return out


@functools.cache
def interval_reference() -> np.ndarray:
    """Exact draws of ``p(X | Z in INTERVAL)``: population rows of ``linear_gaussian`` kept by
    rejection (about 33,000 of 200,000).
    """
    pop = sp.datasets.linear_gaussian(200_000, seed=7).seen
    return pop[(pop.z1 >= 1.5) & (pop.z2 <= 0.0)][["x1", "x2", "x3"]].to_numpy()


def exact_with_ddpm(
    steps: int = 2000,
) -> tuple[sp.SEDGEModel, sp.datasets.LinearGaussian, np.ndarray]:
    """The exact linear-Gaussian likelihoods with a DDPM prior (T = 100) fit to the training
    rows; returns the model, the data and the training features.
    """
    from sedge_pyro.inference import fit_component
    from sedge_pyro.models import DiffusionPrior

    model, data = exact_linear_gaussian(20_000, seed=0)
    x = torch.tensor(data.seen[["x1", "x2", "x3"]].to_numpy(), dtype=torch.float32)
    prior = DiffusionPrior(3, T=100, hidden=(64, 64))
    torch.manual_seed(0)
    fit_component(
        prior,
        lambda x, n_total=None: prior.model(x, name="X", n_total=n_total),
        (x,),
        steps=steps,
        lr=2e-3,
        batch_size=256,
        val_fraction=0.0,
        progress=False,
    )
    model.components["prior"] = prior
    return model, data, x.numpy()


def ess_se(s: sp.Samples) -> np.ndarray:
    """Monte Carlo standard error of each feature's mean, from ArviZ's bulk ESS."""
    ess = s.summary(kind="diagnostics", round_to="none")["ess_bulk"]
    return s.to_numpy().std(0) / np.sqrt([float(ess[f]) for f in s.features])


def subset(v: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``k`` draws chosen at random: MMD's permutation test assumes iid rows."""
    rng = np.random.default_rng(seed)
    return v[rng.choice(len(v), size=k, replace=False)]


def fitted_model_e() -> tuple[sp.SEDGEModel, sp.datasets.LinearGaussian]:
    """Model E (``reverse-factorized``, linear) fit on linear-Gaussian rows with no selection:
    ``p(x_j | Z)`` of the training rows is the population's, Gaussian with a mean linear in
    ``z``, which a linear Gaussian per feature can fit exactly.
    """
    data = sp.datasets.linear_gaussian(20_000, seed=0)
    model = sp.SEDGEModel(data.graph, structure="reverse-factorized", hidden=())
    model.fit(data.seen, steps=1500, batch_size=512, lr=1e-2, seed=0, progress=False)
    return model, data


class ExactGaussianDiffusion(DiffusionPrior):
    """A DDPM whose noise prediction is exact for a Gaussian prior N(mu, Sigma)."""

    def __init__(self, loc, cov, T=200):
        super().__init__(len(loc), T=T, hidden=(4,))
        self.mu = torch.as_tensor(loc, dtype=torch.float32)
        self.Sigma = torch.as_tensor(cov, dtype=torch.float32)

    def eps(self, x_t, t, *, ema=None):
        t = self._t(t, x_t)
        ab = self.alpha_bar[t][..., None, None]
        P = ab * self.Sigma + (1 - ab) * torch.eye(len(self.mu))
        r = x_t - ab[..., 0].sqrt() * self.mu
        score = -torch.linalg.solve(P, r.unsqueeze(-1)).squeeze(-1)
        return -(1 - ab[..., 0]).sqrt() * score
