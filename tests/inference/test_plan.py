"""The ``plan`` sampler against known answers: closed-form Gaussians and exact enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from known_models import INTERVAL, exact_linear_gaussian, interval_reference
from scipy import stats

import sedge_pyro as sp

TARGET = {"z1": 1.0, "z2": -1.0}


@pytest.fixture(scope="module")
def exact():
    return exact_linear_gaussian(20_000, seed=0)


def test_plan_matches_the_closed_form_posterior(exact):
    model, data = exact
    s = model.sample(TARGET, n=2000, method="plan", seed=0)
    assert s.info["status"] == "IDENTIFIABLE"
    v = s.to_numpy()
    mean, cov = data.posterior(TARGET)
    # weighted rows: the error has a part from the n draws and one from the rows' weights
    se = np.sqrt(np.diag(cov) * (1 / len(v) + 1 / s.info["ess"]))
    assert np.all(np.abs(v.mean(0) - mean) < 4 * se)
    assert np.allclose(np.cov(v.T), cov, atol=0.05)
    exact_draws = data.sample_posterior(TARGET, 2000, seed=1)
    assert sp.mmd(v, exact_draws, permutations=200, seed=0).p_value > 0.01


def test_plan_detects_a_wrong_posterior(exact):
    # the same test against another target's posterior must fail: the check has power
    model, data = exact
    v = model.sample(TARGET, n=2000, method="plan", seed=0).to_numpy()
    other = data.sample_posterior({"z1": 1.5, "z2": -1.0}, 2000, seed=1)
    assert sp.mmd(v, other, permutations=200, seed=0).p_value < 0.01


def test_plan_interval_target_matches_rejection_sampling(exact):
    model, data = exact
    s = model.sample(INTERVAL, n=1500, method="plan", seed=0)
    # exact draws of p(X | z in A): simulated population rows kept by rejection
    keep = interval_reference()[:1500]
    assert sp.mmd(s.to_numpy(), keep, permutations=200, seed=0).p_value > 0.01


def test_plan_is_reproducible_and_shaped_by_chains(exact):
    model, _ = exact
    a = model.sample(TARGET, n=50, method="plan", chains=3, seed=4)
    b = model.sample(TARGET, n=50, method="plan", chains=3, seed=4)
    c = model.sample(TARGET, n=50, method="plan", chains=3, seed=5)
    assert a.values.shape == (3, 50, 3)
    assert np.array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert a.stats["log_weight"].shape == (3, 50)


# x1 and x3 independent given x2, as the graph (no feature edges) says
COV_MARKOV = np.array([[1.0, 0.3, -0.12], [0.3, 1.0, -0.4], [-0.12, -0.4, 1.5]])
FAR = {"z1": 3.5, "z2": -3.5}  # each value seen alone, never together: CONSERVATIVE


def test_plan_draws_shared_features_by_mcmc_when_the_ess_is_poor():
    model, data = exact_linear_gaussian(20_000, seed=0, cov=COV_MARKOV)
    sir = model.sample(FAR, n=1000, method="plan", seed=0, min_ess=0)
    assert sir.info["status"] == "CONSERVATIVE" and sir.info["mcmc"] == []
    # asking for more effective particles than the resampling has switches X_c to MALA
    s = model.sample(FAR, n=1000, method="plan", chains=2, seed=0, min_ess=2 * sir.info["ess"])
    assert s.info["mcmc"] == ["x2"]
    mean, cov = data.posterior(FAR)
    # X_c's marginal is the model's (here the exact) posterior marginal: within 4 ESS-based SE
    x2 = s.to_inference_data().posterior["x2"]
    diagnostics = s.summary(var_names=["x2"], kind="diagnostics", round_to="none")
    ess = float(diagnostics["ess_bulk"]["x2"])
    assert ess > 200
    assert abs(float(x2.mean()) - mean[1]) < 4 * np.sqrt(cov[1, 1] / ess)
    assert abs(float(x2.std()) / np.sqrt(cov[1, 1]) - 1) < 0.1
    # the groups' private features are still training values, drawn given X_c
    v = s.to_numpy()
    assert np.isin(v[:, 0], data.seen["x1"].to_numpy()).all()
    assert np.isin(v[:, 2], data.seen["x3"].to_numpy()).all()
    assert not np.isin(v[:, 1], data.seen["x2"].to_numpy()).all()
    # x1 | x2 and x3 | x2 are the plan's exact terms: the joint lands near the posterior
    assert np.all(np.abs(v.mean(0) - mean) < 0.1)


def test_plan_keeps_resampling_without_a_prior_density():
    data = sp.datasets.linear_gaussian(5000, seed=0, cov=COV_MARKOV)
    model = sp.SEDGEModel(data.graph, likelihood="gaussian", prior="empirical", hidden=())
    model.fit(data.seen, steps=200, batch_size=256, lr=1e-2, progress=False)
    s = model.sample({"z1": 2.5, "z2": -2.5}, n=200, method="plan", seed=0, min_ess=math.inf)
    assert s.info["status"] == "CONSERVATIVE" and s.info["mcmc"] == []
    with pytest.raises(sp.OptionError, match="min_ess"):
        model.sample(FAR, n=10, method="plan", min_ess=-1)


# --------------------------------------------------------------------------- discrete networks


def _discrete_population(n, seed, tables, parents, feature_edges=()):
    """Binary features (x1 independent, x2 | x1 via ``feature_edges``) and binary specs."""
    rng = np.random.default_rng(seed)
    cols = {}
    px = tables["x"]
    for f in ("x1", "x2", "x3", "x4"):
        if f not in px:
            continue
        p = px[f]
        if isinstance(p, dict):
            (src,) = [a for a, b in feature_edges if b == f]
            p = np.where(cols[src] == 1, p[1], p[0])
        cols[f] = (rng.random(n) < p).astype(int)
    for z, pa in parents.items():
        table = tables[z]
        p = np.array([table[tuple(int(cols[a][i]) for a in pa)] for i in range(n)])
        cols[z] = (rng.random(n) < p).astype(int)
    return pd.DataFrame(cols)


def _exact_posterior(tables, parents, features, target, feature_edges=()):
    """p(X | Z = target) of the population by enumeration over the feature configurations."""
    probs = {}
    for xs in itertools.product((0, 1), repeat=len(features)):
        x = dict(zip(features, xs, strict=True))
        p = 1.0
        for f in features:
            pf = tables["x"][f]
            if isinstance(pf, dict):
                (src,) = [a for a, b in feature_edges if b == f]
                pf = pf[x[src]]
            p *= pf if x[f] == 1 else 1 - pf
        for z, v in target.items():
            pz = tables[z][tuple(x[a] for a in parents[z])]
            p *= pz if v == 1 else 1 - pz
        probs[xs] = p
    total = sum(probs.values())
    return {k: v / total for k, v in probs.items()}


def _fit(graph, seen):
    return sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=1, batch_size=64, progress=False)


def test_plan_matches_exact_enumeration_on_an_identifiable_novel_target():
    # Fig. 2(a) with an edge x1 -> x2 inside the first block; S drops z1 = z2 = 1
    parents = {"z1": ("x1", "x2"), "z2": ("x3", "x4")}
    edges = (("x1", "x2"),)
    tables = {
        "x": {"x1": 0.4, "x2": {0: 0.3, 1: 0.8}, "x3": 0.6, "x4": 0.5},
        "z1": {(0, 0): 0.1, (0, 1): 0.5, (1, 0): 0.7, (1, 1): 0.9},
        "z2": {(0, 0): 0.8, (0, 1): 0.3, (1, 0): 0.6, (1, 1): 0.2},
    }
    pop = _discrete_population(200_000, 0, tables, parents, edges)
    seen = pop[~((pop.z1 == 1) & (pop.z2 == 1))].reset_index(drop=True)
    graph = sp.SpecGraph.from_parents({k: list(v) for k, v in parents.items()}, feature_edges=edges)
    target = {"z1": 1, "z2": 1}
    model = _fit(graph, seen)
    n = 4000
    s = model.sample(target, n=n, method="plan", seed=0)
    assert s.info["status"] == "IDENTIFIABLE"
    features = list(graph.features)
    exact = _exact_posterior(tables, parents, features, target, edges)
    drawn = s.to_numpy().astype(int)
    counts = {k: 0 for k in exact}
    for row in map(tuple, drawn):
        counts[row] += 1
    observed = np.array([counts[k] for k in exact])
    expected = np.array([exact[k] for k in exact]) * n
    # the plan resamples the training rows' block conditionals, which carry their own noise
    # from the rows that match each block: inflate the statistic's variance accordingly
    rows_per_block = min((seen.z1 == 1).sum(), (seen.z2 == 1).sum())
    chi2 = ((observed - expected) ** 2 / expected).sum() / (1 + 2 * n / rows_per_block)
    assert stats.chi2.sf(chi2, df=len(exact) - 1) > 0.001
    # and a wrong answer (the training rows' own conditional, which S distorts) is rejected
    wrong = _exact_posterior(tables, parents, features, {"z1": 1, "z2": 0}, edges)
    expected_wrong = np.array([wrong[k] for k in exact]) * n
    chi2_wrong = ((observed - expected_wrong) ** 2 / expected_wrong).sum()
    assert stats.chi2.sf(chi2_wrong, df=len(exact) - 1) < 1e-6


def test_plan_stays_in_the_true_support_on_fig2b_discrete():
    # Fig. 2(b): x2 shared; tables with structural zeros so the support is a strict subset
    parents = {"z1": ("x1", "x2"), "z2": ("x2", "x3")}
    tables = {
        "x": {"x1": 0.5, "x2": 0.5, "x3": 0.5},
        "z1": {(0, 0): 0.0, (0, 1): 0.6, (1, 0): 0.7, (1, 1): 0.4},
        "z2": {(0, 0): 0.5, (0, 1): 0.0, (1, 0): 0.3, (1, 1): 0.9},
    }
    pop = _discrete_population(50_000, 1, tables, parents)
    seen = pop[~((pop.z1 == 1) & (pop.z2 == 1))].reset_index(drop=True)
    graph = sp.SpecGraph.from_parents({k: list(v) for k, v in parents.items()})
    target = {"z1": 1, "z2": 1}
    model = _fit(graph, seen)
    s = model.sample(target, n=3000, method="plan", seed=0)
    assert s.info["status"] == "CONSERVATIVE"
    exact = _exact_posterior(tables, parents, list(graph.features), target)
    support = {k for k, v in exact.items() if v > 0}
    drawn = {tuple(r) for r in s.to_numpy().astype(int)}
    assert drawn <= support
    assert len(drawn) == len(support)  # and it covers the support


# --------------------------------------------------------------------------- errors


def test_plan_rejects_bad_targets_and_options(exact):
    model, _ = exact
    with pytest.raises(sp.TargetError, match="never seen"):
        model.sample({"z1": 40.0}, n=10, method="plan")
    with pytest.raises(sp.TargetError, match="unknown specification 'z9'"):
        model.sample({"z9": 1.0}, n=10, method="plan")
    with pytest.raises(sp.OptionError, match="oversample"):
        model.sample(TARGET, n=10, method="plan", oversample=0)
    with pytest.raises(sp.OptionError, match="has no option 'steps'"):
        model.sample(TARGET, n=10, method="plan", steps=3)
    with pytest.raises(sp.OptionError, match="method='magic'"):
        model.sample(TARGET, n=10, method="magic")


def test_plan_on_categorical_specs_checks_levels():
    rng = np.random.default_rng(0)
    n = 3000
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = np.where(x1 > 0.5, "red", np.where(x1 < -0.5, "blue", "green"))
    size = np.where(x2 > 0, 1, 0)
    df = pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "size": size})
    df = df[~((df.colour == "red") & (df["size"] == 1))].reset_index(drop=True)
    graph = sp.SpecGraph.from_parents({"colour": ["x1"], "size": ["x2"]})
    model = _fit(graph, df)
    with pytest.raises(sp.TargetError, match="'purple'"):
        model.sample({"colour": "purple"}, n=10, method="plan")
    with pytest.raises(sp.TargetError, match="not numbers"):
        model.sample({"colour": sp.Interval(low=0)}, n=10, method="plan")
    with pytest.raises(sp.TargetError, match="expected 0 or 1"):
        model.sample({"size": 2}, n=10, method="plan")
    s = model.sample({"colour": "red", "size": 1}, n=500, method="plan", seed=0)
    v = s.to_dataframe()
    # identifiable (separate blocks): red needs x1 > 0.5, size 1 needs x2 > 0
    assert s.info["status"] == "IDENTIFIABLE"
    assert (v.x1 > 0.5).all() and (v.x2 > 0).all()


def test_sample_device_cuda_runs_there_or_says_it_cannot(exact):
    model, data = exact
    if not torch.cuda.is_available():
        with pytest.raises(sp.OptionError, match="CUDA is not available"):
            model.sample(TARGET, n=10, method="plan", device="cuda")
        return
    s = model.sample(TARGET, n=2000, method="plan", device="cuda", seed=0)
    assert s.info["device"].startswith("cuda")
    mean, cov = data.posterior(TARGET)
    assert np.all(np.abs(s.to_numpy().mean(0) - mean) < 0.1)
