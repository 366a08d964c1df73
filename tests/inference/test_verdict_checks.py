"""The verdict's chain and cross-method checks (issue 21 item 4): R-hat/ESS warnings for Markov
chains, the cross-check of model-based samplers against ``plan``, and the satisfaction
reference taken from ``plan``'s draws.
"""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
from known_models import exact_linear_gaussian

import sedge_pyro as sp
from sedge_pyro.inference import verdict as v
from sedge_pyro.inference.samples import Samples

TARGET = {"z1": 1.0, "z2": -1.0}
JOINT = types.SimpleNamespace(seen=None, structure="joint")  # no support, no satisfaction


@pytest.fixture(scope="module")
def exact():
    model, _ = exact_linear_gaussian(3000, seed=0)
    return model


def _ar1(rho, chains, n, rng):
    """Stationary AR(1) chains with unit variance: bulk ESS about n (1 - rho) / (1 + rho)."""
    x = np.empty((chains, n))
    x[:, 0] = rng.normal(size=chains)
    noise = rng.normal(size=(chains, n)) * np.sqrt(1 - rho**2)
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x[..., None]


# --------------------------------------------------------------------------- R-hat and ESS


def test_chain_figures_known_answers():
    rng = np.random.default_rng(0)
    # four chains with means 0, 0, 1, 1 and unit noise: R-hat 1.14 (docs/diagnostics.md)
    apart = rng.normal(size=(4, 1000, 1)) + np.array([0.0, 0.0, 1.0, 1.0])[:, None, None]
    assert v.chain_figures(apart, ["x"])["x"]["r_hat"] == pytest.approx(1.14, abs=0.02)
    iid = v.chain_figures(rng.normal(size=(2, 500, 2)), ["a", "b"])
    assert all(abs(f["r_hat"] - 1) < 0.02 and f["ess_bulk"] > 700 for f in iid.values())
    # AR(1) with rho 0.99: 2 x 1000 draws carry about 2000 * 0.01 / 1.99 = 10 effective draws
    assert v.chain_figures(_ar1(0.99, 2, 1000, rng), ["x"])["x"]["ess_bulk"] < 40
    # a constant feature has no R-hat; chains each stuck at their own value have not moved
    stuck = np.zeros((2, 50, 2))
    stuck[1, :, 1] = 1.0
    figures = v.chain_figures(stuck, ["c", "s"])
    assert figures["c"] == {"r_hat": None, "ess_bulk": None}
    assert figures["s"]["r_hat"] > 2 or figures["s"]["r_hat"] == float("inf")
    assert v.ess_bar(4000) == 100 and v.ess_bar(200) == pytest.approx(20.0)


@pytest.mark.parametrize("method", ["langevin", "nuts"])
def test_chains_in_different_modes_warn(method):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 500, 2))
    values[1] += [3.0, 0.0]  # the second chain sits in another mode of x1
    diagnostics, warnings = v.verdict(JOINT, values, ["x1", "x2"], {"z": 1.0}, method)
    r = diagnostics["rhat_ess"]
    assert r["kind"] == "mcmc" and r["max_r_hat"] > 1.5
    assert r["figures"]["x2"]["r_hat"] < 1.02  # x2 mixed
    assert r["min_ess_bulk"] < 100  # ArviZ's ESS counts the chains' disagreement too ...
    # ... but one warning says it
    assert len(warnings) == 1 and warnings[0].startswith("the 2 chains disagree: R-hat")
    assert "for x1" in warnings[0]


def test_well_mixed_chains_do_not_warn_and_sticky_chains_do():
    rng = np.random.default_rng(1)
    good = rng.normal(size=(2, 500, 2))
    diagnostics, warnings = v.verdict(JOINT, good, ["x1", "x2"], {"z": 1.0}, "langevin")
    assert warnings == [] and diagnostics["errors"] == {}
    r = diagnostics["rhat_ess"]
    assert r["max_r_hat"] < 1.02 and r["min_ess_bulk"] > 700 and r["ess_bar"] == 100
    # chains that mix, slowly: AR(1) with rho 0.97, 4000 * 0.03 / 1.97 = 61 effective draws
    sticky = _ar1(0.97, 2, 2000, np.random.default_rng(3))
    diagnostics, warnings = v.verdict(JOINT, sticky, ["x"], {"z": 1.0}, "nuts")
    r = diagnostics["rhat_ess"]
    assert r["max_r_hat"] < v.RHAT_MAX and 40 < r["min_ess_bulk"] < 90
    assert len(warnings) == 1 and warnings[0].startswith("bulk ESS"), warnings
    assert "from 4000 draws (under 100)" in warnings[0]


def test_one_chain_or_no_markov_chain_computes_no_r_hat():
    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, 500, 1)) + np.linspace(0, 5, 500)[None, :, None]  # drifting
    diagnostics, warnings = v.verdict(JOINT, one, ["x"], {"z": 1.0}, "langevin")
    assert warnings == [] and "R-hat needs two or more" in diagnostics["rhat_ess"]["reason"]
    assert "figures" not in diagnostics["rhat_ess"]
    apart = rng.normal(size=(2, 500, 1)) + np.array([0.0, 3.0])[:, None, None]
    for method, settings in [("opt", {}), ("langevin", {"kind": "annealed"})]:
        _, warnings = v.verdict(JOINT, apart, ["x"], {"z": 1.0}, method, settings=settings)
        assert not any("R-hat" in w or "ESS" in w for w in warnings), warnings


@pytest.mark.parametrize("method", ["opt", "dps", "langevin", "svi", "plan"])
def test_methods_approximate_by_construction_always_say_so(method):
    values = np.random.default_rng(0).normal(size=(1, 200, 1))
    diag, warnings = v.verdict(JOINT, values, ["x1"], {"z1": 1.0}, method)
    said = [w for w in warnings if w == v.APPROXIMATE.get(method)]
    assert bool(said) is (method in ("opt", "dps")) and diag.get("approximate", False) is bool(said)


@pytest.mark.parametrize(("refine", "approximate"), [(0, True), (500, False)])
def test_annealed_langevin_without_refinement_says_it_is_approximate(refine, approximate):
    values = np.random.default_rng(0).normal(size=(1, 200, 1))
    info = {"kind": "annealed", "refine": refine}
    diag, warnings = v.verdict(JOINT, values, ["x1"], {"z1": 1.0}, "langevin", info=info)
    assert (v.ANNEALED_UNREFINED in warnings) is approximate
    assert diag.get("approximate", False) is approximate


def test_stuck_langevin_chains_warn(exact):
    options = {"step_size": 1e-6, "warmup": 0, "walkers": 1}
    s = exact.sample(TARGET, n=100, method="langevin", chains=2, seed=0, **options)
    assert any(w.startswith("the 2 chains disagree") for w in s.warnings), s.warnings
    r = s.info["diagnostics"]["rhat_ess"]
    assert r["max_r_hat"] > 1.05 and r["min_ess_bulk"] < r["ess_bar"]


@pytest.mark.parametrize(
    ("khat", "warned"), [(0.3, False), (0.69, False), (0.7, True), (1.4, True)]
)
def test_svi_warns_when_its_importance_weights_cannot_be_trusted(khat, warned):
    values = np.random.default_rng(0).normal(size=(1, 200, 1))
    info = {"khat": khat, "ess": 150.0, "resampled": khat < 0.7}
    diag, warnings = v.verdict(JOINT, values, ["x1"], {"z1": 1.0}, "svi", info=info)
    assert diag["importance"]["khat"] == khat
    assert any(w.startswith("svi's guide does not cover") for w in warnings) is warned
    # other methods carry no importance weights
    diag, warnings = v.verdict(JOINT, values, ["x1"], {"z1": 1.0}, "langevin", info=info)
    assert "importance" not in diag


@pytest.mark.parametrize(("ess", "warned"), [(99.0, True), (100.0, False), (900.0, False)])
def test_svi_resampled_from_a_defensive_pool_warns_on_a_small_ess(ess, warned):
    # the pool held the prior's draws: the weights are bounded, resampled whatever k-hat
    # reads, and the ESS says how many draws the resampling rests on
    values = np.random.default_rng(0).normal(size=(1, 200, 1))
    info = {"khat": 0.9, "ess": ess, "resampled": True}
    _, warnings = v.verdict(JOINT, values, ["x1"], {"z1": 1.0}, "svi", info=info)
    assert not any(w.startswith("svi's guide does not cover") for w in warnings)
    assert any(w.startswith("svi's draws were resampled from an effective") for w in warnings) is (
        warned
    )


# --------------------------------------------------------------------------- cross-check


def test_agreement_known_answers():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 2)), rng.normal(size=(800, 2))
    value, floor = v.agreement(a, b)
    assert value < 2 * floor
    value, floor = v.agreement(a, b + [1.0, 0.0])  # a one-sd shift of one feature
    assert value > 3 * floor
    # a set that never moves is one point: its floor is 0 and the reference's floor counts
    value, floor = v.agreement(np.ones((400, 2)), b, ordered=(True, False))
    assert floor > 0 and value > 3 * floor


def _fake_reference(values, method="plan", warnings=()):
    s = Samples(values, ["x1", "x2"], {"z1": 1.0}, method, info={"warnings": list(warnings)})
    return lambda: s


class _Flat:
    """A model with per-spec likelihoods under which every draw meets the target."""

    seen = None

    def __init__(self, structure="sparse"):
        self.structure = structure

    def spec_probability(self, df, target, tolerance=None):
        return pd.DataFrame({"all": np.ones(len(df))})


SPARSE = _Flat()


def test_the_cross_check_warns_of_disagreement_and_records_the_ratio():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(1, 1000, 2))
    same = rng.normal(size=(1, 1000, 2))
    d, w = v.verdict(
        SPARSE, same, ["x1", "x2"], {"z1": 1.0}, "svi", reference=_fake_reference(reference)
    )
    assert w == [] and d["agreement"]["reference"] == "plan" and d["agreement"]["ratio"] < 2
    apart = same + [1.5, 0.0]
    d, w = v.verdict(
        SPARSE, apart, ["x1", "x2"], {"z1": 1.0}, "opt", reference=_fake_reference(reference)
    )
    a = d["agreement"]
    assert a["ratio"] == pytest.approx(a["mmd"] / a["floor"]) and a["ratio"] > v.AGREEMENT_RATIO
    assert w[0] == v.APPROXIMATE["opt"]  # and the disagreement, which it does not replace
    assert len(w) == 2 and w[1].startswith("opt and plan disagree on this model and target")
    assert f"{a['ratio']:.1f}x" in w[1]
    # a reference with warnings of its own (few rows near the target) is not judged on
    weak = _fake_reference(reference, warnings=["the 1000 draws rest on 2 distinct vectors"])
    d, w = v.verdict(SPARSE, apart, ["x1", "x2"], {"z1": 1.0}, "opt", reference=weak)
    assert w == [v.APPROXIMATE["opt"]] and "not judged" in d["agreement"]["reason"]
    assert d["agreement"]["ratio"] > v.AGREEMENT_RATIO


def _checked(values, reference):
    """The verdict on ``values`` (svi draws of x1, x2) cross-checked against ``reference``."""
    return v.verdict(
        SPARSE, values, ["x1", "x2"], {"z1": 1.0}, "svi", reference=_fake_reference(reference)
    )


def test_a_mean_shift_the_mmd_misses_still_warns():
    # 300 draws shifted by 0.6 sd in one feature: the standardised median-bandwidth MMD sees
    # it as under 3x its floor, the difference of means (0.6 against a split-half 0.1) does not
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(1, 300, 2))
    d, w = _checked(rng.normal(size=(1, 300, 2)) + [0.6, 0.0], reference)
    a = d["agreement"]
    assert a["ratio"] <= v.AGREEMENT_RATIO
    assert a["mean_shift"] == pytest.approx(0.6, abs=0.15)
    assert a["mean_shift"] > v.SHIFT_FLOOR_RATIO * a["mean_shift_floor"]
    assert len(w) == 1 and "their means differ by up to" in w[0]
    # the same sizes without the shift: no warning
    d, w = _checked(rng.normal(size=(1, 300, 2)), reference)
    assert w == [] and d["agreement"]["mean_shift"] < v.SHIFT_MIN


def test_a_small_but_certain_mean_shift_warns():
    # 0.15 sd in x1 at 2,000 draws each: under SHIFT_MIN, and the MMD ratio under 3, but 4-5
    # standard errors: one of the two is off by that much
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(1, 2000, 2))
    shifted = rng.normal(size=(1, 2000, 2)) + [0.15, 0.0]
    d, w = _checked(shifted, reference)
    a = d["agreement"]
    assert a["mean_shift"] < v.SHIFT_MIN and a["mean_z"]["x1"] > 4 and a["mean_z"]["x2"] < 3
    assert len(w) == 1 and "their means of x1 differ by 0." in w[0], w
    # the same shift at 100 draws is within the noise; a certain but tiny one is not worth a
    # warning (0.05 sd at 20,000 draws)
    assert _checked(shifted[:, :100], reference[:, :100])[1] == []
    big = rng.normal(size=(1, 20_000, 2))
    tiny = _checked(big + [0.05, 0.0], big)
    assert tiny[0]["agreement"]["mean_z"]["x1"] > 3 and tiny[1] == []


@pytest.mark.parametrize(
    ("method", "structure", "target", "reason"),
    [
        ("plan", "sparse", {"z1": 1.0}, "plan is the reference"),
        ("direct", "reverse", {"z1": 1.0}, "the cross-check covers"),
        ("langevin", "joint", {"z1": 1.0}, "sparse and dense models only"),
        ("opt", "sparse", {"z1": np.zeros(5)}, "per-draw target"),
    ],
)
def test_the_cross_check_says_why_it_did_not_run(method, structure, target, reason):
    called = []
    values = np.zeros((1, 5, 2))
    model = _Flat(structure)
    d, w = v.verdict(
        model, values, ["x1", "x2"], target, method, reference=lambda: called.append(1)
    )
    assert called == [] and d["agreement"]["reference"] is None
    assert reason in d["agreement"]["reason"]
    assert not any("disagree" in x for x in w)


def test_the_cross_check_never_breaks_sampling():
    def refuses():
        raise sp.SamplingError("no training row supports the term p(z1 | x1)")

    def breaks():
        raise RuntimeError("boom")

    values = np.random.default_rng(0).normal(size=(1, 10, 2))
    d, w = v.verdict(SPARSE, values, ["x1", "x2"], {"z1": 1.0}, "svi", reference=refuses)
    assert w == [] and "plan drew no reference (SamplingError" in d["agreement"]["reason"]
    d, w = v.verdict(SPARSE, values, ["x1", "x2"], {"z1": 1.0}, "svi", reference=breaks)
    assert d["errors"] == {"agreement": "RuntimeError: boom"}
    assert w == ["the agreement check could not run (RuntimeError: boom)"]


def test_langevin_stuck_at_its_start_disagrees_with_plan(exact):
    # one walker with a step of 1e-6 and no warmup: the draws are its start row, repeated. The
    # start row is drawn by the target's likelihood (Problem.start_rows), so it sits near the
    # target: one point against plan's spread still reads 6.6x the floor (a random training
    # row read over 10x)
    s = exact.sample(TARGET, n=200, method="langevin", seed=0, step_size=1e-6, warmup=0, walkers=1)
    a = s.info["diagnostics"]["agreement"]
    assert a["reference"] == "plan" and a["reference_draws"] == 200
    assert a["ratio"] > 2 * v.AGREEMENT_RATIO
    assert any(w.startswith("langevin and plan disagree") for w in s.warnings), s.warnings
    # one chain: R-hat is said to need two, and not computed
    assert "R-hat needs two or more" in s.info["diagnostics"]["rhat_ess"]["reason"]


def test_mala_agrees_with_plan_on_the_linear_gaussian_model(exact, tmp_path):
    s = exact.sample(TARGET, n=400, method="langevin", chains=2, seed=0, warmup=200)
    d = s.info["diagnostics"]
    assert s.warnings == [], s.warnings
    assert d["agreement"]["ratio"] < v.AGREEMENT_RATIO and d["rhat_ess"]["max_r_hat"] < 1.05
    # the cross-check's reference is plan's public draws: compare() gives the same figures,
    # and the satisfaction's reference is what those draws score under the model
    plan = exact.sample(TARGET, n=800, method="plan", seed=0)
    c = s.compare(plan)
    assert (c.mmd, c.floor) == (d["agreement"]["mmd"], d["agreement"]["floor"])
    assert d["satisfaction_source"] == "plan"
    assert d["satisfaction_reference"] == pytest.approx(plan.info["diagnostics"]["satisfaction"])
    assert d["satisfaction_relative"] == pytest.approx(
        d["satisfaction"] / d["satisfaction_reference"]
    )
    assert 0.8 < d["satisfaction_relative"] < 1.2
    text = str(s.diagnose())
    assert "agreement:    MMD" in text and "of what plan's draws score" in text
    back = Samples.load(s.save(tmp_path / "draws.nc"))
    assert back.info["diagnostics"] == d and str(back.diagnose()) == text


# --------------------------------------------------------------------------- satisfaction


class _Linear:
    """A model whose fitted probability of the target is the feature ``x`` itself."""

    structure = "sparse"

    def __init__(self, seen):
        self.seen = pd.DataFrame({"x": seen})

    def spec_probability(self, df, target, tolerance=None):
        return pd.DataFrame({"all": df["x"], "z": df["x"]})


def test_the_satisfaction_reference_is_what_plans_draws_score():
    model = _Linear([0.2, 0.6])
    draws = np.full((1, 10, 1), 0.3)
    sat = v.satisfaction(model, draws, ["x"], {"z": 1}, reference=np.full((1, 4, 1), 0.6))
    assert sat["source"] == "plan" and sat["reference"] == pytest.approx(0.6)
    assert sat["relative"] == pytest.approx(0.5)
    # without plan's draws: E[A^2] / E[A] over the training rows, (0.04 + 0.36) / 0.8 = 0.5
    sat = v.satisfaction(model, draws, ["x"], {"z": 1})
    assert sat["source"] == "training rows" and sat["reference"] == pytest.approx(0.5)
    assert sat["relative"] == pytest.approx(0.6)
    # reference draws that never meet the target give no reference
    sat = v.satisfaction(model, draws, ["x"], {"z": 1}, reference=np.zeros((1, 4, 1)))
    assert sat["reference"] is None and sat["relative"] is None


def test_the_verdict_takes_the_satisfaction_reference_from_the_cross_check():
    model = _Linear([0.2, 0.6])
    reference = Samples(np.full((1, 8, 1), 0.6), ["x"], {"z": 1}, "plan")
    d, w = v.verdict(
        model, np.full((1, 8, 1), 0.25), ["x"], {"z": 1}, "svi", reference=lambda: reference
    )
    assert d["satisfaction_source"] == "plan" and d["satisfaction_reference"] == pytest.approx(0.6)
    assert d["satisfaction_relative"] == pytest.approx(0.25 / 0.6)
    assert any("of the 0.6 plan's draws score" in x for x in w)  # under half: warned
    d, _ = v.verdict(model, np.full((1, 8, 1), 0.25), ["x"], {"z": 1}, "plan")
    assert d["satisfaction_source"] == "training rows"
    assert d["satisfaction_reference"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- negligible draws


def test_draws_that_cannot_meet_the_target_are_counted_and_warned():
    model = _Linear([0.2, 0.6])  # A(x) = x; training rows' A-weighted median 0.6
    draws = np.array([0.0] * 6 + [0.5] * 4)[None, :, None]  # 60% where the target is impossible
    reference = Samples(np.full((1, 8, 1), 0.5), ["x"], {"z": 1}, "plan")
    sat = v.satisfaction(model, draws, ["x"], {"z": 1}, reference=np.full((1, 8, 1), 0.5))
    # the larger of the reference's median (0.5) and the training rows' (0.6) sets the bar
    assert sat["negligible_scale"] == pytest.approx(0.6)
    assert sat["negligible_below"] == pytest.approx(6e-4)
    assert sat["negligible"] == pytest.approx(0.6)
    d, w = v.verdict(model, draws, ["x"], {"z": 1}, "svi", reference=lambda: reference)
    assert d["negligible"] == pytest.approx(0.6) and d["negligible_below"] == pytest.approx(6e-4)
    # the mean (0.2, 40% of plan's 0.5) alone would warn of low satisfaction, not say why
    (said,) = [x for x in w if "cannot meet the target" in x]
    assert said.startswith("60% of draws have a fitted P(target | x) under 0.0006")
    assert "the sampler is stuck, or the target is outside what the model supports" in said
    assert "draws that cannot meet the target (P(target | x) under 0.0006): 60.0%" in str(
        v.Verdict("svi", d, tuple(w))
    )
    # a reference stuck the same way does not lower the bar: the training rows keep it
    stuck = np.array([0.0] * 6 + [0.5] * 4)[None, :, None]
    sat = v.satisfaction(model, draws, ["x"], {"z": 1}, reference=stuck)
    assert sat["negligible"] == pytest.approx(0.6) and sat["relative"] == pytest.approx(1.0)
    # 5% of draws or fewer: recorded, not warned
    few = np.array([0.0] + [0.5] * 19)[None, :, None]
    d, w = v.verdict(model, few, ["x"], {"z": 1}, "opt")
    assert d["negligible"] == pytest.approx(0.05) and not any("cannot meet" in x for x in w)


def test_a_point_target_scores_small_for_every_draw_and_never_trips_the_check():
    # the probability of a tolerance window: 2e-5 .. 6e-5 for good draws and training rows
    model = _Linear([2e-5, 6e-5])
    draws = np.linspace(2e-5, 6e-5, 50)[None, :, None]
    d, w = v.verdict(model, draws, ["x"], {"z": 1.0}, "langevin")
    assert d["negligible"] == 0.0 and d["negligible_below"] == pytest.approx(6e-8)
    assert w == []


def test_negligible_draws_on_the_exact_model(exact):
    # plan's draws of a point target meet it; the same draws moved 6 sd away cannot
    s = exact.sample(TARGET, n=400, method="plan", seed=0)
    d = s.info["diagnostics"]
    assert d["negligible"] < 0.01 and not any("cannot meet" in x for x in s.warnings)
    values = s.to_numpy()
    away = values + 6 * values.reshape(-1, values.shape[-1]).std(0)
    d, w = v.verdict(exact, away, list(exact.features), TARGET, "opt")
    assert d["negligible"] > 0.99
    assert any(x.startswith("100% of draws have a fitted P(target | x)") for x in w), w
