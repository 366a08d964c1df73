"""The model-based samplers' selection-aware pieces (inference/selection.py): on the paper's
task the selection empties the region the target lives in, and only the block-by-block prior
puts the draws back there (a known answer: the Oracle rows, which no model saw)."""

from __future__ import annotations

import numpy as np
import pytest

import sedge_pyro as sp
from sedge_pyro.inference import selection
from sedge_pyro.inference.target import box_margin

EVENT = {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)}
F = ["x1", "x2", "x3"]


@pytest.fixture(scope="module")
def fitted():
    data = sp.datasets.paper_synthetic(8000, seed=0)
    model = sp.SEDGEModel(data.graph).fit(data.seen, steps=400, progress=False)
    return model, data


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setattr(selection, "FIT_STEPS", 400)


def _gap(s, oracle):
    v = s.to_dataframe()[F]
    return np.abs(v.mean() - oracle[F].mean()) / oracle[F].std()


def test_langevin_with_the_block_prior_reaches_the_oracle_where_the_plain_model_cannot(fitted):
    model, data = fitted
    odds = model.sample(EVENT, n=600, method="langevin", seed=0, warmup=300)
    plain = model.sample(EVENT, n=600, method="langevin", seed=0, warmup=300, selection="rarity")
    assert odds.info["selection"] == "odds" and plain.info["selection"] == "none"
    assert odds.settings["selection"] == "auto"
    gap_odds, gap_plain = _gap(odds, data.oracle), _gap(plain, data.oracle)
    # the plain model's prior has no mass where x1 is small and x3 large together: its draws
    # sit half a standard deviation off in x1 or x3; the block prior's within a quarter
    assert gap_plain[["x1", "x3"]].max() > 0.4, gap_plain
    assert gap_odds.max() < 0.25, gap_odds
    # true satisfaction of the region, against the Oracle's own
    sat = np.mean(data.region_probability(odds.to_dataframe()[F]))
    assert abs(sat - data.oracle_satisfaction()) < 0.08
    fits = odds.info["selection_fits"]
    assert fits["shared"] == ["x2"] and fits["groups"] == [["x1"], ["x3"]]


def test_the_pieces_are_cached_per_target_and_dropped_by_a_refit(fitted):
    model, _ = fitted
    model.sample(EVENT, n=50, method="langevin", seed=0, warmup=50)
    cache = model.__dict__["_selection_aware_cache"]
    problem_key = next(iter(cache))
    first = cache[problem_key]
    model.sample(EVENT, n=50, method="langevin", seed=1, warmup=50)
    assert cache[problem_key] is first
    # the model's own components are back after the run
    assert not isinstance(model.prior, selection.BlockPrior)
    # the block prior's own draws: every feature, and x2 on its sliver (normalised units)
    x = first.prior.sample(400)
    assert x.shape == (400, 3) and bool(x.isfinite().all())
    x2 = model.columns["x2"].decode(x[:, 1].numpy())
    assert np.mean((x2 > 0.74) & (x2 < 0.81)) > 0.95


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ({"z1": sp.Interval(high=0.8)}, "not the blocks of one component|IDENTIFIABLE"),
        ({"z1": 0.5, "z2": 1.1}, "probability zero"),
    ],
)
def test_where_it_does_not_apply_the_plain_model_runs_and_says_why(fitted, target, why):
    model, _ = fitted
    s = model.sample(target, n=40, method="langevin", seed=0, warmup=40)
    assert s.info["selection"] == "none"
    assert __import__("re").search(why, s.info["selection_reason"])
    with pytest.raises(sp.OptionError, match="does not apply"):
        model.sample(target, n=10, method="langevin", warmup=10, selection="odds")


def test_selection_is_a_checked_choice(fitted):
    model, _ = fitted
    with pytest.raises(sp.OptionError, match="selection='exact'"):
        model.sample(EVENT, n=10, method="svi", steps=10, selection="exact")


@pytest.mark.slow  # .ci/run runs it; `make test` keeps its 10 minutes
def test_dps_runs_on_the_default_model_with_a_diffusion_fit_for_the_run(fitted, monkeypatch):
    model, data = fitted
    monkeypatch.setattr(selection, "DIFFUSION_ROWS", 4000)
    own = model.prior
    s = model.sample(EVENT, n=300, method="dps", seed=0)
    assert "selection-aware block prior" in s.info["diffusion_prior"]
    # fit on the draws inside the seen box (its unconstrained coordinates): every dps draw
    # is inside the training range, however far the guidance pushes
    assert 3000 < s.info["diffusion_fit"]["rows"] <= 4000 and s.info["selection"] == "odds"
    assert model.prior is own  # swapped back
    lo, hi = data.seen[F].min(), data.seen[F].max()
    # the box's edge itself is reachable (float32 rounds a sigmoid of a large |u| to 0 or 1):
    # allow that rounding, 1e-6 of the range, and nothing more
    margin = (hi - lo) * (box_margin(len(data.seen)) + 1e-6)
    v = s.to_dataframe()[F]
    assert ((v >= lo - margin) & (v <= hi + margin)).to_numpy().all()
    # the diffusion learned the block prior, which has mass where the target lives: the
    # draws land near the Oracle's x1 and x3, far from the training rows' means
    v = s.to_dataframe()[F]
    seen = data.seen[F]
    for f in ("x1", "x3"):
        assert abs(v[f].mean() - data.oracle[f].mean()) < abs(
            seen[f].mean() - data.oracle[f].mean()
        )
    # an IDENTIFIABLE target has no selection hole: the diffusion is fit on the training rows
    one = model.sample(
        {"z1": sp.Interval(high=0.8)}, n=20, method="langevin", kind="annealed", refine=20
    )
    assert "training rows inside the seen box" in one.info["diffusion_prior"]
    # refined on the model's own posterior (its prior has a density)
    assert one.info["refine"] == 20 and one.info["walkers"] == 20
    # fit once per target and device
    keys = [k for k in model.__dict__["_selection_aware_cache"] if k.startswith("diffusion")]
    assert len(keys) == 2


@pytest.mark.slow  # .ci/run runs it; `make test` keeps its 10 minutes
def test_a_diffusion_prior_fit_on_the_training_rows_gets_the_block_prior_surrogate(
    fitted, monkeypatch
):
    """A DDPM fit on the training rows is p_D(X), empty where the target lives: smc on it
    alone read 16x the MMD floor on this task; with the block prior's surrogate and the
    refinement on its density, the draws land near the Oracle.
    """
    _, data = fitted
    monkeypatch.setattr(selection, "DIFFUSION_ROWS", 4000)
    model = sp.SEDGEModel(data.graph, prior="diffusion", prior_options={"T": 50})
    model.fit(data.seen, steps=400, progress=False)
    assert model.history["prior"]["population"] is False
    s = model.sample(EVENT, n=400, method="smc", seed=0, particles=512, refine=100)
    assert "selection-aware block prior" in s.info["diffusion_prior"]
    assert s.info["selection"] == "odds" and s.info["refine"] == 100
    assert _gap(s, data.oracle).max() < 0.25
    # fit on population rows (the Oracle and the seen rows together), it runs as it is
    population = __import__("pandas").concat([data.seen[F], data.oracle[F]])
    pop = model.fit(
        data.seen, prior_data=population, components=["prior"], steps=50, progress=False
    )
    assert pop.history["prior"]["population"] is True
    s = pop.sample(EVENT, n=50, method="smc", seed=0, particles=64)
    assert s.info["diffusion_prior"].startswith("the model's own, fit on population rows")
