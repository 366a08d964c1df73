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
    m.fit(y_x, y_z, steps=300, lr=5e-3, progress=False, align=False)
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
    m.fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), steps=3, progress=False, align=False)
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
    for bad, match in (({"lr": "fast"}, "lr='fast'"), ({"device": "gpu"}, "device='gpu'")):
        with pytest.raises(OptionError, match=match):
            m.fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), progress=False, **bad)
    m.fit(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), steps=2, progress=False, align=False)
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
        {"prior_components": 0},
        {"full_cov": ("y",)},
        {"hidden": ("a",)},
        {"mask_init": 2.0},
        {"temperature": -1.0},
    ],
)
def test_bad_options(kwargs) -> None:
    args = {"n_features": 2, "n_specs": 1, "obs_x_dim": 3, "obs_z_dim": 2, **kwargs}
    with pytest.raises(OptionError):
        LatentSEDGE(**args)


def test_standard_z_prior_runs() -> None:
    _, _, y_x, y_z = _linear_instance(300)
    m = LatentSEDGE(2, 2, 10, 10, hidden=(8,), z_prior="standard")
    m.fit(y_x, y_z, steps=50, lr=5e-3, progress=False, align=False)
    loss = np.asarray(m.history["loss"])
    assert np.all(np.isfinite(loss)) and loss[-5:].mean() < loss[:5].mean()


def _true_edges(m: LatentSEDGE, x: np.ndarray, z: np.ndarray, y_x, y_z) -> set[tuple[str, str]]:
    """The learned graph's edges renamed to the true latents by the MCC matching."""
    est = m.encode(y_x, y_z)
    to_z = mcc(est[m.spec_names], pd.DataFrame(z, columns=["z1", "z2"])).matching
    names = [f"x{j + 1}" for j in range(x.shape[1])]
    to_x = mcc(est[m.feature_names], pd.DataFrame(x, columns=names)).matching
    spec_of = {learned: true for true, learned in to_z.items()}
    feat_of = {learned: true for true, learned in to_x.items()}
    g = m.learned_graph(0.5)
    return {(feat_of[f], spec_of[s]) for s in m.spec_names for f in g.parents(s)}


@pytest.mark.slow
def test_sparsity_over_seeds() -> None:
    """Six data/initialisation seeds, 2,000 steps: how often the exact structure comes back.

    Measured with the recipe this instance was built for (Gaussian latents, so the mixture
    prior cannot help: ``z_prior="conditional"``, ``prior_components=1``, diagonal
    posteriors): 5 of 6 exact; the sixth (seed 1) stays in a local optimum with dense masks
    (Z rotated against X) while its MCC of Z is still above 0.9. The package defaults get 4
    of 6 here.
    """
    import torch

    exact, mccs = 0, []
    for seed in range(6):
        torch.manual_seed(seed)
        x, z, y_x, y_z = _linear_instance(seed=seed)
        m = LatentSEDGE(
            2,
            2,
            10,
            10,
            hidden=(32,),
            alpha=1.0,
            beta=0.1,
            z_prior="conditional",
            prior_components=1,
            full_cov=(),
        )
        m.fit(y_x, y_z, steps=2000, lr=5e-3, seed=seed, progress=False)
        exact += _true_edges(m, x, z, y_x, y_z) == {("x1", "z1"), ("x2", "z2")}
        est = m.encode(y_z=y_z)
        mccs.append(mcc(est, pd.DataFrame(z, columns=["z1", "z2"])).mean)
    assert exact >= 5, exact
    assert min(mccs) > 0.9, mccs


def _fig2b_instance(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, ...]:
    """Fig. 2(b) (``z1 <- x1, x2``, ``z2 <- x2, x3``) seen through orthonormal mixtures.

    Independent uniform features (non-Gaussian, so the factorised prior pins their axes as in
    linear ICA) and Gaussian spec noise of two different scales (so the conditional
    independence of Z given X pins the specs' axes). Fitted from ``torch.manual_seed(0)``,
    the exact graph comes back on data seeds 0, 1 and 2 of 0-6 (3 of 7; seeding the fit with
    the data seed instead: 0 and 4). The others stay in a local optimum with Z partly rotated
    (MCC 0.81-0.91), and the final loss does not reliably tell them apart, so restarts are no
    cure yet. The selection drops the corner
    ``z1 > 1, z2 < -0.5``: that combination is never seen, each value alone is.
    Returns ``x, z, y_x, y_z`` of the seen rows and ``z, y_z`` of the dropped ones.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.7, 1.7, (n, 3)) * np.array([1.0, 0.7, 0.5])
    z = np.column_stack([x[:, 0] + x[:, 1], x[:, 1] + x[:, 2]])
    z = z + rng.normal(size=(n, 2)) * np.array([0.3, 0.15])
    a_x = np.linalg.qr(rng.normal(size=(8, 3)))[0].T
    a_z = np.linalg.qr(rng.normal(size=(6, 2)))[0].T
    gone = (z[:, 0] > 1.0) & (z[:, 1] < -0.5)
    keep = ~gone
    return x[keep], z[keep], x[keep] @ a_x, z[keep] @ a_z, z[gone], z[gone] @ a_z


@pytest.fixture(scope="module")
def fig2b_fit() -> tuple[LatentSEDGE, tuple[np.ndarray, ...]]:
    import torch

    torch.manual_seed(0)
    data = _fig2b_instance()
    m = LatentSEDGE(3, 2, 8, 6, hidden=(32,), beta=0.05)
    m.fit(data[2], data[3], steps=1500, lr=5e-3, seed=0, progress=False)
    return m, data


@pytest.mark.slow  # one shared fit of a minute or more; .ci/run runs it
def test_fig2b_structure_and_mcc(fig2b_fit) -> None:
    m, (x, z, y_x, y_z, _, _) = fig2b_fit
    edges = _true_edges(m, x, z, y_x, y_z)
    assert edges == {("x1", "z1"), ("x2", "z1"), ("x2", "z2"), ("x3", "z2")}, m.masks()
    est = m.encode(y_x, y_z)
    r_x = mcc(est[m.feature_names], pd.DataFrame(x, columns=["x1", "x2", "x3"]))
    r_z = mcc(est[m.spec_names], pd.DataFrame(z, columns=["z1", "z2"]))
    assert min(r_x.per_variable.values()) > 0.95, r_x.per_variable
    assert min(r_z.per_variable.values()) > 0.9, r_z.per_variable


@pytest.mark.slow  # one shared fit of a minute or more; .ci/run runs it
def test_learned_graph_round_trips_into_identify(fig2b_fit) -> None:
    """The learned graph, the encoded seen rows and a target read off the dropped rows'
    encodings give CONSERVATIVE with X_c the learned counterpart of the true shared x2."""
    from sedge_pyro.expr import Interval
    from sedge_pyro.identify import Status, identify

    m, (x, z, y_x, y_z, z_gone, y_z_gone) = fig2b_fit
    seen = m.encode(y_x, y_z)
    g = SpecGraph.from_json(m.learned_graph().to_json())  # through its serialised form too
    gone = m.encode(y_z=y_z_gone)
    # the unseen combination in learned units: the middle half of the dropped rows' codes
    target = {
        s: Interval(float(gone[s].quantile(0.25)), float(gone[s].quantile(0.75)))
        for s in m.spec_names
    }
    res = identify(g, target, seen=seen)
    assert res.status is Status.CONSERVATIVE, res
    shared_x2 = mcc(seen[m.feature_names], pd.DataFrame(x, columns=["x1", "x2", "x3"]))
    assert res.shared == frozenset({shared_x2.matching["x2"]}), (res.shared, m.masks())


@pytest.mark.slow  # one shared fit of a minute or more; .ci/run runs it
def test_save_load_and_checkpoint(tmp_path, fig2b_fit) -> None:
    m, (x, z, y_x, y_z, _, _) = fig2b_fit
    path = m.save(tmp_path / "latent.pt")
    back = LatentSEDGE.load(path)
    assert back.config() == m.config()
    pd.testing.assert_frame_equal(back.encode(y_x[:50], y_z[:50]), m.encode(y_x[:50], y_z[:50]))
    np.testing.assert_allclose(back.decode(x=np.zeros((2, 3))), m.decode(x=np.zeros((2, 3))))
    pd.testing.assert_frame_equal(back.masks(), m.masks())
    assert back.history == m.history
    with pytest.raises(SedgeError, match="exists"):
        m.save(path, overwrite=False)
    with pytest.raises(SedgeError, match="does not exist"):
        LatentSEDGE.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(SedgeError, match="not a saved LatentSEDGE"):
        LatentSEDGE.load(tmp_path / "junk.pt")
    # fit writes checkpoints; one can be loaded and trained further
    ck = tmp_path / "ck" / "fit.pt"
    small = LatentSEDGE(3, 2, 8, 6, hidden=(8,))
    written: list = []
    save = small.save

    def keep_each(path, **kw):  # every checkpoint to its own file, to look at the first
        written.append(save(tmp_path / f"ck{len(written)}.pt", **kw))
        return written[-1]

    small.save = keep_each
    small.fit(
        y_x[:200],
        y_z[:200],
        steps=3,
        checkpoint=ck,
        checkpoint_every=2,
        progress=False,
        align=False,
    )
    assert len(written) == 2  # at step 2 and at the end
    first = LatentSEDGE.load(written[0])  # taken mid-fit, and usable
    assert len(first.history["loss"]) == 2
    assert first.encode(y_z=y_z[:3]).shape == (3, 2)
    small = LatentSEDGE(3, 2, 8, 6, hidden=(8,))
    small.fit(
        y_x[:200],
        y_z[:200],
        steps=6,
        checkpoint=ck,
        checkpoint_every=3,
        progress=False,
        align=False,
    )
    again = LatentSEDGE.load(ck)
    assert list(again.encode(y_z=y_z[:4]).columns) == ["z1", "z2"]
    assert len(again.history["loss"]) == 6
    again.fit(y_x[:200], y_z[:200], steps=2, progress=False, align=False)
    assert len(again.history["loss"]) == 8


def test_known_graph_fixes_the_masks(tmp_path) -> None:
    g = SpecGraph.from_parents({"s1": ["a", "b"], "s2": ["b", "c"]})
    with pytest.raises(OptionError, match="graph has 3 features"):
        LatentSEDGE(2, 2, 5, 4, graph=g)
    with pytest.raises(OptionError, match="graph="):
        LatentSEDGE(3, 2, 5, 4, graph={"s1": ["a"]})
    rng = np.random.default_rng(0)
    m = LatentSEDGE(3, 2, 5, 4, hidden=(8,), graph=g)
    assert m.feature_names == ["a", "b", "c"] and m.spec_names == ["s1", "s2"]
    m.fit(rng.normal(size=(100, 5)), rng.normal(size=(100, 4)), steps=30, lr=1e-2, progress=False)
    expected = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    np.testing.assert_allclose(m.masks().to_numpy(), expected, atol=1e-9)
    learned = m.learned_graph()
    assert {s: set(learned.parents(s)) for s in learned.specs} == {
        "s1": {"a", "b"},
        "s2": {"b", "c"},
    }
    back = LatentSEDGE.load(m.save(tmp_path / "known.pt"))
    assert back.graph is not None and back.graph.parents("s2") == g.parents("s2")
    np.testing.assert_allclose(back.masks().to_numpy(), expected, atol=1e-9)


@pytest.mark.slow
def test_example_script_runs_end_to_end() -> None:
    """examples/latent_pipeline.py --quick: observations in, observations out."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "latent_pipeline.py"
    out = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    assert "saved and reloaded" in out
    assert "generated 500 observations Y_X of 20 dims" in out
    mmd = float(out.strip().splitlines()[-1].split(":")[1])
    assert 0.0 <= mmd < 0.3, out
