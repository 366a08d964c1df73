"""Likelihoods (Eq. 4, App. D.2): known mechanisms recovered, event probabilities, shapes, I/O."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sedge_pyro.errors import DataError, TargetError
from sedge_pyro.inference.fit import fit_component
from sedge_pyro.models.likelihoods import (
    BernoulliMLP,
    CategoricalMLP,
    ConditionalFlow,
    GaussianMLP,
    JointGaussian,
)
from sedge_pyro.models.masks import SigmoidMask
from sedge_pyro.models.nets import Constant, mlp

torch.set_num_threads(1)

GRID = torch.linspace(-1.8, 1.8, 19).unsqueeze(-1)


def fit(module, y, x, steps=800, lr=5e-3, seed=0):
    def model(y, x, n_total=None):
        module.model(y, x, name="y", n_total=n_total)

    return fit_component(
        module, model, (y, x), steps=steps, lr=lr, batch_size=512, seed=seed, progress=False
    )


def uniform_x(n, generator):
    return torch.rand(n, 1, generator=generator) * 4.0 - 2.0


# --------------------------------------------------------------------------- nets


def test_mlp_shapes_and_constant():
    net = mlp(3, 2, hidden=(8, 8))
    assert net(torch.zeros(4, 5, 3)).shape == (4, 5, 2)
    const = mlp(0, 3)
    assert isinstance(const[0], Constant)
    out = const(torch.zeros(7, 0))
    assert out.shape == (7, 3) and sum(p.numel() for p in const.parameters()) == 3
    with pytest.raises(ValueError, match="out_dim"):
        mlp(2, 0)


# --------------------------------------------------------------------------- recovery


def test_gaussian_recovers_linear_mechanism():
    g = torch.Generator().manual_seed(1)
    a, b, s = 0.7, -0.3, 0.5
    x = uniform_x(6000, g)
    y = a * x + b + s * torch.randn(x.shape, generator=g)
    m = GaussianMLP(1, hidden=(32, 32))
    fit(m, y, x)
    with torch.no_grad():
        loc, scale = m.loc_scale(GRID)
    assert (loc - (a * GRID[:, 0] + b)).abs().max() < 0.05
    assert ((scale / s) - 1).abs().max() < 0.10


def test_bernoulli_recovers_logistic_mechanism():
    g = torch.Generator().manual_seed(2)
    x = uniform_x(10000, g)
    p = torch.sigmoid(1.5 * x - 0.5)
    y = torch.bernoulli(p, generator=g)
    m = BernoulliMLP(1, hidden=(32, 32))
    fit(m, y, x, steps=600, lr=1e-2)
    with torch.no_grad():
        fitted = m.prob_of(1, GRID)
    assert (fitted - torch.sigmoid(1.5 * GRID[:, 0] - 0.5)).abs().max() < 0.05


def test_categorical_recovers_softmax_mechanism():
    g = torch.Generator().manual_seed(3)
    x = uniform_x(12000, g)
    logits = torch.cat([torch.zeros_like(x), 1.5 * x, 0.5 - 1.5 * x], dim=-1)
    y = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).float()
    m = CategoricalMLP(1, 3, hidden=(32, 32))
    fit(m, y, x, steps=600, lr=1e-2)
    truth = torch.softmax(torch.cat([torch.zeros_like(GRID), 1.5 * GRID, 0.5 - 1.5 * GRID], -1), -1)
    with torch.no_grad():
        fitted = torch.stack([m.prob_of(k, GRID) for k in range(3)], dim=-1)
    assert (fitted - truth).abs().max() < 0.05


def heteroscedastic(n, generator):
    x = torch.rand(n, 1, generator=generator) * 3.0 - 1.5
    scale = 0.2 + 0.3 * x.abs()
    return x, x + scale * torch.randn(x.shape, generator=generator), scale


@pytest.fixture(scope="module")
def fitted_flow():
    torch.manual_seed(0)
    x, y, _ = heteroscedastic(8000, torch.Generator().manual_seed(4))
    flow = ConditionalFlow(1, 1, hidden=(32, 32))
    fit(flow, y, x, steps=600, lr=1e-2)
    return flow


def test_flow_fits_heteroscedastic_conditional(fitted_flow):
    x, y, scale = heteroscedastic(20000, torch.Generator().manual_seed(5))
    with torch.no_grad():
        nll = -fitted_flow.log_prob(y, x).mean()
        # the true conditional density on the same rows: an estimate of the conditional entropy
        true_nll = -torch.distributions.Normal(x, scale).log_prob(y).mean()
    assert abs(float(nll - true_nll)) < 0.05


def test_joint_gaussian_recovers_correlation():
    g = torch.Generator().manual_seed(6)
    x = uniform_x(8000, g)
    rho, s = 0.6, 0.5
    cov = s**2 * torch.tensor([[1.0, rho], [rho, 1.0]])
    eps = torch.randn(8000, 2, generator=g) @ torch.linalg.cholesky(cov).T
    y = torch.cat([x, -0.5 * x], dim=-1) + eps
    m = JointGaussian(2, 1, hidden=(16,))
    fit(m, y, x, steps=1000, lr=5e-3)
    with torch.no_grad():
        c = m.condition(GRID).covariance_matrix
        fitted_rho = c[:, 0, 1] / (c[:, 0, 0] * c[:, 1, 1]).sqrt()
        marginal = m.marginal(1, GRID)
    assert (fitted_rho - rho).abs().max() < 0.05
    assert torch.allclose(marginal.scale, c[:, 1, 1].sqrt(), rtol=1e-5)
    assert (marginal.loc + 0.5 * GRID[:, 0]).abs().max() < 0.05


# --------------------------------------------------------------------------- event probabilities


def test_gaussian_event_prob_is_the_normal_cdf():
    m = GaussianMLP(2, hidden=(8,))
    c = torch.randn(50, 2)
    with torch.no_grad():
        d = m.condition(c)
        for low, high in [(None, 0.3), (-0.2, None), (-0.5, 0.7), (None, None)]:
            want = (d.cdf(torch.tensor(high)) if high is not None else 1.0) - (
                d.cdf(torch.tensor(low)) if low is not None else 0.0
            )
            got = m.event_prob(c, low, high)
            assert got.shape == (50,)
            assert torch.allclose(got, torch.as_tensor(want).expand(50), atol=1e-6)
        # tensor bounds broadcast over the batch
        lows = torch.linspace(-1, 1, 50)
        assert torch.allclose(m.event_prob(c, lows, None), 1 - d.cdf(lows), atol=1e-6)


def test_gaussian_log_event_prob_is_stable_in_the_tails():
    m = GaussianMLP(1, hidden=(8,))
    c = torch.zeros(1, 1)
    with torch.no_grad():
        loc, scale = (t.double() for t in m.loc_scale(c))
        lp_right = m.log_event_prob(c, low=float(loc + 12 * scale))
        lp_left = m.log_event_prob(c, high=float(loc - 12 * scale))
        lp_box = m.log_event_prob(c, float(loc + 8 * scale), float(loc + 9 * scale))
    tail = float(torch.special.log_ndtr(torch.tensor(-12.0, dtype=torch.float64)))
    box = math.log(
        math.exp(float(torch.special.log_ndtr(torch.tensor(-8.0, dtype=torch.float64))))
        - math.exp(float(torch.special.log_ndtr(torch.tensor(-9.0, dtype=torch.float64))))
    )
    assert m.event_prob(c, low=float(loc + 12 * scale)).item() < 1e-30
    assert abs(lp_right.item() - tail) < 1e-2 and abs(lp_left.item() - tail) < 1e-2
    assert abs(lp_box.item() - box) < 1e-2
    assert m.log_event_prob(c, 1.0, 0.5).item() == -math.inf  # empty interval


@pytest.mark.parametrize(
    ("low", "high"), [(None, 0.0), (-0.5, 0.5), (0.8, None), (-4.5, -0.2), (0.3, 5.0)]
)
def test_flow_event_prob_matches_monte_carlo(fitted_flow, low, high):
    c = torch.tensor([[-1.0], [0.3], [1.2]])
    with torch.no_grad():
        draws = fitted_flow.condition(c).sample((200_000,))[..., 0]
        lo = -math.inf if low is None else low
        hi = math.inf if high is None else high
        mc = ((draws >= lo) & (draws <= hi)).double().mean(0)
        exact = fitted_flow.event_prob(c, low, high)
    assert exact.shape == (3,)
    assert (exact.double() - mc).abs().max() < 0.01


def test_flow_median_halves_the_conditional(fitted_flow):
    c = torch.tensor([[-1.0], [0.3], [1.2]])
    med = fitted_flow.median(c)
    assert med.shape == (3,)
    with torch.no_grad():
        draws = fitted_flow.condition(c).sample((100_000,))[..., 0]
        below = (draws <= med).double().mean(0)
        exact = fitted_flow.event_prob(c, None, med)
    assert (exact - 0.5).abs().max() < 1e-4
    assert (below - 0.5).abs().max() < 0.01
    # differentiable in the context (the guidance loss follows it)
    c.requires_grad_(True)
    (g,) = torch.autograd.grad(fitted_flow.median(c).sum(), c)
    assert bool(g.isfinite().all()) and float(g.abs().sum()) > 0


def test_bernoulli_event_prob_has_value_semantics():
    m = BernoulliMLP(2, hidden=(8,))
    c = torch.randn(6, 2)
    with torch.no_grad():
        p1 = torch.sigmoid(m.logits(c))
        assert torch.allclose(m.prob_of(1, c), p1, atol=1e-6)
        assert torch.allclose(m.prob_of(0.0, c), 1 - p1, atol=1e-6)
        assert torch.allclose(m.event_prob(c, 0, 1), torch.ones(6))
        assert torch.allclose(m.event_prob(c, None, 0.5), 1 - p1, atol=1e-6)
        assert torch.allclose(m.event_prob(c, 0.5, None), p1, atol=1e-6)
        assert torch.all(m.event_prob(c, 0.2, 0.8) == 0)
        assert torch.all(m.log_event_prob(c, 0.2, 0.8) == -math.inf)
        assert torch.all(m.prob_of(0.5, c) == 0)
    assert m.discrete


def test_categorical_event_prob_sums_the_classes_inside():
    m = CategoricalMLP(2, 4, hidden=(8,))
    c = torch.randn(6, 2)
    with torch.no_grad():
        p = m.condition(c).probs
        assert torch.allclose(m.event_prob(c, 1, 2), p[:, 1] + p[:, 2], atol=1e-6)
        assert torch.allclose(m.event_prob(c, 0.5, 2.5), p[:, 1] + p[:, 2], atol=1e-6)
        assert torch.allclose(m.event_prob(c, None, 0), p[:, 0], atol=1e-6)
        assert torch.allclose(m.prob_of(3, c), p[:, 3], atol=1e-6)
        assert torch.allclose(m.event_prob(c), torch.ones(6))
        assert torch.all(m.prob_of(1.5, c) == 0)


GRAD_CASES = [
    (lambda: GaussianMLP(2, hidden=(8,)), (-0.3, 0.4)),
    (lambda: BernoulliMLP(2, hidden=(8,)), (0.5, None)),
    (lambda: CategoricalMLP(2, 3, hidden=(8,)), (1, 2)),
    (lambda: ConditionalFlow(1, 2, hidden=(8,)), (-0.3, 0.4)),
    (lambda: GaussianMLP(2, hidden=(8,), mask=True), (None, 0.2)),
]


@pytest.mark.parametrize(("make", "bounds"), GRAD_CASES)
def test_event_prob_gradients_reach_the_context(make, bounds):
    m = make()
    # break the flow's zero-initialised last layer so the context matters
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    c = torch.randn(5, 2, requires_grad=True)
    m.event_prob(c, *bounds).sum().backward()
    assert torch.isfinite(c.grad).all() and c.grad.abs().sum() > 0
    # an empty event back-propagates zeros, not NaNs
    for empty in [(0.2, 0.1), (0.25, 0.25)]:
        c2 = torch.randn(5, 2, requires_grad=True)
        m.log_event_prob(c2, *empty).exp().sum().backward()
        assert torch.isfinite(c2.grad).all()


def test_event_prob_errors():
    with pytest.raises(NotImplementedError, match="JointGaussian"):
        JointGaussian(2, 1).event_prob(torch.zeros(1, 1), 0.0, 1.0)
    with pytest.raises(NotImplementedError, match="ConditionalFlow"):
        ConditionalFlow(2, 1, hidden=(8,)).event_prob(torch.zeros(1, 1), 0.0, 1.0)
    with pytest.raises(TargetError, match="low"):
        GaussianMLP(1).event_prob(torch.zeros(1, 1), math.nan, 1.0)
    with pytest.raises(DataError, match="context_dim=2"):
        GaussianMLP(2).condition(torch.zeros(4, 3))
    with pytest.raises(DataError, match="context_dim=2"):
        GaussianMLP(2, mask=SigmoidMask(3))


# --------------------------------------------------------------------------- shapes, I/O

MAKERS = {
    "gaussian": lambda: GaussianMLP(3, hidden=(8,)),
    "gaussian-masked": lambda: GaussianMLP(3, hidden=(8,), mask=SigmoidMask(3, 0.7, 0.5)),
    "gaussian-0": lambda: GaussianMLP(0, hidden=(8,)),
    "bernoulli": lambda: BernoulliMLP(3, hidden=(8,), mask=True),
    "categorical": lambda: CategoricalMLP(3, 4, hidden=(8,), mask=True),
    "flow-1": lambda: ConditionalFlow(1, 3, hidden=(8,), count_bins=5, n_transforms=2),
    "flow-0": lambda: ConditionalFlow(1, 0, hidden=(8,)),
    "flow-3-spline": lambda: ConditionalFlow(3, 3, hidden=(8,), mask=True),
    "flow-3-affine": lambda: ConditionalFlow(3, 3, hidden=(8,), transform="affine"),
    "joint": lambda: JointGaussian(3, 3, hidden=(8,)),
}


def sample_y(m, c):
    d = m.condition(c)
    y = d.sample()
    return y if d.event_shape else y.unsqueeze(-1)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_log_prob_shapes_with_extra_batch_dims(name):
    m = MAKERS[name]()
    c = torch.randn(2, 4, 5, m.context_dim)
    d = m.condition(c)
    assert d.batch_shape == (2, 4, 5)
    assert d.event_shape == (
        () if m.y_dim == 1 and not isinstance(m, ConditionalFlow) else (m.y_dim,)
    )
    y = sample_y(m, c)
    assert y.shape == (2, 4, 5, m.y_dim)
    lp = m.log_prob(y, c)
    assert lp.shape == (2, 4, 5) and torch.isfinite(lp).all()


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_config_round_trip(name):
    m = MAKERS[name]()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    config = json.loads(json.dumps(m.config()))
    clone = type(m)(**config)
    clone.load_state_dict(m.state_dict())
    m.eval(), clone.eval()
    c = torch.randn(7, m.context_dim)
    y = sample_y(m, c)
    with torch.no_grad():
        assert torch.equal(m.log_prob(y, c), clone.log_prob(y, c))
    assert set(dict(m.named_parameters())) == set(dict(clone.named_parameters()))


def test_flow_transforms_are_registered_submodules():
    flow = ConditionalFlow(1, 2, hidden=(8,))
    names = [n for n, _ in flow.named_parameters()]
    assert names and all(n.startswith("transforms.0.") for n in names)
    assert set(flow.state_dict()) >= set(names)
