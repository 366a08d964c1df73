"""Every sampler's draws depend on the target: two targets, two different sets of draws, each
closer to its own target than the other's (the issue's check that ``dps`` drew the same images
for every combination).

The model is the exact linear-Gaussian one (``known_models``), so "meets its target" is
measured under the true mechanism: the mean log-likelihood of a point target, the mean
probability of an event.
"""

from __future__ import annotations

import numpy as np
import pytest
from known_models import ExactGaussianDiffusion, exact_linear_gaussian
from scipy.stats import norm

import sedge_pyro as sp
from sedge_pyro.inference.sample import METHODS

POINTS = ({"z1": 1.0, "z2": -1.0}, {"z1": -1.0, "z2": 1.0})
EVENTS = (
    {"z1": sp.Interval(low=1.0), "z2": sp.Interval(high=-0.5)},
    {"z1": sp.Interval(high=-1.0), "z2": sp.Interval(low=0.5)},
)
#: small runs: the check is that the draws move with the target, not their accuracy
OPTIONS = {
    "plan": {},
    "opt": {"steps": 200},
    "dps": {"guidance": 1.0},
    "smc": {"particles": 512},
    "langevin": {"warmup": 200},
    "annealed": {"kind": "annealed", "levels": 20, "steps_per_level": 20},
    "svi": {"steps": 200},
    "nuts": {"warmup": 50},
    "direct": {},
}
DIFFUSION = ("dps", "smc", "annealed")


@pytest.fixture(scope="module")
def models():
    model, data = exact_linear_gaussian(20_000, seed=0)
    ddpm, _ = exact_linear_gaussian(20_000, seed=0)
    ddpm.components["prior"] = ExactGaussianDiffusion(data.mean, data.cov)
    reverse = sp.SEDGEModel(data.graph, structure="reverse", hidden=(16,))
    reverse.fit(data.seen, steps=300, progress=False)
    return {"model": model, "ddpm": ddpm, "reverse": reverse, "data": data}


def _meets(data, target, v):
    """Mean log-likelihood (points) or probability (events) of ``target`` at draws ``v``
    under the true mechanism.
    """
    out = 0.0
    for z, want in target.items():
        parents, w, b, s = data.specs[z]
        idx = [list(data.graph.features).index(p) for p in parents]
        mean = v[:, idx] @ w + b
        if isinstance(want, sp.Interval):
            lo = -np.inf if want.low is None else want.low
            hi = np.inf if want.high is None else want.high
            out += np.mean(np.log(norm.cdf((hi - mean) / s) - norm.cdf((lo - mean) / s) + 1e-300))
        else:
            out += np.mean(norm.logpdf(want, mean, s))
    return out


def _draw(models, key, target):
    method = "langevin" if key == "annealed" else key
    model = models["ddpm" if key in DIFFUSION else "reverse" if key == "direct" else "model"]
    s = model.sample(target, n=200, method=method, seed=0, **OPTIONS[key])
    return s.to_numpy()


def test_every_method_is_checked():
    assert set(METHODS) <= set(OPTIONS)


@pytest.mark.parametrize("key", list(OPTIONS))
@pytest.mark.parametrize(
    "pair",
    # .ci/run runs the events; `make test` keeps its 10 minutes
    ["points", pytest.param("events", marks=pytest.mark.slow)],
)
def test_draws_follow_their_target(models, key, pair):
    a, b = POINTS if pair == "points" else EVENTS
    va, vb = _draw(models, key, a), _draw(models, key, b)
    data = models["data"]
    test = sp.mmd(va, vb, permutations=100, seed=0)
    assert test.p_value < 0.01, f"{key}: the draws for two targets do not differ"
    assert _meets(data, a, va) > _meets(data, a, vb), f"{key}: target a is met better by b's"
    assert _meets(data, b, vb) > _meets(data, b, va), f"{key}: target b is met better by a's"
