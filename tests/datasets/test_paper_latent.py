import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.datasets import LatentData, paper_latent, paper_synthetic
from sedge_pyro.diagnostics import mcc

X, Z = ["x1", "x2", "x3"], ["z1", "z2"]


@pytest.fixture(scope="module")
def data():
    return paper_latent(5000, seed=3)


def test_shapes_and_columns(data):
    assert isinstance(data, LatentData)
    cols = [f"yx_{j}" for j in range(20)] + [f"yz_{j}" for j in range(20)]
    assert list(data.seen.columns) == cols and list(data.oracle.columns) == cols
    assert len(data.seen) + len(data.oracle) == 5000
    assert len(data.seen_latent) == len(data.seen) and len(data.oracle_latent) == len(data.oracle)
    assert list(data.seen_latent.columns) == X + Z
    assert data.mixing_x.shape == (3, 20) and data.mixing_z.shape == (2, 20)
    assert data.observations_x(data.oracle).shape == (len(data.oracle), 20)
    assert data.observations_z(data.seen).shape == (len(data.seen), 20)
    small = paper_latent(300, seed=0, obs_x_dim=4, obs_z_dim=7)
    assert small.columns_x == ["yx_0", "yx_1", "yx_2", "yx_3"]
    assert small.observations_z(small.seen).shape == (len(small.seen), 7)


def test_latent_frames_are_paper_synthetics_rows_and_graph(data):
    ref = paper_synthetic(5000, seed=3)
    pd.testing.assert_frame_equal(data.seen_latent, ref.seen[X + Z])
    pd.testing.assert_frame_equal(data.oracle_latent, ref.oracle[X + Z])
    assert data.graph == ref.graph
    assert data.graph.parents("z1") == ref.graph.parents("z1")
    seen, oracle, graph = data
    assert seen is data.seen and oracle is data.oracle and graph is data.graph


def test_observations_are_exact_mixtures_without_noise(data):
    for df, lat in ((data.seen, data.seen_latent), (data.oracle, data.oracle_latent)):
        np.testing.assert_array_equal(data.observations_x(df), lat[X].to_numpy() @ data.mixing_x)
        np.testing.assert_array_equal(data.observations_z(df), lat[Z].to_numpy() @ data.mixing_z)


def test_mixing_entries_are_uniform_on_unit_interval():
    d = paper_latent(50, seed=0, obs_x_dim=400, obs_z_dim=400)
    for a in (d.mixing_x, d.mixing_z):
        assert a.min() >= 0.0 and a.max() < 1.0
        assert a.mean() == pytest.approx(0.5, abs=0.02)
        assert not a.flags.writeable


def test_documented_draw_order():
    d = paper_latent(100, seed=11, obs_x_dim=5, obs_z_dim=6, noise=0.1)
    rng = np.random.default_rng([11, 1])
    a_x, a_z = rng.uniform(0, 1, (3, 5)), rng.uniform(0, 1, (2, 6))
    np.testing.assert_array_equal(d.mixing_x, a_x)
    np.testing.assert_array_equal(d.mixing_z, a_z)
    lat = pd.concat([d.seen_latent, d.oracle_latent], ignore_index=True)
    y_x = lat[X].to_numpy() @ a_x + rng.normal(0, 0.1, (100, 5))
    y_z = lat[Z].to_numpy() @ a_z + rng.normal(0, 0.1, (100, 6))
    both = pd.concat([d.seen, d.oracle], ignore_index=True)
    np.testing.assert_array_equal(d.observations_x(both), y_x)
    np.testing.assert_array_equal(d.observations_z(both), y_z)


def test_reproducible_and_seed_dependent():
    a, b = paper_latent(1000, seed=5), paper_latent(1000, seed=5)
    pd.testing.assert_frame_equal(a.seen, b.seen)
    pd.testing.assert_frame_equal(a.oracle, b.oracle)
    np.testing.assert_array_equal(a.mixing_x, b.mixing_x)
    c = paper_latent(1000, seed=6)
    assert not np.allclose(a.mixing_x, c.mixing_x)
    # the mixing does not depend on the noise, nor on the other block's dimension
    d = paper_latent(1000, seed=5, noise=0.3, obs_z_dim=3)
    np.testing.assert_array_equal(a.mixing_x, d.mixing_x)


def test_noise_has_the_requested_sd():
    d = paper_latent(4000, seed=2, noise=0.05)
    resid_x = d.observations_x(d.seen) - d.seen_latent[X].to_numpy() @ d.mixing_x
    resid_z = d.observations_z(d.oracle) - d.oracle_latent[Z].to_numpy() @ d.mixing_z
    assert resid_x.std() == pytest.approx(0.05, rel=0.03)
    assert resid_z.std() == pytest.approx(0.05, rel=0.05)
    assert abs(resid_x.mean()) < 0.002
    assert d.noise == 0.05


def test_split_rule_holds_on_the_latent_truth(data):
    o, s = data.oracle_latent, data.seen_latent
    assert len(o) > 0
    assert ((o.z1 < 0.8) & (o.z2 > 1.0)).all()
    assert not ((s.z1 < 0.8) & (s.z2 > 1.0)).any()
    assert data.truth is not None and data.truth.novel.keys() == {"z1", "z2"}


def test_oracle_linear_encoder_recovers_the_latents(data):
    # least squares of X on [Y_X, 1] over the Seen rows, applied to the Oracle rows
    def design(df, obs):
        y = obs(df)
        return np.column_stack([y, np.ones(len(y))])

    for obs, names in ((data.observations_x, X), (data.observations_z, Z)):
        coef, *_ = np.linalg.lstsq(design(data.seen, obs), data.seen_latent[names], rcond=None)
        shuffled = coef[:, ::-1]  # a permuted encoder: mcc must undo the order
        est = design(data.oracle, obs) @ shuffled
        r = mcc(est, data.oracle_latent[names])
        assert r.mean > 0.99
        assert r.matching == {n: str(len(names) - 1 - j) for j, n in enumerate(names)}
    # one random direction of Y_X is no encoder of all three features
    rng = np.random.default_rng(0)
    y = data.observations_x(data.oracle) @ rng.normal(size=(20, 3))
    assert mcc(y, data.oracle_latent[X]).mean < 0.99


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"obs_x_dim": 2}, "obs_x_dim=2: expected an integer >= 3"),
        ({"obs_z_dim": 1}, "obs_z_dim=1: expected an integer >= 2"),
        ({"obs_x_dim": 4.0}, "obs_x_dim=4.0"),
        ({"obs_z_dim": True}, "obs_z_dim=True"),
        ({"noise": -0.1}, "noise=-0.1"),
        ({"noise": float("nan")}, "noise=nan"),
    ],
)
def test_bad_options_are_option_errors(kwargs, match):
    with pytest.raises(sp.OptionError, match=match):
        paper_latent(100, **kwargs)


def test_bad_rows_and_missing_columns():
    with pytest.raises(sp.DataError, match="n=0"):
        paper_latent(0)
    d = paper_latent(200, seed=0, obs_x_dim=3, obs_z_dim=2)
    with pytest.raises(sp.DataError, match="no column 'yx_0'"):
        d.observations_x(d.seen_latent)
