"""``likelihood="auto"`` and ``prior="auto"``: the candidate with the better held-out
likelihood is kept, on data whose true families are known (issue 21, item 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.models import ConditionalFlow, FlowPrior, GaussianMLP, GaussianPrior
from sedge_pyro.models.sedge import AUTO_MARGIN

GRAPH = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2"]})


def table(n: int, seed: int, *, uniform: bool) -> pd.DataFrame:
    """Gaussian features and noise, or uniform ones (a flow's case: bounded, flat)."""
    rng = np.random.default_rng(seed)
    if uniform:
        x = rng.uniform(0, 1, (n, 2))
        e = rng.uniform(0, 0.2, (n, 2))
    else:
        x = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], n)
        e = rng.normal(0, 0.3, (n, 2))
    return pd.DataFrame(
        {
            "x1": x[:, 0],
            "x2": x[:, 1],
            "z1": x[:, 0] + 0.5 * x[:, 1] + e[:, 0],
            "z2": (x[:, 1] > 0.5).astype(float) if uniform else x[:, 1] + e[:, 1],
        }
    )


def fit(data: pd.DataFrame, steps: int = 300, **kw) -> sp.SEDGEModel:
    return sp.SEDGEModel(GRAPH, **kw).fit(data, steps=steps, lr=3e-3, progress=False, seed=0)


@pytest.mark.slow  # .ci/run runs it; `make test` keeps its 10 minutes
def test_uniform_noise_and_features_choose_flows():
    m = fit(table(2000, 0, uniform=True))
    assert m.chosen == {"z1": "flow", "z2": "bernoulli", "prior": "flow"}
    assert isinstance(m.likelihood("z1"), ConditionalFlow)
    assert isinstance(m.prior, FlowPrior)
    record = m.history["z1"]["auto"]
    nll = record["held_out_nll"]
    assert record["chosen"] == "flow" and nll["flow"] < nll["gaussian"] - AUTO_MARGIN
    assert m.history["z1"]["best_val"] == nll["flow"]
    # a binary spec has nothing to choose
    assert "auto" not in m.history["z2"]


@pytest.mark.slow  # .ci/run runs it; `make test` keeps its 10 minutes
def test_gaussian_data_keeps_gaussians():
    data = table(2000, 1, uniform=False)
    m = fit(data)
    assert m.chosen == {"z1": "gaussian", "z2": "gaussian", "prior": "gaussian"}
    assert isinstance(m.prior, GaussianPrior) and isinstance(m.likelihood("z2"), GaussianMLP)
    # the closed-form Gaussian prior ends up fit on every row, as prior="gaussian" fits it
    x = m.tensors(data)["X"].double()
    assert np.allclose(m.prior.loc.numpy(), x.mean(0).numpy(), atol=1e-5)
    cov = np.cov(x.numpy().T, bias=True)
    tril = m.prior.scale_tril.double().numpy()
    assert np.allclose(tril @ tril.T, cov, atol=1e-4)
    nll = m.history["prior"]["auto"]["held_out_nll"]
    assert nll["flow"] >= nll["gaussian"] - AUTO_MARGIN


def test_named_choices_are_not_replaced(tmp_path):
    data = table(600, 2, uniform=True)
    m = fit(data, steps=100, likelihood="gaussian", prior="flow")
    assert m.chosen == {"z1": "gaussian", "z2": "gaussian", "prior": "flow"}
    assert all("auto" not in h for h in m.history.values())
    # an auto model's choice survives a save and load
    auto = fit(data, steps=100)
    path = auto.save(tmp_path / "m.safetensors")
    back = sp.SEDGEModel.load(path)
    assert back.chosen == auto.chosen
    assert np.allclose(back.log_prob(data.head(20)), auto.log_prob(data.head(20)), atol=1e-5)


def test_tiny_table_keeps_gaussian_likelihood():
    # under 10 rows nothing is held out: no evidence for the flexible candidate
    m = fit(table(8, 3, uniform=False), steps=50)
    assert m.chosen["z1"] == "gaussian" and m.chosen["prior"] == "gaussian"


def test_chosen_needs_a_fit():
    with pytest.raises(sp.SedgeError, match="not fitted"):
        _ = sp.SEDGEModel(GRAPH).chosen
