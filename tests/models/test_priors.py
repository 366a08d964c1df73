"""Priors p(X) (empirical, flow, DDPM) and the nearest-neighbour conditional: known answers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.inference.fit import fit_component
from sedge_pyro.models import conditional as conditional_module
from sedge_pyro.models.conditional import NearestNeighbourConditional
from sedge_pyro.models.priors import FLOW_KINDS, DiffusionPrior, EmpiricalPrior, FlowPrior

torch.set_num_threads(1)

Normal = torch.distributions.Normal

# --------------------------------------------------------------------------- targets

#: a correlated Gaussian X = L U: entropy 0.5 d (1 + log 2 pi) + log |det L|
CHOL = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
GAUSS_ENTROPY = 0.5 * 2 * (1 + math.log(2 * math.pi)) + math.log(0.6)

#: four well-separated Gaussian blobs
CENTRES = torch.tensor([[-1.5, -1.5], [-1.5, 1.5], [1.5, -1.5], [1.5, 1.5]])
BLOB_STD = 0.35


def gaussian(n, g):
    return torch.randn(n, 2, generator=g) @ CHOL.T


def banana(n, g):
    x1 = torch.randn(n, generator=g)
    x2 = 0.5 * (x1**2 - 1) + 0.5 * torch.randn(n, generator=g)
    return torch.stack([x1, x2], -1)


def banana_log_prob(x):
    return Normal(0.0, 1.0).log_prob(x[:, 0]) + Normal(0.5 * (x[:, 0] ** 2 - 1), 0.5).log_prob(
        x[:, 1]
    )


def bimodal(n, g):
    """1-D: 0.3 N(-1.5, 0.4^2) + 0.7 N(1, 0.6^2)."""
    left = torch.rand(n, generator=g) < 0.3
    z = torch.randn(n, generator=g)
    return torch.where(left, -1.5 + 0.4 * z, 1.0 + 0.6 * z).unsqueeze(-1)


def bimodal_log_prob(x):
    x = x[:, 0]
    return torch.logsumexp(
        torch.stack(
            [
                math.log(0.3) + Normal(-1.5, 0.4).log_prob(x),
                math.log(0.7) + Normal(1.0, 0.6).log_prob(x),
            ]
        ),
        0,
    )


def blobs(n, g):
    return CENTRES[torch.randint(4, (n,), generator=g)] + BLOB_STD * torch.randn(n, 2, generator=g)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def fit(prior, x, steps, lr, batch_size=256, **kwargs):
    return fit_component(
        prior,
        prior.model,
        [x],
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        progress=False,
        **kwargs,
    )


# --------------------------------------------------------------------------- MMD test


def mmd_permutation_test(x, y, n_perm=200, seed=0):
    """Unbiased MMD^2 with a Gaussian kernel (median bandwidth) and its permutation p-value."""
    z = torch.cat([x, y]).double()
    d2 = torch.cdist(z, z).pow(2)
    K = torch.exp(-d2 / d2[d2 > 0].median())
    n, m = x.shape[0], y.shape[0]
    N = n + m

    def stat(idx):
        k = K[idx][:, idx]
        kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
        return (
            (kxx.sum() - kxx.diag().sum()) / (n * (n - 1))
            + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
            - 2 * kxy.mean()
        )

    observed = stat(torch.arange(N))
    g = torch.Generator().manual_seed(seed)
    exceed = sum(float(stat(torch.randperm(N, generator=g)) >= observed) for _ in range(n_perm))
    return float(observed), (exceed + 1) / (n_perm + 1)


def test_mmd_helper_detects_a_shift_and_accepts_equal_laws():
    g = torch.Generator().manual_seed(0)
    _, p_same = mmd_permutation_test(blobs(500, g), blobs(500, g))
    _, p_shift = mmd_permutation_test(blobs(500, g), blobs(500, g) + 0.5)
    assert p_same > 0.05
    assert p_shift < 0.01


# --------------------------------------------------------------------------- empirical


def test_empirical_samples_are_training_rows():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(50, 3, generator=g)
    p = EmpiricalPrior(3)
    p.setup(rows)
    s = p.sample(400, generator=torch.Generator().manual_seed(1))
    assert s.shape == (400, 3)
    assert (s.unsqueeze(1) == rows).all(-1).any(1).all()
    assert not p.has_log_prob and not p.trainable
    with pytest.raises(NotImplementedError):
        p.log_prob(s)


def test_empirical_jitter_has_the_requested_std():
    rows = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    p = EmpiricalPrior(2, jitter=0.5)
    p.setup(rows)
    s = p.sample(20_000, generator=torch.Generator().manual_seed(0))
    resid = s - rows[torch.cdist(s, rows).argmin(1)]
    torch.testing.assert_close(resid.std(0), torch.full((2,), 0.5), atol=0.01, rtol=0)
    torch.testing.assert_close(resid.mean(0), torch.zeros(2), atol=0.02, rtol=0)
    counts = torch.bincount(torch.cdist(s, rows).argmin(1), minlength=3) / 20_000
    torch.testing.assert_close(counts, torch.full((3,), 1 / 3), atol=0.02, rtol=0)


def test_empirical_round_trip_restores_rows_and_seeded_draws():
    p = EmpiricalPrior(2, jitter=0.1)
    p.setup(torch.randn(17, 2))
    q = EmpiricalPrior(**json.loads(json.dumps(p.config())))
    q.load_state_dict(p.state_dict())
    torch.testing.assert_close(q.rows, p.rows)
    a = p.sample(9, generator=torch.Generator().manual_seed(3))
    b = q.sample(9, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_empirical_errors_name_the_problem():
    with pytest.raises(DataError, match="setup"):
        EmpiricalPrior(2).sample(3)
    with pytest.raises(DataError, match=r"expected \(n, 2\)"):
        EmpiricalPrior(2).setup(torch.zeros(4, 3))
    with pytest.raises(OptionError, match="jitter"):
        EmpiricalPrior(2, jitter=-1.0)


# --------------------------------------------------------------------------- flow


@pytest.mark.parametrize("kind", FLOW_KINDS)
@pytest.mark.parametrize("dim", [1, 3])
def test_flow_log_prob_is_the_change_of_variables_of_its_sampler(kind, dim, float64):
    """log p(T(u)) = log N(u) - log|det dT/du|: sampling and density use one map.

    In float64: Pyro's randomly initialised splines are steep enough that float32 inversion
    loses about 0.05 nats (and Pyro's affine autoregressive inverse allocates in the default
    dtype, hence the fixture rather than ``.double()``).
    """
    torch.manual_seed(1)
    p = FlowPrior(dim, kind=kind, n_transforms=3, hidden=(16,))
    u = torch.randn(20, dim)
    x = p.transform(u)
    jac = torch.stack(
        [torch.autograd.functional.jacobian(p.transform, row.unsqueeze(0))[0, :, 0] for row in u]
    )
    expected = Normal(0.0, 1.0).log_prob(u).sum(-1) - torch.linalg.slogdet(jac).logabsdet
    torch.testing.assert_close(p.log_prob(x.detach()), expected, atol=1e-8, rtol=1e-8)
    s = p.sample(5, generator=torch.Generator().manual_seed(0))
    u0 = torch.randn(5, dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s, p.transform(u0).detach())


def test_flow_fit_recovers_a_correlated_gaussian():
    g = torch.Generator().manual_seed(0)
    x, test = gaussian(4000, g), gaussian(5000, g)
    p = FlowPrior(2, kind="affine_coupling", n_transforms=4, hidden=(32, 32))
    fit(p, x, steps=500, lr=5e-3, batch_size=512)
    with torch.no_grad():
        nll = -p.log_prob(test).mean().item()
    assert nll / 2 == pytest.approx(GAUSS_ENTROPY / 2, abs=0.05)
    s = p.sample(20_000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s.mean(0), torch.zeros(2), atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), CHOL @ CHOL.T, atol=0.12, rtol=0)


def test_spline_coupling_fits_a_banana():
    g = torch.Generator().manual_seed(0)
    x, test = banana(4000, g), banana(5000, g)
    p = FlowPrior(2, kind="spline_coupling", n_transforms=2, hidden=(32, 32))
    fit(p, x, steps=400, lr=1e-2)
    with torch.no_grad():
        nll = -p.log_prob(test).mean().item()
    true = -banana_log_prob(test).mean().item()
    assert nll / 2 == pytest.approx(true / 2, abs=0.05)
    s = p.sample(20_000, generator=torch.Generator().manual_seed(1))
    # banana: E = (0, 0), Var = (1, 0.25 Var(x1^2) + 0.25) = (1, 0.75), uncorrelated
    torch.testing.assert_close(s.mean(0), torch.zeros(2), atol=0.1, rtol=0)
    torch.testing.assert_close(
        torch.cov(s.T), torch.diag(torch.tensor([1.0, 0.75])), atol=0.15, rtol=0
    )


def test_one_dimensional_spline_fits_a_bimodal_density():
    g = torch.Generator().manual_seed(0)
    x, test = bimodal(4000, g), bimodal(5000, g)
    p = FlowPrior(1, n_transforms=1, count_bins=16)
    fit(p, x, steps=400, lr=2e-2)
    with torch.no_grad():
        nll = -p.log_prob(test).mean().item()
    assert nll == pytest.approx(-bimodal_log_prob(test).mean().item(), abs=0.05)
    s = p.sample(20_000, generator=torch.Generator().manual_seed(1))
    left = 0.3 * Normal(-1.5, 0.4).cdf(torch.tensor(0.0)) + 0.7 * Normal(1.0, 0.6).cdf(
        torch.tensor(0.0)
    )
    assert (s < 0).float().mean().item() == pytest.approx(left.item(), abs=0.015)


@pytest.mark.slow
@pytest.mark.parametrize("kind", FLOW_KINDS)
@pytest.mark.parametrize("target", ["gaussian", "banana"])
def test_every_flow_kind_fits_both_targets(kind, target):
    g = torch.Generator().manual_seed(0)
    make = gaussian if target == "gaussian" else banana
    x, test = make(4000, g), make(5000, g)
    p = FlowPrior(2, kind=kind, n_transforms=4, hidden=(32, 32))
    fit(p, x, steps=1500, lr=5e-3, batch_size=512)
    with torch.no_grad():
        nll = -p.log_prob(test).mean().item()
    true = GAUSS_ENTROPY if target == "gaussian" else -banana_log_prob(test).mean().item()
    assert nll / 2 == pytest.approx(true / 2, abs=0.05)


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_flow_config_round_trip_gives_identical_log_probs(kind):
    p = FlowPrior(3, kind=kind, n_transforms=2, hidden=(8,))
    fit(p, torch.randn(300, 3), steps=5, lr=1e-2)
    q = FlowPrior(**json.loads(json.dumps(p.config())))
    q.load_state_dict(p.state_dict())
    x = torch.randn(20, 3)
    torch.testing.assert_close(q.log_prob(x), p.log_prob(x), rtol=0, atol=0)
    a = p.sample(7, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(q.sample(7, generator=torch.Generator().manual_seed(4)), a)


def test_flow_log_prob_is_fresh_after_a_parameter_change():
    """Pyro's transform caches must not return values from before an update."""
    p = FlowPrior(2, hidden=(8,))
    x = torch.randn(10, 2)
    before = p.log_prob(x).detach()
    with torch.no_grad():
        for w in p.parameters():
            w.add_(0.1)
    assert not torch.allclose(p.log_prob(x), before)


def test_flow_rejects_bad_options():
    with pytest.raises(OptionError, match="kind"):
        FlowPrior(2, kind="glow")
    with pytest.raises(OptionError, match="n_transforms"):
        FlowPrior(2, n_transforms=0)


# --------------------------------------------------------------------------- diffusion


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("T", [10, 100, 1000])
def test_schedules_are_monotone_and_consistent(schedule, T):
    p = DiffusionPrior(2, T=T, schedule=schedule, hidden=(8,))
    b, a, ab = p.betas.double(), p.alphas.double(), p.alpha_bar.double()
    assert b.shape == a.shape == ab.shape == (T + 1,)
    assert b[0] == 0 and a[0] == 1 and ab[0] == 1
    assert ((b[1:] > 0) & (b[1:] < 1)).all()
    assert (b[2:] >= b[1:-1]).all()
    assert ((ab[1:] > 0) & (ab[1:] < 1)).all()
    assert (ab[1:] < ab[:-1]).all()
    assert ab[T] < 1e-3
    torch.testing.assert_close(a, 1 - b, atol=1e-6, rtol=0)
    torch.testing.assert_close(ab, torch.cumprod(a, 0), atol=1e-5, rtol=1e-4)


def test_diffusion_pieces_follow_algorithm_2():
    torch.manual_seed(0)
    p = DiffusionPrior(3, T=50, hidden=(16,))
    x_t = torch.randn(6, 3)
    t = torch.tensor([1, 2, 10, 25, 49, 50])
    eps = p.eps(x_t, t)
    assert eps.shape == x_t.shape
    ab = p.alpha_bar[t].unsqueeze(-1)
    b, a = p.betas[t].unsqueeze(-1), p.alphas[t].unsqueeze(-1)
    torch.testing.assert_close(p.score(x_t, t), -eps / (1 - ab).sqrt())
    x0 = p.predict_x0(x_t, t)
    torch.testing.assert_close(x0, (x_t - (1 - ab).sqrt() * eps) / ab.sqrt())
    mu = p.posterior_mean(x_t, t)
    torch.testing.assert_close(mu, (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt())
    # the same mean as Ho et al.'s Eq. (7), written with x0
    ab_prev = p.alpha_bar[t - 1].unsqueeze(-1)
    mu7 = (ab_prev.sqrt() * b * x0 + a.sqrt() * (1 - ab_prev) * x_t) / (1 - ab)
    torch.testing.assert_close(mu, mu7, atol=1e-4, rtol=1e-4)
    # an int t broadcasts; step at t = 1 adds no noise; the generator seeds the noise
    torch.testing.assert_close(p.eps(x_t, 10), p.eps(x_t, torch.full((6,), 10)))
    torch.testing.assert_close(p.step(x_t, 1), p.posterior_mean(x_t, 1))
    s1 = p.step(x_t, 5, generator=torch.Generator().manual_seed(0))
    s2 = p.step(x_t, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s1, s2)
    assert not torch.allclose(s1, p.posterior_mean(x_t, 5))
    # a given (e.g. guided) mean gets the same noise added
    guided = mu - 0.3
    s3 = p.step(x_t, 5, mean=guided, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s3 - guided, s1 - p.posterior_mean(x_t, 5))
    torch.testing.assert_close(p.step(x_t, 1, mean=guided), guided)
    for bad in (0, 51, torch.tensor([1.5])):
        with pytest.raises(OptionError, match="1..50"):
            p.eps(x_t, bad)
    a1 = p.sample(5, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a1, p.sample(5, generator=torch.Generator().manual_seed(2)))
    assert a1.shape == (5, 3) and not p.has_log_prob and p.trainable


def test_diffusion_score_of_standard_normal_data_is_minus_x():
    """For X ~ N(0, I), x_t ~ N(0, I) at every t, so the score is -x_t exactly."""
    g = torch.Generator().manual_seed(0)
    p = DiffusionPrior(2, T=100, hidden=(64, 64))
    fit(p, torch.randn(4000, 2, generator=g), steps=600, lr=3e-3, batch_size=1024)
    x_t = torch.randn(2000, 2, generator=g)
    with torch.no_grad():
        for t in (25, 50, 75, 100):
            score = p.score(x_t, t)
            assert (score * x_t).sum(-1).mean() < 0
            err = (score + x_t).abs().mean().item()
            assert err < 0.1, (t, err)


def test_diffusion_fits_a_mixture_mmd_permutation_test():
    g = torch.Generator().manual_seed(0)
    p = DiffusionPrior(2, T=100, hidden=(128, 128))
    h = fit(p, blobs(4000, g), steps=1500, lr=3e-3, batch_size=1024, patience=100)
    assert h.best_val < 0.45
    s = p.sample(1000, generator=torch.Generator().manual_seed(1))
    mmd_prior, p_prior = mmd_permutation_test(s, blobs(1000, g))
    mmd_data, _ = mmd_permutation_test(blobs(1000, g), blobs(1000, g))
    assert p_prior > 0.01, (mmd_prior, mmd_data)
    # each blob gets about a quarter of the samples
    counts = torch.bincount(torch.cdist(s, CENTRES).argmin(1), minlength=4) / 1000
    torch.testing.assert_close(counts, torch.full((4,), 0.25), atol=0.05, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_diffusion_default_size_fits_a_mixture(schedule):
    g = torch.Generator().manual_seed(0)
    p = DiffusionPrior(2, schedule=schedule)
    fit(p, blobs(5000, g), steps=4000, lr=2e-3, batch_size=1024, patience=100)
    for seed in (1, 2, 3):
        s = p.sample(1000, generator=torch.Generator().manual_seed(seed))
        _, p_value = mmd_permutation_test(s, blobs(1000, g))
        assert p_value > 0.01, (seed, p_value)


def test_diffusion_config_round_trip_gives_identical_eps():
    p = DiffusionPrior(2, T=20, schedule="linear", hidden=(16, 16), time_embedding_dim=8)
    fit(p, torch.randn(200, 2), steps=20, lr=1e-2)
    assert p.uses_ema
    q = DiffusionPrior(**json.loads(json.dumps(p.config())))
    q.load_state_dict(p.state_dict())
    assert q.uses_ema
    x, t = torch.randn(9, 2), torch.arange(1, 10)
    torch.testing.assert_close(q.eps(x, t), p.eps(x, t), rtol=0, atol=0)
    torch.testing.assert_close(q.eps(x, t, ema=False), p.eps(x, t, ema=False), rtol=0, atol=0)
    assert not torch.allclose(p.eps(x, t, ema=False), p.eps(x, t))
    a = p.sample(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(q.sample(5, generator=torch.Generator().manual_seed(0)), a)


def test_diffusion_rejects_bad_options():
    with pytest.raises(OptionError, match="schedule"):
        DiffusionPrior(2, schedule="sigmoid")
    with pytest.raises(OptionError, match="time_embedding_dim"):
        DiffusionPrior(2, time_embedding_dim=7)
    with pytest.raises(OptionError, match="ema_decay"):
        DiffusionPrior(2, ema_decay=1.0)


# --------------------------------------------------------------------------- conditional


def test_nearest_neighbour_draws_a_of_the_nearest_b(monkeypatch):
    g = torch.Generator().manual_seed(0)
    b = torch.rand(2000, 1, generator=g) * 2 - 1
    c = NearestNeighbourConditional(k=10).fit(2 * b, b)
    q = torch.linspace(-0.9, 0.9, 300).unsqueeze(-1)
    a = c.sample(q, generator=torch.Generator().manual_seed(1))
    assert a.shape == (300, 1)
    assert (a - 2 * q).abs().max() < 0.05
    # the neighbours are exactly the k nearest, also when the query is chunked
    exact = (q - b.T).abs().sort(1).indices[:, :10].sort(1).values
    torch.testing.assert_close(c.neighbours(q).sort(1).values, exact)
    monkeypatch.setattr(conditional_module, "_MAX_DISTANCES", 5000)
    torch.testing.assert_close(c.neighbours(q).sort(1).values, exact)
    # every one of the k neighbours gets picked
    one = c.sample(q[:1].expand(2000, 1), generator=torch.Generator().manual_seed(2))
    assert len(torch.unique(one)) == 10


def test_nearest_neighbour_without_b_is_the_empirical_distribution():
    a = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    c = NearestNeighbourConditional().fit(a, torch.empty(4, 0))
    s = c.sample(torch.empty(8000, 0), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(s[:, 0].long(), minlength=4) / 8000
    torch.testing.assert_close(counts, torch.full((4,), 0.25), atol=0.02, rtol=0)


def test_nearest_neighbour_round_trip_and_errors():
    c = NearestNeighbourConditional(k=3).fit(torch.randn(30, 2), torch.randn(30, 1))
    d = NearestNeighbourConditional(**json.loads(json.dumps(c.config())))
    d.load_state_dict(c.state_dict())
    q = torch.randn(11, 1)
    a = c.sample(q, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(d.sample(q, generator=torch.Generator().manual_seed(0)), a)
    with pytest.raises(DataError, match=r"expected \(m, 1\)"):
        c.sample(torch.randn(4, 2))
    with pytest.raises(DataError, match="fit"):
        NearestNeighbourConditional().sample(torch.randn(4, 1))
    with pytest.raises(DataError, match="rows"):
        NearestNeighbourConditional().fit(torch.randn(4, 1), torch.randn(5, 1))


def test_flow_in_the_box_keeps_a_uniform_inside_its_range_and_is_normalised():
    # two U(0, 1) features: a flow of the features smooths the edges out past the rows'
    # range; in the box (prior_options={"box": True}) the density is zero past it
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4000, 2, generator=g)
    lo, hi = x.min(0).values, x.max(0).values
    shares = {}
    for box in (False, True):
        torch.manual_seed(0)
        p = FlowPrior(2, n_transforms=2, hidden=(16,), box=box)
        p.setup(x)
        fit(p, x, steps=400, lr=5e-3)
        s = p.sample(20_000, generator=torch.Generator().manual_seed(1))
        shares[box] = float(((s < lo) | (s > hi)).any(-1).float().mean())
    assert shares[True] < 0.01 < 0.03 < shares[False]
    # the density integrates to 1 over the box and is -inf outside it
    grid = torch.linspace(0, 1, 302)[1:-1]
    low, high = p.box_low, p.box_high
    gx = low[0] + (high[0] - low[0]) * grid
    gy = low[1] + (high[1] - low[1]) * grid
    cell = float((gx[1] - gx[0]) * (gy[1] - gy[0]))
    with torch.no_grad():
        mass = float(p.log_prob(torch.cartesian_prod(gx, gy)).exp().sum()) * cell
        out = p.log_prob(torch.stack([high + 0.01, low - 0.01]))
    assert mass == pytest.approx(1.0, abs=0.03)
    assert bool(torch.isneginf(out).all())
    # the box travels with the config and the state
    q = FlowPrior(**json.loads(json.dumps(p.config())))
    q.load_state_dict(p.state_dict())
    xs = s[:10]
    torch.testing.assert_close(q.log_prob(xs), p.log_prob(xs), rtol=0, atol=0)


def test_flow_box_is_a_checked_choice_and_inactive_before_setup():
    with pytest.raises(OptionError, match="box="):
        FlowPrior(2, box="yes")
    p = FlowPrior(2, hidden=(8,), box=True)
    x = torch.full((1, 2), 100.0)  # no box yet: a flow of the features, finite everywhere
    assert bool(torch.isfinite(p.log_prob(x)).all())


def test_flow_in_the_box_is_finite_on_its_edge():
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(0))
    p = FlowPrior(2, hidden=(8,), box=True)
    p.setup(x)
    edge = torch.stack([p.box_low, p.box_high])
    with torch.no_grad():
        assert bool(torch.isfinite(p.log_prob(edge)).all())
        assert bool(torch.isneginf(p.log_prob(p.box_high + 1e-3)).all())


# --------------------------------------------------------------------------- diffusion box


def test_boxed_diffusion_maps_in_and_out_and_keeps_draws_in_the_box():
    torch.manual_seed(0)
    x = torch.rand(500, 2) * torch.tensor([1.0, 10.0]) + torch.tensor([0.0, -5.0])
    p = DiffusionPrior(2, T=10, hidden=(8,))
    assert p.box and not p.boxed  # box=True is the default; set by setup()
    p.setup(x)
    assert p.boxed
    y = p.to_internal(x)
    assert torch.allclose(p.from_internal(y), x, atol=1e-4)
    # standardised coordinates: about zero mean and unit sd over the rows
    assert y.mean(0).abs().max() < 0.1 and (y.std(0) - 1).abs().max() < 0.1
    draws = p.sample(2000)  # an unfitted network: whatever it draws stays in the box
    low, high = p.box_low, p.box_high
    assert bool(((draws >= low) & (draws <= high)).all())
    assert float(high[1] - low[1]) < 10.0 * 1.11  # the rows' range widened by 5% a side


def test_an_unboxed_diffusion_is_the_identity_map():
    p = DiffusionPrior(2, T=10, hidden=(8,), box=False)
    x = torch.randn(5, 2)
    p.setup(x)
    assert not p.boxed and torch.equal(p.to_internal(x), x) and torch.equal(p.from_internal(x), x)
    assert p.config()["box"] is False
    with pytest.raises(OptionError, match="box"):
        DiffusionPrior(2, box="yes")
