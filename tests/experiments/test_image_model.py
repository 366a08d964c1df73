"""ImageSEDGE: image concepts learned from pixels with masked attribute heads (issue 7)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sedge_pyro.datasets import SHAPE_ATTRIBUTES, shapes
from sedge_pyro.errors import DataError, OptionError, SedgeError
from sedge_pyro.experiments.image_sedge import ImageSEDGE
from sedge_pyro.experiments.judge import AttributeClassifier
from sedge_pyro.graph import SpecGraph


@pytest.fixture(scope="module")
def data():
    return shapes(1500, seed=0)


@pytest.fixture(scope="module")
def judge():
    own = shapes(3000, seed=100, held_out=())  # the judge's own draw, every combination
    return AttributeClassifier().fit(own.images, own.labels, progress=False)


@pytest.fixture(scope="module")
def fitted(data):
    import torch

    torch.manual_seed(0)
    pool = shapes(1500, seed=1, held_out=()).images
    return ImageSEDGE(8, width=16).fit(
        data.images, data.labels, pool=pool, steps=1000, seed=0, progress=False
    )


@pytest.fixture(scope="module")
def small(data):
    """A short fit for the tests of shapes, names, graphs, files and errors (not quality)."""
    import torch

    torch.manual_seed(0)
    pool = shapes(200, seed=1, held_out=()).images
    return ImageSEDGE(8, width=8).fit(
        data.images[:300], data.labels.head(300), pool=pool, steps=30, seed=0, progress=False
    )


@pytest.mark.slow
def test_elbo_improves_and_reconstructions_keep_colour_and_position(fitted, data, judge):
    loss = np.asarray(fitted.history["loss"])
    assert len(loss) == 1000 and np.all(np.isfinite(loss))
    assert loss[-50:].mean() < loss[:50].mean() - 1000.0
    rec = fitted.decode(fitted.encode(data.images[:400]))
    assert rec.shape == (400, 3, 32, 32) and rec.min() >= 0.0 and rec.max() <= 1.0
    acc = judge.accuracy(rec, data.labels.head(400))
    # the coarse concepts come first: colour and position survive the round trip
    assert acc["colour"] > 0.95 and acc["position"] > 0.95, acc


@pytest.mark.slow
def test_aligned_concepts_name_the_attributes(fitted, data):
    # each aligned block is a distribution over its attribute's values; its argmax is the
    # label. (On the held-out combinations this short fit reads shape from colour: 0.17 for
    # shape, measured, so nothing is claimed there; see docs/images.md.)
    enc = fitted.encode(data.images[:500])
    labels = data.labels.head(500)
    for attr, values in SHAPE_ATTRIBUTES.items():
        block = enc[[f"{attr}_{v}" for v in values]].to_numpy()
        np.testing.assert_allclose(block.sum(1), 1.0, atol=1e-5)
        acc = (np.asarray(values)[block.argmax(1)] == labels[attr].astype(str).to_numpy()).mean()
        # shape is the slowest to learn in this short fit (0.85 measured)
        assert acc > (0.75 if attr == "shape" else 0.9), (attr, acc)


def test_masks_graph_and_save_load(small, data, tmp_path):
    masks = small.masks()
    assert masks.shape == (4, 18) and list(masks.index) == list(SHAPE_ATTRIBUTES)
    assert ((masks.to_numpy() > 0) & (masks.to_numpy() < 1)).all()
    g = small.learned_graph(0.01, selection_parents=["shape", "colour"])
    assert isinstance(g, SpecGraph) and set(g.specs) == set(SHAPE_ATTRIBUTES)
    assert set(g.parents("S")) == {"shape", "colour"} and len(g.features) == 18
    # an attribute's aligned concepts are chained, one component for identify
    assert ("colour_red", "colour_green") in g.to_networkx().edges
    with pytest.raises(SedgeError, match="attribute 'shape' has no concept"):
        small.learned_graph(0.999)
    enc = small.encode(data.images[:20])
    aligned = [f"{a}_{v}" for a, vals in SHAPE_ATTRIBUTES.items() for v in vals]
    assert list(enc.columns) == [f"x{j}" for j in range(1, 9)] + aligned
    back = ImageSEDGE.load(small.save(tmp_path / "image.pt"))
    pd.testing.assert_frame_equal(back.encode(data.images[:20]), enc)
    np.testing.assert_allclose(back.decode(enc), small.decode(enc), atol=1e-6)
    assert back.config() == small.config() and back.history == small.history
    with pytest.raises(SedgeError, match="exists"):
        small.save(tmp_path / "image.pt", overwrite=False)


def test_errors_name_the_argument(small, data, tmp_path):
    with pytest.raises(SedgeError, match="not fitted"):
        ImageSEDGE(2, width=4).encode(data.images[:2])
    with pytest.raises(DataError, match="images have shape"):
        small.encode(data.images[:2, :, :16])
    with pytest.raises(DataError, match="pool have shape"):
        ImageSEDGE(2, width=4).fit(data.images[:4], data.labels.head(4), pool=data.images[:2, 0])
    with pytest.raises(DataError, match="no column 'colour'"):
        ImageSEDGE(2, width=4).fit(data.images[:4], data.labels[["shape"]].head(4), steps=1)
    with pytest.raises(DataError, match="expected the same"):
        ImageSEDGE(2, width=4).fit(data.images[:4], data.labels.head(5), steps=1, progress=False)
    with pytest.raises(DataError, match="x has no column 'x8'"):
        small.decode(pd.DataFrame(np.zeros((2, 7)), columns=[f"x{j}" for j in range(1, 8)]))
    with pytest.raises(DataError, match=r"expected finite \(rows, 18\) concepts"):
        small.decode(np.zeros((2, 8)))
    with pytest.raises(OptionError, match="multiple of 8"):
        ImageSEDGE(size=30)
    with pytest.raises(OptionError, match="steps=0"):
        small.fit(data.images[:4], data.labels.head(4), steps=0)
    with pytest.raises(SedgeError, match="does not exist"):
        ImageSEDGE.load(tmp_path / "missing.pt")


def test_a_single_attribute_has_no_other_codes(data):
    m = ImageSEDGE(3, width=4, attributes={"colour": ["red", "green", "blue"]})
    m.fit(data.images[:64], data.labels.head(64), steps=3, seed=0, progress=False)
    assert m.masks().shape == (1, 6) and m.learned_graph(0.01).specs == ("colour",)


def test_the_invariance_penalty_is_the_between_group_spread_of_the_aligned_concepts():
    import torch

    m = ImageSEDGE(2, width=4, attributes={"shape": ["a", "b", "c"], "colour": ["r", "g"]})
    # four rows of shape a: two red, two green; colour's concepts depend on colour only
    z = torch.tensor([[0, 0], [0, 0], [0, 1], [0, 1]])
    colour = torch.tensor([[3.0, -1.0], [3.0, -1.0], [-2.0, 1.0], [-2.0, 1.0]])
    same = torch.tensor([[1.0, 0.0, -1.0]]).expand(4, 3)
    assert m._leak([same, colour], z).item() == pytest.approx(0.0, abs=1e-7)
    # shape's concepts read colour: a = softmax(la) on red rows, b = softmax(lb) on green rows;
    # the group means deviate by +-(a - b) / 2 from shape a's mean, in 2 rows each of 4
    la, lb = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.5, 1.0, 0.0])
    shape = torch.stack([la, la, lb, lb])
    a, b = la.softmax(-1), lb.softmax(-1)
    expected = ((a - b) ** 2).sum().item() / 4
    assert m._leak([shape, colour], z).item() == pytest.approx(expected, rel=1e-5)


def test_the_concept_check_is_seeded_and_names_a_bad_combination(fitted, data):
    seen = [{"shape": "circle", "colour": "red"}, {"shape": "triangle", "size": "large"}]
    check = fitted.check_combinations(data.images, data.labels, seen, draws=200, seed=0)
    assert list(check.index) == ["circle+red", "triangle+large"]
    assert set(check.columns) == {"shape", "colour", "size", "joint"}
    # joint never exceeds a named attribute's read-back
    assert (check["joint"] <= check[["shape", "colour", "size"]].min(axis=1) + 1e-12).all()
    again = fitted.check_combinations(data.images, data.labels, seen, draws=200, seed=0)
    pd.testing.assert_frame_equal(check, again)
    with pytest.raises(DataError, match="'hue'"):
        fitted.check_combinations(data.images, data.labels, [{"hue": "red"}])
    with pytest.raises(DataError, match="expected a dict"):
        fitted.check_combinations(data.images, data.labels, [{}])
    with pytest.raises(DataError, match="colour='pink'"):
        fitted.check_combinations(data.images, data.labels, [{"colour": "pink"}])
    red = data.labels["colour"].astype(str).eq("red").to_numpy()
    with pytest.raises(DataError, match="no row with colour='red'"):
        fitted.check_combinations(data.images[~red], data.labels[~red], [{"colour": "red"}])


class _Pixels(torch.nn.Module):
    """A decoder that writes the concepts into the first pixels of the red channel; with
    ``stuck`` it always writes shape ``a``."""

    def __init__(self, stuck: bool = False) -> None:
        super().__init__()
        self.stuck = stuck

    def forward(self, x):
        img = x.new_zeros(len(x), 3, 8, 8)
        img[:, 0, 0, :5] = x
        if self.stuck:
            img[:, 0, 0, 1:3] = torch.tensor([1.0, 0.0])
        return img


class _Reader(torch.nn.Module):
    """A classifier (or, with ``free``, an encoder) that reads those pixels back."""

    def __init__(self, free: bool = False) -> None:
        super().__init__()
        self.free = free

    def forward(self, y):
        if self.free:
            return y[:, 0, 0, :1], torch.ones(len(y), 1)
        return torch.log(y[:, 0, 0, 1:5] + 1e-6)


def test_the_concept_check_is_exact_for_a_decoder_that_draws_what_it_is_given():
    attrs = {"shape": ["a", "b"], "colour": ["r", "g"]}
    m = ImageSEDGE(1, 8, width=2, attributes=attrs)
    m.net.enc, m.net.cls, m.net.dec = _Reader(free=True), _Reader(), _Pixels()
    m._fitted = True
    # training rows: (a, g), (b, r), (b, g); (a, r) never occurs
    labels = pd.DataFrame({"shape": ["a", "b", "b"] * 4, "colour": ["g", "r", "g"] * 4})
    x = np.zeros((12, 5), dtype=np.float32)
    x[:, 0] = np.linspace(0.1, 0.9, 12)
    x[np.arange(12), 1 + (labels["shape"] == "b").to_numpy()] = 1.0
    x[np.arange(12), 3 + (labels["colour"] == "g").to_numpy()] = 1.0
    images = m.net.dec(torch.as_tensor(x)).numpy()
    novel = [{"shape": "a", "colour": "r"}, {"shape": "b"}]
    check = m.check_combinations(images, labels, novel, draws=50, seed=1)
    assert check.loc["a+r", ["shape", "colour", "joint"]].tolist() == [1.0, 1.0, 1.0]
    assert check.loc["b", "joint"] == 1.0
    # a decoder that always draws shape a: the check reads b back never
    m.net.dec = _Pixels(stuck=True)
    check = m.check_combinations(images, labels, novel, draws=50, seed=1)
    assert check.loc["a+r", "joint"] == 1.0 and check.loc["b", "joint"] == 0.0
