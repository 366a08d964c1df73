"""``direct`` (models D/E): draws from the fitted ``p(X | Z)`` against the closed form."""

from __future__ import annotations

import numpy as np
import pytest
from known_models import fitted_model_e

import sedge_pyro as sp

TARGET = {"z1": 1.0, "z2": -1.0}


@pytest.fixture(scope="module")
def fitted():
    return fitted_model_e()


def test_direct_draws_the_fitted_marginals(fitted):
    model, data = fitted
    s = model.sample(TARGET, n=2000, method="direct", seed=0)
    assert s.method == "direct" and s.values.shape == (1, 2000, 3)
    v = s.to_numpy()
    mean, cov = data.posterior(TARGET)
    sd = np.sqrt(np.diag(cov))
    # model E is prod_j p(x_j | z): the right marginals (within 4 SE and a 5% fit error) ...
    assert np.all(np.abs(v.mean(0) - mean) < 4 * sd / np.sqrt(len(v)) + 0.05 * sd)
    assert np.allclose(v.std(0) / sd, 1.0, atol=0.08)
    # ... but not their dependence: the features come out (nearly) uncorrelated
    corr = np.corrcoef(v.T)
    true_corr = cov / np.outer(sd, sd)
    assert abs(true_corr[0, 1]) > 0.3 and abs(corr[0, 1]) < 0.1


def test_direct_completes_other_specs_from_training_rows(fitted):
    model, data = fitted
    # z2 is not in the target: each draw takes a random training row's z2 (documented), so
    # x follows p(x | z1 = 1, z2) with z2 ~ pD(z2); the posterior mean is linear in z2, so
    # the draws' mean is the posterior mean at z2 = E[z2]
    s = model.sample({"z1": 1.0}, n=2000, method="direct", seed=0)
    seen = data.seen
    mean, _ = data.posterior({"z1": 1.0, "z2": float(seen.z2.mean())})
    v = s.to_numpy()
    assert np.all(np.abs(v.mean(0) - mean) < 4 * v.std(0) / np.sqrt(len(v)) + 0.02)
    # intervals draw the spec's value from the training values inside it
    s = model.sample({"z1": sp.Interval(low=2.0)}, n=500, method="direct", seed=1)
    assert s.to_numpy()[:, 0].mean() > seen.x1.mean() + 0.5


def test_direct_needs_a_reverse_model():
    data = sp.datasets.linear_gaussian(2000, seed=0)
    model = sp.SEDGEModel(data.graph, prior="empirical", hidden=())
    model.fit(data.seen, steps=20, progress=False)
    with pytest.raises(sp.OptionError, match="method 'direct' needs a reverse model"):
        model.sample(TARGET, n=10, method="direct")
