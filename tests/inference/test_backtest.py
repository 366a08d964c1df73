import json

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.cli import main
from sedge_pyro.inference.backtest import Cell
from sedge_pyro.inference.backtest_cells import _choose_cells

TARGET = {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)}


@pytest.fixture(scope="module")
def paper():
    return sp.datasets.paper_synthetic(4000, seed=0)


@pytest.fixture(scope="module")
def population(paper):
    # the seen rows and the Oracle together: all four cells of the target's shape have rows
    seen, oracle, graph = paper
    return pd.concat([seen, oracle], ignore_index=True), graph


def _counts(df):
    a1, a2 = df.z1 <= 0.8, df.z2 >= 1.0
    return {
        "z1 ≤ 0.8, z2 ≤ 1": int((a1 & ~a2).sum()),
        "z1 ≥ 0.8, z2 ≥ 1": int((~a1 & a2).sum()),
        "z1 ≥ 0.8, z2 ≤ 1": int((~a1 & ~a2).sum()),
    }


def test_cells_are_the_rarest_with_enough_rows(population):
    df, graph = population
    counts = _counts(df)
    by_rows = sorted(counts, key=counts.get)
    picked, skipped = _choose_cells(graph, df, TARGET, min_rows=50, max_combos=2)
    assert [c.label for c, _ in picked] == by_rows[:2]
    assert [c.rows for c, _ in picked] == [counts[k] for k in by_rows[:2]]
    assert [c.label for c in skipped] == by_rows[2:]
    assert "max_combos=2" in skipped[0].reason
    for cell, mask in picked:
        assert int(mask.sum()) == counts[cell.label]
        assert cell.status == "conservative"
    # a threshold above the rarest cell's rows skips it, naming min_rows
    rarest = counts[by_rows[0]]
    picked, skipped = _choose_cells(graph, df, TARGET, min_rows=rarest + 1, max_combos=3)
    assert [c.label for c, _ in picked] == by_rows[1:]
    assert skipped[0].label == by_rows[0] and "min_rows" in skipped[0].reason


def test_a_cell_whose_removal_leaves_a_value_unseen_is_skipped(paper):
    seen, _, graph = paper
    counts = _counts(seen)
    picked, skipped = _choose_cells(graph, seen, TARGET, min_rows=50, max_combos=3)
    # the seen rows lack the target's cell: removing (A1, not A2) leaves z1 <= 0.8 unseen
    assert [c.label for c, _ in picked] == ["z1 ≥ 0.8, z2 ≤ 1"]
    assert {c.label: c.rows for c in skipped} == {
        "z1 ≤ 0.8, z2 ≤ 1": counts["z1 ≤ 0.8, z2 ≤ 1"],
        "z1 ≥ 0.8, z2 ≥ 1": counts["z1 ≥ 0.8, z2 ≥ 1"],
    }
    assert all("Assumption 1" in c.reason and c.status == "impossible" for c in skipped)


def test_categorical_and_binary_cells():
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "z1": rng.choice(["a", "b", "c"], size=n, p=[0.2, 0.3, 0.5]),
            "z2": rng.choice([0, 1], size=n, p=[0.7, 0.3]),
        }
    )
    graph = sp.SpecGraph.from_parents({"z1": ["x1"], "z2": ["x2"]})
    picked, skipped = _choose_cells(graph, df, {"z1": "a", "z2": 1}, min_rows=2, max_combos=10)
    cells = {c.label: c.rows for c, _ in picked}
    expected = {
        (v1, v2): int(((df.z1 == v1) & (df.z2 == v2)).sum())
        for v1 in "abc"
        for v2 in (0, 1)
        if (v1, v2) != ("a", 1)
    }
    assert sorted(cells.values()) == sorted(expected.values())
    assert len(cells) == 5 and not skipped
    assert [c.rows for c, _ in picked] == sorted(c.rows for c, _ in picked)


def test_backtest_holds_out_and_scores(population):
    df, graph = population
    counts = _counts(df)
    bt = sp.backtest(
        graph,
        df,
        TARGET,
        methods=["plan", "langevin"],
        steps=100,
        draws=300,
        min_rows=50,
        max_combos=1,
        progress=False,
    )
    rarest = min(counts, key=counts.get)
    assert [c.label for c in bt.cells] == [rarest]
    assert len(bt.table) == 2 and set(bt.table["method"]) == {"plan", "langevin"}
    assert (bt.table["status"] == "ok").all()
    assert (bt.table["floor"] > 0).all() and (bt.table["ratio"] >= 0).all()
    assert bt.table["outside"].between(0, 1).all()
    # the held-out rows are absent from the fit's training rows
    model = bt.models[rarest]
    held = df.loc[bt.heldout[rarest]]
    assert len(held) == counts[rarest]
    assert len(model.seen) == len(df) - len(held)
    cols = list(model.seen.columns)
    assert model.seen.merge(held[cols], on=cols).empty
    assert bt.best in ("plan", "langevin")
    text = str(bt)
    assert bt.verdict in text and "backtest: method" in bt.verdict
    # the JSON round-trips
    d = json.loads(json.dumps(bt.to_dict()))
    assert d == bt.to_dict()
    again = sp.Backtest.from_dict(d)
    assert again.to_dict() == d and again.best == bt.best


def test_unavailable_method_is_recorded(paper):
    seen, _, graph = paper
    bt = sp.backtest(
        graph, seen, TARGET, methods=["plan", "direct"], steps=20, draws=100, progress=True
    )
    direct = bt.table[bt.table["method"] == "direct"].iloc[0]
    assert direct["status"] == "unavailable" and "direct" in direct["error"]
    assert bt.best == "plan"
    assert "unavailable direct" in str(bt)


def test_verdict_warns_above_three_times_the_floor():
    table = pd.DataFrame(
        [
            {"cell": "c", "rows": 60, "method": "plan", "status": "ok", "mmd": 0.5,
             "floor": 0.1, "ratio": 5.0, "satisfaction": 0.5, "outside": 0.0, "warnings": 0,
             "seconds": 0.1, "error": ""},
        ]
    )  # fmt: skip
    cell = Cell("c", {"z1": 1}, 60, "identifiable")
    bt = sp.Backtest(table, [cell], [], {"z1": 1})
    assert bt.best == "plan" and not bt.reliable
    assert "cannot extrapolate reliably on this data" in bt.verdict


@pytest.mark.parametrize(
    ("kwargs", "error", "culprit"),
    [
        ({"target": {"z9": 1}}, sp.TargetError, "'z9'"),
        ({"target": {}}, sp.TargetError, "target"),
        ({"data": pd.DataFrame()}, sp.DataError, "no rows"),
        ({"data": "drop:x2"}, sp.DataError, "'x2'"),
        ({"data": "nan:z1"}, sp.DataError, "'z1'"),
        ({"min_rows": 1}, sp.OptionError, "min_rows"),
        ({"methods": ["magic"]}, sp.OptionError, "'magic'"),
        ({"model": {"prior": "nope"}}, sp.OptionError, "prior"),
        ({"min_rows": 100_000}, sp.DataError, "min_rows=100000"),
    ],
)
def test_bad_input_raises_typed_errors(paper, kwargs, error, culprit):
    seen, _, graph = paper
    args = {"data": seen, "target": TARGET, **kwargs}
    if isinstance(args["data"], str):
        how, column = args["data"].split(":")
        args["data"] = seen.drop(columns=column) if how == "drop" else seen.copy()
        if how == "nan":
            args["data"].loc[3, column] = np.nan
    with pytest.raises(error, match=culprit):
        sp.backtest(graph, args.pop("data"), args.pop("target"), progress=False, **args)


def test_no_cell_error_lists_what_was_found(paper):
    seen, _, graph = paper
    with pytest.raises(sp.DataError) as info:
        sp.backtest(graph, seen, TARGET, min_rows=100_000, progress=False)
    message = str(info.value)
    for label, rows in _counts(seen).items():
        assert f"{label}: {rows} rows" in message


def _csv(tmp_path, paper):
    seen, _, graph = paper
    data = tmp_path / "train.csv"
    seen.to_csv(data, index=False)
    graph_path = tmp_path / "graph.json"
    graph_path.write_text(graph.to_json())
    return str(data), str(graph_path)


@pytest.mark.parametrize(
    ("extra", "culprit"),
    [
        (["--target", "z9<=0.8"], "'z9'"),
        (["--target", "z1<=0.8", "--methods", "magic"], "'magic'"),
        (["--target", "z1<=0.8", "--min-rows", "1"], "min_rows"),
        (["--target", "z1<=oops"], "z1<=oops"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, paper, extra, culprit):
    data, graph = _csv(tmp_path, paper)
    code = main(["backtest", data, "--graph", graph, *extra, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("sedge: error: ")
    assert culprit in err and "Traceback" not in out + err


def test_cli_backtest_writes_json(tmp_path, capsys, paper):
    data, graph = _csv(tmp_path, paper)
    out_json = tmp_path / "bt.json"
    code = main(
        [
            "backtest",
            data,
            "--graph",
            graph,
            "--target",
            "z1<=0.8",
            "z2>=1.0",
            "--methods",
            "plan",
            "--draws",
            "200",
            "--steps",
            "20",
            "--json",
            str(out_json),
            "--quiet",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    d = json.loads(out_json.read_text())
    assert d["best"] == "plan" and d["verdict"] in out
    assert [c["label"] for c in d["cells"]] == ["z1 ≥ 0.8, z2 ≤ 1"]
    assert sp.Backtest.from_dict(d).to_dict() == d


def test_import_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, sedge_pyro; "
        "bad = [m for m in ('sedge_pyro.models', 'sedge_pyro.inference', 'torch') "
        "if m in sys.modules]; print(bad, callable(sedge_pyro.backtest))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def _summary_table(rows):
    base = {"cell": "c", "rows": 252, "status": "ok", "mmd": 0.5, "floor": 0.1,
            "satisfaction": 0.5, "warnings": 0, "seconds": 0.1, "error": ""}  # fmt: skip
    return pd.DataFrame([{**base, **r} for r in rows])


def test_the_report_says_why_a_lower_ratio_is_not_best():
    # the diabetes walkthrough (docs/real-data.md): plan scores lower but has 2% outside
    table = _summary_table(
        [
            {"method": "plan", "ratio": 5.06, "outside": 0.02},
            {"method": "langevin", "ratio": 6.39, "outside": 0.0},
            {"method": "svi", "ratio": 7.0, "outside": 0.5},  # higher ratio: not worth a word
        ]
    )
    held = Cell("obese=0, progressed=0", {"obese": 0, "progressed": 0}, 252, "conservative")
    unseen = [
        Cell("obese=1, progressed=0", {"obese": 1, "progressed": 0}, 34, "impossible", "..."),
        Cell("obese=0, progressed=1", {"obese": 0, "progressed": 1}, 91, "impossible", "..."),
    ]
    bt = sp.Backtest(table, [held], unseen, {"obese": 1, "progressed": 1})
    assert bt.best == "langevin"
    assert bt.excluded == {
        "plan": "plan 5.06x excluded: 2.0% of draws outside the held-out range (over 1%)"
    }
    assert bt.verdict.startswith(
        "backtest: method langevin reaches 6.39 x the floor on the held-out combination "
        "(plan 5.06x excluded: 2.0% of draws outside the held-out range (over 1%)); warning"
    )
    text = str(bt)
    # one cell held out, the most common one: no claim of rarity
    assert text.splitlines()[0] == (
        "backtest for obese=1, progressed=1: cells held out: 1 (the others would leave a "
        "target value unseen)"
    )
    assert "rare" not in text
    # no method qualifies: the excluded ones are still named
    bt = sp.Backtest(table[table["method"] == "plan"], [held], unseen, {"obese": 1})
    assert bt.best is None and "(plan 5.06x excluded: 2.0% of draws outside" in bt.verdict
    # several cells, skipped for different reasons
    few = Cell("a", {"z1": 1}, 10, reason="too few rows to score against (min_rows=50)")
    bt = sp.Backtest(table, [held, held], [few, unseen[0]], {"z1": 1})
    assert str(bt).splitlines()[0] == (
        "backtest for z1=1: cells held out: 2, rarest first (of the others, 1 has too few "
        "rows (min_rows); 1 would leave a target value unseen)"
    )


def test_a_small_cell_that_would_leave_a_value_unseen_says_so_first(paper):
    seen, _, graph = paper
    counts = _counts(seen)
    small = "z1 ≤ 0.8, z2 ≤ 1"  # removing it leaves z1 <= 0.8 unseen; below min_rows too
    min_rows = counts[small] + 1
    assert min_rows <= counts["z1 ≥ 0.8, z2 ≤ 1"]
    picked, skipped = _choose_cells(graph, seen, TARGET, min_rows=min_rows, max_combos=3)
    assert [c.label for c, _ in picked] == ["z1 ≥ 0.8, z2 ≤ 1"]
    (cell,) = [c for c in skipped if c.label == small]
    assert cell.status == "impossible"
    assert cell.reason == (
        "removing its rows makes it impossible to identify: target value z1 ≤ 0.8 is never "
        f"seen in the {len(seen) - counts[small]} other rows (Assumption 1 fails); it also "
        f"has too few rows to score against (min_rows={min_rows})"
    )


# ---------------------------------------------------------------------- method="auto"


@pytest.fixture(scope="module")
def fitted(paper):
    seen, _, graph = paper
    return sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=20, progress=False)


def _backtest(ratios, outside=None, target=TARGET, options=None):
    """A backtest result by hand: method -> ratio on one cell of 60 rows."""
    outside = outside or {}
    rows = [
        {"cell": "c", "rows": 60, "method": m, "status": "ok", "mmd": 0.1 * r, "floor": 0.1,
         "ratio": r, "satisfaction": 0.5, "outside": outside.get(m, 0.0), "warnings": 0,
         "seconds": 0.1, "error": ""}
        for m, r in ratios.items()
    ]  # fmt: skip
    settings = {"method_options": options or {}}
    return sp.Backtest(pd.DataFrame(rows), [Cell("c", {"z1": 1}, 60)], [], target, settings)


def test_auto_samples_with_the_backtests_best_and_its_options(fitted):
    bt = _backtest(
        {"plan": 2.0, "langevin": 1.1, "svi": 1.5},
        options={"langevin": ["langevin", {"warmup": 10, "thin": 2}]},
    )
    s = fitted.sample(TARGET, n=30, method="auto", backtest=bt)
    assert s.method == "langevin" and s.settings["thin"] == 2
    assert s.info["auto"]["label"] == "langevin"
    assert s.info["auto"]["compared"] == ["plan", "langevin", "svi"]
    assert not any("method='auto'" in w for w in s.warnings)


def test_auto_warns_when_the_backtest_is_unreliable(fitted):
    s = fitted.sample(TARGET, n=30, method="auto", backtest=_backtest({"plan": 5.0}))
    assert s.method == "plan"
    (line,) = [w for w in s.warnings if w.startswith("method='auto'")]
    assert "cannot extrapolate reliably" in line


def test_auto_falls_back_loudly_without_a_qualifying_method(fitted):
    # the lower ratio puts 5% of its draws outside the held-out range: no method qualifies
    bt = _backtest({"svi": 0.9}, outside={"svi": 0.05})
    s = fitted.sample(TARGET, n=30, method="auto", backtest=bt)
    assert bt.best is None and s.method == "plan"
    (line,) = [w for w in s.warnings if w.startswith("method='auto'")]
    assert "fell back to the default method 'plan'" in line


def test_auto_says_when_the_backtest_was_for_another_target(fitted):
    bt = _backtest({"plan": 1.0}, target={"z1": sp.Interval(high=0.5)})
    s = fitted.sample(TARGET, n=30, method="auto", backtest=bt)
    assert any("another target" in w for w in s.warnings)


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"backtest": "best"}, "backtest is str"),
        ({"steps": 10}, "'steps'"),
        ({"target": {"z1": np.zeros(30)}}, "per-draw"),
    ],
)
def test_auto_bad_input_raises_option_error(fitted, kwargs, culprit):
    args = {"target": TARGET, **kwargs}
    with pytest.raises(sp.OptionError, match=culprit):
        fitted.sample(args.pop("target"), n=30, method="auto", **args)


@pytest.mark.parametrize(("target", "culprit"), [("z1", "target is str"), ({"z9": 1}, "'z9'")])
def test_auto_bad_target_is_a_target_error_before_the_backtest(fitted, target, culprit):
    empty = sp.Backtest(pd.DataFrame(), [], [], TARGET)  # never reached
    with pytest.raises(sp.TargetError, match=culprit):
        fitted.sample(target, n=30, method="auto", backtest=empty)


def test_an_empty_backtest_has_an_empty_summary_and_no_best():
    bt = sp.Backtest(pd.DataFrame(), [], [], TARGET)
    assert bt.summary.empty and bt.best is None and "no method" in bt.verdict


@pytest.mark.slow
def test_auto_runs_the_backtest_on_the_training_rows(paper):
    seen, _, graph = paper
    model = sp.SEDGEModel(graph).fit(seen, steps=200, progress=False)
    s = model.sample(TARGET, n=200, method="auto")
    auto = s.info["auto"]
    assert auto["compared"] == ["plan", "langevin", "svi"]
    assert auto["label"] in auto["compared"] and s.method == auto["method"]
