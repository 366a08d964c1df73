"""Per-draw point targets: draw ``i`` of every chain is generated for its own target values.

The paper's Sec. 5.1 (App. C, D.1) generates one sample per held-out Oracle row, for that
row's specifications. ``opt``, ``dps`` and ``direct`` take a 1-D array of ``n`` values per
spec; each draw is checked against the closed form for its own target.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from known_models import (
    exact_linear_gaussian,
    exact_with_ddpm,
    fitted_model_e,
    predicted_specs,
)

import sedge_pyro as sp
from sedge_pyro.errors import OptionError, TargetError
from sedge_pyro.inference import Samples, Target

N = 50


def targets_from_rows(data, n, seed):
    """Per-draw targets from training rows, so every value is seen alone (Assumption 1)."""
    rows = data.seen.sample(n, random_state=seed)
    return rows.z1.to_numpy().copy(), rows.z2.to_numpy().copy()


def posterior_means(data, a, b):
    return np.stack(
        [data.posterior({"z1": float(x), "z2": float(y)})[0] for x, y in zip(a, b, strict=True)]
    )


@pytest.fixture(scope="module")
def exact():
    return exact_linear_gaussian(20_000, seed=0)


@pytest.fixture(scope="module")
def diffusion():
    """The exact linear-Gaussian likelihoods with a DDPM prior fit to the training rows."""
    model, data, _ = exact_with_ddpm(steps=1000)
    return model, data


@pytest.fixture(scope="module")
def reverse():
    return fitted_model_e()


# --------------------------------------------------------------------------- opt


def test_opt_nll_each_draw_reaches_its_own_posterior_mode(exact):
    model, data = exact
    a, b = targets_from_rows(data, N, seed=1)
    s = model.sample({"z1": a, "z2": b}, n=N, method="opt", loss="nll", prior_weight=1.0)
    modes = posterior_means(data, a, b)  # a Gaussian's mode is its mean
    assert np.max(np.abs(s.values[0] - modes)) < 1e-3
    # the targets differ: one shared mode would be far off for most draws
    assert np.ptp(modes, axis=0).min() > 1.0
    assert isinstance(s.target["z1"], np.ndarray) and np.array_equal(s.target["z1"], a)
    assert s.stats["log_likelihood"].shape == (1, N)


@pytest.mark.parametrize("kind", ["numpy", "list", "series", "tensor"])
def test_opt_squared_each_draw_meets_its_own_target(exact, kind):
    model, data = exact
    a, b = targets_from_rows(data, N, seed=2)
    wrap = {
        "numpy": lambda v: v,
        "list": list,
        "series": pd.Series,
        "tensor": torch.tensor,
    }[kind]
    s = model.sample({"z1": wrap(a), "z2": wrap(b)}, n=N, method="opt", seed=0)
    pred = predicted_specs(data, s.to_numpy())
    assert np.max(np.abs(pred["z1"] - a)) < 1e-4
    assert np.max(np.abs(pred["z2"] - b)) < 1e-4
    assert s.target["z1"].dtype == np.float64


def test_scalars_and_intervals_mix_with_arrays(exact):
    model, data = exact
    a, _ = targets_from_rows(data, N, seed=3)
    s = model.sample({"z1": a, "z2": sp.Interval(high=0.0)}, n=N, method="opt", seed=0)
    pred = predicted_specs(data, s.to_numpy())
    assert np.max(np.abs(pred["z1"] - a)) < 1e-4
    assert pred["z2"].max() < 1e-4
    s = model.sample({"z1": a, "z2": -1.0}, n=N, method="opt", seed=0)
    pred = predicted_specs(data, s.to_numpy())
    assert np.max(np.abs(pred["z1"] - a)) < 1e-4 and np.max(np.abs(pred["z2"] + 1)) < 1e-4
    assert s.target["z2"] == -1.0


def test_chains_repeat_the_per_draw_targets(exact):
    model, data = exact
    a, b = targets_from_rows(data, 20, seed=4)
    s = model.sample({"z1": a, "z2": b}, n=20, chains=2, method="opt", loss="nll", prior_weight=1.0)
    modes = posterior_means(data, a, b)
    assert s.values.shape == (2, 20, 3)
    for c in range(2):
        assert np.max(np.abs(s.values[c] - modes)) < 1e-3
    # the compiled target lays (n,) values on a chain-major batch of chains * n particles
    t = Target(model, {"z1": a, "z2": b}, n=20)
    x = torch.tensor(s.to_numpy(), dtype=torch.float32)
    flat = t.log_likelihood(x)
    shaped = t.log_likelihood(x.reshape(2, 20, 3))
    assert torch.allclose(flat.reshape(2, 20), shaped)
    assert t.satisfied(s.to_dataframe().assign(z1=np.tile(a, 2), z2=np.tile(b, 2))).all()


# --------------------------------------------------------------------------- dps


def test_dps_per_draw_targets_move_each_draw_to_its_own_target(diffusion):
    model, data = diffusion
    a, b = targets_from_rows(data, 200, seed=5)
    target = {"z1": a, "z2": b}
    free = model.sample(target, n=200, method="dps", seed=0, guidance=0.0).to_numpy()
    s = model.sample(target, n=200, method="dps", seed=0)
    pred, pred0 = predicted_specs(data, s.to_numpy()), predicted_specs(data, free)

    def rmse(p):
        return np.sqrt(np.mean([(p["z1"] - a) ** 2, (p["z2"] - b) ** 2], 0))

    assert np.median(rmse(pred)) < 0.1 < 0.5 < np.median(rmse(pred0))
    assert rmse(pred).mean() < 0.2 * rmse(pred0).mean()


def test_dps_constant_arrays_equal_the_scalar_target(diffusion):
    model, _ = diffusion
    n = 30
    scalar = model.sample({"z1": 1.0, "z2": -1.0}, n=n, chains=2, method="dps", seed=3)
    arrays = {"z1": np.full(n, 1.0), "z2": np.full(n, -1.0)}
    per_draw = model.sample(arrays, n=n, chains=2, method="dps", seed=3)
    np.testing.assert_allclose(per_draw.values, scalar.values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(per_draw.stats["loss"], scalar.stats["loss"], atol=1e-9)


# --------------------------------------------------------------------------- direct


def test_direct_per_draw_targets_follow_each_targets_posterior(reverse):
    model, data = reverse
    n = 2000
    a, b = targets_from_rows(data, n, seed=6)
    s = model.sample({"z1": a, "z2": b}, n=n, method="direct", seed=0)
    v = s.to_numpy()
    means = posterior_means(data, a, b)
    sd = np.sqrt(np.diag(data.posterior({"z1": 1.0, "z2": -1.0})[1]))  # same for every z
    se = sd / np.sqrt(n)
    # the draws' mean is the mean of the per-target posterior means (measured: 1.8 SE at most)
    assert np.all(np.abs(v.mean(0) - means.mean(0)) < 4 * se)
    # each draw follows its own target: the residuals have the posterior's spread, far less
    # than the spread of the draws across targets
    resid = v - means
    assert np.allclose(resid.std(0) / sd, 1.0, atol=0.1)
    assert np.all(v.std(0) > 1.3 * sd)


# --------------------------------------------------------------------------- errors


def test_length_mismatch_names_the_spec_length_and_n(exact):
    model, _ = exact
    with pytest.raises(TargetError, match=r"'z1' has length 3: expected n=5"):
        model.sample({"z1": np.ones(3), "z2": -1.0}, n=5, method="opt")
    with pytest.raises(TargetError, match=r"'z2' has shape \(2, 5\)"):
        model.sample({"z1": 1.0, "z2": np.ones((2, 5))}, n=5, method="opt")
    with pytest.raises(TargetError, match="holds an Interval"):
        model.sample({"z1": [sp.Interval(low=0.0)] * 5}, n=5, method="opt")
    with pytest.raises(TargetError, match="NaN at draw 1"):
        model.sample({"z1": [1.0, np.nan, 1.0]}, n=3, method="opt")


def test_a_value_never_seen_alone_names_the_spec_and_value(exact):
    model, data = exact
    a, _ = targets_from_rows(data, 10, seed=7)
    a[4] = 50.0
    with pytest.raises(TargetError, match=r"z1=50 \(draw 4\) is never seen"):
        model.sample({"z1": a}, n=10, method="opt")


@pytest.mark.parametrize("method", ["plan", "langevin", "svi", "nuts"])
def test_posterior_samplers_reject_per_draw_targets(exact, method):
    model, _ = exact
    with pytest.raises(OptionError, match="per-draw targets need method 'opt', 'dps' or 'direct'"):
        model.sample({"z1": np.ones(5), "z2": -1.0}, n=5, method=method)


# --------------------------------------------------------------------------- Samples


def test_netcdf_round_trip_keeps_the_per_draw_targets(exact, tmp_path):
    model, data = exact
    a, _ = targets_from_rows(data, 15, seed=8)
    s = model.sample({"z1": a, "z2": -1.0}, n=15, chains=2, method="opt", steps=50)
    idata = s.to_inference_data()
    assert idata.observed_data["z1"].dims == ("draw",)
    assert np.array_equal(idata.observed_data["z1"].values, a)
    back = Samples.load(s.save(tmp_path / "s.nc"))
    assert np.array_equal(back.values, s.values)
    assert isinstance(back.target["z1"], np.ndarray) and np.array_equal(back.target["z1"], a)
    assert back.target["z2"] == -1.0
    assert np.array_equal(back.stats["loss"], s.stats["loss"])
    # a Samples built by hand keeps a list as a numpy array and writes it as well
    hand = Samples(np.zeros((1, 3, 3)), ["x1", "x2", "x3"], {"z1": [1.0, 2.0, 3.0]}, "opt")
    assert isinstance(hand.target["z1"], np.ndarray)
    again = Samples.load(hand.save(tmp_path / "hand.nc"))
    assert np.array_equal(again.target["z1"], [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- compiled terms


@pytest.fixture(scope="module")
def discrete():
    """paper_synthetic with a categorical ``z1`` (string levels) and a binary ``z2``."""
    seen, _, graph = sp.datasets.paper_synthetic(1000, seed=0)
    seen = seen.copy()
    seen["z1"] = pd.cut(seen.z1, 3, labels=["lo", "mid", "hi"]).astype(str)
    seen["z2"] = (seen.z2 > seen.z2.median()).astype(int)
    model = sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=30, progress=False)
    return model, seen


def test_per_draw_terms_equal_each_draws_scalar_target(exact, discrete):
    model, data = exact
    a, b = targets_from_rows(data, 6, seed=9)
    x = torch.randn(2 * 6, 3)
    t = Target(model, {"z1": a, "z2": sp.Interval(high=0.0)}, n=6)
    for i in range(12):
        one = Target(model, {"z1": float(a[i % 6]), "z2": sp.Interval(high=0.0)})
        for fn in ("log_likelihood", "squared_error"):
            got = getattr(t, fn)(x)[i]
            assert torch.allclose(got, getattr(one, fn)(x[i : i + 1])[0], atol=1e-5), fn
        got = t.event_probabilities(x)["z1"][i]
        assert torch.allclose(got, one.event_probabilities(x[i : i + 1])["z1"][0])
    model, _ = discrete
    z1, z2 = np.array(["lo", "hi", "mid", "hi"]), [0, 1, 1, 0]
    t = Target(model, {"z1": z1, "z2": z2})
    assert t.n == 4 and t.target["z2"].tolist() == z2
    x = torch.randn(4, 3)
    for i in range(4):
        one = Target(model, {"z1": str(z1[i]), "z2": z2[i]})
        assert torch.allclose(t.log_likelihood(x)[i], one.log_likelihood(x[i : i + 1])[0])
    with pytest.raises(TargetError, match=r"'xx' \(draw 1\) for 'z1' is not one of"):
        Target(model, {"z1": ["lo", "xx"]})
    with pytest.raises(TargetError, match=r"value 2 \(draw 1\) for 'z2': expected 0 or 1"):
        Target(model, {"z2": [0, 2]})


def test_discrete_per_draw_targets_round_trip(discrete, tmp_path):
    model, _ = discrete
    z1, z2 = np.array(["lo", "hi", "mid", "hi"]), [0, 1, 1, 0]
    s = model.sample({"z1": z1, "z2": z2}, n=4, chains=2, method="opt", steps=30)
    back = Samples.load(s.save(tmp_path / "d.nc"))
    assert back.target["z1"].tolist() == z1.tolist() and back.target["z2"].tolist() == z2
