"""The selection-aware block prior in the box's unconstrained coordinates (known answers)."""

import math

import torch

from sedge_pyro.inference.block_prior import BlockPrior
from sedge_pyro.inference.fit import fit_component
from sedge_pyro.models.sedge import component_program as _fn

# normalised units: a uniform feature of unit variance spans +-sqrt(3)
EDGE = math.sqrt(3.0)
BOX = (torch.full((2,), -EDGE * 1.01), torch.full((2,), EDGE * 1.01))


def _fitted(box, seed=0):
    torch.manual_seed(seed)
    x = (torch.rand(4000, 2) * 2 - 1) * EDGE  # x_c = column 0, one block's feature = column 1
    prior = BlockPrior(2, [0], [[1]], [], hidden=(16,), box=box)
    prior.standardise(x)
    v = prior.to_unconstrained(x)
    for name, y, ctx in (("shared", v[:, [0]], x[:, :0]), ("block0", v[:, [1]], x[:, [0]])):
        f = prior.factors[name]
        fit_component(
            f, _fn(f.model, name), (y, ctx), name=name, steps=600, seed=seed, progress=False
        )
    return prior.eval()


def _shares(prior):
    torch.manual_seed(1)
    x = prior.sample(40_000)
    c = x[:, 0]
    top, bottom = (c > 0.8 * EDGE).float().mean(), (c < -0.8 * EDGE).float().mean()
    return float(top), float(bottom), float((c.abs() > EDGE).float().mean()), x


def test_a_uniform_keeps_its_mass_inside_its_edges_in_the_box_and_not_without_it():
    # U(-e, e): each tenth of the range at an edge holds 10% of the mass, none lies past it.
    # A spline of eight bins over [-4, 4] fit on the features smooths the edges out past
    # the rows; in the box's logit coordinates the uniform is smooth and its edges are the
    # box's (a 1% margin)
    top, bottom, past, x = _shares(_fitted(BOX))
    assert abs(top - 0.10) < 0.012 and abs(bottom - 0.10) < 0.012
    assert past < 0.005
    assert bool(((x > BOX[0]) & (x < BOX[1])).all())
    *_, plain_past, _ = _shares(_fitted(None))
    assert plain_past > 0.02


def test_the_density_is_normalised_on_the_box_and_zero_outside():
    prior = _fitted(BOX)
    lo, hi = float(BOX[0][0]), float(BOX[1][0])
    g = torch.linspace(lo, hi, 402)[1:-1]
    cell = float(g[1] - g[0])
    xx = torch.cartesian_prod(g, g)
    with torch.no_grad():
        mass = float(prior.log_prob(xx).exp().sum()) * cell * cell
        outside = prior.log_prob(torch.tensor([[0.0, hi + 0.01], [lo - 0.01, 0.0]]))
    assert abs(mass - 1.0) < 0.02
    assert bool(torch.isneginf(outside).all())


def test_the_edge_of_the_box_has_the_density_just_inside_and_past_it_none():
    # a sampler's point mapped from a large unconstrained coordinate lands on the edge itself
    # (float32 rounds the sigmoid to 0 or 1): a -inf there made svi's ELBO diverge
    prior = _fitted(BOX)
    lo, hi = BOX[0], BOX[1]
    width = hi - lo
    x = torch.stack([lo, hi, torch.stack([lo[0], hi[1]]), hi + 1e-6 * width])
    with torch.no_grad():
        assert bool(torch.isfinite(prior.log_prob(x)).all())
        assert bool(torch.isneginf(prior.log_prob(torch.stack([hi + 1e-3 * width]))).all())
