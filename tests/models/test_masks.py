"""Sigmoid masks and learning parents with them (Eq. 5): the paper's graph recovered, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import sedge_pyro as sp
from sedge_pyro.datasets import paper_synthetic
from sedge_pyro.errors import DataError, GraphError
from sedge_pyro.inference.structure import DEFAULT_BETA, learn_parents, learn_structure
from sedge_pyro.models.masks import SigmoidMask

torch.set_num_threads(1)

FEATURES = ["x1", "x2", "x3"]
SPECS = ["z1", "z2"]


# --------------------------------------------------------------------------- SigmoidMask


def test_sigmoid_mask_basics():
    m = SigmoidMask(3, init=0.25)
    assert torch.allclose(m.weights, torch.full((3,), 0.25))
    with torch.no_grad():
        m.logits.copy_(torch.tensor([3.0, -3.0, 0.5]))
    x = torch.ones(2, 4, 3)
    assert torch.allclose(m(x), m.weights.expand(2, 4, 3))
    assert torch.isclose(m.l1(), m.weights.sum())
    assert m.selected() == [0, 2]
    assert m.selected(threshold=0.7) == [0]
    assert SigmoidMask(0).l1() == 0
    for bad in ({"n_in": -1}, {"n_in": 2, "init": 1.0}, {"n_in": 2, "temperature": 0.0}):
        with pytest.raises(ValueError):
            SigmoidMask(**bad)


def test_gates_open_with_the_mask_probability_while_training():
    m = SigmoidMask(3, temperature=0.5)
    with torch.no_grad():
        m.logits.copy_(torch.tensor([2.0, 0.0, -1.0]))
    gates = m(torch.ones(100_000, 3))
    assert torch.allclose((gates > 0.5).float().mean(0), m.weights.detach(), atol=0.01)
    m.eval()
    assert torch.equal(m(torch.ones(2, 3)), m.weights.expand(2, 3))


def test_l1_gradient_lowers_every_weight():
    m = SigmoidMask(4)
    m.l1().backward()
    assert (m.logits.grad > 0).all()


# --------------------------------------------------------------------------- learn_parents


@pytest.fixture(scope="module")
def paper_structure():
    seen, _, _ = paper_synthetic(20_000, seed=0)
    return learn_structure(seen, FEATURES, SPECS, progress=False)


def test_learn_parents_recovers_the_paper_graph(paper_structure):
    res = paper_structure
    assert res.beta == DEFAULT_BETA
    assert res.parents == {"z1": ("x1", "x2"), "z2": ("x2", "x3")}
    assert res.forced == ()
    # clear margins around the threshold, not a coin flip
    w = res.weights
    assert w.loc["z1", ["x1", "x2"]].min() > 0.75 and w.loc["z2", ["x2", "x3"]].min() > 0.75
    assert w.loc["z1", "x3"] < 0.25 and w.loc["z2", "x1"] < 0.25
    truth = paper_synthetic(100, seed=0).graph
    assert set(res.graph.edges) == set(truth.edges)
    assert res.graph.features == ("x1", "x2", "x3")


def test_learned_graph_identifies_like_the_true_one(paper_structure):
    target = {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)}
    res = sp.identify(paper_structure.graph, target)
    assert res.status == sp.Status.CONSERVATIVE
    assert set(res.shared) == {"x2"}


def test_learn_parents_returns_the_graph():
    seen, _, _ = paper_synthetic(2000, seed=1)
    g = learn_parents(seen, FEATURES, SPECS, steps=20, progress=False)
    assert isinstance(g, sp.SpecGraph)
    assert g.specs == ("z1", "z2") and g.features == ("x1", "x2", "x3")


def linear_problem(n=3000, seed=0):
    """Five features; a Gaussian, a binary and a categorical spec with known parents."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) * np.array([1.0, 10.0, 0.1, 1.0, 3.0])
    s = x / x.std(0)
    z1 = s[:, 0] - s[:, 1] + 0.5 * rng.normal(size=n)
    z2 = (rng.random(n) < 1 / (1 + np.exp(-(2 * s[:, 2] - 2 * s[:, 3])))).astype(int)
    colour = np.array(["blue", "green", "red"])[
        np.digitize(s[:, 4] + 0.3 * rng.normal(size=n), [-0.5, 0.5])
    ]
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(1, 6)])
    return df.assign(z1=z1, z2=z2, colour=colour)


def test_learn_structure_on_mixed_specs():
    df = linear_problem()
    features = [f"x{i}" for i in range(1, 6)]
    res = learn_structure(df, features, ["z1", "z2", "colour"], steps=800, progress=False)
    assert res.likelihoods == {"z1": "gaussian", "z2": "bernoulli", "colour": "categorical"}
    assert res.parents == {"z1": ("x1", "x2"), "z2": ("x3", "x4"), "colour": ("x5",)}


def test_spec_without_parents_gets_its_strongest_feature():
    df = linear_problem(1000)
    df["noise"] = np.random.default_rng(1).normal(size=len(df))
    res = learn_structure(df, ["x1", "x2"], ["noise"], beta=0.05, steps=300, progress=False)
    assert res.forced == ("noise",)
    strongest = res.weights.loc["noise"].idxmax()
    assert res.parents == {"noise": (strongest,)}


# --------------------------------------------------------------------------- errors


@pytest.fixture
def small():
    return paper_synthetic(300, seed=0).seen


@pytest.mark.parametrize(
    ("mutate", "features", "specs", "error", "culprit"),
    [
        (lambda d: d.drop(columns="x2"), FEATURES, SPECS, DataError, "'x2'"),
        (lambda d: d.drop(columns="z2"), FEATURES, SPECS, DataError, "'z2'"),
        (
            lambda d: d.assign(x3=np.where(d.index == 5, np.nan, d.x3)),
            FEATURES,
            SPECS,
            DataError,
            "'x3'",
        ),
        (
            lambda d: d.assign(x1=np.where(d.index == 5, np.inf, d.x1)),
            FEATURES,
            SPECS,
            DataError,
            "'x1'",
        ),
        (
            lambda d: d.assign(z1=np.where(d.index == 5, np.nan, d.z1)),
            FEATURES,
            SPECS,
            DataError,
            "'z1'",
        ),
        (lambda d: d.assign(x2=0.5), FEATURES, SPECS, DataError, "'x2'"),
        (lambda d: d.assign(z2=1.0), FEATURES, SPECS, DataError, "'z2'"),
        (lambda d: d.assign(x1="a"), FEATURES, SPECS, DataError, "'x1'"),
        (lambda d: d, ["x1", "x2", "z1"], SPECS, GraphError, "'z1'"),
        (lambda d: d, ["x1", "x1"], SPECS, DataError, "'x1'"),
        (lambda d: d, [], SPECS, DataError, "features"),
    ],
)
def test_errors_name_the_column(small, mutate, features, specs, error, culprit):
    with pytest.raises(error, match=culprit):
        learn_parents(mutate(small), features, specs, steps=5, progress=False)


def test_bad_arguments(small):
    with pytest.raises(DataError, match="'bernoulli'"):
        learn_parents(small, FEATURES, SPECS, likelihood={"z1": "bernoulli"}, progress=False)
    with pytest.raises(DataError, match="'poisson'"):
        learn_parents(small, FEATURES, SPECS, likelihood="poisson", progress=False)
    with pytest.raises(DataError, match="threshold"):
        learn_parents(small, FEATURES, SPECS, threshold=1.0, progress=False)
    with pytest.raises(DataError, match="beta"):
        learn_parents(small, FEATURES, SPECS, beta=-1.0, progress=False)
