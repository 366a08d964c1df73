"""A registry of example graphs: the paper's figures and larger cases, used by tests, docs and CLI.

Each :class:`Example` holds a graph (or, for Fig. 1(a), the invalid structure it stands for),
a target, the specification sets whose target combination the selection removes, and a small
simulator of training rows (S = 1) so that :func:`~sedge_pyro.identify` can be run on it.

>>> from sedge_pyro import examples
>>> ex = examples.get("fig2b")
>>> ex.identify().status.name
'CONSERVATIVE'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from sedge_pyro.errors import SedgeError
from sedge_pyro.expr import Interval
from sedge_pyro.graph import SpecGraph
from sedge_pyro.identify import Identification, identify

__all__ = ["EXAMPLES", "Example", "get", "names"]


@dataclass(frozen=True)
class Example:
    """One registry entry.

    :param name: registry key, e.g. ``"fig2b"``.
    :param title: one line.
    :param reference: where in the paper (or which theorem) it illustrates.
    :param make_graph: builds the :class:`SpecGraph` (may raise :class:`GraphError` for a
        structure SEDGE excludes).
    :param target: the target combination.
    :param novel: combinations of spec values that never reach the training rows (S = 0).
    :param expected: the status :func:`identify` gives on :meth:`seen`, or the name of the
        error the graph raises.
    :param simulate: ``(graph, n, rng) -> DataFrame`` of population rows with a column per
        feature and spec; default: a binary network (see :func:`binary_rows`).
    """

    name: str
    title: str
    reference: str
    make_graph: Callable[[], SpecGraph]
    target: Mapping[str, Any]
    novel: tuple[Mapping[str, Any], ...] = ()
    expected: str = ""
    simulate: Callable[[SpecGraph, int, np.random.Generator], pd.DataFrame] | None = field(
        default=None, repr=False
    )

    @property
    def graph(self) -> SpecGraph:
        """The example's graph (raises :class:`GraphError` for Fig. 1(a))."""
        return self.make_graph()

    def population(self, n: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Rows of the whole population with the selection column (``S``) filled in."""
        graph = self.graph
        rng = np.random.default_rng(seed)
        simulate = self.simulate or binary_rows
        rows = simulate(graph, n, rng)
        dropped = np.zeros(len(rows), dtype=bool)
        for combination in self.novel:
            hit = np.ones(len(rows), dtype=bool)
            for z, value in combination.items():
                col = rows[z].to_numpy()
                hit &= value.contains(col) if isinstance(value, Interval) else col == value
            dropped |= hit
        rows[graph.selection] = (~dropped).astype(int)
        return rows

    def seen(self, n: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Training rows (S = 1), without the selection column."""
        rows = self.population(n, seed)
        sel = self.graph.selection
        return rows.loc[rows[sel] == 1].drop(columns=sel).reset_index(drop=True)

    def identify(self, n: int = 2000, seed: int = 0) -> Identification:
        """Run :func:`identify` on the example's graph, target and simulated training rows."""
        return identify(self.graph, self.target, self.seen(n, seed))


def binary_rows(graph: SpecGraph, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Simulate binary features and specs along the graph.

    A node is 1 with probability ``0.2 + 0.6 * mean(parents)`` (0.5 without parents), so every
    combination of values has positive probability.
    """
    g = graph.to_networkx(copy=False)
    values: dict[str, np.ndarray] = {}
    for node in nx.topological_sort(g):
        if node == graph.selection:
            continue
        parents = [values[p] for p in graph.parents(node)]
        prob = 0.2 + 0.6 * np.mean(parents, axis=0) if parents else np.full(n, 0.5)
        values[node] = (rng.random(n) < prob).astype(int)
    return pd.DataFrame({k: values[k] for k in graph.features + graph.specs})


def _categorical_rows(graph: SpecGraph, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Binary features; ``colour`` in {0, 1, 2} from its parents; ``shape`` binary."""
    rows = binary_rows(graph, n, rng)
    score = rows["x1"] + rows["x2"] + rng.random(n)
    rows["colour"] = np.digitize(score, [1.0, 2.0]).astype(int)
    return rows


def _continuous_rows(graph: SpecGraph, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """The paper's Sec. 5.1 mechanism (shared feature X2): continuous features and specs."""
    x1 = rng.uniform(0, 1, n)
    x2 = rng.uniform(0.75, 0.8, n)
    x3 = rng.uniform(0, 1, n)
    z1 = 0.8 * x1 + 0.6 * x2 + rng.uniform(0, 0.2, n)
    z2 = 0.6 * x3 + 0.8 * x2 + rng.uniform(0, 0.2, n)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "z1": z1, "z2": z2})


def _fig1a() -> SpecGraph:
    # the "specification generates features" structure of Fig. 1(a), which SEDGE excludes
    g = nx.DiGraph()
    g.add_nodes_from(["x1", "x2", "x3"], role="feature")
    g.add_nodes_from(["z1", "z2"], role="spec")
    g.add_node("S", role="selection")
    g.add_edges_from([("z1", "x1"), ("z1", "x2"), ("z2", "x2"), ("z2", "x3")])
    g.add_edges_from([("z1", "S"), ("z2", "S")])
    return SpecGraph(g)


_FIG2B = {"z1": ["x1", "x2"], "z2": ["x2", "x3"]}
_BOTH = {"z1": 1, "z2": 1}

EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in [
        Example(
            "fig1a",
            "specifications generate features (Z -> X)",
            "Fig. 1(a), Sec. 2: excluded by Sec. 3.1 (i)",
            _fig1a,
            {"z1": 1, "z2": 1},
            (_BOTH,),
            "GraphError",
        ),
        Example(
            "fig1b",
            "features produce specifications; S added by from_parents",
            "Fig. 1(b), Sec. 2",
            lambda: SpecGraph.from_parents(_FIG2B),
            {"z1": 1, "z2": 1},
            (_BOTH,),
            "CONSERVATIVE",
        ),
        Example(
            "fig2a",
            "two specifications with no common feature",
            "Fig. 2(a), Prop. 1",
            lambda: SpecGraph.from_parents(
                {"z1": ["x1", "x2"], "z2": ["x3", "x4"]}, feature_edges=[("x1", "x2")]
            ),
            {"z1": 1, "z2": 1},
            (_BOTH,),
            "IDENTIFIABLE",
        ),
        Example(
            "fig2b",
            "two specifications sharing feature x2",
            "Fig. 2(b), Props. 2-4, Eq. (3)",
            lambda: SpecGraph.from_parents(_FIG2B),
            {"z1": 1, "z2": 1},
            (_BOTH,),
            "CONSERVATIVE",
        ),
        Example(
            "fig2b-seen",
            "Fig. 2(b) asking for a combination the training rows contain",
            "Fig. 2(b), Sec. 3.1 (seen combinations are identified by pD)",
            lambda: SpecGraph.from_parents(_FIG2B),
            {"z1": 1, "z2": 0},
            (_BOTH,),
            "IDENTIFIABLE",
        ),
        Example(
            "multiblock",
            "three blocks, features shared only inside a block",
            "Thm 1 (identifiable, arbitrary sharing within a subset)",
            lambda: SpecGraph.from_parents(
                {
                    "z1": ["x1", "x2"],
                    "z2": ["x2", "x3"],
                    "z3": ["x4", "x5"],
                    "z4": ["x6"],
                },
                feature_edges=[("x4", "x5"), ("x1", "x3")],
            ),
            {"z1": 1, "z2": 1, "z3": 1, "z4": 1},
            ({"z1": 1, "z2": 1, "z3": 1, "z4": 1}, {"z1": 1, "z3": 1}),
            "IDENTIFIABLE",
        ),
        Example(
            "shared",
            "three specifications sharing one feature, with private features",
            "Thms 2 and 3 (X_c = {xc})",
            lambda: SpecGraph.from_parents(
                {"z1": ["xc", "x1"], "z2": ["xc", "x2"], "z3": ["xc", "x3", "x4"]},
                feature_edges=[("x3", "x4"), ("xc", "x4")],
            ),
            {"z1": 1, "z2": 1, "z3": 1},
            ({"z1": 1, "z2": 1}, {"z1": 1, "z3": 1}, {"z2": 1, "z3": 1}),
            "CONSERVATIVE",
        ),
        Example(
            "cross-edge",
            "no shared parent, but a feature edge joins the blocks",
            "Thm 3 with X_c grown from a feature edge",
            lambda: SpecGraph.from_parents(
                {"z1": ["x1", "x2"], "z2": ["x3", "x4"]}, feature_edges=[("x2", "x3")]
            ),
            {"z1": 1, "z2": 1},
            (_BOTH,),
            "CONSERVATIVE",
        ),
        Example(
            "collider",
            "blocks joined through a common child feature",
            "Thm 3: pieces dependent given X_c are merged (moral graph)",
            lambda: SpecGraph.from_parents(
                {"z1": ["x1", "x2"], "z2": ["x2", "x3"], "z3": ["x5"]},
                feature_edges=[("x1", "x4"), ("x3", "x4"), ("x4", "x5")],
            ),
            {"z1": 1, "z2": 1, "z3": 1},
            ({"z1": 1, "z2": 1},),
            "CONSERVATIVE",
        ),
        Example(
            "subset",
            "target on a subset of the specifications; z3 also feeds S",
            "Sec. 3.1: p(X | Z_T) with non-target specifications",
            lambda: SpecGraph.from_parents(
                {"z1": ["x1"], "z2": ["x2"], "z3": ["x3"]}, features=["x4"]
            ),
            {"z1": 1, "z2": 1},
            (_BOTH,),
            "CONSERVATIVE",
        ),
        Example(
            "categorical",
            "a categorical specification whose value 2 never reaches training",
            "Assumption 1 fails: impossible",
            lambda: SpecGraph.from_parents({"colour": ["x1", "x2"], "shape": ["x2", "x3"]}),
            {"colour": 2, "shape": 1},
            ({"colour": 2},),
            "IMPOSSIBLE",
            _categorical_rows,
        ),
        Example(
            "synthetic",
            "the paper's continuous synthetic problem with event targets",
            "Sec. 5.1, Fig. 3: p(X | Z1 ≤ 0.8, Z2 ≥ 1.0)",
            lambda: SpecGraph.from_parents(_FIG2B),
            {"z1": Interval(high=0.8), "z2": Interval(low=1.0)},
            ({"z1": Interval(high=0.8), "z2": Interval(low=1.0)},),
            "CONSERVATIVE",
            _continuous_rows,
        ),
    ]
}


def names() -> list[str]:
    """Names of the registry's examples, in registry order."""
    return list(EXAMPLES)


def get(name: str) -> Example:
    """The example called ``name``.

    :raises SedgeError: naming the unknown example and listing the known ones.
    """
    try:
        return EXAMPLES[name]
    except KeyError:
        raise SedgeError(
            f"unknown example {name!r}: expected one of {', '.join(EXAMPLES)}"
        ) from None
