"""The ``langevin`` sampler against known answers: the closed-form linear-Gaussian posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import (
    INTERVAL,
    ExactGaussianDiffusion,
    ess_se,
    exact_linear_gaussian,
    interval_reference,
    subset,
)

import sedge_pyro as sp
from sedge_pyro.inference.fit import fit_component
from sedge_pyro.models.priors import DiffusionPrior, EmpiricalPrior

TARGET = {"z1": 1.0, "z2": -1.0}


@pytest.fixture(scope="module")
def exact():
    return exact_linear_gaussian(20_000, seed=0)


def _max_rhat(s):
    return float(s.summary(kind="diagnostics", round_to="none")["r_hat"].max())


# --------------------------------------------------------------------------- mala


def test_mala_matches_the_closed_form_posterior(exact):
    model, data = exact
    s = model.sample(TARGET, n=2000, method="langevin", chains=4, seed=0, thin=4)
    mean, cov = data.posterior(TARGET)
    v = s.to_numpy()
    assert np.all(np.abs(v.mean(0) - mean) < 4 * ess_se(s))
    assert np.allclose(np.cov(v.T), cov, atol=0.05)
    assert _max_rhat(s) < 1.01
    # adaptation reached its target on every chain
    assert np.allclose(s.info["accept_rate"], 0.574, atol=0.05)
    # thinned, the chains hold at least 2,000 effective draws, so a random 2,000 of them are
    # close to iid, as MMD's permutation test assumes
    assert s.summary(kind="diagnostics", round_to="none")["ess_bulk"].min() > 2000
    exact_draws = data.sample_posterior(TARGET, 2000, seed=1)
    assert sp.mmd(subset(v, 2000), exact_draws, permutations=200, seed=0).p_value > 0.01


def test_a_walkers_several_draws_are_spaced_not_its_rejected_moves(exact):
    # 50 walkers, 500 draws: each walker records 10; neighbouring moves would repeat rows
    # (a rejected MALA move keeps its state), spaced ones rarely do
    from sedge_pyro.inference.langevin import SPACING

    model, _ = exact
    runs = {
        thin: model.sample(
            TARGET, n=500, method="langevin", seed=0, walkers=50, thin=thin, warmup=100
        )
        for thin in (1, None)
    }
    repeated = {t: 1 - len(np.unique(s.to_numpy(), axis=0)) / 500 for t, s in runs.items()}
    assert runs[None].info["thin"] == SPACING and runs[1].info["thin"] == 1
    assert repeated[1] > 0.2 and repeated[None] < 0.05, repeated


def test_mala_detects_a_wrong_posterior(exact):
    model, data = exact
    v = model.sample(TARGET, n=2000, method="langevin", chains=4, seed=0, thin=4).to_numpy()
    other = data.sample_posterior({"z1": 1.5, "z2": -1.0}, 2000, seed=1)
    assert sp.mmd(subset(v, 2000), other, permutations=200, seed=0).p_value < 0.01


def test_mala_interval_target_matches_rejection_sampling(exact):
    model, _ = exact
    s = model.sample(INTERVAL, n=1500, method="langevin", chains=4, seed=0, thin=4)
    keep = interval_reference()
    v = s.to_numpy()
    se = np.sqrt(ess_se(s) ** 2 + keep.var(0) / len(keep))
    assert np.all(np.abs(v.mean(0) - keep.mean(0)) < 4 * se)
    assert sp.mmd(subset(v, 1500), keep[:1500], permutations=200, seed=0).p_value > 0.01


def test_mala_with_a_fixed_step_is_still_exact(exact):
    # no adaptation, no preconditioner: only the Metropolis correction keeps it right
    model, data = exact
    s = model.sample(
        TARGET, n=2000, method="langevin", chains=4, seed=0, step_size=0.3, bounded=False
    )
    assert np.allclose(s.info["step_size"], 0.3)
    mean, _ = data.posterior(TARGET)
    assert np.all(np.abs(s.to_numpy().mean(0) - mean) < 4 * ess_se(s))


# --------------------------------------------------------------------------- ula


def test_ula_bias_is_small_at_its_default_step_and_grows_with_the_step(exact):
    # many independent walkers, so variances are estimated to about 2%
    model, data = exact
    mean, cov = data.posterior(TARGET)
    options = {"method": "langevin", "kind": "ula", "walkers": 1000, "warmup": 1000}
    small = model.sample(TARGET, n=10_000, chains=4, seed=0, **options)
    v = small.to_numpy()
    assert np.all(np.abs(v.mean(0) - mean) < 4 * ess_se(small))
    ratio_small = np.diag(np.cov(v.T)) / np.diag(cov)
    assert np.all(np.abs(ratio_small - 1) < 0.06)  # measured 1.01-1.04
    # a step adapted to MALA acceptance 0.9 is larger: the O(h) bias of the unadjusted
    # chain then shows as overdispersion (measured +9-10% variance)
    large = model.sample(TARGET, n=10_000, chains=4, seed=0, target_accept=0.9, **options)
    assert large.info["step_size"][0] > 2 * small.info["step_size"][0]
    ratio_large = np.diag(np.cov(large.to_numpy().T)) / np.diag(cov)
    assert np.all(ratio_large > 1.05)
    assert ratio_large.mean() > ratio_small.mean() + 0.03


def test_ula_with_a_huge_step_raises_naming_the_step(exact):
    model, _ = exact
    with pytest.raises(sp.SamplingError, match=r"'langevin' diverged at step \d+"):
        # unbounded: in the box's coordinates the sigmoid keeps every draw finite
        model.sample(
            TARGET, n=10, method="langevin", kind="ula", step_size=1e3, warmup=50, bounded=False
        )


# --------------------------------------------------------------------------- annealed


def test_annealed_with_exact_scores_approaches_the_posterior():
    model, data = exact_linear_gaussian(20_000, seed=0)
    model.components["prior"] = ExactGaussianDiffusion(data.mean, data.cov)
    s = model.sample(TARGET, n=2000, method="langevin", chains=2, seed=0, kind="annealed")
    assert s.values.shape == (2, 2000, 3)
    assert s.info["levels"] > 30 and s.info["sigma_min"] < 0.02
    mean, cov = data.posterior(TARGET)
    v = s.to_numpy()
    # every draw is an independent walker: iid standard errors apply
    se = np.sqrt(np.diag(cov) / len(v))
    # annealing lags behind the shrinking noise, and nothing corrects it: the draws are
    # overdispersed (variances measured 2-5% too large); means within 0.011 of the truth
    assert np.all(np.abs(v.mean(0) - mean) < 4 * se + 0.02)
    assert np.allclose(np.cov(v.T), cov, atol=0.04)
    exact_draws = data.sample_posterior(TARGET, 2000, seed=1)
    assert sp.mmd(subset(v, 2000), exact_draws, permutations=200, seed=0).p_value > 0.01


def test_annealed_interval_target_matches_rejection_sampling():
    model, data = exact_linear_gaussian(20_000, seed=0)
    model.components["prior"] = ExactGaussianDiffusion(data.mean, data.cov)
    s = model.sample(INTERVAL, n=1000, method="langevin", chains=2, seed=0, kind="annealed")
    keep = interval_reference()
    v = s.to_numpy()
    se = np.sqrt(v.var(0) / len(v) + keep.var(0) / len(keep))
    assert np.all(np.abs(v.mean(0) - keep.mean(0)) < 4 * se + 0.02)
    assert sp.mmd(subset(v, 1500), keep[:1500], permutations=200, seed=0).p_value > 0.01


@pytest.mark.slow
def test_annealed_with_a_fitted_diffusion_prior_is_roughly_right():
    model, data = exact_linear_gaussian(20_000, seed=0)
    prior = DiffusionPrior(3, T=100, hidden=(64, 64))
    x = torch.tensor(data.seen[["x1", "x2", "x3"]].to_numpy(), dtype=torch.float32)
    fit_component(prior, prior.model, (x,), steps=3000, lr=3e-3, progress=False, seed=0)
    model.components["prior"] = prior
    s = model.sample(TARGET, n=2000, method="langevin", chains=2, seed=0, kind="annealed")
    mean, cov = data.posterior(TARGET)
    v = s.to_numpy()
    # a learned score is only approximately the prior's: state the tolerance honestly
    assert np.all(np.abs(v.mean(0) - mean) < 0.1)
    assert np.allclose(np.cov(v.T), cov, atol=0.1)


def test_walkers_start_at_a_draw_of_the_posterior(exact, monkeypatch):
    from sedge_pyro.inference.target import Problem, Target

    model, data = exact
    problem = Problem(model, Target(model, TARGET), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x = problem.start_points(4000, g).numpy()
    mean, cov = data.posterior(TARGET)
    # prior draws resampled by the likelihood (50,000 of them, an ESS of about 4,000)
    se = np.sqrt(np.diag(cov) * (1 / 4000 + 1 / 2000))
    assert np.all(np.abs(x.mean(0) - mean) < 4 * se), (x.mean(0), mean)
    assert np.allclose(np.cov(x.T), cov, atol=0.06)
    # a prior that cannot be sampled: training rows weighted by the likelihood instead
    monkeypatch.setattr(type(model.prior), "sample", _no_sampler)
    rows = problem.start_points(50, g)
    train = problem.train_x
    assert all(bool((train == r).all(-1).any()) for r in rows)


def _no_sampler(self, n, *, generator=None):
    raise NotImplementedError


@pytest.mark.slow  # .ci/run runs it
def test_annealed_on_a_density_prior_is_refined_to_the_posterior():
    model, data = exact_linear_gaussian(20_000, seed=0)
    # a Gaussian prior: the diffusion is a surrogate fit for the run, the refinement runs
    # Metropolis-adjusted moves on the model's own posterior
    s = model.sample(TARGET, n=1000, method="langevin", chains=2, seed=0, kind="annealed")
    assert s.info["refine"] == 500 and "diffusion_prior" in s.info
    mean, cov = data.posterior(TARGET)
    v = s.to_numpy()
    # one draw per walker (1,000 walkers a chain): iid standard errors apply
    se = np.sqrt(np.diag(cov) / len(v))
    assert np.all(np.abs(v.mean(0) - mean) < 4 * se), (v.mean(0), mean)
    assert np.allclose(np.cov(v.T), cov, atol=0.05)
    exact_draws = data.sample_posterior(TARGET, 2000, seed=1)
    assert sp.mmd(subset(v, 1000), exact_draws, permutations=200, seed=0).p_value > 0.01
    with pytest.raises(sp.OptionError, match="refine=5"):
        model.components["prior"] = DiffusionPrior(3, T=20)
        model.sample(TARGET, n=10, method="langevin", kind="annealed", refine=5)


# --------------------------------------------------------------------------- contract


def test_langevin_is_reproducible_and_shaped_by_chains(exact):
    model, _ = exact
    state = torch.get_rng_state()
    a = model.sample(TARGET, n=50, method="langevin", chains=3, seed=4, warmup=50, walkers=8)
    b = model.sample(TARGET, n=50, method="langevin", chains=3, seed=4, warmup=50, walkers=8)
    c = model.sample(TARGET, n=50, method="langevin", chains=3, seed=5, warmup=50, walkers=8)
    assert torch.equal(state, torch.get_rng_state())  # only the sampler's generator is used
    assert a.values.shape == (3, 50, 3)
    assert np.array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    for k in ("accept_prob", "accepted", "step_size", "log_density"):
        assert a.stats[k].shape == (3, 50)
    assert len(a.info["step_size"]) == 3 and a.info["walkers"] == 8


def test_langevin_leaves_the_components_alone(exact):
    model, _ = exact
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.sample(TARGET, n=20, method="langevin", chains=2, seed=0, warmup=20)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_langevin_rejects_bad_options_and_priors(exact):
    model, _ = exact
    bad = [
        ({"kind": "hmc"}, "kind='hmc'"),
        ({"step_size": -0.1}, "step_size=-0.1"),
        ({"warmup": -1}, "warmup=-1"),
        ({"walkers": 0}, "walkers=0"),
        ({"thin": 0}, "thin=0"),
        ({"target_accept": 1.5}, "target_accept=1.5"),
        ({"warmup": 0}, "warmup=0 with step_size=None"),
    ]
    for options, message in bad:
        with pytest.raises(sp.OptionError, match=message):
            model.sample(TARGET, n=10, method="langevin", **options)
    empirical, _ = exact_linear_gaussian(2000, seed=0)
    prior = EmpiricalPrior(3)
    prior.setup(torch.zeros(5, 3))
    empirical.components["prior"] = prior
    with pytest.raises(sp.OptionError, match="needs a prior with a density"):
        empirical.sample(TARGET, n=10, method="langevin")
