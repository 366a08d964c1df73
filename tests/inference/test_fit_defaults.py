"""Defaults for real machines (issue 20, item 7): threads, batch size and steps that scale."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import sedge_pyro as sp
from sedge_pyro.inference import model as fit_module  # SEDGEModel.fit calls fit_component
from sedge_pyro.inference.fit import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    MAX_STEPS,
    MIN_STEPS,
    schedule,
)
from sedge_pyro.options import default_threads

TINY = {"hidden": (4,), "prior": "empirical"}


@pytest.fixture(scope="module")
def seen():
    data = sp.datasets.paper_synthetic(400, seed=0)
    return data.seen, data.graph


def _other_threads() -> int:
    """A thread count different from the current one (the block must change, then restore)."""
    return 2 if torch.get_num_threads() == 1 else 1


def _spy(monkeypatch, seen_threads: list[int]) -> None:
    """Record torch's threads each time a component is fit."""
    original = fit_module.fit_component

    def spy(*args, **kwargs):
        seen_threads.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module, "fit_component", spy)


# ---------------------------------------------------------------------------------- threads


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (7, 1), (8, 2), (16, 4), (128, 4)])
def test_default_threads_is_a_quarter_of_the_cores_capped(monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_threads() == expected


@pytest.mark.parametrize("threads", [1, 2, None])
def test_fit_runs_on_the_threads_and_restores_them(seen, monkeypatch, threads):
    df, graph = seen
    inside: list[int] = []
    _spy(monkeypatch, inside)
    before = torch.get_num_threads()
    sp.SEDGEModel(graph, **TINY).fit(df, steps=3, progress=False, threads=threads)
    assert inside and set(inside) == {default_threads() if threads is None else threads}
    assert torch.get_num_threads() == before


def test_an_outer_explicit_count_reaches_the_fit_and_the_cli(seen, monkeypatch, tmp_path):
    df, graph = seen
    inside: list[int] = []
    _spy(monkeypatch, inside)
    with sp.options.threads(3):
        sp.SEDGEModel(graph, **TINY).fit(df, steps=2, progress=False)
    assert inside and set(inside) == {3}
    sp.options.set_threads(2)
    try:
        inside.clear()
        sp.SEDGEModel(graph, **TINY).fit(df, steps=2, progress=False)
        assert set(inside) == {2}
        inside.clear()
        sp.SEDGEModel(graph, **TINY).fit(df, steps=2, progress=False, threads=1)
        assert set(inside) == {1}  # the call's own argument wins
    finally:
        sp.options.set_threads(None)
    # `sedge fit --threads 2` fits on 2 threads (before, the fit reset it to the default)
    from sedge_pyro.cli import main

    graph.save(tmp_path / "g.json")
    df.to_csv(tmp_path / "train.csv", index=False)
    inside.clear()
    argv = ["fit", str(tmp_path / "g.json"), str(tmp_path / "train.csv"), "-o"]
    argv += [str(tmp_path / "m.safetensors"), "--steps", "2", "--quiet", "--threads", "2"]
    assert main(argv) == 0
    assert set(inside) == {2}


def test_fit_restores_threads_after_an_error(seen, monkeypatch):
    df, graph = seen

    def boom(*args, **kwargs):
        raise RuntimeError("inside the fit")

    monkeypatch.setattr(fit_module, "fit_component", boom)
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside the fit"):
        sp.SEDGEModel(graph, **TINY).fit(df, progress=False, threads=_other_threads())
    assert torch.get_num_threads() == before


def test_sample_restores_threads_also_after_an_error(seen):
    df, graph = seen
    model = sp.SEDGEModel(graph, **TINY).fit(df, steps=3, progress=False)
    before = torch.get_num_threads()
    s = model.sample({"z1": 1.0}, n=5, method="plan", threads=_other_threads())
    assert s.to_dataframe().shape == (5, 3)
    assert torch.get_num_threads() == before
    with pytest.raises(sp.TargetError, match="z9"):
        model.sample({"z9": 1.0}, n=5, threads=_other_threads())
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_threads_are_named(seen, bad):
    df, graph = seen
    model = sp.SEDGEModel(graph, **TINY)
    before = torch.get_num_threads()
    with pytest.raises(sp.OptionError, match="threads="):
        model.fit(df, steps=2, progress=False, threads=bad)
    model.fit(df, steps=2, progress=False)
    with pytest.raises(sp.OptionError, match="threads="):
        model.sample({"z1": 1.0}, n=5, threads=bad)
    assert torch.get_num_threads() == before


def test_latent_fit_and_learn_parents_take_threads(seen):
    df, _ = seen
    rng = np.random.default_rng(0)
    before = torch.get_num_threads()
    m = sp.LatentSEDGE(2, 1, 3, 2, hidden=(4,))
    m.fit(
        rng.normal(size=(20, 3)),
        rng.normal(size=(20, 2)),
        steps=2,
        progress=False,
        align=False,
        threads=_other_threads(),
    )
    assert torch.get_num_threads() == before
    with pytest.raises(sp.OptionError, match="threads="):
        m.fit(
            rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), steps=2, progress=False, threads=0
        )
    g = sp.learn_parents(
        df,
        ["x1", "x2", "x3"],
        ["z1", "z2"],
        steps=3,
        hidden=(4,),
        progress=False,
        threads=_other_threads(),
    )
    assert g.specs == ("z1", "z2")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("cls", ["ImageSEDGE", "ConditionalImageVAE"])
def test_image_fits_take_threads(cls):
    data = sp.datasets.shapes(8, size=16, seed=0)
    model = getattr(sp.experiments, cls)(2, size=16, width=2)
    before = torch.get_num_threads()
    model.fit(data.images, data.labels, steps=1, progress=False, threads=_other_threads())
    assert torch.get_num_threads() == before
    with pytest.raises(sp.OptionError, match="threads="):
        model.fit(data.images, data.labels, steps=1, progress=False, threads=-2)
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------------- batch and steps


def test_a_50_row_table_fits_with_the_defaults(seen):
    df, graph = seen
    small = df.head(50)
    # the default batch, threads and everything else; the default budget (MIN_STEPS here)
    # is checked below with a frozen fit, which takes a fraction of the time
    model = sp.SEDGEModel(graph, **TINY).fit(small, steps=60, progress=False)
    n_train = 50 - round(50 * 0.1)
    for name in ("z1", "z2"):
        h = model.history[name]
        assert h["batch_size"] == n_train
        assert 0 < h["steps"] <= h["max_steps"] == 60
        assert math.isfinite(h["best_val"])
    assert model.sample({"z1": 1.0}, n=5, method="plan").to_dataframe().shape == (5, 3)


def test_a_batch_larger_than_the_rows_is_capped(seen):
    df, graph = seen
    model = sp.SEDGEModel(graph, **TINY).fit(df.head(50), batch_size=512, steps=5, progress=False)
    assert model.history["z1"]["batch_size"] == 45
    assert model.history["z1"]["steps"] == 5


def test_default_budget_grows_with_the_rows_up_to_a_cap():
    rows = [1, 10, 100, 1_000, 5_000, 20_000, 50_000, 200_000, 10**7]
    budgets = [schedule(n)[1] for n in rows]
    assert budgets == sorted(budgets)
    assert budgets[0] == MIN_STEPS and budgets[-1] == MAX_STEPS
    # in between, the budget is DEFAULT_EPOCHS passes over the rows
    middle = DEFAULT_BATCH * ((MIN_STEPS + MAX_STEPS) // (2 * DEFAULT_EPOCHS))
    assert MIN_STEPS < schedule(middle)[1] < MAX_STEPS
    assert schedule(middle) == (DEFAULT_BATCH, DEFAULT_EPOCHS * middle // DEFAULT_BATCH)
    assert schedule(100) == (100, MIN_STEPS)


def test_explicit_steps_epochs_and_batch_win():
    assert schedule(50_000, steps=7) == (DEFAULT_BATCH, 7)
    assert schedule(50_000, epochs=2, batch_size=1000) == (1000, 100)
    assert schedule(300, epochs=3) == (DEFAULT_BATCH, 6)
    assert schedule(300, batch_size=10**6) == (300, MIN_STEPS)
    for bad in ({"steps": 0}, {"epochs": -1}, {"batch_size": 0}, {"batch_size": 2.5}):
        with pytest.raises(sp.OptionError, match=next(iter(bad))):
            schedule(300, **bad)


def test_model_history_records_the_budget(seen, monkeypatch):
    df, graph = seen
    big = sp.datasets.paper_synthetic(8000, seed=1).seen
    original = fit_module.fit_component

    def frozen(*args, **kwargs):
        # lr 0 leaves the held-out loss flat, so patience 1 stops at the second evaluation:
        # only the budget is under test
        return original(*args, **(kwargs | {"lr": 0.0}))

    monkeypatch.setattr(fit_module, "fit_component", frozen)
    histories = {}
    for name, data in (("small", df.head(50)), ("big", big)):
        model = sp.SEDGEModel(graph, **TINY).fit(data, patience=1, progress=False)
        n_train = len(data) - round(len(data) * 0.1)
        histories[name] = model.history["z1"]
        assert histories[name]["max_steps"] == schedule(n_train)[1]
        assert histories[name]["batch_size"] == min(n_train, DEFAULT_BATCH)
        assert histories[name]["steps"] == 100 and histories[name]["stopped_early"]
    assert histories["small"]["max_steps"] == MIN_STEPS < histories["big"]["max_steps"]
    explicit = sp.SEDGEModel(graph, **TINY).fit(big, steps=9, progress=False)
    assert explicit.history["z1"]["steps"] == explicit.history["z1"]["max_steps"] == 9
