"""The registry of example graphs: every entry identifies to the status it declares."""

from __future__ import annotations

import numpy as np
import pytest

import sedge_pyro as sp

VALID = [name for name, ex in sp.examples.EXAMPLES.items() if ex.expected != "GraphError"]


def test_registry_names() -> None:
    assert sp.examples.names() == list(sp.examples.EXAMPLES)
    assert "fig1a" in sp.examples.EXAMPLES
    assert {"fig2a", "fig2b", "shared", "cross-edge", "collider"} <= set(VALID)
    for name, ex in sp.examples.EXAMPLES.items():
        assert ex.name == name
        assert ex.title and ex.reference
        assert ex.expected in {"IDENTIFIABLE", "CONSERVATIVE", "IMPOSSIBLE", "GraphError"}


@pytest.mark.parametrize("name", VALID)
def test_example_status(name: str) -> None:
    ex = sp.examples.get(name)
    res = ex.identify()
    assert res.status.name == ex.expected
    assert res.graph == ex.graph
    assert dict(res.target) == dict(ex.target)


@pytest.mark.parametrize("name", VALID)
def test_example_training_rows_exclude_the_novel_combinations(name: str) -> None:
    ex = sp.examples.get(name)
    seen = ex.seen(n=500, seed=3)
    assert ex.graph.selection not in seen.columns
    assert set(ex.graph.specs) <= set(seen.columns)
    for combination in ex.novel:
        hit = np.ones(len(seen), dtype=bool)
        for z, value in combination.items():
            col = seen[z].to_numpy()
            hit &= value.contains(col) if isinstance(value, sp.Interval) else col == value
        assert not hit.any(), combination
    population = ex.population(n=500, seed=3)
    assert (population[ex.graph.selection] == 1).sum() == len(seen)


@pytest.mark.parametrize("name", VALID)
def test_example_status_does_not_depend_on_the_seed(name: str) -> None:
    ex = sp.examples.get(name)
    assert ex.identify(seed=1).status.name == ex.expected


def test_fig1a_graph_is_rejected() -> None:
    ex = sp.examples.get("fig1a")
    assert ex.expected == "GraphError"
    with pytest.raises(sp.GraphError, match="z1 -> x1") as info:
        ex.graph  # noqa: B018 - the property builds the graph
    assert isinstance(info.value, sp.SedgeError)
    with pytest.raises(sp.GraphError, match="z1 -> x1"):
        ex.identify()


def test_unknown_example_lists_the_names() -> None:
    with pytest.raises(sp.SedgeError, match="'nope'") as info:
        sp.examples.get("nope")
    for name in sp.examples.EXAMPLES:
        assert name in str(info.value)
