"""``plan``'s selection-aware weights (``selection="odds"``): exact where the selection removed
the target combination, against the population's own conditional (a known answer)."""

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp


def _population(n: int, seed: int) -> pd.DataFrame:
    """x2 in {0, 1, 2} shared by two binary specs; P(z2 = 1 | x2) is large, so the held-out
    combination is far from rare (Prop. 4's approximation is off)."""
    rng = np.random.default_rng(seed)
    x1, x3 = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    x2 = rng.integers(0, 3, n).astype(float)
    z1 = (x1 + 0.25 * x2 + rng.uniform(0, 0.3, n) > 0.9).astype(int)
    p2 = np.array([0.15, 0.5, 0.85])[x2.astype(int)] * (0.6 + 0.4 * x3)
    z2 = (rng.uniform(0, 1, n) < p2).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "z1": z1, "z2": z2})


@pytest.fixture(scope="module")
def fitted():
    pop = _population(30_000, seed=0)
    novel = (pop.z1 == 1) & (pop.z2 == 1)
    seen, oracle = pop[~novel].reset_index(drop=True), pop[novel].reset_index(drop=True)
    graph = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
    model = sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=30, progress=False)
    return model, oracle


TARGET = {"z1": 1, "z2": 1}


def _x2_shares(s: sp.Samples) -> np.ndarray:
    x2 = s.to_dataframe()["x2"].to_numpy()
    return np.array([(x2 == v).mean() for v in (0.0, 1.0, 2.0)])


def test_odds_recovers_the_population_conditional_where_rarity_does_not(fitted):
    model, oracle = fitted
    truth = np.array([(oracle.x2 == v).mean() for v in (0.0, 1.0, 2.0)])
    odds = model.sample(TARGET, n=4000, method="plan", seed=1)
    rarity = model.sample(TARGET, n=4000, method="plan", seed=1, selection="rarity")
    assert odds.info["selection"] == "odds"
    assert rarity.info["selection"] == "rarity"
    err_odds = np.abs(_x2_shares(odds) - truth).max()
    err_rarity = np.abs(_x2_shares(rarity) - truth).max()
    # 4,000 draws: a share's standard error is under 0.008, and the estimate of P(z2 | x2)
    # adds little on ~10,000 untouched rows per value of x2
    assert err_odds < 0.03, (truth, _x2_shares(odds))
    # the rarity form weighs by p_D(z2 | x2), which the selection has bent away from the
    # values where z1 = 1 is likely: it is off by far more than the sampling error
    assert err_rarity > 0.06, (truth, _x2_shares(rarity))
    # the private features follow: x3 given z2 = 1 is not corrected, nor needs to be
    x3 = odds.to_dataframe()["x3"].to_numpy()
    assert abs(x3.mean() - oracle.x3.mean()) < 0.03


def test_a_seen_combination_has_no_weight_term_to_correct(fitted):
    model, _ = fitted
    s = model.sample({"z1": 1, "z2": 0}, n=200, method="plan", seed=0)
    assert s.info["status"] != "CONSERVATIVE"
    assert s.info["selection"] == "none"


def test_selection_option_is_checked(fitted):
    model, _ = fitted
    with pytest.raises(sp.OptionError, match="selection='exact'"):
        model.sample(TARGET, n=10, method="plan", selection="exact")


def test_auto_falls_back_to_rarity_where_the_odds_are_ill_conditioned():
    # three blocks chained through x2 and x4: where both other events are near-certain the
    # training rows thin out, and the odds' importance weights collapse onto a few of them
    from sedge_pyro.datasets import Mechanism

    data = sp.datasets.synthetic(
        24_000,
        seed=0,
        features={f"x{i}": (0.0, 1.0) for i in range(1, 11)},
        specs={
            "z1": Mechanism(("x1", "x2"), (0.8, 0.6)),
            "z2": Mechanism(("x2", "x3", "x4"), (0.6, 0.5, 0.5)),
            "z3": Mechanism(("x4", "x5"), (0.7, 0.7)),
            "z4": Mechanism(("x5", "x6"), (0.8, 0.6)),
        },
        novel={
            "z1": sp.Interval(high=0.88),
            "z2": sp.Interval(low=0.83),
            "z3": sp.Interval(high=0.88),
        },
    )
    model = sp.SEDGEModel(data.graph, prior="empirical").fit(data.seen, steps=30, progress=False)
    target = dict(data.novel)
    odds = model.sample(target, n=1000, method="plan", seed=0, selection="odds")
    assert odds.info["ess"] < 100
    auto = model.sample(target, n=1000, method="plan", seed=0)
    assert auto.info["selection"] == "rarity" and auto.info["ess"] >= 100
    assert "the rarity form of Eq. (3) was used" in auto.info["selection_reason"]
    # the weight sits where 1 - prod_r P(A_r | X_c) rests on a few neighbours' misses
    assert "of the odds' weight sat where" in auto.info["selection_reason"]
