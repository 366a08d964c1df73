"""The dual-divergence prior (seed 003) on a Gaussian with a known log-ratio and information."""

from __future__ import annotations

import functools
import math

import pandas as pd
import pytest
import torch

import sedge_pyro as sp
from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.inference.fit import fit_component
from sedge_pyro.models.dual import DualDivergencePrior, DualEmbedding, walk_init, walk_step

torch.set_num_threads(1)

RHO = 0.8
#: the mutual information of a standard bivariate Gaussian with correlation RHO
MI = -0.5 * math.log(1 - RHO**2)
CHOL = torch.tensor([[1.0, 0.0], [RHO, math.sqrt(1 - RHO**2)]])


def gaussian(n, seed):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) @ CHOL.T


def analytic_log_ratio(x):
    """log N(x; 0, Sigma) - log N(x1; 0, 1) - log N(x2; 0, 1)."""
    joint = torch.distributions.MultivariateNormal(torch.zeros(2), CHOL @ CHOL.T)
    return joint.log_prob(x) - torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)


@functools.cache
def fitted(objective="dv", path_steps=1, seed=0, smoothness=0.01):
    torch.manual_seed(seed)
    x = gaussian(5000, seed)
    p = DualDivergencePrior(
        2, objective=objective, path_steps=path_steps, hidden=(64, 64), smoothness=smoothness
    )
    p.setup(x)
    fit_component(p, p.model, (x,), steps=2000, batch_size=256, lr=1e-3, seed=seed, progress=False)
    return p


@pytest.fixture(scope="module")
def dv():
    return fitted("dv")


def evaluation_points(p, seed=1):
    """Half data rows, half product-of-marginals rows: where the ratio matters."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([gaussian(2000, seed + 10), p.product_of_marginals(2000, generator=g)])


def correlation(a, b):
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


# --------------------------------------------------------------------------- estimation


def check_recovery(p):
    x = evaluation_points(p)
    with torch.no_grad():
        est = p.log_ratio(x)
    assert correlation(est, analytic_log_ratio(x)) > 0.9
    # on fresh rows of p
    mi = p.divergence(gaussian(5000, 99))
    assert abs(mi - MI) / MI < 0.1, mi


@pytest.mark.parametrize(
    "objective, path_steps",
    [
        ("dv", 1),
        pytest.param("mine", 1, marks=pytest.mark.slow),
        pytest.param("nwj", 1, marks=pytest.mark.slow),
        ("dv", 4),
    ],
)
def test_unregularised_estimators_recover_ratio_and_information(objective, path_steps):
    """Without the smoothness penalty (a deliberate bias), every bound is consistent."""
    check_recovery(fitted(objective, path_steps, smoothness=0.0))


def test_default_dv_recovers_ratio_and_information(dv):
    """The defaults (DV, smoothness penalty 0.01) stay within 10% of the information."""
    check_recovery(dv)


def test_log_prob_is_the_density(dv):
    """Calibrated: exp(log_prob) is the joint density, so its held-out mean is minus the
    entropy, and it matches the analytic density point by point.
    """
    x = gaussian(4000, 7)
    joint = torch.distributions.MultivariateNormal(torch.zeros(2), CHOL @ CHOL.T)
    with torch.no_grad():
        lp = dv.log_prob(x)
    entropy = 0.5 * 2 * (1 + math.log(2 * math.pi)) + math.log(math.sqrt(1 - RHO**2))
    assert float(-lp.mean()) == pytest.approx(entropy, abs=0.1)
    assert correlation(lp, joint.log_prob(x)) > 0.95


def test_marginals_integrate_to_one(dv):
    grid = torch.linspace(-8, 8, 4001)
    dens = dv.marginals().log_prob(torch.stack([grid, grid], -1)).exp()
    mass = torch.trapezoid(dens, grid, dim=0)
    assert torch.allclose(mass, torch.ones(2), atol=1e-3)


def test_product_of_marginals_keeps_columns_and_breaks_dependence(dv):
    q = dv.product_of_marginals(20000, generator=torch.Generator().manual_seed(3))
    assert abs(float(torch.corrcoef(q.T)[0, 1])) < 0.03
    stored = set(dv.rows[:, 0].tolist())
    assert set(q[:, 0].tolist()) <= stored


# --------------------------------------------------------------------------- the embedding


def test_embedding_clusters_known_answer():
    v = torch.tensor([0.0, 0.1, 0.2, 0.15, 9.0, 9.1, 9.05, 20.0], dtype=torch.float64)
    e = DualEmbedding.from_values(v, gap_factor=2.0)
    assert [c[2] for c in e.clusters] == [4, 3, 1]
    assert e.gaps == ((0.2, 9.0), (9.1, 20.0))
    assert (e.low, e.high) == (0.0, 20.0)


def test_levels_inside_range_and_gap_preference():
    v = torch.tensor([0.0, 0.1, 0.2, 0.15, 9.0, 9.1, 9.05])
    e = DualEmbedding.from_values(v)
    g = torch.Generator().manual_seed(0)
    tau = e.levels(4000, generator=g)
    assert float(tau.min()) >= 0.0 and float(tau.max()) <= 9.1
    # consecutive sorted values: the one wide gap is 1 of 6 intervals
    in_gap = ((tau > 0.2) & (tau < 9.0)).double().mean()
    assert float(in_gap) == pytest.approx(1 / 6, abs=0.03)
    tau = e.levels(4000, gap_preference=1.0, generator=g)
    assert bool(((tau >= 0.2) & (tau <= 9.0)).all())


def test_plot_embedding(dv):
    import matplotlib

    matplotlib.use("Agg")
    ax = dv.embedding().plot(samples=dv.log_ratio(dv.sample(100)).detach())
    assert "end points" in ax.get_title()


# --------------------------------------------------------------------------- sampling


def test_walk_samples_stay_inside_training_range(dv):
    e = dv.embedding()
    x = dv.sample(2000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = dv.log_ratio(x)
    assert float(t.min()) >= e.low and float(t.max()) <= e.high
    assert abs(float(torch.corrcoef(x.T)[0, 1]) - RHO) < 0.05
    assert torch.allclose(x.std(0), torch.ones(2), atol=0.1)


def test_walk_from_training_rows_moves_them(dv):
    x = dv.sample(500, generator=torch.Generator().manual_seed(1), start="train")
    d = torch.cdist(x, dv.rows).min(1).values
    assert float(d.median()) > 1e-3  # not copies of training rows


def test_walk_kernel_reaches_levels(dv):
    g = torch.Generator().manual_seed(2)
    x0 = dv.product_of_marginals(300, generator=g, smooth=True)
    tau = dv.embedding().levels(300, generator=g)
    state = walk_init(dv, x0, tau, 0.05)
    for _ in range(300):
        state, info = walk_step(dv, state, generator=g)
    assert bool(state.done.all())
    assert torch.allclose(state.t, tau.to(state.t), atol=0.05)


def test_langevin_samples_the_correlation():
    """Langevin samples exp(log_prob): with the unregularised ratio, the Gaussian itself."""
    exact = fitted("dv", smoothness=0.0)
    x = exact.sample(500, method="langevin", steps=500, generator=torch.Generator().manual_seed(0))
    assert abs(float(torch.corrcoef(x.T)[0, 1]) - RHO) < 0.05
    assert torch.allclose(x.std(0), torch.ones(2), atol=0.1)


def test_langevin_divergence_is_a_sampling_error(dv):
    with pytest.raises(sp.SamplingError, match="step_size"):
        dv.sample(10, method="langevin", steps=50, step_size=1e6)


def test_seeded_sampling_is_reproducible(dv):
    a = dv.sample(50, generator=torch.Generator().manual_seed(5))
    b = dv.sample(50, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- saving and errors


def test_state_dict_round_trip(dv):
    q = DualDivergencePrior(**dv.config())
    q.load_state_dict(dv.state_dict())
    x = gaussian(10, 3)
    with torch.no_grad():
        assert torch.allclose(q.log_prob(x), dv.log_prob(x))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"objective": "js"}, "objective"),
        ({"path_steps": 0}, "path_steps"),
        ({"n_negatives": 1}, "n_negatives"),
        ({"ma_rate": 0.0}, "ma_rate"),
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"sampler": "hmc"}, "sampler"),
        ({"gap_preference": 2.0}, "gap_preference"),
        ({"smoothness": -1.0}, "smoothness"),
        ({"hidden": (0,)}, "hidden"),
        ({"path_steps": "2"}, "path_steps"),
    ],
)
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(OptionError, match=name):
        DualDivergencePrior(2, **kwargs)


def test_errors_before_setup_and_bad_rows():
    p = DualDivergencePrior(2)
    with pytest.raises(DataError, match="setup"):
        p.sample(3)
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        p.setup(torch.zeros(5, 3))
    p.setup(torch.randn(20, 2))
    with pytest.raises(OptionError, match="method"):
        p.sample(3, method="nuts")
    with pytest.raises(OptionError, match="start"):
        p.sample(3, start="zero")
    with pytest.raises(OptionError, match="stepsize=0.1: not an option of walk"):
        p.sample(3, stepsize=0.1)
    with pytest.raises(OptionError, match="batch_size"):
        p.sample(3, batch_size=0)
    with pytest.raises(OptionError, match="n=-1"):
        p.sample(-1)
    assert tuple(p.sample(0).shape) == (0, 2)
    with pytest.raises(DataError, match="column 1"):
        p.setup(torch.tensor([[0.0, 1.0], [1.0, float("nan")], [2.0, 0.0]]))


# --------------------------------------------------------------------------- in a SEDGE model


def test_sedge_model_with_dual_prior(tmp_path):
    g = sp.SpecGraph.from_parents({"z1": ["x1"], "z2": ["x2"]})
    x = gaussian(1500, 4).numpy()
    z1 = (x[:, 0] + 0.3 * torch.randn(1500).numpy() > 0).astype(float)
    z2 = (x[:, 1] + 0.3 * torch.randn(1500).numpy() > 0).astype(float)
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "z1": z1, "z2": z2})
    model = sp.SEDGEModel(g, prior="dual", prior_options={"hidden": [32]})
    model.fit(df, steps=300, progress=False)
    assert isinstance(model.prior, DualDivergencePrior)
    for method in ("plan", "langevin"):
        s = model.sample({"z1": 1, "z2": 1}, n=200, method=method, seed=0)
        v = s.to_dataframe()
        assert len(v) == 200 and (v[["x1", "x2"]].mean() > 0).all(), method
    model.save(tmp_path / "dual.pt")
    again = sp.SEDGEModel.load(tmp_path / "dual.pt")
    x = torch.randn(5, 2)
    with torch.no_grad():
        assert torch.allclose(again.prior.log_prob(x), model.prior.log_prob(x))
