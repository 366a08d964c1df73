"""The ``nuts`` sampler (Pyro's NUTS) against the closed-form linear-Gaussian posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import INTERVAL, ess_se, exact_linear_gaussian, interval_reference, subset

import sedge_pyro as sp

TARGET = {"z1": 1.0, "z2": -1.0}


@pytest.fixture(scope="module")
def exact():
    return exact_linear_gaussian(20_000, seed=0)


def test_nuts_matches_the_closed_form_posterior_fast(exact):
    model, data = exact
    s = model.sample(TARGET, n=300, method="nuts", chains=2, seed=0, warmup=200)
    mean, cov = data.posterior(TARGET)
    v = s.to_numpy()
    assert np.all(np.abs(v.mean(0) - mean) < 4 * ess_se(s))
    # 600 draws: variances are known to about 10%
    assert np.allclose(np.cov(v.T), cov, atol=0.1)
    assert s.info["divergences"] == [0, 0]
    for k in ("log_density", "accept_prob", "diverging", "step_size"):
        assert s.stats[k].shape == (2, 300)
    assert np.all((s.stats["accept_prob"] >= 0) & (s.stats["accept_prob"] <= 1))
    assert np.allclose(s.stats["accept_prob"].mean(1), s.info["accept_rate"], atol=1e-4)


@pytest.mark.slow
def test_nuts_matches_the_closed_form_posterior(exact):
    model, data = exact
    s = model.sample(TARGET, n=2000, method="nuts", chains=4, seed=0)
    mean, cov = data.posterior(TARGET)
    v = s.to_numpy()
    assert np.all(np.abs(v.mean(0) - mean) < 4 * ess_se(s))
    assert np.allclose(np.cov(v.T), cov, atol=0.05)
    assert float(s.summary(kind="diagnostics", round_to="none")["r_hat"].max()) < 1.01
    exact_draws = data.sample_posterior(TARGET, 2000, seed=1)
    draws = subset(v, 2000)
    assert sp.mmd(draws, exact_draws, permutations=200, seed=0).p_value > 0.01
    # and the test has power: another target's posterior is rejected
    other = data.sample_posterior({"z1": 1.5, "z2": -1.0}, 2000, seed=1)
    assert sp.mmd(draws, other, permutations=200, seed=0).p_value < 0.01


@pytest.mark.slow
def test_nuts_interval_target_matches_rejection_sampling(exact):
    model, _ = exact
    s = model.sample(INTERVAL, n=750, method="nuts", chains=2, seed=0, warmup=300)
    keep = interval_reference()
    v = s.to_numpy()
    se = np.sqrt(ess_se(s) ** 2 + keep.var(0) / len(keep))
    assert np.all(np.abs(v.mean(0) - keep.mean(0)) < 4 * se)
    assert sp.mmd(subset(v, 1000), keep[:1000], permutations=200, seed=0).p_value > 0.01


def test_nuts_interval_target_mean_fast(exact):
    model, _ = exact
    s = model.sample(INTERVAL, n=200, method="nuts", chains=2, seed=0, warmup=150)
    keep = interval_reference()
    se = np.sqrt(ess_se(s) ** 2 + keep.var(0) / len(keep))
    assert np.all(np.abs(s.to_numpy().mean(0) - keep.mean(0)) < 4 * se)


def test_nuts_is_reproducible_and_leaves_global_state_alone(exact):
    model, _ = exact
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    a = model.sample(TARGET, n=30, method="nuts", chains=2, seed=3, warmup=30)
    b = model.sample(TARGET, n=30, method="nuts", chains=2, seed=3, warmup=30)
    c = model.sample(TARGET, n=30, method="nuts", chains=2, seed=4, warmup=30)
    assert torch.equal(state, torch.get_rng_state())
    assert a.values.shape == (2, 30, 3)
    assert np.array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert not np.array_equal(a.values[0], a.values[1])  # chains are seeded apart
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_nuts_needs_a_prior_with_a_density():
    data = sp.datasets.linear_gaussian(2000, seed=0)
    model = sp.SEDGEModel(data.graph, prior="empirical")
    model.fit(data.seen, steps=1, batch_size=64, progress=False)
    with pytest.raises(sp.OptionError, match="needs a prior with a density"):
        model.sample({"z1": 1.0}, n=10, method="nuts")


def test_nuts_rejects_bad_options(exact):
    model, _ = exact
    bad = [
        ({"warmup": -1}, "warmup=-1"),
        ({"target_accept": 1.0}, "target_accept=1.0"),
        ({"max_tree_depth": 0}, "max_tree_depth=0"),
        ({"step_size": -1.0}, "step_size=-1.0"),
        ({"num_chains": 2}, "has no option 'num_chains'"),
    ]
    for options, message in bad:
        with pytest.raises(sp.OptionError, match=message):
            model.sample(TARGET, n=10, method="nuts", **options)
