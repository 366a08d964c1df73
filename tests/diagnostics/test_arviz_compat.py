"""ArviZ 0.x (``InferenceData``) and 1.x (``DataTree``): ``Samples`` round trips in memory and
through NetCDF under whichever is active, names holding ``/``, and the file handling of
``Samples.save``/``Samples.load`` (unique temporary names, no overwrite, clear errors).

``make test-arviz1`` runs this file with ``arviz_base`` importable and
``SEDGE_EXPECT_ARVIZ=1``; ``SEDGE_EXPECT_ARVIZ=0`` asserts the 0.x path.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import sys

import numpy as np
import pytest
import xarray as xr

import sedge_pyro as sp
from sedge_pyro import arviz_compat
from sedge_pyro.inference import Samples

FEATURES = ["x1", "x2", "x3"]


def _samples(features=FEATURES, per_draw="z1", interval="z2", seed=0):
    """A hand-built Samples with every kind of content: scalar, interval and per-draw
    targets (numbers and strings), float and bool stats, settings and info of several types.
    """
    rng = np.random.default_rng(seed)
    chains, draws = 2, 4
    target = {
        per_draw: rng.normal(size=draws),
        interval: sp.Interval(low=-1.0, high=0.5),
        "z3": 2.0,
        "z4": np.array(["lo", "hi", "mid", "hi"]),
    }
    stats = {
        "log_likelihood": rng.normal(size=(chains, draws)),
        "diverging": rng.random((chains, draws)) < 0.5,
    }
    observed = {
        f"{interval}_low": np.array([-1.0]),
        f"{interval}_high": np.array([0.5]),
        "z3": np.array([2.0]),
    }
    settings = {"steps": 30, "lr": 0.01, "guide": "iaf", "sizes": [8, 8], "extra": None}
    info = {"seed": seed, "seconds": 1.25, "status": "IDENTIFIABLE", "mcmc": ["x2"]}
    values = rng.normal(size=(chains, draws, len(features)))
    return Samples(values, features, target, "opt", settings, stats, info, observed)


def _assert_same(back: Samples, s: Samples) -> None:
    assert back.features == s.features
    assert np.array_equal(back.values, s.values)
    assert back.method == s.method
    assert set(back.target) == set(s.target)
    for k, v in s.target.items():
        if isinstance(v, np.ndarray):
            assert isinstance(back.target[k], np.ndarray) and back.target[k].tolist() == v.tolist()
        else:
            assert back.target[k] == v
    assert back.settings == s.settings
    assert back.info == s.info
    assert set(back.stats) == set(s.stats)
    for k, v in s.stats.items():
        assert back.stats[k].dtype == v.dtype and np.array_equal(back.stats[k], v)
    assert set(back.observed) == set(s.observed) | {
        k for k, v in s.target.items() if isinstance(v, np.ndarray)
    }


def _round_trip(s: Samples, how: str, tmp_path) -> Samples:
    if how == "memory":
        return Samples.from_inference_data(s.to_inference_data())
    return Samples.load(s.save(tmp_path / "draws.nc"))


# --------------------------------------------------------------------------- which ArviZ


def test_the_expected_arviz_api_is_active():
    has_base = importlib.util.find_spec("arviz_base") is not None
    assert arviz_compat.DATATREE == has_base
    data = _samples().to_inference_data()
    assert isinstance(data, xr.DataTree) == has_base
    expected = os.environ.get("SEDGE_EXPECT_ARVIZ")
    if expected is not None:
        # the CI job of each path says which it meant to test, so it cannot test one twice
        assert expected in ("0", "1"), f"SEDGE_EXPECT_ARVIZ={expected!r}: expected 0 or 1"
        assert arviz_compat.DATATREE == (expected == "1")
        assert type(data).__name__ == ("DataTree" if expected == "1" else "InferenceData")


def test_groups_and_attributes_look_the_same_under_both_apis():
    s = _samples()
    data = s.to_inference_data()
    assert arviz_compat.group_names(data) == ["posterior", "sample_stats", "observed_data"]
    post = data.posterior
    assert list(post.data_vars) == FEATURES
    assert post["x2"].dims == ("chain", "draw") and np.array_equal(post["x2"], s.values[..., 1])
    assert post.attrs["method"] == "opt" and post.attrs["features"] == '["x1", "x2", "x3"]'
    assert arviz_compat.root_attrs(data)["method"] == "opt"
    assert data.observed_data["z1"].dims == ("draw",)
    assert data.sample_stats["diverging"].dtype == bool
    ds = arviz_compat.group(data, "observed_data")
    assert isinstance(ds, xr.Dataset) and float(ds["z2_high"][0]) == 0.5
    with pytest.raises(sp.SedgeError, match="no group 'prior'"):
        arviz_compat.group(data, "prior")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("how", ["memory", "netcdf"])
def test_round_trip_keeps_everything(how, tmp_path):
    s = _samples()
    _assert_same(_round_trip(s, how, tmp_path), s)


@pytest.mark.parametrize("how", ["memory", "netcdf"])
def test_names_with_slashes_and_percents_round_trip(how, tmp_path):
    # node names may hold "/", which DataTree and NetCDF forbid in variable names; "%" is
    # the escape character, so a name that looks escaped must come back unchanged too
    features = ["a/b", "a%2Fb", "x"]
    s = _samples(features=features, per_draw="z/1", interval="w/2")
    back = _round_trip(s, how, tmp_path)
    _assert_same(back, s)
    assert back.target["w/2"] == sp.Interval(low=-1.0, high=0.5)
    assert list(s.summary(kind="diagnostics", round_to="none").index) == features


def test_summary_has_the_common_columns_under_both_apis():
    rng = np.random.default_rng(0)
    s = Samples(rng.normal(size=(4, 300, 2)), ["x1", "x2"], {"z1": 1.0}, "test")
    out = s.summary(round_to="none")
    assert list(out.index) == ["x1", "x2"]
    for column in ("mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"):
        assert column in out.columns
    assert np.allclose(out["mean"], s.values.mean(axis=(0, 1)))
    assert (out["r_hat"] < 1.02).all() and (out["ess_bulk"] > 600).all()


def test_a_datatree_is_accepted_under_either_api():
    s = _samples()
    data = s.to_inference_data()
    names = arviz_compat.group_names(data)
    tree = xr.DataTree.from_dict({g: arviz_compat.group(data, g) for g in names})
    tree.attrs = arviz_compat.root_attrs(data)
    _assert_same(Samples.from_inference_data(tree), s)


def test_data_without_the_features_attribute_keeps_its_variable_names():
    # files written before names were escaped: "%2F" in a variable name is taken literally
    data = arviz_compat.from_groups(
        {"posterior": {"a%2Fb": np.zeros((1, 3)), "y": np.ones((1, 3))}},
        attrs={"/": {"method": "plan", "target": '{"z1": 1.0}'}},
    )
    back = Samples.from_inference_data(data)
    assert back.features == ("a%2Fb", "y") and back.target == {"z1": 1.0}
    assert np.array_equal(back.values[..., 1], np.ones((1, 3)))


def test_summary_of_a_datatree_without_arviz_stats_says_what_to_install(monkeypatch):
    tree = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"x1": (("chain", "draw"), np.zeros((2, 5)))})}
    )
    monkeypatch.setitem(sys.modules, "arviz_stats", None)
    with pytest.raises(ImportError, match=r"pip install 'arviz-stats\[xarray\]'"):
        arviz_compat.summary(tree)


def test_netcdf_without_h5py_says_what_to_install(monkeypatch, tmp_path):
    # ArviZ 1.x does not install h5netcdf/h5py, which ArviZ 0.x depends on
    tree = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"x1": (("chain", "draw"), np.zeros((2, 5)))})}
    )
    find_spec = importlib.util.find_spec

    def no_h5py(name, *args):
        return None if name == "h5py" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_h5py)
    with pytest.raises(ImportError, match=r"need h5py.*pip install 'h5netcdf\[h5py\]'"):
        arviz_compat.to_netcdf(tree, tmp_path / "draws.nc")
    assert not (tmp_path / "draws.nc").exists()


def _arviz_0x_installed() -> bool:
    try:
        return importlib.metadata.version("arviz").startswith("0.")
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(
    importlib.util.find_spec("arviz_base") is None or not _arviz_0x_installed(),
    reason="needs both arviz 0.x and arviz_base (make test-arviz1)",
)
@pytest.mark.parametrize("write_datatree", [False, True])
def test_files_of_one_api_load_under_the_other(write_datatree, tmp_path, monkeypatch):
    s = _samples(features=["a/b", "x"])
    monkeypatch.setattr(arviz_compat, "DATATREE", write_datatree)
    path = s.save(tmp_path / "draws.nc")
    monkeypatch.setattr(arviz_compat, "DATATREE", not write_datatree)
    _assert_same(Samples.load(path), s)


# --------------------------------------------------------------------------- PSIS


def test_psislw_normalises_and_estimates_a_known_tail():
    # w = U^(-k) has a generalized Pareto tail of shape k
    rng = np.random.default_rng(0)
    k = 0.8
    lw = -k * np.log(rng.random(4000))
    smoothed, khat = arviz_compat.psislw(lw)
    assert smoothed.shape == lw.shape and abs(np.logaddexp.reduce(smoothed)) < 1e-9
    assert isinstance(khat, float) and abs(khat - k) < 0.15
    # a light tail: a small k-hat
    assert arviz_compat.psislw(0.1 * rng.normal(size=4000))[1] < 0.5


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".nc", ".csv"])
def test_save_leaves_a_users_file_with_the_old_temporary_name_alone(suffix, tmp_path):
    s = _samples()
    theirs = tmp_path / f".draws{suffix}.tmp"
    theirs.write_text("not ours")
    path = s.save(tmp_path / f"draws{suffix}")
    assert theirs.read_text() == "not ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([theirs.name, path.name])
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("hard_links", [True, False])
def test_save_never_replaces_a_file_that_appears_while_it_writes(hard_links, tmp_path, monkeypatch):
    s = _samples()
    path = tmp_path / "draws.csv"
    to_dataframe = Samples.to_dataframe

    def another_writer_wins(self, **kwargs):
        path.write_text("theirs")  # after save's check, before it publishes
        return to_dataframe(self, **kwargs)

    monkeypatch.setattr(Samples, "to_dataframe", another_writer_wins)
    if not hard_links:

        def no_link(src, dst):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(sp.SedgeError, match=r"draws\.csv' exists; pass overwrite=True"):
        s.save(path)
    assert path.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["draws.csv"]
    monkeypatch.setattr(Samples, "to_dataframe", to_dataframe)
    path.unlink()
    s.save(path)  # no file there: published (by a hard link, or by the rename fallback)
    assert path.read_text().startswith("chain,draw,x1,x2,x3")
    assert [p.name for p in tmp_path.iterdir()] == ["draws.csv"]


def test_save_to_a_directory_names_it(tmp_path):
    (tmp_path / "out.nc").mkdir()
    with pytest.raises(sp.SedgeError, match=r"out\.nc' is a directory"):
        _samples().save(tmp_path / "out.nc", overwrite=True)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists open files by /proc")
def test_read_data_is_in_memory_and_the_file_closed(tmp_path):
    s = _samples()
    path = s.save(tmp_path / "draws.nc")
    data = arviz_compat.from_netcdf(path)
    opened = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            opened.add(os.readlink(f"/proc/self/fd/{fd}"))
    assert str(path) not in opened
    _assert_same(Samples.from_inference_data(data), s)


def test_load_errors_name_the_path(tmp_path):
    (tmp_path / "folder.nc").mkdir()
    with pytest.raises(sp.SedgeError, match=r"folder\.nc' is a directory"):
        Samples.load(tmp_path / "folder.nc")
    with pytest.raises(sp.SedgeError, match=r"missing\.nc' does not exist"):
        Samples.load(tmp_path / "missing.nc")
    (tmp_path / "garbage.nc").write_bytes(b"\x00\x01 not a NetCDF file \xff" * 10)
    with pytest.raises(sp.SedgeError, match=r"garbage\.nc' cannot be read as a NetCDF file"):
        Samples.load(tmp_path / "garbage.nc")
    (tmp_path / "empty.nc").write_bytes(b"")
    with pytest.raises(sp.SedgeError, match=r"empty\.nc' cannot be read"):
        Samples.load(tmp_path / "empty.nc")
    # NetCDF, but no posterior group: not a file of samples
    xr.Dataset({"a": ("i", np.arange(3.0))}).to_netcdf(tmp_path / "plain.nc", engine="h5netcdf")
    with pytest.raises(sp.SedgeError, match=r"plain\.nc' is not a file of samples.*posterior"):
        Samples.load(tmp_path / "plain.nc")
