"""``Samples``: the pandas and ArviZ views, NetCDF/CSV files, and R-hat on known cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from known_models import exact_linear_gaussian

import sedge_pyro as sp
from sedge_pyro import arviz_compat
from sedge_pyro.inference import Samples

TARGET = {"z1": 1.0, "z2": -1.0}
MIXED = {"z1": 1.0, "z2": sp.Interval(high=0.5)}
FEATURES = ["x1", "x2", "x3"]


@pytest.fixture(scope="module")
def model():
    return exact_linear_gaussian(20_000, seed=0)[0]


@pytest.fixture(scope="module")
def samples(model):
    return model.sample(MIXED, n=200, method="plan", chains=3, seed=0)


def test_dataframe_shape_and_index(samples):
    df = samples.to_dataframe()
    assert list(df.columns) == FEATURES and df.shape == (600, 3)
    assert np.array_equal(df.to_numpy(), samples.values.reshape(600, 3))
    indexed = samples.to_dataframe(index=True)
    assert list(indexed.columns) == ["chain", "draw", *FEATURES]
    assert indexed["chain"].tolist() == [0] * 200 + [1] * 200 + [2] * 200
    assert indexed["draw"].tolist() == list(range(200)) * 3
    row = indexed.iloc[250]
    assert np.array_equal(row[FEATURES].to_numpy(dtype=float), samples.values[1, 50])


def test_inference_data_groups(samples):
    idata = samples.to_inference_data()
    assert set(arviz_compat.group_names(idata)) == {"posterior", "sample_stats", "observed_data"}
    post = idata.posterior
    assert list(post.data_vars) == FEATURES
    for f in FEATURES:
        assert post[f].dims == ("chain", "draw") and post[f].shape == (3, 200)
    assert np.array_equal(post["x2"].values, samples.values[:, :, 1])
    stats = idata.sample_stats
    assert "log_likelihood" in stats and stats["log_likelihood"].dims == ("chain", "draw")
    assert np.all(np.isfinite(stats["log_likelihood"].values))
    obs = idata.observed_data
    assert float(obs["z1"].values[0]) == 1.0
    assert float(obs["z2_high"].values[0]) == 0.5 and float(obs["z2_low"].values[0]) == -np.inf
    assert post.attrs["method"] == "plan"
    assert post.attrs["target"] == '{"z1": 1.0, "z2": {"low": null, "high": 0.5}}'
    assert post.attrs["setting_oversample"] == samples.settings["oversample"]
    assert post.attrs["info_seed"] == 0 and post.attrs["info_status"] == "IDENTIFIABLE"


def test_netcdf_round_trip(samples, tmp_path):
    path = samples.save(tmp_path / "draws.nc")
    back = Samples.load(path)
    assert np.array_equal(back.values, samples.values)
    assert back.features == samples.features
    assert back.target == samples.target == {"z1": 1.0, "z2": sp.Interval(high=0.5)}
    assert back.method == "plan"
    assert back.settings == samples.settings
    assert back.info["status"] == samples.info["status"] and back.info["seed"] == 0
    assert set(back.stats) == set(samples.stats)
    assert np.array_equal(back.stats["log_likelihood"], samples.stats["log_likelihood"])
    assert set(back.observed) == {"z1", "z2_low", "z2_high"}


def test_csv_save(samples, tmp_path):
    path = samples.save(tmp_path / "draws.csv")
    df = pd.read_csv(path)
    assert list(df.columns) == ["chain", "draw", *FEATURES]
    assert np.allclose(df[FEATURES].to_numpy(), samples.to_numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("suffix", [".nc", ".csv"])
def test_overwrite_refused_then_allowed(samples, tmp_path, suffix):
    path = tmp_path / f"draws{suffix}"
    path.write_text("keep me")
    with pytest.raises(sp.SedgeError, match="exists.*overwrite=True"):
        samples.save(path)
    assert path.read_text() == "keep me"
    assert not list(tmp_path.glob(".*tmp"))
    samples.save(path, overwrite=True)
    assert path.read_bytes() != b"keep me"
    if suffix == ".nc":
        assert np.array_equal(Samples.load(path).values, samples.values)


def test_bad_suffix_and_missing_file(samples, tmp_path):
    with pytest.raises(sp.SedgeError, match="draws.txt"):
        samples.save(tmp_path / "draws.txt")
    with pytest.raises(sp.SedgeError, match="nothing.nc"):
        Samples.load(tmp_path / "nothing.nc")


def test_values_and_stats_shapes_are_checked():
    with pytest.raises(sp.SedgeError, match=r"\(chains, draws, 2\)"):
        Samples(np.zeros((3, 2)), ["x1", "x2"], {"z1": 1}, "plan")
    with pytest.raises(sp.SedgeError, match="'lp'"):
        Samples(np.zeros((2, 3, 1)), ["x1"], {"z1": 1}, "plan", stats={"lp": np.zeros(3)})


def test_rhat_of_iid_plan_chains_is_near_one(model):
    # plan draws are independent, so the chains agree: ArviZ's R-hat within 1% of 1
    s = model.sample(TARGET, n=1000, method="plan", chains=4, seed=0)
    direct = arviz_compat.summary(s.to_inference_data(), round_to="none")
    assert (direct["r_hat"] < 1.01).all(), direct["r_hat"]
    assert (direct["ess_bulk"] > 2000).all()
    # but they are no Markov chain: summary() blanks R-hat/ESS and says why
    summary = s.summary(round_to="none")
    assert list(summary.index) == FEATURES
    assert summary["r_hat"].isna().all() and summary["ess_bulk"].isna().all()
    assert "importance resampling" in summary.attrs["note"]
    assert summary["mean"].equals(direct["mean"])


def test_rhat_flags_chains_with_different_means():
    # known answer: four chains centred at 0, 0, 1, 1 with unit noise; the between-chain
    # variance gives R-hat ~ sqrt(1 + 0.25 / 1) ~ 1.12
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 500, 1)) + np.array([0.0, 0.0, 1.0, 1.0])[:, None, None]
    s = Samples(values, ["x1"], {"z1": 1.0}, "test")
    r_hat = float(s.summary(round_to="none")["r_hat"]["x1"])
    assert r_hat > 1.1
    mixed = Samples(rng.normal(size=(4, 500, 1)), ["x1"], {"z1": 1.0}, "test")
    assert float(mixed.summary(round_to="none")["r_hat"]["x1"]) < 1.01
