"""A failed assumption check changes the outcome of identify (issue 21, item 4).

Known answers: training rows built so that one check fails (overlap, independence) or none does;
rarity is never "ok" on training rows alone; ``strict=True`` raises; ``sedge identify`` exits 1
on a failed check, 0 otherwise, 2 on bad input or a failed check with ``--strict``.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.assumptions import INDEPENDENCE_MIN_R
from sedge_pyro.cli import main

FIG2A = sp.examples.get("fig2a")
BOTH = {"z1": 1, "z2": 1}


def fig2a_rows(n: int, r: float, seed: int) -> pd.DataFrame:
    """Rows of Fig. 2(a), z1 <- x1, x2 and z2 <- x3, x4, with corr(x1, x3) = r.

    Every combination of z1 and z2 is kept, so the graph is the only reason to split.
    """
    rng = np.random.default_rng(seed)
    cov = np.eye(4)
    cov[0, 2] = cov[2, 0] = r
    x = rng.multivariate_normal(np.zeros(4), cov, size=n)
    rows = pd.DataFrame(x, columns=["x1", "x2", "x3", "x4"])
    rows["z1"] = (x[:, 0] + x[:, 1] > 0).astype(int)
    rows["z2"] = (x[:, 2] + x[:, 3] > 0).astype(int)
    return rows


def disjoint_x2(n: int, seed: int) -> pd.DataFrame:
    """The paper's synthetic rows (Fig. 2(b)) with the blocks' ranges of x2 made disjoint."""
    seen = sp.datasets.paper_synthetic(n=n, seed=seed).seen
    mid = float(seen["x2"].median())
    block1 = seen["z1"] <= 0.8
    block2 = seen["z2"] >= 1.0
    keep = ~(block1 & (seen["x2"] > mid)) & ~(block2 & (seen["x2"] <= mid))
    return seen[keep].reset_index(drop=True)


def names(pairs) -> list[str]:
    return [a.name for a, _ in pairs]


# --------------------------------------------------------------------------- independence


def test_correlated_components_fail_and_name_the_pair() -> None:
    res = sp.identify(FIG2A.graph, BOTH, fig2a_rows(2000, 0.4, seed=0))
    assert res.status is sp.Status.IDENTIFIABLE
    assert res.ok is False
    (fail,) = res.failures()
    assert fail[0].name == "independence"
    # the partial correlation given z1, z2 (each a threshold of its features) is below the
    # marginal 0.4: 0.27 on these 2,000 rows
    match = re.search(r"x1 \(\{z1\}\) and x3 \(\{z2\}\) correlate at r = (0\.\d\d)", fail[1].detail)
    assert match and 0.2 < float(match.group(1)) < 0.4
    text = res.explain().splitlines()
    assert text[1].startswith("WARNING: 1 assumption check failed: independence: x1 ({z1})")
    assert "[FAIL] independence" in res.explain()


def test_dependence_made_by_the_selection_alone_passes() -> None:
    # independent features, but S removes the rows with z1 = 1 and z2 = 1: in the training
    # rows x1 and x3 correlate (x1 -> z1 -> S <- z2 <- x3), not given z1 and z2
    rows = fig2a_rows(4000, 0.0, seed=1)
    seen = rows[~((rows.z1 == 1) & (rows.z2 == 1))].reset_index(drop=True)
    marginal = float(np.corrcoef(seen.x1, seen.x3)[0, 1])
    assert marginal < -0.1  # what a marginal test would have flagged
    res = sp.identify(FIG2A.graph, BOTH, seen)
    check = dict((a.name, c) for a, c in res.checks())["independence"]
    assert check.ok is True, check.detail


def test_independent_components_pass() -> None:
    res = sp.identify(FIG2A.graph, BOTH, fig2a_rows(2000, 0.0, seed=0))
    assert [a.name for a in res.assumptions] == ["coverage", "positivity", "independence"]
    assert res.ok is True
    assert res.failures() == []
    assert "WARNING" not in res.explain()
    assert "[ok] independence" in res.explain()


def test_the_example_rows_of_fig2a_pass() -> None:
    res = FIG2A.identify(n=2000, seed=0)
    assert res.ok is True


def test_a_huge_table_does_not_fail_on_a_negligible_correlation() -> None:
    # r = 0.03 is significant on 200,000 rows but below the smallest dependence, 0.1
    res = sp.identify(FIG2A.graph, BOTH, fig2a_rows(200_000, 0.03, seed=1))
    check = dict((a.name, c) for a, c in res.checks())["independence"]
    assert check.ok is True, check.detail
    assert INDEPENDENCE_MIN_R == 0.1


def test_a_few_rows_do_not_fail_on_a_chance_correlation() -> None:
    # on 30 rows, |r| = 0.3 is chance: the Fisher-z threshold is well above it
    rows = fig2a_rows(30, 0.0, seed=3)
    check = dict((a.name, c) for a, c in sp.identify(FIG2A.graph, BOTH, rows).checks())
    assert check["independence"].ok is True


def test_independence_only_with_two_components_with_features() -> None:
    fig2b = sp.examples.get("fig2b")
    res = fig2b.identify(n=2000, seed=0)
    assert "independence" not in [a.name for a in res.assumptions]


def test_independence_without_feature_columns_is_unverified() -> None:
    rows = fig2a_rows(500, 0.4, seed=0)[["z1", "z2"]]
    res = sp.identify(FIG2A.graph, BOTH, rows)
    check = dict((a.name, c) for a, c in res.checks())["independence"]
    assert check.ok is None and check.label == "unverified"
    assert check.detail.startswith("not checked")
    assert res.ok is True
    assert "[unverified] independence" in res.explain()


# -------------------------------------------------------------------------------- overlap


def test_disjoint_overlap_flags_the_result_first() -> None:
    synthetic = sp.examples.get("synthetic")
    res = sp.identify(synthetic.graph, synthetic.target, disjoint_x2(20_000, seed=0))
    assert res.status is sp.Status.CONSERVATIVE  # the status says what the graph allows ...
    assert res.ok is False  # ... and the flag what the rows contradict
    assert "overlap" in names(res.failures())
    detail = dict((a.name, c) for a, c in res.failures())["overlap"].detail
    assert "do not overlap" in detail
    lines = res.explain().splitlines()
    assert lines[1].startswith("WARNING:") and "overlap: X_c {x2}" in "\n".join(lines[1:4])
    assert lines.index(next(x for x in lines if "overlap" in x)) < lines.index("terms:")


# --------------------------------------------------------------------------------- rarity


@pytest.mark.parametrize("k", [1, 2, 5, 10, 20, 30, 50])
def test_rarity_is_never_ok_on_training_rows_alone(k) -> None:
    z1 = np.zeros(100, dtype=int)
    z2 = np.zeros(100, dtype=int)
    z1[:k] = 1
    z2[k : 2 * k] = 1
    rows = pd.DataFrame({"z1": z1, "z2": z2, "x2": np.arange(100) % 2})
    res = sp.identify(sp.examples.get("fig2b").graph, BOTH, rows)
    check = dict((a.name, c) for a, c in res.checks())["rarity"]
    assert check.ok is not True
    assert check.ok is None
    assert "held-out rows cannot be seen in training rows" in check.detail
    # (k/100)^2 is the share independent blocks would co-occur in, k/100 the share of one
    # block's rows the combination would take: either above 5% is doubtful
    assert ("doubtful" in check.detail) is (k > 5)
    assert f"{k / 100:.0%} of the rows with" in check.detail


def test_rarity_unverified_even_when_most_of_a_block_was_held_out() -> None:
    # the population has z1 = 1 on 30% of rows; selection drops 2/3 of the rows with z1 = 1
    # and z2 = 1 (the novel combination is all of them): the S=1 rows cannot show that share
    rng = np.random.default_rng(0)
    n = 20_000
    z1 = (rng.random(n) < 0.3).astype(int)
    z2 = (rng.random(n) < 0.1).astype(int)
    pop = pd.DataFrame({"z1": z1, "z2": z2, "x2": rng.normal(size=n)})
    seen = pop[~((pop.z1 == 1) & (pop.z2 == 1))]
    res = sp.identify(sp.examples.get("fig2b").graph, BOTH, seen)
    check = dict((a.name, c) for a, c in res.checks())["rarity"]
    assert check.ok is None
    assert check.label == "unverified"
    assert "[unverified] rarity" in res.explain()


def test_check_labels() -> None:
    assert [sp.Check(v, "").label for v in (True, False, None)] == ["ok", "FAIL", "unverified"]


# -------------------------------------------------------------------------- ok and strict


def test_ok_is_none_without_rows() -> None:
    res = sp.identify(FIG2A.graph, BOTH)
    assert res.ok is None
    assert res.failures() == []
    assert res.to_dict()["ok"] is None


def test_impossible_is_a_failed_coverage_check() -> None:
    res = sp.examples.get("categorical").identify()
    assert res.status is sp.Status.IMPOSSIBLE
    assert res.ok is False
    assert names(res.failures()) == ["coverage"]


def test_strict_raises_naming_each_failed_check() -> None:
    rows = fig2a_rows(2000, 0.4, seed=0)
    with pytest.raises(sp.AssumptionFailed, match=r"independence: x1 \(\{z1\}\) and x3") as err:
        sp.identify(FIG2A.graph, BOTH, rows, strict=True)
    assert isinstance(err.value, sp.SedgeError)
    assert "\n" not in str(err.value)
    synthetic = sp.examples.get("synthetic")
    with pytest.raises(sp.AssumptionFailed, match="overlap: X_c"):
        sp.identify(synthetic.graph, synthetic.target, disjoint_x2(20_000, seed=0), strict=True)


def test_strict_returns_the_result_when_nothing_fails() -> None:
    res = sp.identify(FIG2A.graph, BOTH, fig2a_rows(2000, 0.0, seed=0), strict=True)
    assert res.ok is True
    assert sp.identify(FIG2A.graph, BOTH, strict=True).ok is None


def test_assumption_failed_is_exported() -> None:
    assert "AssumptionFailed" in sp.__all__
    assert sp.__all__.index("AssumptionFailed") == sp.__all__.index("Assumption") + 1
    assert issubclass(sp.AssumptionFailed, sp.SedgeError)


def test_to_dict_carries_ok_and_labels() -> None:
    d = sp.identify(FIG2A.graph, BOTH, fig2a_rows(2000, 0.4, seed=0)).to_dict()
    json.dumps(d)
    assert d["ok"] is False
    labels = {c["name"]: c["label"] for c in d["checks"]}
    assert labels == {"coverage": "ok", "positivity": "ok", "independence": "FAIL"}


# ---------------------------------------------------------------------------------- CLI


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def graph_file(tmp_path):
    path = tmp_path / "fig2a.json"
    FIG2A.graph.save(path)
    return str(path)


def rows_file(tmp_path, r: float) -> str:
    path = tmp_path / f"rows_{r}.csv"
    fig2a_rows(2000, r, seed=0).to_csv(path, index=False)
    return str(path)


def test_cli_exit_1_on_a_failed_check(tmp_path, capsys, graph_file) -> None:
    data = rows_file(tmp_path, 0.4)
    code, out, err = run(capsys, "identify", graph_file, "--target", "z1=1", "z2=1", "--data", data)
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[1].startswith("WARNING: 1 assumption check failed: independence")
    assert "terms:" in out and "[FAIL] independence" in out  # the report is still in full


def test_cli_exit_0_when_no_check_fails(tmp_path, capsys, graph_file) -> None:
    data = rows_file(tmp_path, 0.0)
    code, out, _ = run(capsys, "identify", graph_file, "--target", "z1=1", "z2=1", "--data", data)
    assert code == 0
    assert "WARNING" not in out


def test_cli_json_carries_ok(tmp_path, capsys, graph_file) -> None:
    for r, code_expected, ok in [(0.4, 1, False), (0.0, 0, True)]:
        data = rows_file(tmp_path, r)
        code, out, _ = run(
            capsys, "identify", graph_file, "--target", "z1=1", "z2=1", "--data", data, "--json"
        )
        assert code == code_expected
        d = json.loads(out)
        assert d["ok"] is ok
        assert all("label" in c for c in d["checks"])


def test_cli_strict_exits_2_with_one_line(tmp_path, capsys, graph_file) -> None:
    data = rows_file(tmp_path, 0.4)
    argv = ["identify", graph_file, "--target", "z1=1", "z2=1", "--data", data, "--strict"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("sedge: error: 1 assumption check(s) failed")
    assert "independence" in err
    code, _, _ = run(capsys, *argv[:-2], rows_file(tmp_path, 0.0), "--strict")
    assert code == 0


def test_cli_bad_input_stays_2(capsys) -> None:
    code, _, err = run(capsys, "identify", "fig2a", "--target", "z9=1")
    assert code == 2 and "'z9'" in err
