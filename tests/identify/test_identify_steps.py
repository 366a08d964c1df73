"""Known answers of identify()'s steps (``sedge_pyro.identify.step_*``), one statement each.

The end-to-end answers are in ``test_identify.py``; these pin the steps the paper names:
Assumption 1 (step 1), Thm 1's components (step 2), X_c grown to a fixed point and Eq. (3)
(step 4).
"""

from __future__ import annotations

import itertools

import pandas as pd

import sedge_pyro as sp
from sedge_pyro.assumptions import Coverage
from sedge_pyro.identify import (
    shared_features,
    step_1_coverage,
    step_2_components,
    step_4_novel,
)
from sedge_pyro.separation import LocalGraph

FIG2A = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x3", "x4"]})
FIG2B = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
BOTH = {"z1": 1, "z2": 1}
# each value seen alone, the combination z1=1, z2=1 never (the paper's Sec. 3.2 setting)
APART = pd.DataFrame({"z1": [1, 0, 0], "z2": [0, 1, 0]})


def test_step_1_names_the_value_never_seen() -> None:
    rows = pd.DataFrame({"z1": [1, 0], "z2": [0, 0]})
    reason = step_1_coverage(BOTH, Coverage(rows, BOTH, None))
    assert "target value z2=1 is never seen in the 2 training rows" in reason
    assert "Assumption 1 fails" in reason
    assert step_1_coverage(BOTH, Coverage(APART, BOTH, None)) == ""
    assert step_1_coverage(BOTH, None) == ""


def test_step_2_splits_fig2a_not_fig2b() -> None:
    comps, rest = step_2_components(FIG2A, ["z1", "z2"])
    assert comps == [({"x1", "x2"}, {"z1"}), ({"x3", "x4"}, {"z2"})] and rest == []
    comps, rest = step_2_components(FIG2B, ["z1", "z2"])
    assert comps == [({"x1", "x2", "x3"}, {"z1", "z2"})] and rest == []
    # z2 not in the target joins nothing: x3 is left to the term pD(F_0)
    comps, rest = step_2_components(FIG2B, ["z1"])
    assert comps == [({"x1", "x2"}, {"z1"})] and rest == [{"x3"}]


def test_shared_features_of_fig2b_is_x2() -> None:
    for coverage in (None, Coverage(APART, BOTH, None)):
        shared, pieces = shared_features(FIG2B, {"x1", "x2", "x3"}, {"z1", "z2"}, coverage)
        assert shared == {"x2"}
        assert pieces == [
            (frozenset({"x1"}), frozenset({"z1"}), frozenset({"x2"})),
            (frozenset({"x3"}), frozenset({"z2"}), frozenset({"x2"})),
        ]


def test_shared_features_grows_by_a_cut_until_every_block_is_seen() -> None:
    """No shared parent, but a feature path joins the specs: one feature of it joins X_c."""
    g = sp.SpecGraph.from_parents(
        {"z1": ["x1"], "z2": ["x2"], "z3": ["x3"]}, feature_edges=[("x1", "x2"), ("x2", "x3")]
    )
    target = {"z1": 1, "z2": 1, "z3": 1}
    rows = pd.DataFrame({"z1": [1, 0, 0], "z2": [1, 0, 1], "z3": [0, 1, 1]})  # z1 & z3 never
    coverage = Coverage(rows, target, None)
    shared, pieces = shared_features(g, {"x1", "x2", "x3"}, set(target), coverage)
    assert len(shared) == 1 and shared < {"x1", "x2", "x3"}
    blocks = [specs for _, specs, _ in pieces if specs]
    assert sorted(z for b in blocks for z in b) == ["z1", "z2", "z3"]
    assert all(coverage.count(list(b)) > 0 for b in blocks)
    for a, b in itertools.combinations(blocks, 2):
        assert g.is_d_separated(a, b, given=shared)


def test_step_4_on_fig2b_is_eq3() -> None:
    features, specs = {"x1", "x2", "x3"}, {"z1", "z2"}
    sel = set(FIG2B.to_networkx().predecessors(FIG2B.selection))
    local = LocalGraph(FIG2B, BOTH, features, specs, sel)
    terms, component = step_4_novel(FIG2B, local, features, specs, None)
    assert [t.to_text() for t in terms] == [
        "pD(x1, x2 | z1=1)",
        "pD(z2=1 | x2)",
        "pD(x3 | x2, z2=1)",
    ]
    assert [t.exact for t in terms] == [False, False, True]
    assert component.shared == {"x2"} and not component.seen
    assert component.blocks == (frozenset({"z1"}), frozenset({"z2"}))
