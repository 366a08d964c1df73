"""Feature priors fit to known densities, and the conditional resampler (issue 3 acceptance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sedge_pyro.inference import fit_component
from sedge_pyro.models import (
    DiffusionPrior,
    EmpiricalPrior,
    FlowPrior,
    NearestNeighbourConditional,
)


def fit(prior, x, **kw):
    fn = lambda x, n_total=None: prior.model(x, name="X", n_total=n_total)  # noqa: E731
    opts = {"steps": 1500, "lr": 3e-3, "batch_size": 256, "progress": False} | kw
    return fit_component(prior, fn, (x,), **opts)


def correlated_gaussian(n, seed):
    g = torch.Generator().manual_seed(seed)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    d = torch.distributions.MultivariateNormal(torch.zeros(2), cov)
    return d, (torch.linalg.cholesky(cov) @ torch.randn(2, n, generator=g)).T


def mmd2(a, b, bandwidth):
    def k(u, v):
        return torch.exp(-torch.cdist(u, v).pow(2) / (2 * bandwidth**2))

    return k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()


def mmd_permutation_pvalue(a, b, n_perm=200, seed=0):
    """P-value of MMD^2(a, b) against label permutations (median-heuristic bandwidth)."""
    both = torch.cat([a, b])
    bandwidth = torch.cdist(both, both).median()
    observed = mmd2(a, b, bandwidth)
    g = torch.Generator().manual_seed(seed)
    count = 0
    for _ in range(n_perm):
        idx = torch.randperm(len(both), generator=g)
        count += bool(mmd2(both[idx[: len(a)]], both[idx[len(a) :]], bandwidth) >= observed)
    return (count + 1) / (n_perm + 1)


@pytest.mark.parametrize("kind", ["affine_coupling", "affine_autoregressive"])
def test_flow_prior_reaches_the_true_entropy(kind):
    true, x = correlated_gaussian(6000, seed=0)
    _, test = correlated_gaussian(4000, seed=1)
    prior = FlowPrior(2, kind=kind, n_transforms=4, hidden=(32, 32))
    fit(prior, x)
    with torch.no_grad():
        nll = -prior.log_prob(test).mean().item() / 2
    entropy = true.entropy().item() / 2
    assert abs(nll - entropy) < 0.05, (nll, entropy)


@pytest.mark.slow
def test_flow_prior_fits_a_non_gaussian_density():
    # x1 ~ N(0, 1), x2 | x1 ~ N(x1^2 / 2 - 0.5, 0.5^2): a banana whose log density is exact
    g = torch.Generator().manual_seed(2)
    n = 8000
    x1 = torch.randn(n, generator=g)
    x2 = x1**2 / 2 - 0.5 + 0.5 * torch.randn(n, generator=g)
    x = torch.stack([x1, x2], -1)
    prior = FlowPrior(2, kind="spline_coupling", n_transforms=4, hidden=(32, 32))
    fit(prior, x[:6000], steps=2000)
    test = x[6000:]
    true_lp = torch.distributions.Normal(0, 1).log_prob(test[:, 0]) + torch.distributions.Normal(
        test[:, 0] ** 2 / 2 - 0.5, 0.5
    ).log_prob(test[:, 1])
    with torch.no_grad():
        gap = (true_lp - prior.log_prob(test)).mean().item() / 2
    assert gap < 0.05, gap  # nats per dimension above the true entropy


def test_diffusion_prior_samples_are_indistinguishable_from_data():
    g = torch.Generator().manual_seed(3)

    def data(n):
        centres = torch.tensor([[-1.5, 0.0], [1.5, 0.5]])
        which = torch.randint(0, 2, (n,), generator=g)
        return centres[which] + 0.4 * torch.randn(n, 2, generator=g)

    prior = DiffusionPrior(2, T=100, hidden=(64, 64))
    fit(prior, data(6000), steps=3000, lr=2e-3, val_fraction=0.0)
    samples = prior.sample(800, generator=torch.Generator().manual_seed(4))
    fresh = data(800)
    p_model = mmd_permutation_pvalue(samples, fresh)
    assert p_model > 0.01, p_model
    # the finite-sample MMD of two data samples, for scale: the model's is of the same order
    both = torch.cat([samples, fresh])
    bandwidth = torch.cdist(both, both).median()
    floor = mmd2(data(800), data(800), bandwidth).item()
    assert mmd2(samples, fresh, bandwidth).item() < 5 * max(floor, 1e-4)


def test_diffusion_score_of_standard_normal_data_is_minus_x():
    g = torch.Generator().manual_seed(5)
    prior = DiffusionPrior(2, T=50, hidden=(64, 64))
    fit(prior, torch.randn(6000, 2, generator=g), steps=2000, lr=2e-3, val_fraction=0.0)
    # x_t ~ N(0, I) for every t when the data are N(0, I): the score is -x_t
    x_t = torch.randn(2000, 2, generator=g)
    for t in (5, 25, 50):
        with torch.no_grad():
            err = (prior.score(x_t, t) + x_t).pow(2).mean().sqrt().item()
        assert err < 0.25, (t, err)


def test_diffusion_schedules():
    for schedule in ("cosine", "linear"):
        p = DiffusionPrior(3, T=100, schedule=schedule)
        ab = p.alpha_bar[1:]
        assert torch.all(ab[1:] < ab[:-1]) and float(ab.min()) > 0 and float(ab.max()) < 1
        assert float(p.alpha_bar[-1]) < 0.01


def test_empirical_prior_resamples_rows_with_jitter():
    x = 100 * torch.arange(20.0).reshape(10, 2)  # rows far apart: offsets are the jitter
    prior = EmpiricalPrior(2)
    prior.setup(x)
    s = prior.sample(500, generator=torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(r) in rows for r in s.tolist())
    jittered = EmpiricalPrior(2, jitter=0.5)
    jittered.setup(x)
    s = jittered.sample(20000, generator=torch.Generator().manual_seed(1))
    resid = s - torch.round(s / 100) * 100
    assert math.isclose(resid.std().item(), 0.5, rel_tol=0.05)


def test_nearest_neighbour_conditional_follows_b():
    b = torch.linspace(-3, 3, 2000)[:, None]
    a = 2 * b
    cond = NearestNeighbourConditional(k=5).fit(a, b)
    query = torch.tensor([[-1.0], [0.0], [2.5]])
    out = cond.sample(query, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(out.numpy(), 2 * query.numpy(), atol=0.03)
    marginal = NearestNeighbourConditional(k=5).fit(a, torch.zeros(2000, 0))
    draws = marginal.sample(torch.zeros(1000, 0), generator=torch.Generator().manual_seed(1))
    assert draws.shape == (1000, 1)
    assert abs(draws.mean().item()) < 0.3 and draws.std().item() > 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlowPrior(3, kind="spline_coupling", n_transforms=2, hidden=(8,)),
        lambda: FlowPrior(1, hidden=(8,)),
        lambda: DiffusionPrior(3, T=10, hidden=(8,)),
    ],
)
def test_config_round_trip(make):
    a = make()
    b = type(a)(**a.config())
    b.load_state_dict(a.state_dict())
    x = torch.randn(7, a.dim)
    with torch.no_grad():
        if a.has_log_prob:
            assert torch.equal(a.log_prob(x), b.log_prob(x))
        else:
            assert torch.equal(a.eps(x, 3), b.eps(x, 3))
