import json

import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.cli import main, parse_target


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_target_points_and_intervals():
    target = parse_target(["z1=1", "z2>1.0", "z3<=0.8", "z4=0.2..0.8", "colour=red", "z5=0.5"])
    assert target == {
        "z1": 1,
        "z2": sp.Interval(low=1.0),
        "z3": sp.Interval(high=0.8),
        "z4": sp.Interval(0.2, 0.8),
        "colour": "red",
        "z5": 0.5,
    }


@pytest.mark.parametrize(
    ("tokens", "culprit"),
    [(["z1"], "'z1'"), (["z1=1", "z1=0"], "'z1'"), (["z1<abc"], "'abc'"), (["z1=1..x"], "'x'")],
)
def test_parse_target_errors_name_the_token(tokens, culprit):
    with pytest.raises(sp.TargetError, match=culprit):
        parse_target(tokens)


def test_identify_graph_file_with_data(tmp_path, capsys):
    example = sp.examples.get("fig2b")
    graph_path = tmp_path / "g.json"
    example.graph.save(graph_path)
    data_path = tmp_path / "train.csv"
    example.seen(n=500, seed=1).to_csv(data_path, index=False)
    code, out, err = run(
        capsys,
        "identify",
        str(graph_path),
        "--target",
        "z1=1",
        "z2=1",
        "--data",
        str(data_path),
        "--latex",
    )
    assert code == 0, err
    assert "CONSERVATIVE" in out
    assert "pD(x1, x2 | z1=1) · pD(z2=1 | x2) · pD(x3 | x2, z2=1)" in out
    assert "shared features X_c: {x2}" in out
    assert r"p_{D}(z_{2}=1 \mid x_{2})" in out
    for name in ("coverage", "positivity", "overlap", "rarity"):
        assert name in out


def test_identify_json_output(capsys):
    code, out, _ = run(capsys, "identify", "fig2a", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "IDENTIFIABLE"
    assert data["blocks"] == [["z1"], ["z2"]]
    assert all(t["exact"] for t in data["terms"])


def test_examples_and_demo(capsys):
    code, out, _ = run(capsys, "examples")
    assert code == 0
    assert all(name in out for name in sp.examples.names())
    code, out, _ = run(capsys, "demo", "--rows", "400")
    assert code == 0
    for name, ex in sp.examples.EXAMPLES.items():
        line = next(line for line in out.splitlines() if line.startswith(f"| {name} "))
        assert ex.expected in line


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["identify", "nope"], "'nope'"),
        (["identify", "fig2b", "--target", "z9=1"], "'z9'"),
        (["identify", "fig2b", "--target", "x1=1"], "'x1'"),
        (["identify", "fig2b", "--data", "missing.csv"], "missing.csv"),
        (["identify", "fig1a"], "z1 -> x1"),
        (["identify", "missing.json", "--target", "z1=1"], "missing.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, culprit):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("sedge: error: ")
    assert culprit in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    ("frame", "culprit"),
    [
        (pd.DataFrame({"x1": [0, 1], "z1": [1, 0]}), "'z2'"),
        (pd.DataFrame({"z1": [1, 0, None], "z2": [0, 1, 1]}), "'z1'"),
    ],
)
def test_bad_data_file(tmp_path, capsys, frame, culprit):
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    code, _, err = run(capsys, "identify", "fig2b", "--data", str(path))
    assert code == 2
    assert culprit in err


def test_graph_file_requires_target(tmp_path, capsys):
    path = tmp_path / "g.json"
    sp.examples.get("fig2b").graph.save(path)
    code, _, err = run(capsys, "identify", str(path))
    assert code == 2 and "--target" in err


def test_invalid_graph_file(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text("{not json")
    code, _, err = run(capsys, "identify", str(path), "--target", "z1=1")
    assert code == 2 and "g.json" in err
