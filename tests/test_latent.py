"""LatentSEDGE: X and Z learned from their observations (Sec. 4.1, Eqs. (5)-(7), App. B.1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sedge_pyro.datasets import paper_latent
from sedge_pyro.diagnostics import mcc
from sedge_pyro.errors import DataError, OptionError, SedgeError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.models.latent import LatentSEDGE


def _linear_instance(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """z1 <- x1, z2 <- x2, noiseless orthonormal linear mixing into 10 dimensions each.

    The latents have distinct variances and the mixings orthonormal rows, so a linear VAE's
    diagonal posterior lines its axes up with them (up to permutation and sign): the
    sparsity of Z given X is then learnable.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) * np.array([1.0, 0.5])
    z = np.column_stack([x[:, 0] + 0.3 * rng.normal(size=n), x[:, 1] + 0.15 * rng.normal(size=n)])
    a_x = np.linalg.qr(rng.normal(size=(10, 2)))[0].T
    a_z = np.linalg.qr(rng.normal(size=(10, 2)))[0].T
    return x, z, x @ a_x, z @ a_z


@pytest.fixture(scope="module")
def linear_fit() -> tuple[LatentSEDGE, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import torch

    torch.manual_seed(0)  # the networks' initialisation; fit seeds Pyro itself
    x, z, y_x, y_z = _linear_instance()
    m = LatentSEDGE(2, 2, 10, 10, hidden=(32,), alpha=1.0, beta=0.1)
    m.fit(y_x, y_z, steps=800, lr=5e-3, seed=0, progress=False)
    return m, x, z, y_x, y_z


def test_elbo_improves_on_paper_latent() -> None:
    data = paper_latent(3000, seed=0)
    y_x, y_z = data.observations_x(data.seen), data.observations_z(data.seen)
    m = LatentSEDGE(3, 2, 20, 20, hidden=(32,), alpha=0.05, beta=5e-4)
    m.fit(y_x, y_z, steps=300, lr=5e-3, progress=False)
    loss = np.asarray(m.history["loss"])
    assert len(loss) == 300 and np.all(np.isfinite(loss))
    k = len(loss) // 10
    start, end = loss[:k].mean(), loss[-k:].mean()
    assert end < start - 1.0, (start, end)


def test_elbo_improves_on_linear(linear_fit) -> None:
    m = linear_fit[0]
    loss = np.asarray(m.history["loss"])
    k = len(loss) // 10
    assert loss[-k:].mean() < loss[:k].mean() - 10.0


def test_mcc_of_z_and_x(linear_fit) -> None:
    m, x, z, y_x, y_z = linear_fit
    est = m.encode(y_x, y_z)
    r_z = mcc(est[m.spec_names], pd.DataFrame(z, columns=["z1", "z2"]))
    r_x = mcc(est[m.feature_names], pd.DataFrame(x, columns=["x1", "x2"]))
    assert r_z.mean > 0.9, r_z.per_variable
    assert min(r_z.per_variable.values()) > 0.9, r_z.per_variable
    assert r_x.mean > 0.9, r_x.per_variable


def test_masks_recover_sparsity(linear_fit) -> None:
    m, x, z, y_x, y_z = linear_fit
    assert isinstance(m.learned_graph(0.5), SpecGraph)
    assert _true_edges(m, x, z, y_x, y_z) == {("x1", "z1"), ("x2", "z2")}, m.masks()
    masks = m.masks()
    assert masks.shape == (2, 2)
    assert ((masks.to_numpy() > 0.9) | (masks.to_numpy() < 0.2)).all(), masks


def test_encode_decode_shapes_and_names(linear_fit) -> None:
    m, _, _, y_x, y_z = linear_fit
    assert list(m.encode(y_x=y_x[:5]).columns) == ["x1", "x2"]
    assert list(m.encode(y_z=y_z[:5]).columns) == ["z1", "z2"]
    both = m.encode(pd.DataFrame(y_x[:7]), y_z[:7])
    assert list(both.columns) == ["x1", "x2", "z1", "z2"] and len(both) == 7
    assert m.decode(x=both[["x1", "x2"]]).shape == (7, 10)
    assert m.decode(z=both[["z1", "z2"]].to_numpy()).shape == (7, 10)
    assert m.decode(x=both, z=both).shape == (7, 20)
    # noiseless linear data: encode then decode reconstructs the observations
    rec = m.decode(z=m.encode(y_z=y_z[:200]))
    assert np.corrcoef(rec.ravel(), y_z[:200].ravel())[0, 1] > 0.99


def test_named_latents() -> None:
    m = LatentSEDGE(2, 1, 3, 2, hidden=(4,), feature_names=["a", "b"], spec_names=["s"])
    rng = np.random.default_rng(0)
    m.fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), steps=3, progress=False)
    assert list(m.encode(rng.normal(size=(4, 3)), rng.normal(size=(4, 2))).columns) == [
        "a",
        "b",
        "s",
    ]
    assert m.masks().index.tolist() == ["s"] and m.masks().columns.tolist() == ["a", "b"]
    assert set(m.learned_graph(0.5).parents("s")) <= {"a", "b"}


def test_typed_errors() -> None:
    rng = np.random.default_rng(0)
    m = LatentSEDGE(2, 1, 3, 2, hidden=(4,))
    with pytest.raises(SedgeError, match="not fitted"):
        m.encode(y_x=rng.normal(size=(4, 3)))
    with pytest.raises(DataError, match="rows"):
        m.fit(rng.normal(size=(20, 3)), rng.normal(size=(19, 2)), steps=1, progress=False)
    with pytest.raises(DataError, match="y_x has shape"):
        m.fit(rng.normal(size=(20, 4)), rng.normal(size=(20, 2)), steps=1, progress=False)
    bad = rng.normal(size=(20, 2))
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        m.fit(rng.normal(size=(20, 3)), bad, steps=1, progress=False)
    with pytest.raises(OptionError, match="steps"):
        m.fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), steps=0, progress=False)
    m.fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), steps=2, progress=False)
    with pytest.raises(DataError, match="y_z has shape"):
        m.encode(y_z=rng.normal(size=(4, 3)))
    with pytest.raises(DataError, match="same rows"):
        m.encode(rng.normal(size=(4, 3)), rng.normal(size=(5, 2)))
    with pytest.raises(DataError, match="x has shape"):
        m.decode(x=rng.normal(size=(4, 3)))
    with pytest.raises(OptionError):
        m.decode()
    with pytest.raises(OptionError, match="threshold"):
        m.learned_graph(1.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_features": 0},
        {"obs_z_dim": 1.5},
        {"alpha": -1.0},
        {"beta": float("nan")},
        {"feature_names": ["a"]},
        {"spec_names": ["x1"]},
        {"z_prior": "flat"},
    ],
)
def test_bad_options(kwargs) -> None:
    args = {"n_features": 2, "n_specs": 1, "obs_x_dim": 3, "obs_z_dim": 2, **kwargs}
    with pytest.raises(OptionError):
        LatentSEDGE(**args)


def test_standard_z_prior_runs() -> None:
    _, _, y_x, y_z = _linear_instance(300)
    m = LatentSEDGE(2, 2, 10, 10, hidden=(8,), z_prior="standard")
    m.fit(y_x, y_z, steps=50, lr=5e-3, progress=False)
    loss = np.asarray(m.history["loss"])
    assert np.all(np.isfinite(loss)) and loss[-5:].mean() < loss[:5].mean()


def _true_edges(m: LatentSEDGE, x: np.ndarray, z: np.ndarray, y_x, y_z) -> set[tuple[str, str]]:
    """The learned graph's edges renamed to the true latents by the MCC matching."""
    est = m.encode(y_x, y_z)
    to_z = mcc(est[m.spec_names], pd.DataFrame(z, columns=["z1", "z2"])).matching
    to_x = mcc(est[m.feature_names], pd.DataFrame(x, columns=["x1", "x2"])).matching
    spec_of = {learned: true for true, learned in to_z.items()}
    feat_of = {learned: true for true, learned in to_x.items()}
    g = m.learned_graph(0.5)
    return {(feat_of[f], spec_of[s]) for s in m.spec_names for f in g.parents(s)}


@pytest.mark.slow
def test_sparsity_over_seeds() -> None:
    """Six data/initialisation seeds, 2,000 steps: how often the exact structure comes back.

    Measured: 5 of 6 exact; the sixth (seed 1) stays in a local optimum with dense masks
    (Z rotated against X) while its MCC of Z is still above 0.9.
    """
    import torch

    exact, mccs = 0, []
    for seed in range(6):
        torch.manual_seed(seed)
        x, z, y_x, y_z = _linear_instance(seed=seed)
        m = LatentSEDGE(2, 2, 10, 10, hidden=(32,), alpha=1.0, beta=0.1)
        m.fit(y_x, y_z, steps=2000, lr=5e-3, seed=seed, progress=False)
        exact += _true_edges(m, x, z, y_x, y_z) == {("x1", "z1"), ("x2", "z2")}
        est = m.encode(y_z=y_z)
        mccs.append(mcc(est, pd.DataFrame(z, columns=["z1", "z2"])).mean)
    assert exact >= 5, exact
    assert min(mccs) > 0.9, mccs
