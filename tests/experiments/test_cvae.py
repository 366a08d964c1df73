"""ConditionalImageVAE: the pixel-level p(image | attributes) baseline of issue 7 (model D)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sedge_pyro.datasets import shapes
from sedge_pyro.errors import DataError, OptionError, SedgeError, TargetError
from sedge_pyro.experiments.cvae import ConditionalImageVAE
from sedge_pyro.experiments.judge import AttributeClassifier
from sedge_pyro.models.files import write_state

SEEN = {"shape": "circle", "colour": "red", "size": "large", "position": "left"}
SEEN_TOO = {"shape": "triangle", "colour": "red", "size": "small", "position": "left"}
STEPS = 1000


@pytest.fixture(scope="module")
def data():
    return shapes(1500, seed=0)


@pytest.fixture(scope="module")
def judge():
    own = shapes(3000, seed=100, held_out=())  # the judge's own draw, every combination
    return AttributeClassifier().fit(own.images, own.labels, progress=False)


@pytest.fixture(scope="module")
def fitted(data):
    torch.manual_seed(0)
    return ConditionalImageVAE(8, width=16, beta=64.0).fit(
        data.images, data.labels, steps=STEPS, seed=0, progress=False
    )


def test_elbo_improves(fitted):
    loss = np.asarray(fitted.history["loss"])
    assert len(loss) == STEPS and np.all(np.isfinite(loss))
    assert loss[-50:].mean() < loss[:50].mean() - 1000.0


@pytest.mark.parametrize("combo", [SEEN, SEEN_TOO], ids=["circle", "triangle"])
def test_seen_combination_is_judged_right(fitted, data, judge, combo):
    seen = np.all([data.labels[a].eq(v).to_numpy() for a, v in combo.items()], 0)
    assert seen.sum() > 10  # a combination of the training images
    images = fitted.sample(combo, 200, seed=0)
    assert images.shape == (200, 3, 32, 32) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    acc = judge.accuracy(images, pd.DataFrame([combo] * 200))
    # measured 0.99-1.0 for every attribute of both
    assert min(acc[a] for a in combo) >= 0.8 and acc["joint"] >= 0.75, acc


def test_unnamed_attributes_are_drawn_uniformly(fitted, judge):
    images = fitted.sample({"shape": "circle", "colour": "red"}, 200, seed=1)
    pred = judge.predict(images)
    left, large = (pred["position"] == "left").mean(), (pred["size"] == "large").mean()
    assert 0.35 < left < 0.65 and 0.35 < large < 0.65, (left, large)  # measured 0.55, 0.54
    np.testing.assert_array_equal(
        images, fitted.sample({"colour": "red", "shape": "circle"}, 200, seed=1)
    )
    assert not np.array_equal(
        images, fitted.sample({"shape": "circle", "colour": "red"}, 200, seed=2)
    )


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "cvae.pt")
    back = ConditionalImageVAE.load(path)
    np.testing.assert_array_equal(back.sample(SEEN, 20, seed=3), fitted.sample(SEEN, 20, seed=3))
    assert back.config() == fitted.config() and back.history == fitted.history
    assert back.seconds == fitted.seconds
    with pytest.raises(SedgeError, match="exists"):
        fitted.save(path, overwrite=False)
    with pytest.raises(SedgeError, match="does not exist"):
        ConditionalImageVAE.load(tmp_path / "missing.pt")
    write_state({"format": "sedge-pyro/image-1"}, tmp_path / "other.pt")
    with pytest.raises(SedgeError, match="not a saved ConditionalImageVAE"):
        ConditionalImageVAE.load(tmp_path / "other.pt")


def test_errors_name_the_argument(fitted, data):
    with pytest.raises(TargetError, match="'hue'"):
        fitted.sample({"hue": "red"}, 2)
    with pytest.raises(TargetError, match="'purple'"):
        fitted.sample({"colour": "purple"}, 2)
    with pytest.raises(OptionError, match="n=0"):
        fitted.sample(SEEN, 0)
    with pytest.raises(SedgeError, match="not fitted"):
        ConditionalImageVAE(2, width=4).sample(SEEN, 2)
    fresh = ConditionalImageVAE(2, width=4)
    images, labels = data.images[:4], data.labels.head(4)
    for option in ("steps", "batch_size", "lr"):
        with pytest.raises(OptionError, match=f"{option}=0"):
            fresh.fit(images, labels, progress=False, **{option: 0})
    with pytest.raises(DataError, match="images has 4 rows and labels 5"):
        fresh.fit(images, data.labels.head(5), steps=1, progress=False)
    with pytest.raises(DataError, match="no column 'colour'"):
        fresh.fit(images, labels[["shape"]], steps=1, progress=False)
    bad = labels.astype(str).assign(shape=["circle", "hexagon", "circle", "square"])
    with pytest.raises(DataError, match="'shape' holds \\['hexagon'\\]"):
        fresh.fit(images, bad, steps=1, progress=False)
    with pytest.raises(DataError, match="images have shape"):
        fresh.fit(images[:, :, :16], labels, steps=1, progress=False)
    with pytest.raises(OptionError, match="size=30"):
        ConditionalImageVAE(size=30)
    assert not fresh._fitted


def test_to_cpu(fitted):
    before = fitted.sample(SEEN, 4, seed=5)
    assert fitted.to("cpu") is fitted and fitted.device == torch.device("cpu")
    assert next(fitted.net.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(fitted.sample(SEEN, 4, seed=5), before)
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="CUDA is not available"):
            fitted.to("cuda")
        assert fitted.device == torch.device("cpu")
