"""Every sampler's kernel follows one protocol: ``init(generator) -> State`` and
``step(state, generator) -> (State, Info)``, named tuples with every field documented, and its
``sample_<method>`` is a loop over it (BlackJAX's ``SamplingAlgorithm``).
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from known_models import ExactGaussianDiffusion, exact_linear_gaussian

import sedge_pyro as sp
from sedge_pyro.inference import annealed, direct, dps, mala, opt, plan, smc, vi
from sedge_pyro.inference.draws import Kernel
from sedge_pyro.inference.target import Problem, Target


@pytest.fixture(scope="module")
def problems():
    model, data = exact_linear_gaussian(2000, seed=0)
    point = Problem(model, Target(model, {"z1": 1.0, "z2": 0.5}), torch.device("cpu"))
    diffusion, _ = exact_linear_gaussian(2000, seed=0)
    diffusion.components["prior"] = ExactGaussianDiffusion(data.mean, data.cov, T=20)
    target = Target(diffusion, {"z1": 1.0, "z2": 0.5})
    return point, Problem(diffusion, target, torch.device("cpu"))


def _builders(point, diffused):
    steps = dps.reverse_steps(20, None)
    return {
        "opt": opt.kernel(point, 8, steps=5, lr=0.1, lr_decay=0.01, loss="squared", w=0.0),
        "dps": dps.kernel(
            diffused,
            8,
            steps,
            guidance=0.1,
            loss="squared",
            normalize=True,
            guidance_schedule="constant",
            guide_on="x0",
        ),
        "smc": smc.kernel(
            diffused, 2, 8, steps, ess_threshold=0.5, max_shift=1.0, smooth=2, temper=2.0
        ),
        "mala": mala.kernel(point, 2, 4, step_size=0.1, adjust=True, bounded=True),
        "annealed": annealed.kernel(diffused, 8, [5, 3, 1], epsilon=0.1, steps_per_level=2),
        "plan": plan.kernel(point, 6, 2, oversample=8, k=None, min_ess=100.0, selection="auto"),
        "svi": vi.kernel(point, 3, "mvn", 2, None, lr=0.01, num_particles=2, bounded=True),
    }


def _documented(kind: type) -> None:
    """A named tuple whose docstring names every field (``:param field:``)."""
    assert issubclass(kind, tuple) and hasattr(kind, "_fields")
    for name in kind._fields:
        assert f":param {name}:" in (kind.__doc__ or ""), (kind.__name__, name)


@pytest.mark.parametrize("name", ["opt", "dps", "smc", "mala", "annealed", "plan", "svi"])
def test_a_kernel_inits_and_steps_with_named_tuples(problems, name):
    kernel = _builders(*problems)[name]
    assert isinstance(kernel, Kernel)
    g = torch.Generator().manual_seed(0)
    context = vi._isolated(problems[0]) if name == "svi" else contextlib.nullcontext()
    with context:
        state = kernel.init(g)
        new, info = kernel.step(state, g)
    _documented(type(state))
    assert type(new) is type(state)
    _documented(type(info))


def test_the_direct_kernel_draws_one_batch():
    data = sp.datasets.linear_gaussian(2000, seed=0)
    model = sp.SEDGEModel(data.graph, structure="reverse-factorized", hidden=())
    model.fit(data.seen, steps=30, batch_size=512, lr=1e-2, seed=0, progress=False)
    problem = Problem(model, Target(model, {"z1": 1.0}), torch.device("cpu"))
    kernel = direct.kernel(problem, 2, 5)
    g = torch.Generator().manual_seed(0)
    state, info = kernel.step(kernel.init(g), g)
    _documented(type(state))
    _documented(type(info))
    assert state.x is not None and state.x.shape == (10, 3)
    assert math.isfinite(float(state.x.sum()))
