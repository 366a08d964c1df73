"""The demo: the paper's synthetic experiment end to end, its table, outputs and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sedge_pyro import cli
from sedge_pyro.errors import OptionError, SedgeError
from sedge_pyro.experiments.paper import RUNS, paper_experiment, table_markdown, write_outputs

SMALL = {"rows": 4000, "draws": 150, "steps": 60, "progress": False}


@pytest.fixture(scope="module")
def small():
    return paper_experiment(only=["A plan", "A opt"], **SMALL)


def test_small_experiment_scores_plan_near_the_floor(small):
    rows = {(r["method"], r["target"]): r for r in small.rows}
    assert set(rows) == {("A plan", "event"), ("A opt", "paper")}
    plan = rows[("A plan", "event")]
    # plan copies training values whose specs can reach the Oracle region: never outside
    assert plan["outside"] == 0.0
    # satisfaction within 3 standard errors of the Oracle's: 150 draws against 150 Oracle rows
    draws = small.samples["A plan [event]"].to_dataframe()[["x1", "x2", "x3"]]
    p_draws = small.data.region_probability(draws)
    p_oracle = small.data.region_probability(small.reference[["x1", "x2", "x3"]])
    se = np.sqrt(p_draws.var() / len(p_draws) + p_oracle.var() / len(p_oracle))
    assert abs(plan["satisfaction"] - small.oracle_satisfaction) < 3 * se, se
    assert plan["mmd_over_floor"] < 2.0
    assert small.best["method"] == "A plan"
    assert small.identification.status.name == "CONSERVATIVE"


def test_outputs_are_written_and_a_different_run_is_not_overwritten(small, tmp_path):
    out = write_outputs(small, tmp_path / "demo")
    assert {p.name for p in out.iterdir()} == {
        "table.md",
        "table.json",
        "figure.png",
        "best.nc",
        "run.json",
    }
    table = json.loads((out / "table.json").read_text())
    assert len(table["rows"]) == 2 and table["floor"] > 0
    assert "| A plan | event |" in (out / "table.md").read_text()
    write_outputs(small, out)  # the same settings: refreshed
    small.config["seed"] = 99  # pretend another run
    try:
        with pytest.raises(SedgeError, match="holds a different run"):
            write_outputs(small, out)
        write_outputs(small, out, force=True)
    finally:
        small.config["seed"] = 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(SedgeError, match="is a file"):
        write_outputs(small, tmp_path / "file")


def test_bad_settings_raise_option_errors():
    with pytest.raises(OptionError, match="only names 'Z magic'"):
        paper_experiment(only=["Z magic"], **SMALL)
    with pytest.raises(OptionError, match="Oracle rows"):
        paper_experiment(rows=500, draws=400, steps=10, progress=False, only=["A plan"])
    with pytest.raises(OptionError, match="draws=0"):
        paper_experiment(rows=500, draws=0, steps=10, progress=False)


def test_markdown_table_lists_the_floor_first(small):
    lines = table_markdown(small).splitlines()
    assert lines[2].startswith("| Oracle rows (floor) |")
    assert len(lines) == 3 + len(small.rows)


@pytest.mark.slow  # about a minute; .ci/run runs it beside `make test`
def test_sedge_demo_quick_runs_every_method(tmp_path, capsys):
    # about 45 s on 2 cores: under the 60 s at which a test is marked slow
    code = cli.main(["demo", "--quick", "--quiet", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    for label, _, _, kind, _ in RUNS:
        assert f"| {label} | {kind} |" in out
    assert "CONSERVATIVE" in out
    assert (tmp_path / "out" / "best.nc").is_file()


def test_sedge_demo_refuses_a_different_run_before_working(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = cli.main(["demo", "--quick", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "holds a different run" in err and len(err.strip().splitlines()) == 1
    assert (out / "notes.txt").read_text() == "mine"
