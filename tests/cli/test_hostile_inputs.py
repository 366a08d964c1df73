"""Inputs a hostile pass tried (issue 20): each is a :class:`SedgeError` naming the culprit, and
on the command line one ``sedge: error: ...`` line with exit code 2, never a traceback.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import sedge_pyro as sp
from sedge_pyro import cli
from sedge_pyro.cli import main, parse_target
from sedge_pyro.experiments import paper as demo
from sedge_pyro.models.columns import Columns, infer_kind
from sedge_pyro.options import default_threads

FAST = ["--prior", "empirical", "--steps", "5", "--hidden", "8", "--quiet"]
NOVEL = ["z1<0.8", "z2>1.0"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, out, err, *culprits):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("sedge: error: "), err
    assert "Traceback" not in out + err
    for culprit in culprits:
        assert culprit in err, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training rows, their graph, the rows with one text cell, and a model (5 steps)."""
    root = tmp_path_factory.mktemp("hostile")
    seen, _, graph = sp.datasets.paper_synthetic(200, seed=0)
    paths = {k: root / f"{k}.csv" for k in ("data", "text_z1", "text_x1")}
    seen.to_csv(paths["data"], index=False)
    for col in ("z1", "x1"):
        bad = seen.astype({col: object})
        bad.loc[5, col] = "abc"
        bad.to_csv(paths[f"text_{col}"], index=False)
    paths["graph"] = root / "g.json"
    graph.save(paths["graph"])
    model = sp.SEDGEModel(graph, prior="empirical", hidden=(8,))
    model.fit(seen, steps=5, progress=False)
    paths["model"] = root / "model.pt"
    model.save(paths["model"])
    return {**paths, "seen": seen, "graph_obj": graph, "fitted": model}


# ------------------------------------------------- 4: one text cell in a continuous column


def test_fit_refuses_a_text_cell_in_a_numeric_spec(files, tmp_path, capsys):
    out = tmp_path / "m.pt"
    code, stdout, err = run(capsys, "fit", files["graph"], files["text_z1"], "-o", out, *FAST)
    one_line(code, stdout, err, "'z1'", "1 ", "'abc'")
    assert not out.exists()


def test_identify_refuses_the_same_file(files, capsys):
    for target in (["z1=1", "z2=1"], NOVEL):
        argv = ["identify", files["graph"], "--target", *target, "--data", files["text_z1"]]
        one_line(*run(capsys, *argv), "'z1'", "'abc'")


def test_text_cell_in_a_data_frame_is_a_data_error():
    values = pd.Series([0.5 + i / 100 for i in range(120)] + ["abc"], dtype=object, name="z1")
    with pytest.raises(sp.DataError, match=r"'z1'.*\b1\b.*'abc'"):
        infer_kind(values)
    df = pd.DataFrame({"x1": np.arange(121.0), "z1": values})
    with pytest.raises(sp.DataError, match=r"'z1'.*'abc'"):
        Columns.fit(df, ["x1"], ["z1"], {})


@pytest.mark.parametrize(
    "values",
    [
        ["red", "blue", "green"] * 40,  # all text
        ["1", "2", "other"] * 40,  # few distinct values
        [1, 2, "other"] * 40,
        [f"id{i}" for i in range(100)] + [str(i) for i in range(20)],  # mostly text
    ],
)
def test_categorical_text_columns_still_work(values):
    column = pd.Series(values, dtype=object, name="c")
    assert infer_kind(column) == "categorical"
    df = pd.DataFrame({"x1": np.arange(len(values), dtype=float), "c": column})
    assert Columns.fit(df, ["x1"], ["c"], {})["c"].kind == "categorical"


# ------------------------------------------------- 5: tracebacks instead of one line


def test_sample_far_too_many_draws(files, capsys):
    argv = ["sample", files["model"], "--target", *NOVEL, "-n", 10**12, "--quiet"]
    one_line(*run(capsys, *argv), "-n 1000000000000")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
        MemoryError(),
    ],
)
def test_sample_draws_that_do_not_fit_in_memory(files, capsys, monkeypatch, error):
    def too_big(*args, **kwargs):
        raise error

    monkeypatch.setattr(sp.SEDGEModel, "sample", too_big)
    argv = ["sample", files["model"], "--target", *NOVEL, "-n", 10**7, "--chains", 4, "--quiet"]
    one_line(*run(capsys, *argv), "-n 10000000", "memory")


@pytest.mark.parametrize("seed", [2**70, 2**63, -1])
@pytest.mark.parametrize("command", ["identify", "fit", "sample", "examples", "demo", "images"])
def test_seeds_outside_0_to_2_63_are_refused_everywhere(
    files, tmp_path, capsys, monkeypatch, command, seed
):
    def no_work(*args, **kwargs):
        raise AssertionError("the command ran with a bad seed")

    monkeypatch.setattr(demo, "run", no_work)
    monkeypatch.setattr(demo, "run_registry", no_work)
    monkeypatch.setattr("sedge_pyro.experiments.images.run_images", no_work)
    monkeypatch.setattr(sp.SEDGEModel, "fit", no_work)
    argv = {
        "identify": ["fig2b"],
        "fit": [files["graph"], files["data"], "-o", tmp_path / "m.pt", *FAST],
        "sample": [files["model"], "--target", *NOVEL, "-n", "5", "--quiet"],
        "examples": ["--identify"],
        "demo": ["--out", tmp_path / "out"],
        "images": ["--out", tmp_path / "out"],
    }[command]
    code, out, err = run(capsys, command, *argv, "--seed", seed)
    one_line(code, out, err, f"--seed {seed}", "2**63")
    assert err == f"sedge: error: --seed {seed}: expected a whole number from 0 to 2**63 - 1\n"


def test_identify_negative_rows(capsys):
    one_line(*run(capsys, "identify", "fig2b", "--rows", "-5"), "--rows -5")


def test_identify_rows_beyond_memory_are_refused_before_simulating(capsys):
    # found by the fuzz suite: --rows 2**69 simulated until the machine ran out of memory
    one_line(*run(capsys, "identify", "fig2b", "--rows", str(2**69)), "--rows")


def test_graph_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_bytes(b'{"nodes": [{"id": "\xff\xfe"}]}')
    with pytest.raises(sp.GraphError, match="g.json.*UTF-8"):
        sp.SpecGraph.read(path)
    one_line(*run(capsys, "identify", path, "--target", "z1=1"), "g.json", "UTF-8")


@pytest.mark.parametrize("node_id", [None, ["x1"], {"a": 1}, 3])
def test_json_node_id_that_is_not_a_name(node_id):
    data = json.loads(sp.SpecGraph.from_parents({"z1": ["x1"]}).to_json())
    data["nodes"][0]["id"] = node_id
    with pytest.raises(sp.GraphError, match=r"nodes\[0\]"):
        sp.SpecGraph.from_json(json.dumps(data))


@pytest.mark.parametrize("end", [None, ["x1"], {"a": 1}])
def test_json_edge_end_that_is_not_a_name(end):
    data = json.loads(sp.SpecGraph.from_parents({"z1": ["x1"]}).to_json())
    data["edges"][0]["source"] = end
    with pytest.raises(sp.GraphError, match=r"edges\[0\]"):
        sp.SpecGraph.from_json(json.dumps(data))


@pytest.mark.parametrize("stamp", [b"[1, 2]", b"not json", b'{"config": 3}', b"\xff\xfe", b"null"])
def test_run_json_that_is_not_an_object(tmp_path, capsys, monkeypatch, stamp):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_bytes(stamp)
    with pytest.raises(sp.SedgeError, match="run.json"):
        demo.refuse_other_run(out, {"quick": True, "seed": 0}, force=False)
    demo.refuse_other_run(out, {"quick": True, "seed": 0}, force=True)

    def no_work(*args, **kwargs):
        raise AssertionError("the demo ran into a folder it should refuse")

    monkeypatch.setattr(demo, "paper_experiment", no_work)
    one_line(*run(capsys, "demo", "--quick", "--out", out), "run.json", "--force")


class _ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise OSError("no file descriptor")


def test_broken_pipe_is_not_an_error(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    code = main(["examples"])
    assert code == 1
    assert capsys.readouterr().err == ""


def test_broken_pipe_in_a_real_pipe():
    read, write = os.pipe()
    os.close(read)  # the reader is gone (`| head -1` after its line) before a byte is written
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sedge_pyro.cli", "examples"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 1


# ------------------------------------------------- 6: the wrong culprit, or nonsense accepted


def test_negative_tolerance_is_an_option_error(files, capsys):
    argv = ["sample", files["model"], "--target", "z1=1", "z2=1", "-n", "5", "--quiet"]
    one_line(*run(capsys, *argv, "--tolerance", "-1"), "tolerance", "-1")
    one_line(*run(capsys, "identify", "fig2b", "--tolerance", "-1"), "tolerance", "-1")
    graph, seen, model = files["graph_obj"], files["seen"], files["fitted"]
    for tolerance in (-1, {"z1": -1.0}, "wide", float("nan")):
        with pytest.raises(sp.OptionError, match="tolerance"):
            sp.identify(graph, {"z1": 1.0, "z2": 1.0}, seen, tolerance=tolerance)
        with pytest.raises(sp.OptionError, match="tolerance"):
            model.sample({"z1": 1.0, "z2": 1.0}, n=5, tolerance=tolerance)
        with pytest.raises(sp.OptionError, match="tolerance"):
            model.spec_probability(seen, {"z1": 1.0}, tolerance=tolerance)


def test_text_in_a_feature_column_shows_the_bad_cell(files, tmp_path, capsys):
    argv = ["fit", files["graph"], files["text_x1"], "-o", tmp_path / "m.pt", *FAST]
    one_line(*run(capsys, *argv), "'x1'", "'abc'", "1 ")
    bad = files["seen"].astype({"x1": object})
    bad.loc[3, "x1"] = "abc"
    with pytest.raises(sp.DataError, match=r"'x1'.*'abc'"):
        files["fitted"].spec_probability(bad, {"z1": sp.Interval(high=0.8)})
    with pytest.raises(sp.DataError, match=r"'x1'.*'abc'"):
        files["fitted"].log_prob(bad)


def test_a_folder_as_the_data_file(files, tmp_path, capsys):
    argv = ["fit", files["graph"], tmp_path, "-o", tmp_path / "m.pt", *FAST]
    one_line(*run(capsys, *argv), str(tmp_path), "folder")
    one_line(*run(capsys, "identify", "fig2b", "--data", tmp_path), "folder")


@pytest.mark.parametrize(
    ("parents", "culprit"),
    [
        ({"z1": "x1x2"}, "'z1'"),
        ({"z1": 5}, "'z1'"),
        ({"z1": [["x1"]]}, "'z1'"),
        ({"z1": [None]}, "'z1'"),
        ("z1", "parents"),
        (["z1", "x1"], "parents"),
        (None, "parents"),
    ],
)
def test_from_parents_bad_shapes_are_graph_errors(parents, culprit):
    with pytest.raises(sp.GraphError, match=culprit):
        sp.SpecGraph.from_parents(parents)


@pytest.mark.parametrize("hidden", ["64", 64, (0,), (8.5,), (-1, 8), [True]])
def test_sedge_model_hidden_must_be_layer_sizes(files, hidden):
    with pytest.raises(sp.OptionError, match="hidden"):
        sp.SEDGEModel(files["graph_obj"], hidden=hidden)
    assert sp.SEDGEModel(files["graph_obj"], hidden=[16, np.int64(8)]).hidden == (16, 8)


@pytest.mark.parametrize("token", ["z1==1", "z1=<1", "z1=>1", "z1<=<1"])
def test_doubled_operator_in_a_target(token):
    with pytest.raises(sp.TargetError, match=re.escape(repr(token))):
        parse_target([token])


def test_negative_seed_same_message_for_fit_and_sample(files, tmp_path, capsys):
    fit = run(
        capsys, "fit", files["graph"], files["data"], "-o", tmp_path / "m.pt", *FAST, "--seed", "-1"
    )
    smp = run(capsys, "sample", files["model"], "--target", *NOVEL, "-n", "5", "--seed", "-1")
    one_line(*fit, "--seed -1")
    one_line(*smp, "--seed -1")
    assert fit[2] == smp[2]


@pytest.mark.parametrize("where", ["file-parent", "folder"])
def test_unwritable_output_is_found_before_the_fit(files, tmp_path, capsys, monkeypatch, where):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before checking the output path")

    monkeypatch.setattr(sp.SEDGEModel, "fit", no_fit)
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "m.pt" if where == "file-parent" else tmp_path
    argv = ["fit", files["graph"], files["data"], "-o", out, *FAST]
    one_line(*run(capsys, *argv), str(out))
    assert (tmp_path / "afile").read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_unwritable_sample_output_is_found_before_sampling(files, tmp_path, capsys, monkeypatch):
    def no_sample(*args, **kwargs):
        raise AssertionError("sampled before checking the output path")

    monkeypatch.setattr(sp.SEDGEModel, "sample", no_sample)
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "d.csv"
    argv = ["sample", files["model"], "--target", *NOVEL, "-n", "5", "-o", out, "--quiet"]
    one_line(*run(capsys, *argv), str(out))


def test_fit_output_in_a_new_folder_is_fine(files, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "m.pt"
    code, _, err = run(capsys, "fit", files["graph"], files["data"], "-o", out, *FAST)
    assert code == 0, err
    assert out.exists()


def test_binary_value_outside_0_1_is_a_data_error():
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=120)
    df = pd.DataFrame({"x1": x1, "b": (x1 > 0).astype(int)})
    graph = sp.SpecGraph.from_parents({"b": ["x1"]})
    model = sp.SEDGEModel(graph, prior="empirical", hidden=(8,)).fit(df, steps=3, progress=False)
    for value in (2, 0.5):
        with pytest.raises(sp.DataError, match=rf"'b'.*{value}"):
            model.log_prob(df.assign(b=value))


# ------------------------------------------------- 7: --threads on every command


def _commands():
    return sorted(cli._parser()._subparsers._group_actions[0].choices)


#: placeholders for the arguments a command requires (never read: --threads is checked first)
REQUIRED = {
    "identify": ["fig2b"],
    "fit": ["g.json", "train.csv", "-o", "m.pt"],
    "sample": ["m.pt", "--target", "z1=1"],
    "convert": ["old.pt", "new.safetensors"],
    "backtest": ["train.csv", "--graph", "g.json", "--target", "z1=1"],
}


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("command", _commands())
def test_threads_bad_value_is_one_line(capsys, command, value):
    argv = [command, *REQUIRED.get(command, []), "--threads", value]
    one_line(*run(capsys, *argv), f"--threads={value}")


def test_every_command_has_threads_with_its_default(capsys):
    commands = _commands()
    assert {"identify", "fit", "sample", "examples", "demo", "images"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "--threads" in out
        assert f"torch CPU threads (default: {default_threads()})" in " ".join(out.split())


def test_threads_apply_inside_the_command_and_are_restored(monkeypatch):
    seen = []
    monkeypatch.setattr(
        cli, "_cmd_examples", lambda args: seen.append(torch.get_num_threads()) or 0
    )
    before = torch.get_num_threads()
    assert main(["examples", "--threads", "3"]) == 0
    assert main(["examples"]) == 0
    assert seen == [3, default_threads()]
    assert torch.get_num_threads() == before
