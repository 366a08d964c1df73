"""Residual ICA that re-aligns learned latents (models/align.py, App. B.1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sedge_pyro.datasets import paper_latent
from sedge_pyro.diagnostics import mcc
from sedge_pyro.models.align import fast_ica, match_basis, residuals
from sedge_pyro.models.latent import LatentSEDGE


def _recovery(estimated: np.ndarray, sources: np.ndarray) -> float:
    """The MCC of the recovered components with the true sources (1: perfect unmixing)."""
    names = [f"s{j}" for j in range(sources.shape[1])]
    est = pd.DataFrame(estimated, columns=[f"e{j}" for j in range(estimated.shape[1])])
    return mcc(est, pd.DataFrame(sources, columns=names), method="pearson").mean


@pytest.mark.parametrize("k", [2, 3, 5])
def test_fast_ica_unmixes_uniform_and_laplace_sources(k: int) -> None:
    rng = np.random.default_rng(k)
    s = np.column_stack(
        [rng.uniform(-1, 1, 8000) if j % 2 else rng.laplace(size=8000) for j in range(k)]
    )
    mixing = rng.uniform(0, 1, (k, k)) + np.eye(k)
    w = fast_ica(s @ mixing.T, seed=0)
    out = (s @ mixing.T) @ w.T
    assert _recovery(out, s) > 0.99
    assert _recovery(s @ mixing.T, s) < 0.9  # the mixing was real
    assert np.allclose(out.std(0, ddof=1), 1.0, atol=1e-6)  # unit variance per component


def test_fast_ica_cannot_unmix_gaussians() -> None:
    """The known limit: Gaussian sources have no preferred axes (why candidates are scored)."""
    rng = np.random.default_rng(0)
    s = rng.normal(size=(8000, 2))
    rotations = [_recovery(s @ fast_ica(s, seed=seed).T, s) for seed in range(6)]
    assert min(rotations) < 0.9


def test_residuals_remove_a_nonlinear_mean() -> None:
    rng = np.random.default_rng(1)
    u = rng.uniform(-2, 2, (3000, 2))
    noise = rng.uniform(-0.1, 0.1, 3000)
    t = np.sin(u[:, :1]) + u[:, 1:] ** 2 + noise[:, None]
    r = residuals(u, t, seed=0)
    assert np.corrcoef(r[:, 0], noise)[0, 1] > 0.9
    assert abs(r.mean()) < 0.02


def test_match_basis_keeps_slots_signs_and_units() -> None:
    rng = np.random.default_rng(2)
    cur = rng.normal(size=(500, 3)) * np.array([1.0, 2.0, 0.5])
    perm = np.array([[0.0, 0.0, -4.0], [3.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    out = match_basis(perm, cur)
    assert np.allclose(out, np.eye(3), atol=1e-12)


@pytest.fixture(scope="module")
def paper_fit() -> tuple[LatentSEDGE, dict, object]:
    """App. B.1's data, small: one fit without the alignment, its MCC, then aligned."""
    import torch

    data = paper_latent(8000, seed=2, obs_x_dim=8, obs_z_dim=6)
    y_x, y_z = data.observations_x(data.seen), data.observations_z(data.seen)
    torch.manual_seed(0)
    m = LatentSEDGE(3, 2, 8, 6, hidden=(32,), decoder_hidden=())
    m.fit(y_x, y_z, steps=3000, lr=3e-3, seed=0, progress=False, align=False)
    assert m.alignment is None
    before = {
        "x": mcc(m.encode(y_x=y_x), data.seen_latent[["x1", "x2", "x3"]]).per_variable,
        "z": mcc(m.encode(y_z=y_z), data.seen_latent[["z1", "z2"]]).per_variable,
    }
    m.align(y_x, y_z, seed=0, progress=False)
    return m, before, data


@pytest.mark.slow  # one shared fit of a minute or more; .ci/run runs it
def test_alignment_recovers_the_latents(paper_fit) -> None:
    """The selection makes the Seen features dependent (corr(x1, x3) = 0.22), so the
    factorised prior's ICA tilts them (measured here: MCC 0.72 and 0.84 for x1, x3); the
    residual ICA restores features and specs.
    """
    m, before, data = paper_fit
    y_x, y_z = data.observations_x(data.seen), data.observations_z(data.seen)
    truth = data.seen_latent
    x_after = mcc(m.encode(y_x=y_x), truth[["x1", "x2", "x3"]]).per_variable
    z_after = mcc(m.encode(y_z=y_z), truth[["z1", "z2"]]).per_variable
    assert min(before["x"].values()) < 0.9, before
    assert min(x_after.values()) > 0.98, x_after
    assert min(z_after.values()) > 0.995, z_after
    assert all(z_after[k] >= before["z"][k] for k in z_after), (before, z_after)
    assert m.alignment["chosen"] == "x:ica z:ica", m.alignment
    labels = {f"x:{a} z:{b}" for a in ("vae", "ica") for b in ("vae", "ica")}
    assert set(m.alignment["scores"]) == labels


@pytest.mark.slow  # one shared fit of a minute or more; .ci/run runs it
def test_aligned_encode_decode_round_trip(paper_fit, tmp_path) -> None:
    aligned, _, data = paper_fit
    y_x, y_z = data.observations_x(data.oracle), data.observations_z(data.oracle)
    enc = aligned.encode(y_x, y_z)
    back = aligned.decode(enc[aligned.feature_names], enc[aligned.spec_names])
    obs = np.hstack([np.asarray(y_x), np.asarray(y_z)])
    # linear decoders, noiseless observations: the round trip is near exact
    assert np.abs(back - obs).max() < 0.05 * np.abs(obs).max()
    path = aligned.save(tmp_path / "aligned.pt")
    again = LatentSEDGE.load(path)
    pd.testing.assert_frame_equal(again.encode(y_x, y_z), enc)
    assert again.alignment == aligned.alignment
    pd.testing.assert_frame_equal(again.masks(), aligned.masks())
    # training on continues in the aligned bases, and fit re-aligns from there
    seen_x, seen_z = data.observations_x(data.seen), data.observations_z(data.seen)
    again.fit(seen_x, seen_z, steps=50, lr=1e-3, seed=1, progress=False)
    truth = data.oracle_latent
    r = mcc(again.encode(y_x, y_z)[again.spec_names], truth[["z1", "z2"]]).per_variable
    assert min(r.values()) > 0.995, r


def test_align_errors() -> None:
    from sedge_pyro.errors import DataError, SedgeError

    rng = np.random.default_rng(0)
    m = LatentSEDGE(2, 1, 3, 2, hidden=(4,))
    with pytest.raises(SedgeError, match="not fitted"):
        m.align(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)))
    m.fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), steps=2, progress=False, align=False)
    with pytest.raises(DataError, match="same rows"):
        m.align(rng.normal(size=(20, 3)), rng.normal(size=(19, 2)))
    with pytest.raises(DataError, match="at least 10"):
        m.align(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    with pytest.raises(DataError, match="y_x"):
        m.align(rng.normal(size=(20, 4)), rng.normal(size=(20, 2)))


def test_degenerate_candidates_are_dropped() -> None:
    """Constant spec observations give constant specs: no ICA candidate for them."""
    rng = np.random.default_rng(0)
    assert np.isnan(match_basis(np.eye(2), np.ones((50, 2)))).all()
    m = LatentSEDGE(2, 1, 5, 4, hidden=(8,))
    m.fit(rng.normal(size=(50, 5)), np.ones((50, 4)), steps=5, progress=False)
    assert not any("z:ica" in label for label in m.alignment["scores"]), m.alignment
    assert np.isfinite(m.encode(rng.normal(size=(3, 5)), np.ones((3, 4))).to_numpy()).all()
