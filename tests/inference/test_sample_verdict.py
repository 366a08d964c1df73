"""The verdict every ``Samples`` carries (issue 21): support, target satisfaction, distinct
draws, whether R-hat/ESS mean anything, and the warnings a user reads first.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pandas as pd
import pytest
import torch

import sedge_pyro as sp
from sedge_pyro.cli import main
from sedge_pyro.inference import verdict as v
from sedge_pyro.inference.plan_terms import CompiledPlan
from sedge_pyro.inference.samples import Samples

COVERED = {"z1": 1.0, "z2": -1.0}  # common values, seen together: IDENTIFIABLE


@pytest.fixture(scope="module")
def fitted():
    data = sp.datasets.linear_gaussian(2000, seed=0)
    model = sp.SEDGEModel(data.graph, prior="empirical", hidden=(8,))
    model.fit(data.seen, steps=50, progress=False)
    return model, data.seen


def _top_two(seen):
    """An interval target on z1 that exactly two training rows meet."""
    z1 = np.sort(seen["z1"].to_numpy())
    return {"z1": sp.Interval(low=float((z1[-2] + z1[-3]) / 2))}


# --------------------------------------------------------------------------- pure checks


def test_outside_seen_counts_draws_beyond_the_widened_range():
    seen = pd.DataFrame({"a": [0.0, 10.0], "b": [0.0, 1.0]})
    # a: the range [0, 10] widened by 0.5 each side; -1 and 20 are out, 10.2 is not
    draws = np.array([[-1.0, 0.5], [5.0, 0.5], [10.2, 0.5], [20.0, 0.5]])
    out = v.outside_seen(draws, seen, ["a", "b"])
    assert out["a"] == {"share": 0.5, "low": 0.0, "high": 10.0}
    assert out["b"]["share"] == 0.0


def test_the_verdict_warns_for_draws_outside_the_seen_range():
    seen = pd.DataFrame({"bmi": np.linspace(15.0, 45.0, 100), "age": np.linspace(20, 80, 100)})
    model = types.SimpleNamespace(seen=seen, structure="joint")
    rng = np.random.default_rng(0)
    values = np.stack([rng.uniform(16, 44, 1000), rng.uniform(21, 79, 1000)], -1)[None]
    diagnostics, warnings = v.verdict(model, values, ["bmi", "age"], {"z": 1.0}, "langevin")
    assert warnings == [] and diagnostics["outside"] == {"bmi": 0.0, "age": 0.0}
    assert diagnostics["satisfaction"] is None  # model C: no per-spec likelihood
    values[0, :550, 0] = 10.0  # the MALA failure: 55% of draws parked at bmi 10
    diagnostics, warnings = v.verdict(model, values, ["bmi", "age"], {"z": 1.0}, "langevin")
    assert diagnostics["outside"]["bmi"] == pytest.approx(0.55)
    assert len(warnings) == 1
    assert warnings[0].startswith("55% of draws have bmi outside the training range [15, 45]")


def test_distinct_draws_known_answers():
    assert v.distinct_rows(np.array([[[1.0, 2.0], [1.0, 2.0], [3.0, 2.0]]])) == 2
    assert v.few_distinct(2, 1000) and v.few_distinct(40, 1000) and v.few_distinct(60, 1000)
    assert not v.few_distinct(150, 1000) and not v.few_distinct(10, 10)
    # discrete features: 4 distinct training vectors cannot give more than 4 distinct draws
    assert not v.few_distinct(4, 1000, available=4)


@pytest.mark.parametrize(
    ("method", "chains", "settings", "kind"),
    [
        ("opt", 4, {}, "n/a"),
        ("plan", 4, {}, "n/a"),
        ("dps", 2, {}, "n/a"),
        ("svi", 2, {}, "n/a"),
        ("direct", 2, {}, "n/a"),
        ("langevin", 1, {"kind": "mala"}, "n/a"),
        ("langevin", 2, {"kind": "annealed"}, "n/a"),
        ("langevin", 2, {"kind": "mala"}, "mcmc"),
        ("nuts", 4, {}, "mcmc"),
    ],
)
def test_rhat_ess_is_meaningful_only_for_markov_chains(method, chains, settings, kind):
    out = v.rhat_ess(method, chains, settings, {})
    assert out["kind"] == kind and out["reason"]


def test_plan_with_shared_features_by_mala_is_partial():
    out = v.rhat_ess("plan", 2, {}, {"mcmc": ["x2"]})
    assert out["kind"] == "partial" and out["features"] == ["x2"]


def test_a_failing_check_is_recorded_and_said_not_raised():
    class Broken:
        structure = "sparse"
        seen = pd.DataFrame({"x": [0.0, 1.0]})

        def spec_probability(self, *args, **kwargs):
            raise RuntimeError("boom")

    diagnostics, warnings = v.verdict(Broken(), np.zeros((1, 5, 1)), ["x"], {"z": 1.0}, "plan")
    assert diagnostics["errors"] == {"satisfaction": "RuntimeError: boom"}
    assert diagnostics["outside"] == {"x": 0.0}
    # an unchecked property is not a clean bill of health: the user is told
    assert warnings == ["the satisfaction check could not run (RuntimeError: boom)"]


def test_plan_ess_counts_distinct_particles_not_copies():
    # 1,000 particles copying two training rows, equal weights: two effective draws
    x = torch.tensor([[0.0], [1.0]])
    fake = types.SimpleNamespace(_values=lambda names, values: x[values[names[0]]].reshape(-1, 1))
    values = {"x1": torch.arange(1000) % 2}
    assert CompiledPlan._distinct_ess(fake, values, torch.ones(1000)) == pytest.approx(2.0)
    # unequal weights over the two rows: (0.25 + 0.75)^2 / (0.25^2 + 0.75^2) = 1.6
    w = torch.where(values["x1"] == 0, 0.5, 1.5)
    assert CompiledPlan._distinct_ess(fake, values, w) == pytest.approx(1.6)


# --------------------------------------------------------------------------- end to end


def test_plan_on_a_covered_target_has_no_warnings(fitted):
    model, _ = fitted
    s = model.sample(COVERED, n=1000, method="plan", seed=0)
    assert s.warnings == []
    d = s.info["diagnostics"]
    assert d["errors"] == {} and d["distinct"] > 500 and s.info["distinct"] == d["distinct"]
    assert max(d["outside"].values()) == 0.0  # plan copies training values
    assert 0.5 < d["satisfaction_relative"] < 2.0
    assert s.info["rhat_ess"] == "n/a"
    text = str(s.diagnose())
    assert "no warnings" in text and "R-hat/ESS:    n/a" in text


def test_plan_from_two_training_rows_reports_ess_two_and_warns(fitted):
    model, seen = fitted
    s = model.sample(_top_two(seen), n=1000, method="plan", seed=0, min_ess=0)
    assert s.info["ess"] <= 2.0 + 1e-6
    assert any("effective 2 training rows" in w for w in s.warnings), s.warnings
    # the shared features come from the two rows that meet the target
    assert len(np.unique(s.to_dataframe()["x1"])) <= 2


def test_low_satisfaction_warns():
    data = sp.datasets.linear_gaussian(2000, seed=0)
    model = sp.SEDGEModel(data.graph, likelihood="gaussian", prior="empirical", hidden=())
    model.fit(data.seen, steps=200, batch_size=256, lr=1e-2, progress=False)
    seen = data.seen
    target = {"z1": sp.Interval(low=float(seen["z1"].quantile(0.9)))}
    # draws from the training rows with the lowest z1: far from meeting z1 >= its 90% quantile
    low = seen.nsmallest(500, "z1")[list(model.features)].to_numpy()[None]
    diagnostics, warnings = v.verdict(model, low, model.features, target, "opt")
    assert diagnostics["satisfaction_relative"] < 0.5
    assert any("do not meet the target" in w for w in warnings)
    high = seen.nlargest(200, "z1")[list(model.features)].to_numpy()[None]
    diagnostics, warnings = v.verdict(model, high, model.features, target, "opt")
    assert diagnostics["satisfaction_relative"] > 0.5 and warnings == [v.APPROXIMATE["opt"]]


def test_opt_marks_rhat_ess_not_applicable(fitted):
    model, _ = fitted
    s = model.sample(COVERED, n=20, method="opt", chains=2, seed=0, steps=5)
    assert s.info["rhat_ess"] == "n/a"
    assert "independent optimisations" in s.info["diagnostics"]["rhat_ess"]["reason"]
    out = s.summary(round_to="none")
    assert out["r_hat"].isna().all() and out["ess_bulk"].isna().all()
    assert "independent optimisations" in out.attrs["note"]
    assert np.isfinite(out["mean"]).all()
    attrs = sp.arviz_compat.root_attrs(s.to_inference_data())
    assert attrs["info_rhat_ess"] == "n/a"


def test_the_verdict_survives_save_and_load(fitted, tmp_path):
    model, seen = fitted
    s = model.sample(_top_two(seen), n=300, method="plan", seed=0, min_ess=0)
    assert s.warnings
    back = Samples.load(s.save(tmp_path / "draws.nc"))
    assert back.warnings == s.warnings
    assert back.info["diagnostics"] == s.info["diagnostics"]
    assert str(back.diagnose()) == str(s.diagnose())
    assert back.summary(round_to="none")["r_hat"].isna().all()


def test_compare_flags_disagreeing_draws():
    rng = np.random.default_rng(0)
    a = Samples(rng.normal(size=(1, 800, 2)), ["x1", "x2"], {"z1": 1.0}, "plan")
    b = Samples(rng.normal(size=(1, 800, 2)), ["x1", "x2"], {"z1": 1.0}, "langevin")
    c = Samples(rng.normal(size=(1, 800, 2)) + [1.0, 0.0], ["x1", "x2"], {"z1": 1.0}, "opt")
    same = a.compare(b)
    assert same.warning is None and same.mmd < 2 * same.floor
    apart = a.compare(c)
    assert apart.mmd > 3 * apart.floor  # a one-sd shift: about 5x
    assert apart.warning is not None and apart.warning.startswith("plan and opt disagree")
    with pytest.raises(sp.SedgeError, match="features"):
        a.compare(Samples(np.zeros((1, 10, 1)), ["x1"], {}, "plan"))


def test_cli_prints_the_warnings_even_when_quiet(fitted, tmp_path, capsys):
    model, seen = fitted
    path = tmp_path / "model.safetensors"
    model.save(path)
    low = _top_two(seen)["z1"].low
    argv = ["sample", str(path), "--target", f"z1>{low!r}", "-n", "300", "--option", "min_ess=0"]
    assert main([*argv, "--quiet"]) == 0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("sedge: warning: ") for line in lines)
    assert any("effective 2 training rows" in line for line in lines)
    assert out.startswith("chain,draw,")
    assert main(argv) == 0
    _, err = capsys.readouterr()
    assert err.startswith("sampled 1 x 300 draws") and "sedge: warning: " in err


def test_the_verdict_is_cheap(fitted):
    model, _ = fitted
    s = model.sample(COVERED, n=2000, method="plan", seed=0)
    import time

    start = time.perf_counter()
    v.verdict(model, s.values, model.features, s.target, "plan", info=s.info)
    assert time.perf_counter() - start < 1.0  # measured: a few ms; generous on shared CPUs
    assert math.isfinite(s.info["diagnostics"]["satisfaction"])


def test_plan_with_one_mala_chain_says_what_drew_its_features():
    # plan replaced its importance step for x by MALA (s.info["mcmc"]), one chain
    out = v.rhat_ess("plan", 1, {}, {"mcmc": ["x"]})
    assert out["kind"] == "n/a" and out["features"] == []
    assert out["reason"].startswith("x drawn by MCMC (MALA)")
    assert "one chain: R-hat needs two or more" in out["reason"]
    assert "no Markov chain" not in out["reason"]
    assert v.rhat_ess("plan", 4, {}, {"mcmc": ["x"]})["reason"].startswith("x drawn by MCMC")
    # its ESS is the importance step's, which MCMC replaced: the warning says so
    model = types.SimpleNamespace(seen=None, structure="joint")
    values = np.linspace(0, 1, 1000)[None, :, None]
    info = {"ess": 19.5, "distinct": 1000, "mcmc": ["x"]}
    d, w = v.verdict(model, values, ["x"], {"z": 1}, "plan", info=info)
    assert d["ess_replaced_by_mcmc"] == ["x"]
    assert w == [
        "plan's importance resampling rested on an effective 19.5 training rows (ESS), and plan "
        "replaced it by MCMC on the fitted model for x (1000 distinct draws of 1000): few "
        "training rows support the target, so the draws' x come from the fitted model where it "
        "has little data (use more training data near the target; check the MCMC with chains=4)"
    ]
    text = str(v.Verdict("plan", d, tuple(w)))
    assert "R-hat/ESS:    n/a (x drawn by MCMC (MALA)" in text
    assert "rest on an effective" not in text
    # without MCMC the ESS warning stays as it was
    _, w = v.verdict(model, values, ["x"], {"z": 1}, "plan", info={"ess": 19.5, "distinct": 1000})
    assert w == [
        "the 1000 draws rest on an effective 19.5 training rows (ESS; 1000 distinct draws): few "
        "training rows support the target (use more training data near it, or a method that "
        "draws from the fitted model)"
    ]
