"""SEDGEModel: building from a graph, fitting, the Pyro program, persistence, data checks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyro
import pyro.poutine as poutine
import pytest
import torch

import sedge_pyro as sp

FAST = {"steps": 60, "batch_size": 128, "progress": False}


@pytest.fixture(scope="module")
def synthetic():
    seen, oracle, graph = sp.datasets.paper_synthetic(3000, seed=0)
    return seen, graph


def binary_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    z1 = (rng.random(n) < 1 / (1 + np.exp(-(2 * x1 - x2)))).astype(int)
    colour = np.array(["red", "green", "blue"])[
        np.digitize(x2 + 0.3 * rng.normal(size=n), [-0.5, 0.5])
    ]
    graph = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "colour": ["x2"]})
    return pd.DataFrame({"x1": x1, "x2": x2, "z1": z1, "colour": colour}), graph


@pytest.mark.parametrize("structure", sp.models.STRUCTURES)
def test_every_structure_fits_and_scores(synthetic, structure):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, structure=structure, prior="empirical").fit(seen, **FAST)
    lp = model.log_prob(seen.head(50))
    assert lp.shape == (50,) and np.isfinite(lp).all()
    assert set(model.history) and all("steps" in h for h in model.history.values())


def test_sparse_likelihoods_see_only_their_parents(synthetic):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, prior="empirical").fit(seen, **FAST)
    assert model.likelihood("z1").context_dim == 2
    assert model.context_of("z2") == ("x2", "x3")
    dense = sp.SEDGEModel(graph, structure="dense", prior="empirical").fit(seen, **FAST)
    assert dense.likelihood("z1").context_dim == 3


def test_mixed_spec_kinds_are_inferred():
    df, graph = binary_data()
    model = sp.SEDGEModel(graph, prior="factorized").fit(df, **FAST)
    assert isinstance(model.likelihood("z1"), sp.models.BernoulliMLP)
    assert isinstance(model.likelihood("colour"), sp.models.CategoricalMLP)
    assert model.columns["colour"].categories == ["blue", "green", "red"]
    assert np.isfinite(model.log_prob(df.head(20))).all()


def test_joint_structure_needs_continuous_specs():
    df, graph = binary_data()
    with pytest.raises(sp.DataError, match="'colour'|'z1'"):
        sp.SEDGEModel(graph, structure="joint", prior="empirical").fit(df, **FAST)


def test_pyro_program_has_the_selection_site(synthetic):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, prior="flow", prior_options={"n_transforms": 2}).fit(seen, **FAST)
    trace = poutine.trace(model.model).get_trace(seen.head(32))
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample"}
    assert {"X", "z1", "z2", "S"} <= set(sites)
    assert all(sites[n]["is_observed"] for n in ("X", "z1", "z2", "S"))
    assert torch.all(sites["S"]["value"] == 1)
    # log p of the trace = prior + likelihoods (the selection site adds log 1 = 0)
    trace.compute_log_prob()
    assert float(sites["S"]["log_prob_sum"]) == 0.0
    gen = poutine.trace(model.model).get_trace(None, 7)
    assert gen.nodes["X"]["value"].shape == (7, 3)
    assert gen.nodes["z1"]["value"].shape == (7,)
    assert "S" not in gen.nodes


def test_factorized_prior_recovers_a_linear_chain():
    rng = np.random.default_rng(1)
    n = 4000
    x1 = rng.normal(size=n)
    x2 = 0.8 * x1 + 0.6 * rng.normal(size=n)
    x3 = rng.normal(size=n)
    z1 = x2 + x3 + 0.1 * rng.normal(size=n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "z1": z1})
    graph = sp.SpecGraph.from_parents(
        {"z1": ["x2", "x3"]}, feature_edges=[("x1", "x2")], features=["x1"]
    )
    model = sp.SEDGEModel(graph, prior="factorized").fit(df, steps=1500, lr=3e-3, progress=False)
    prior = model.prior
    x = torch.as_tensor(np.c_[x1, x2, x3][:1000], dtype=torch.float32)
    xn = (x - torch.tensor([model.columns[c].mean for c in ("x1", "x2", "x3")])) / torch.tensor(
        [model.columns[c].std for c in ("x1", "x2", "x3")]
    )
    # the true density in normalised units is a Gaussian with the standardised covariance
    cov = np.corrcoef(np.c_[x1, x2, x3].T)
    true = torch.distributions.MultivariateNormal(
        torch.zeros(3), torch.as_tensor(cov, dtype=torch.float32)
    )
    gap = float((true.log_prob(xn) - prior.log_prob(xn).detach()).mean())
    assert abs(gap) < 0.05 * 3


def test_save_load_round_trip_identical_log_probs(tmp_path, synthetic):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, prior="flow", prior_options={"n_transforms": 2}).fit(seen, **FAST)
    path = model.save(tmp_path / "m.pt")
    loaded = sp.SEDGEModel.load(path)
    np.testing.assert_array_equal(model.log_prob(seen.head(100)), loaded.log_prob(seen.head(100)))
    assert loaded.history == model.history
    assert loaded.graph == graph
    with pytest.raises(sp.SedgeError, match="m.pt"):
        model.save(path, overwrite=False)


@pytest.mark.parametrize("prior", ["empirical", "diffusion", "factorized"])
def test_round_trip_other_priors(tmp_path, synthetic, prior):
    seen, graph = synthetic
    options = {"T": 20} if prior == "diffusion" else None
    model = sp.SEDGEModel(graph, prior=prior, prior_options=options).fit(seen, **FAST)
    loaded = sp.SEDGEModel.load(model.save(tmp_path / "m.pt"))
    np.testing.assert_array_equal(model.log_prob(seen.head(30)), loaded.log_prob(seen.head(30)))
    a, b = model.prior.state_dict(), loaded.prior.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_save_leaves_the_old_file_readable(tmp_path, synthetic):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, prior="empirical").fit(seen, **FAST)
    path = model.save(tmp_path / "m.pt")
    before = model.log_prob(seen.head(20))
    # a second process starts saving over it and dies mid-write (os._exit: no cleanup at all)
    script = textwrap.dedent(
        f"""
        import os, sedge_pyro as sp
        model = sp.SEDGEModel.load({str(path)!r})
        def dying_fsync(fd):
            os._exit(9)  # the process dies before the new file is published
        os.fsync = dying_fsync
        model.save({str(path)!r}, overwrite=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    np.testing.assert_array_equal(sp.SEDGEModel.load(path).log_prob(seen.head(20)), before)


def test_an_interrupted_save_cleans_its_temporary_file(tmp_path, synthetic, monkeypatch):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, prior="empirical").fit(seen, **FAST)
    path = model.save(tmp_path / "m.pt")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(path, overwrite=True)
    assert os.listdir(tmp_path) == ["m.pt"]
    monkeypatch.undo()
    assert np.isfinite(sp.SEDGEModel.load(path).log_prob(seen.head(5))).all()


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(sp.SedgeError, match="nope.pt"):
        sp.SEDGEModel.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(sp.SedgeError, match="bad.pt"):
        sp.SEDGEModel.load(bad)


def _with(df, **cols):
    out = df.copy()
    for k, v in cols.items():
        out[k] = v
    return out


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda df: df.drop(columns="x3"), "'x3'"),
        (
            lambda df: _with(df, x1=np.where(np.arange(len(df)) < 3, np.nan, df.x1)),
            "'x1' holds 3 NaN",
        ),
        (
            lambda df: _with(df, z2=np.where(np.arange(len(df)) < 2, np.inf, df.z2)),
            "'z2' holds 2 infinite",
        ),
        (lambda df: _with(df, x2=0.77), "'x2' is constant"),
        (lambda df: _with(df, S=0), "'S'"),
        (lambda df: 42, "data is int: expected a pandas DataFrame, a dict of arrays, or a path"),
        # a string is a path to files (a Parquet or CSV file, a folder)
        (lambda df: "not a frame", "data file 'not a frame' does not exist"),
    ],
)
def test_data_errors_name_the_column_and_count(synthetic, make, fragment):
    seen, graph = synthetic
    with pytest.raises(sp.DataError, match=fragment):
        sp.SEDGEModel(graph, prior="empirical").fit(make(seen), **FAST)


def test_bernoulli_spec_with_other_values():
    df, graph = binary_data()
    df.loc[:4, "z1"] = 2
    with pytest.raises(sp.DataError, match="'z1' holds 5 value"):
        sp.SEDGEModel(graph, likelihood={"z1": "bernoulli"}, prior="empirical").fit(df, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"structure": "backwards"}, "backwards"),
        ({"likelihood": "poisson"}, "poisson"),
        ({"likelihood": {"z9": "gaussian"}}, "z9"),
        ({"prior": "gan"}, "gan"),
    ],
)
def test_bad_options_are_named(synthetic, kwargs, fragment):
    _, graph = synthetic
    with pytest.raises(sp.SedgeError, match=fragment):
        sp.SEDGEModel(graph, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"steps": -5}, "steps=-5"),
        ({"epochs": 0}, "epochs=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"patience": 0}, "patience=0"),
        ({"seed": -1}, "seed=-1"),
        ({"steps": "10"}, "steps='10'"),
    ],
)
def test_bad_fit_options_are_named(synthetic, kwargs, fragment):
    seen, graph = synthetic
    with pytest.raises(sp.OptionError, match=fragment):
        sp.SEDGEModel(graph, prior="empirical").fit(seen, progress=False, **kwargs)


def test_unfitted_model_says_so(synthetic):
    _, graph = synthetic
    with pytest.raises(sp.SedgeError, match="fit"):
        sp.SEDGEModel(graph).log_prob(pd.DataFrame())


def test_fit_leaves_the_users_param_store_alone(synthetic):
    seen, graph = synthetic
    pyro.param("mine", torch.ones(2))
    sp.SEDGEModel(graph, prior="empirical").fit(seen, **FAST)
    assert list(pyro.get_param_store().keys()) == ["mine"]


def test_refit_one_component(synthetic):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, prior="empirical").fit(seen, **FAST)
    before = model.likelihood("z2").state_dict()
    before = {k: v.clone() for k, v in before.items()}
    model.fit(seen, components=["z1"], **FAST)
    after = model.likelihood("z2").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(sp.SedgeError, match="'zz'"):
        model.fit(seen, components=["zz"], **FAST)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fits_on_cuda(synthetic):
    seen, graph = synthetic
    model = sp.SEDGEModel(graph, prior="flow").fit(seen, device="cuda", **FAST)
    assert model.device.type == "cuda"
    assert np.isfinite(model.log_prob(seen.head(10))).all()


def _selected_population(n=20000, seed=3):
    """X ~ N(0, I); z_j = x_j + noise; the rows with z1 > 0.5 and z2 > 0.5 are never seen."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    z = x + 0.3 * rng.normal(size=(n, 2))
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "z1": z[:, 0], "z2": z[:, 1]})
    seen = df[~((df.z1 > 0.5) & (df.z2 > 0.5))].reset_index(drop=True)
    graph = sp.SpecGraph.from_parents({"z1": ["x1"], "z2": ["x2"]})
    return seen, df[["x1", "x2"]], graph


def _prior_moments(model, n=50000):
    x = model.prior.sample(n, generator=torch.Generator().manual_seed(0)).numpy()
    raw = np.c_[[model.columns[f].decode(x[:, j]) for j, f in enumerate(model.features)]].T
    return raw.mean(0), np.cov(raw.T)


def test_prior_data_fits_the_population_prior():
    seen, population, graph = _selected_population()
    plain = sp.SEDGEModel(graph, prior="gaussian").fit(seen, **FAST)
    mean, cov = _prior_moments(plain)
    # the selection removed the (high x1, high x2) corner: the Seen features are tilted, and
    # without prior_data the prior is theirs
    tilted = seen[["x1", "x2"]].to_numpy()
    assert tilted.mean(0).max() < -0.1 and np.cov(tilted.T)[0, 1] < -0.05
    np.testing.assert_allclose(mean, tilted.mean(0), atol=0.03)
    np.testing.assert_allclose(cov, np.cov(tilted.T), atol=0.04)
    model = sp.SEDGEModel(graph, prior="gaussian").fit(seen, prior_data=population, **FAST)
    mean, cov = _prior_moments(model)
    np.testing.assert_allclose(mean, [0, 0], atol=0.03)
    np.testing.assert_allclose(cov, np.eye(2), atol=0.04)
    # the likelihoods and the normalisation still come from the training rows
    assert model.columns["x1"].mean == pytest.approx(seen.x1.mean(), rel=1e-5)
    torch.testing.assert_close(
        model.likelihood("z1").state_dict(), plain.likelihood("z1").state_dict()
    )


def test_prior_data_errors_name_the_argument_and_column():
    seen, population, graph = _selected_population(2000)
    model = sp.SEDGEModel(graph, prior="gaussian")
    with pytest.raises(sp.DataError, match="prior_data has no column 'x2'"):
        model.fit(seen, prior_data=population[["x1"]], **FAST)
    bad = population.copy()
    bad.loc[:2, "x1"] = np.nan
    with pytest.raises(sp.DataError, match="prior_data column 'x1' holds 3 NaN"):
        model.fit(seen, prior_data=bad, **FAST)


def test_spec_probability_of_a_label_target():
    df, graph = binary_data()
    model = sp.SEDGEModel(graph, prior="empirical").fit(df, steps=400, progress=False)
    x = pd.DataFrame({"x1": [0.0, 0.0, 0.0], "x2": [-2.0, 0.0, 2.0]})
    p = model.spec_probability(x, {"colour": "blue", "z1": 1})
    # colour is "blue" for x2 + noise > 0.5, z1 ~ Bernoulli(sigmoid(2 x1 - x2))
    assert p["colour"].is_monotonic_increasing and p["colour"].iloc[2] > 0.9
    assert p["colour"].iloc[0] < 0.05
    assert p["z1"].is_monotonic_decreasing
    np.testing.assert_allclose(p["all"], p["colour"] * p["z1"], rtol=1e-6)
