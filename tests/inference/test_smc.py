"""The ``smc`` sampler (twisted diffusion sampling) against known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from known_models import (
    INTERVAL,
    ExactGaussianDiffusion,
    exact_linear_gaussian,
    interval_reference,
    subset,
)

import sedge_pyro as sp
from sedge_pyro.inference import smc
from sedge_pyro.inference.target import Problem, Target

TARGET = {"z1": 1.0, "z2": -1.0}


@pytest.fixture(scope="module")
def exact():
    model, data = exact_linear_gaussian(20_000, seed=0)
    model.components["prior"] = ExactGaussianDiffusion(data.mean, data.cov)
    return model, data


def test_smc_matches_the_closed_form_posterior(exact):
    model, data = exact
    s = model.sample(TARGET, n=2000, method="smc", chains=2, seed=0)
    assert s.values.shape == (2, 2000, 3)
    mean, cov = data.posterior(TARGET)
    v = s.to_numpy()
    # resampled particles are not independent draws: the means scattered by 0.008-0.02
    # across 8 seeds (the plug-in twist of plain TDS: 0.06-0.11)
    assert np.all(np.abs(v.mean(0) - mean) < 0.05)
    assert np.allclose(np.cov(v.T), cov, atol=0.04)
    exact_draws = data.sample_posterior(TARGET, 2000, seed=1)
    assert sp.mmd(subset(v, 2000), exact_draws, permutations=200, seed=0).p_value > 0.01
    assert s.info["particles"] == 2000 and len(s.info["ess"]) == 2
    assert s.info["ess_min"] > 500
    assert not s.warnings, s.warnings


def test_smc_interval_target_matches_rejection_sampling(exact):
    model, _ = exact
    s = model.sample(INTERVAL, n=1000, method="smc", chains=2, seed=0)
    keep = interval_reference()
    v = s.to_numpy()
    assert np.all(np.abs(v.mean(0) - keep.mean(0)) < 0.06)
    assert np.allclose(v.std(0), keep.std(0), atol=0.05)
    assert sp.mmd(subset(v, 1500), keep[:1500], permutations=200, seed=0).p_value > 0.01


def test_without_resampling_the_weights_are_the_likelihood(exact):
    """The twisting functions telescope: unresampled and proposed from the prior (no
    guidance shift), a particle's final log weight is l(x_0) whatever the twist (here
    tempered and smoothed).
    """
    model, _ = exact
    problem = Problem(model, Target(model, TARGET, n=1), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    schedule = list(range(model.prior.T, 0, -1))
    state = smc.init(problem, 1, 500, g, smooth=4, temper=1.0)
    while state.i < len(schedule):
        state, _ = smc.step(
            state, problem, schedule, g, ess_threshold=1e-9, max_shift=0.0, temper=1.0
        )
    assert state.resamples == 0
    with torch.no_grad():
        ll = problem.log_likelihood(state.x[0])
    assert torch.allclose(state.log_w[0], ll, atol=1e-3)


def test_systematic_resampling_keeps_the_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([[0.5, 0.25, 0.125, 0.125]])
    idx = smc.systematic(w.log(), 8, g)
    assert torch.bincount(idx[0], minlength=4).tolist() == [4, 2, 1, 1]


def test_few_particles_warn(exact):
    model, _ = exact
    s = model.sample(TARGET, n=200, method="smc", seed=0, particles=50)
    assert s.info["ess_min"] < 50
    assert any("smc's final weights rest on" in w for w in s.warnings)


def test_a_strided_schedule_still_follows_the_posterior(exact):
    model, data = exact
    s = model.sample(TARGET, n=2000, method="smc", seed=0, steps=50)
    assert s.info["steps"] == 50
    mean, _ = data.posterior(TARGET)
    assert np.all(np.abs(s.to_numpy().mean(0) - mean) < 0.06)


@pytest.mark.parametrize(
    "option",
    [
        {"particles": 0},
        {"ess_threshold": 1.5},
        {"temper": -1.0},
        {"smooth": -1},
        {"max_shift": 0.0},
        {"guidance": 1.0},
    ],
)
def test_bad_options_are_typed_errors(exact, option):
    model, _ = exact
    with pytest.raises(sp.OptionError, match=next(iter(option))):
        model.sample(TARGET, n=10, method="smc", **option)


def test_a_model_with_a_flow_prior_samples_a_diffusion_surrogate():
    data = sp.datasets.linear_gaussian(3000, seed=0)
    model = sp.SEDGEModel(data.graph, hidden=(16,), prior_options={"hidden": (16,)})
    model.fit(data.seen, steps=200, progress=False)
    s = model.sample({"z1": 1.0}, n=200, method="smc", seed=0, particles=256, steps=20)
    assert s.values.shape == (1, 200, 3)
    assert "diffusion_prior" in s.info


def test_composed_diffusion_composes_two_experts():
    """Two independent specs, each moving its own feature: the product of experts puts a
    combination where each expert says. (Under a selection that makes the specs dependent
    in the rows, each expert learns the other spec's features too and the product misses:
    the failure SEDGE's graph addresses; measured on the image concepts in docs/images.md.)
    """
    from sedge_pyro.models import ComposedDiffusion

    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 3000)
    b = rng.integers(0, 2, 3000)
    x = np.stack([2.0 * a - 1, 2.0 * b - 1], 1) + 0.2 * rng.normal(size=(3000, 2))
    labels = pd.DataFrame({"a": a.astype(str), "b": b.astype(str)})
    frame = pd.DataFrame(x, columns=["x1", "x2"])
    cd = ComposedDiffusion(2, {"a": ["0", "1"], "b": ["0", "1"]}, T=50, hidden=(64, 64))
    cd.fit(frame, labels, steps=1500, progress=False, seed=0)
    for want in ({"a": "1", "b": "1"}, {"a": "0", "b": "1"}):
        v = cd.sample(want, 500, seed=0)
        centre = [2.0 * int(want["a"]) - 1, 2.0 * int(want["b"]) - 1]
        assert np.abs(np.median(v, 0) - centre).max() < 0.3, want
    with pytest.raises(sp.TargetError, match="'c'"):
        cd.sample({"c": "1"}, 5)
    with pytest.raises(sp.TargetError, match="'2'"):
        cd.sample({"a": 2}, 5)  # a number is read as its text


def test_smc_runs_on_cuda_or_says_it_cannot(exact):
    model, data = exact
    if not torch.cuda.is_available():
        with pytest.raises(sp.OptionError, match="CUDA is not available"):
            model.sample(TARGET, n=10, method="smc", device="cuda")
        return
    s = model.sample(TARGET, n=1000, method="smc", seed=0, device="cuda")
    assert s.info["device"].startswith("cuda")
    mean, _ = data.posterior(TARGET)
    assert np.all(np.abs(s.to_numpy().mean(0) - mean) < 0.06)
