"""MonotoneBernoulli: a binary spec's likelihood monotone in each parent (known answers)."""

import numpy as np
import pandas as pd
import pytest
import torch

import sedge_pyro as sp
from sedge_pyro.inference.fit import fit_component
from sedge_pyro.models.likelihoods import MonotoneBernoulli
from sedge_pyro.models.sedge import component_program as _fn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_monotone_in_every_parent_in_its_direction_whatever_the_weights(seed):
    torch.manual_seed(seed)
    m = MonotoneBernoulli(3, hidden=(8, 8))
    with torch.no_grad():
        m.net.direction.copy_(torch.randn(3))
        for w in m.net.weights:
            w.copy_(torch.randn_like(w) * 2)
    c = torch.randn(500, 3) * 2
    s = m.directions()
    for j in range(3):
        step = torch.zeros(3)
        step[j] = 0.3
        with torch.no_grad():
            rise = m.logits(c + step) - m.logits(c)
        assert bool((rise * torch.sign(s[j]) >= -1e-6).all())


def test_fit_recovers_a_logistic_and_keeps_rising_past_the_rows():
    # P(z = 1 | x) = sigmoid(4 x1 - 3 x2) on rows with x1 < 0.3 only; past it the monotone
    # fit keeps rising with x1, as the truth does
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4000, 2, generator=g) * 2 - 1
    x = x[x[:, 0] < 0.3]
    z = torch.bernoulli(torch.sigmoid(4 * x[:, 0] - 3 * x[:, 1]), generator=g)
    torch.manual_seed(0)
    m = MonotoneBernoulli(2, hidden=(32, 32))
    fit_component(m, _fn(m.model, "z"), (z, x), name="z", steps=1500, progress=False)
    t = torch.stack([torch.linspace(-1, 1, 21), torch.full((21,), 0.5)], -1)
    with torch.no_grad():
        p = m.prob_of(1, t)
    truth = torch.sigmoid(4 * t[:, 0] - 1.5)
    inside = t[:, 0] < 0.3
    assert float((p - truth)[inside].abs().max()) < 0.06
    assert bool((p[1:] >= p[:-1]).all())
    assert float(p[-1]) > 0.8  # 0.92 true
    s = m.directions()
    assert float(s[0]) > 0 > float(s[1])


def test_a_model_takes_it_for_binary_specs_saves_and_checks_its_input(tmp_path):
    g = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"x1": g.uniform(0, 1, n), "x2": g.uniform(0, 1, n)})
    df["z"] = (df.x1 + 0.5 * df.x2 + g.normal(0, 0.1, n) > 0.8).astype(int)
    df["w"] = df.x2 + g.normal(0, 0.1, n)
    graph = sp.SpecGraph.from_parents({"z": ["x1", "x2"], "w": ["x2"]})
    model = sp.SEDGEModel(graph, likelihood={"z": "monotone", "w": "gaussian"})
    model.fit(df, steps=200, progress=False)
    assert model.chosen["z"] == "monotone"
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = sp.SEDGEModel.load(path)
    assert isinstance(back.likelihood("z"), MonotoneBernoulli)
    probe = df[["x1", "x2", "z", "w"]].head(5)
    np.testing.assert_allclose(
        back.spec_probability(probe, {"z": 1})["z"], model.spec_probability(probe, {"z": 1})["z"]
    )
    with pytest.raises(sp.DataError, match="column 'w' .* needs 0/1"):
        sp.SEDGEModel(graph, likelihood={"z": "bernoulli", "w": "monotone"}).fit(
            df, steps=5, progress=False
        )
