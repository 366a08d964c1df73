from __future__ import annotations

import json
import sys

import networkx as nx
import pytest

from sedge_pyro.errors import GraphError
from sedge_pyro.graph import SpecGraph, natural_key

FIG_2B = {"z1": ["x1", "x2"], "z2": ["x2", "x3"]}


def _digraph(
    features: list[str],
    specs: list[str],
    edges: list[tuple[str, str]],
    selection: list[str] | None = None,
) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(features, role="feature")
    g.add_nodes_from(specs, role="spec")
    g.add_nodes_from(["S"] if selection is None else selection, role="selection")
    g.add_edges_from(edges)
    return g


def _fig2b_digraph() -> nx.DiGraph:
    return _digraph(
        ["x1", "x2", "x3"],
        ["z1", "z2"],
        [("x1", "z1"), ("x2", "z1"), ("x2", "z2"), ("x3", "z2"), ("z1", "S"), ("z2", "S")],
    )


@pytest.fixture
def fig2b() -> SpecGraph:
    return SpecGraph.from_parents(FIG_2B)


# ---------------------------------------------------------------- construction


def test_from_parents_matches_explicit_digraph(fig2b: SpecGraph) -> None:
    assert fig2b == SpecGraph(_fig2b_digraph())
    assert fig2b.features == ("x1", "x2", "x3")
    assert fig2b.specs == ("z1", "z2")
    assert fig2b.selection == "S"
    assert fig2b.parents("S") == ("z1", "z2")
    assert fig2b.parents("z2") == ("x2", "x3")
    assert fig2b.children("x2") == ("z1", "z2")
    assert fig2b.role("x1") == "feature"
    assert fig2b.role("z1") == "spec"
    assert fig2b.role("S") == "selection"
    assert repr(fig2b) == "SpecGraph(features=3, specs=2, selection='S')"


def test_from_parents_selection_parents_feature_edges_and_extra_features() -> None:
    g = SpecGraph.from_parents(
        {"z1": ["x1"], "z2": ["x2"]},
        selection="sel",
        selection_parents=["z2"],
        feature_edges=[("x1", "x2")],
        features=["x9"],
    )
    assert g.selection == "sel"
    assert g.parents("sel") == ("z2",)
    assert g.children("z1") == ()
    assert g.parents("x2") == ("x1",)
    assert g.features == ("x1", "x2", "x9")
    assert g.children("x9") == ()
    assert set(g.feature_graph().edges) == {("x1", "x2")}
    assert set(g.feature_graph().nodes) == {"x1", "x2", "x9"}


def test_from_parents_accepts_iterators() -> None:
    g = SpecGraph.from_parents({"z1": iter(["x1", "x2"])}, selection_parents=iter(["z1"]))
    assert g.parents("z1") == ("x1", "x2")


def test_constructor_copies_input() -> None:
    nxg = _fig2b_digraph()
    g = SpecGraph(nxg)
    nxg.add_edge("x1", "z2")
    assert g.parents("z2") == ("x2", "x3")
    out = g.to_networkx()
    out.add_edge("x1", "z2")
    assert g.parents("z2") == ("x2", "x3")


def test_containers(fig2b: SpecGraph) -> None:
    assert "x1" in fig2b
    assert "nope" not in fig2b
    assert 1 not in fig2b
    assert len(fig2b) == 6
    assert fig2b.nodes == ("x1", "x2", "x3", "z1", "z2", "S")
    assert fig2b.edges == (
        ("x1", "z1"),
        ("x2", "z1"),
        ("x2", "z2"),
        ("x3", "z2"),
        ("z1", "S"),
        ("z2", "S"),
    )


def test_equality_compares_nodes_roles_and_edges(fig2b: SpecGraph) -> None:
    assert fig2b == SpecGraph.from_parents({"z2": ["x3", "x2"], "z1": ["x2", "x1"]})
    assert fig2b != SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2"]}, features=["x3"])
    assert fig2b != SpecGraph.from_parents(FIG_2B, selection_parents=["z1"])
    assert fig2b != "not a graph"


def test_natural_order() -> None:
    names = ["x10", "x2", "x1", "x02", "y", "x"]
    assert sorted(names, key=natural_key) == ["x", "x1", "x02", "x2", "x10", "y"]
    g = SpecGraph.from_parents({"z10": ["x10", "x2"], "z2": ["x1"], "z1": ["x2"]})
    assert g.features == ("x1", "x2", "x10")
    assert g.specs == ("z1", "z2", "z10")
    assert g.parents("z10") == ("x2", "x10")
    assert g.parents("S") == ("z1", "z2", "z10")


def test_unknown_node_in_queries(fig2b: SpecGraph) -> None:
    for method in (fig2b.parents, fig2b.children, fig2b.role):
        with pytest.raises(GraphError, match="'q7'"):
            method("q7")


# ---------------------------------------------------------------- validation errors


def test_non_str_node_name() -> None:
    g = _fig2b_digraph()
    g.add_node(7, role="feature")
    with pytest.raises(GraphError, match="node 7 has a name of type int"):
        SpecGraph(g)


def test_undirected_graph_rejected() -> None:
    with pytest.raises(GraphError, match="DiGraph"):
        SpecGraph(nx.Graph(_fig2b_digraph()))


def test_missing_role() -> None:
    g = _fig2b_digraph()
    g.add_node("x4")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "'x4'" in str(err.value)
    assert "no 'role'" in str(err.value)


def test_unknown_role() -> None:
    g = _fig2b_digraph()
    g.nodes["x3"]["role"] = "latent"
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "'x3'" in str(err.value)
    assert "'latent'" in str(err.value)


def test_spec_to_feature_edge() -> None:
    g = _fig2b_digraph()
    g.add_edge("z1", "x3")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "z1 -> x3" in str(err.value)
    assert "Sec. 3.1 (i)" in str(err.value)


def test_spec_to_spec_edge() -> None:
    g = _fig2b_digraph()
    g.add_edge("z1", "z2")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "z1 -> z2" in str(err.value)
    assert "(ii)" in str(err.value)


def test_selection_with_child() -> None:
    g = _fig2b_digraph()
    g.add_edge("S", "x1")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "S -> x1" in str(err.value)
    assert "no children" in str(err.value)


def test_selection_with_feature_parent() -> None:
    g = _fig2b_digraph()
    g.add_edge("x3", "S")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "x3 -> S" in str(err.value)
    assert "(iii)" in str(err.value)


def test_cycle_names_its_edges() -> None:
    g = _fig2b_digraph()
    g.add_edges_from([("x1", "x2"), ("x2", "x3"), ("x3", "x1")])
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    msg = str(err.value)
    assert "cycle" in msg
    for edge in ("x1 -> x2", "x2 -> x3", "x3 -> x1"):
        assert edge in msg


def test_self_loop_is_a_cycle() -> None:
    g = _fig2b_digraph()
    g.add_edge("x2", "x2")
    with pytest.raises(GraphError, match="cycle x2 -> x2"):
        SpecGraph(g)


def test_edge_kind_reported_before_cycle() -> None:
    g = _fig2b_digraph()
    g.add_edge("z1", "x1")
    with pytest.raises(GraphError, match="z1 -> x1 goes from a specification to a feature"):
        SpecGraph(g)


def test_role_reported_before_edge_kind() -> None:
    g = _fig2b_digraph()
    g.add_edge("z1", "x1")
    g.nodes["x3"]["role"] = "other"
    with pytest.raises(GraphError, match="unknown role"):
        SpecGraph(g)


def test_spec_without_feature_parent() -> None:
    g = _fig2b_digraph()
    g.add_node("z3", role="spec")
    g.add_edge("z3", "S")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "'z3'" in str(err.value)
    assert "no feature parent" in str(err.value)


def test_missing_selection() -> None:
    g = _fig2b_digraph()
    g.remove_node("S")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert str(err.value) == (
        "no node with role 'selection'; add one or build with SpecGraph.from_parents, which adds S"
    )


def test_two_selection_nodes() -> None:
    g = _fig2b_digraph()
    g.add_node("S2", role="selection")
    with pytest.raises(GraphError) as err:
        SpecGraph(g)
    assert "S, S2" in str(err.value)


def test_from_parents_spec_listed_as_parent() -> None:
    with pytest.raises(GraphError) as err:
        SpecGraph.from_parents({"z1": ["x1"], "z2": ["x2", "z1"]})
    assert "z1 -> z2" in str(err.value)


def test_from_parents_spec_in_feature_edges() -> None:
    with pytest.raises(GraphError) as err:
        SpecGraph.from_parents({"z1": ["x1"]}, feature_edges=[("x1", "z1")])
    assert "x1 -> z1" in str(err.value)


def test_from_parents_spec_in_features() -> None:
    with pytest.raises(GraphError, match="'z1'"):
        SpecGraph.from_parents({"z1": ["x1"]}, features=["z1"])


def test_from_parents_bad_selection_parent() -> None:
    with pytest.raises(GraphError, match="'x1'"):
        SpecGraph.from_parents({"z1": ["x1"]}, selection_parents=["x1"])


def test_from_parents_selection_name_clash() -> None:
    with pytest.raises(GraphError, match="'x1'"):
        SpecGraph.from_parents({"z1": ["x1"]}, selection="x1")


def test_from_parents_empty_parents() -> None:
    with pytest.raises(GraphError, match="'z1' has no feature parent"):
        SpecGraph.from_parents({"z1": []})


# ---------------------------------------------------------------- d-separation


@pytest.mark.parametrize(
    ("a", "b", "given", "expected"),
    [
        ("x1", "x3", (), True),
        ("x1", "x3", ("z1",), True),
        ("x1", "x3", ("z1", "z2"), False),
        ("x3", "S", ("x2", "z2"), True),
        ("x2", "S", ("z1",), False),
        (["x1", "x2"], {"x3"}, ["S"], False),
    ],
)
def test_is_d_separated_fig2b(
    fig2b: SpecGraph, a: object, b: object, given: tuple[str, ...], expected: bool
) -> None:
    assert fig2b.is_d_separated(a, b, given) is expected  # type: ignore[arg-type]


def test_is_d_separated_unknown_node(fig2b: SpecGraph) -> None:
    with pytest.raises(GraphError, match="'x9'"):
        fig2b.is_d_separated("x1", "x9")
    with pytest.raises(GraphError, match="'q'"):
        fig2b.is_d_separated("x1", "x3", given=["q"])


def test_is_d_separated_overlapping_sets(fig2b: SpecGraph) -> None:
    with pytest.raises(GraphError, match="'x1'"):
        fig2b.is_d_separated("x1", "x3", given=["x1"])


# ---------------------------------------------------------------- serialisation


def test_json_round_trip(fig2b: SpecGraph) -> None:
    text = fig2b.to_json()
    data = json.loads(text)
    assert "edges" in data
    assert {n["id"]: n["role"] for n in data["nodes"]}["z1"] == "spec"
    assert SpecGraph.from_json(text) == fig2b


def test_json_accepts_links_key(fig2b: SpecGraph) -> None:
    data = json.loads(fig2b.to_json())
    data["links"] = data.pop("edges")
    assert SpecGraph.from_json(json.dumps(data)) == fig2b


def test_json_from_networkx_node_link_data(fig2b: SpecGraph) -> None:
    data = nx.node_link_data(_fig2b_digraph(), edges="edges")
    assert SpecGraph.from_json(json.dumps(data)) == fig2b


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "expected node-link JSON"),
        ("[1, 2]", "'nodes' list"),
        ('{"nodes": [{"role": "feature"}]}', "nodes[0]"),
        ('{"nodes": [{"id": "x1", "role": "feature"}], "edges": [{"source": "x1"}]}', "edges[0]"),
        (
            '{"nodes": [{"id": "x1", "role": "feature"}], "links": [{"source": "x1", '
            '"target": "z9"}]}',
            "'z9'",
        ),
        ('{"directed": false, "nodes": []}', "directed"),
    ],
)
def test_json_invalid(text: str, fragment: str) -> None:
    with pytest.raises(GraphError) as err:
        SpecGraph.from_json(text)
    assert fragment in str(err.value)


def test_json_validates_structure(fig2b: SpecGraph) -> None:
    data = json.loads(fig2b.to_json())
    data["edges"].append({"source": "z2", "target": "x1"})
    with pytest.raises(GraphError, match="z2 -> x1"):
        SpecGraph.from_json(json.dumps(data))


def test_gml_round_trip(fig2b: SpecGraph) -> None:
    text = fig2b.to_gml()
    assert "role" in text
    assert SpecGraph.from_gml(text) == fig2b


def test_gml_invalid() -> None:
    with pytest.raises(GraphError, match="expected GML"):
        SpecGraph.from_gml("this is not gml [")
    with pytest.raises(GraphError, match="directed"):
        SpecGraph.from_gml('graph [ node [ id 0 label "x1" role "feature" ] ]')


@pytest.mark.parametrize("suffix", [".json", ".gml", ".JSON"])
def test_save_read_round_trip(fig2b: SpecGraph, tmp_path, suffix: str) -> None:
    path = tmp_path / f"graph{suffix}"
    fig2b.save(path)
    assert SpecGraph.read(path) == fig2b
    assert SpecGraph.read(str(path)) == fig2b


def test_save_refuses_to_overwrite(fig2b: SpecGraph, tmp_path) -> None:
    path = tmp_path / "graph.json"
    path.write_text("keep me", encoding="utf-8")
    with pytest.raises(GraphError) as err:
        fig2b.save(path)
    assert str(path) in str(err.value)
    assert path.read_text(encoding="utf-8") == "keep me"
    fig2b.save(path, overwrite=True)
    assert SpecGraph.read(path) == fig2b


def test_save_unknown_suffix(fig2b: SpecGraph, tmp_path) -> None:
    path = tmp_path / "graph.yaml"
    with pytest.raises(GraphError) as err:
        fig2b.save(path)
    assert str(path) in str(err.value)
    assert not path.exists()


def test_read_unknown_suffix(tmp_path) -> None:
    path = tmp_path / "graph.txt"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(GraphError) as err:
        SpecGraph.read(path)
    assert str(path) in str(err.value)


def test_read_missing_file(tmp_path) -> None:
    path = tmp_path / "absent.gml"
    with pytest.raises(GraphError) as err:
        SpecGraph.read(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- drawing


def test_import_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import sedge_pyro.graph, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_draw_returns_axes() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    g = SpecGraph.from_parents(FIG_2B, feature_edges=[("x1", "x2")])
    ax = g.draw()
    try:
        assert isinstance(ax, Axes)
        labels = {t.get_text() for t in ax.texts}
        assert labels == {"x1", "x2", "x3", "z1", "z2", "S"}
    finally:
        plt.close(ax.figure)


def test_draw_on_given_axes_with_positions() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = SpecGraph.from_parents({"z1": ["x1"]})
    fig, ax = plt.subplots()
    try:
        pos = {"x1": (0.0, 0.0), "z1": (0.0, 1.0), "S": (0.0, 2.0)}
        assert g.draw(ax, pos=pos, with_labels=False) is ax
        assert len(ax.texts) == 0
        with pytest.raises(GraphError, match="'S'"):
            g.draw(ax, pos={"x1": (0.0, 0.0), "z1": (0.0, 1.0)})
    finally:
        plt.close(fig)


def test_layers_put_features_below_specs_below_selection() -> None:
    g = SpecGraph.from_parents({"z1": ["x1", "x2"]}, feature_edges=[("x1", "x2")])
    layers = g._layers()
    assert layers["x1"] < layers["x2"] < layers["z1"] < layers["S"]
