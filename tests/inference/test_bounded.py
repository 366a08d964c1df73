"""The model-based samplers stay in the seen box (``bounded=True``, their default).

A known answer: an exact linear-Gaussian model fit on few rows, with a point target far in the
tail, whose closed-form posterior puts most of its mass beyond the training rows' range. The
box's draws are the same posterior restricted to the box (Problem.log_density_box), so they
are all inside it, and inside it they follow the exact posterior's shape; the unbounded
sampler follows the fitted model wherever it leads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import exact_linear_gaussian

import sedge_pyro as sp
from sedge_pyro.inference.target import Problem, Target, box_margin


@pytest.fixture(scope="module")
def small():
    return exact_linear_gaussian(100, seed=3)


@pytest.fixture(scope="module")
def far(small):
    """The most extreme target the rows have seen: z1 at its largest, z2 at its smallest."""
    model, _ = small
    return {"z1": float(model.seen.z1.max()), "z2": float(model.seen.z2.min())}


def _box(model):
    seen = model.seen[list(model.features)]
    lo, hi = seen.min().to_numpy(), seen.max().to_numpy()
    w = (hi - lo) * box_margin(len(seen))
    return lo - w, hi + w


def test_the_far_target_posterior_reaches_beyond_the_seen_range(small, far):
    model, data = small
    draws = data.sample_posterior(far, 4000, seed=0)
    lo, hi = _box(model)
    assert np.mean(np.any((draws < lo) | (draws > hi), axis=1)) > 0.3


@pytest.mark.parametrize(
    "method, options",
    [("langevin", {"warmup": 200}), ("svi", {"steps": 300}), ("nuts", {"warmup": 100})],
)
def test_bounded_draws_stay_in_the_box_and_unbounded_ones_leave_it(small, far, method, options):
    model, _ = small
    n = 100 if method == "nuts" else 400
    lo, hi = _box(model)
    inside = model.sample(far, n=n, method=method, seed=0, **options)
    v = inside.to_numpy()
    assert inside.info["bounded"] is True
    assert np.all((v >= lo - 1e-6) & (v <= hi + 1e-6))
    # the verdict's support check widens the seen range by the same margin: nothing to flag
    assert set(inside.info["diagnostics"]["outside"].values()) == {0.0}
    out = model.sample(far, n=n, method=method, seed=0, bounded=False, **options)
    assert out.info["bounded"] is False
    assert np.mean(np.any((out.to_numpy() < lo) | (out.to_numpy() > hi), axis=1)) > 0.2


def test_box_coordinates_round_trip_and_their_jacobian_is_exact(small, far):
    model, _ = small
    problem = Problem(model, Target(model, far), torch.device("cpu"))
    lo, hi = problem.box
    u = torch.randn(50, problem.dim, dtype=torch.float64).float() * 2
    x = problem.from_box(u)
    assert bool(((x > lo) & (x < hi)).all())
    assert torch.allclose(problem.to_box(x), u, atol=1e-4)
    # the log-Jacobian is the log-determinant of the (diagonal) derivative of from_box
    jac = torch.autograd.functional.jacobian(lambda t: problem.from_box(t).sum(0), u)
    diag = torch.stack([jac[j, :, j] for j in range(problem.dim)], 1)
    assert torch.allclose(problem.box_log_jacobian(u), diag.log().sum(1), atol=1e-4)


def test_bounded_is_a_checked_flag(small, far):
    model, _ = small
    with pytest.raises(sp.OptionError, match="bounded"):
        model.sample(far, n=5, method="langevin", bounded="yes")


def test_walkers_start_where_the_target_is_likely(small):
    # an event only the top rows reach: starts drawn by the target's likelihood sit there
    model, _ = small
    target = {"z1": sp.Interval(low=float(np.quantile(model.seen.z1, 0.9)))}
    problem = Problem(model, Target(model, target), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    rows = problem.start_rows(8, g)
    assert len(set(rows.tolist())) == 8  # without replacement: dispersed
    with torch.no_grad():
        ll = problem.log_likelihood(problem.train_x)
    assert float(ll[rows].exp().mean()) > 4 * float(ll.exp().mean())
