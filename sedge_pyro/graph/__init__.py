"""The SEDGE graph: features generate specifications, specifications feed selection.

:class:`SpecGraph` wraps a :class:`networkx.DiGraph` whose nodes carry a ``role`` attribute in
``{"feature", "spec", "selection"}`` and checks the structural assumptions of the paper
(Sec. 3.1): the graph is a DAG, (i) no edge goes from a specification to a feature, (ii) no edge
joins two specifications, and (iii) the selection variable has no children and only
specifications as parents.

The package holds the class (construction entry points and queries) here, the construction and
checks of the networkx graph in :mod:`~sedge_pyro.graph.construction`, its files (JSON, GML) in
:mod:`~sedge_pyro.graph.files` and node roles and name order in :mod:`~sedge_pyro.graph.names`.

References
----------
- SEDGE paper, Sec. 3.1 "Formulation" (``../shared/seeds/001_3c227d5987cc847a.txt``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from sedge_pyro.errors import GraphError
from sedge_pyro.graph.construction import parents_graph, validate
from sedge_pyro.graph.files import _GraphFiles
from sedge_pyro.graph.names import (
    _ROLE_COLOURS,
    _ROLE_WORDS,
    FEATURE,
    ROLES,
    SELECTION,
    SPEC,
    _as_names,
    _sorted,
    natural_key,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["FEATURE", "ROLES", "SELECTION", "SPEC", "SpecGraph", "natural_key"]


class SpecGraph(_GraphFiles):
    """A validated SEDGE graph over features, specifications and one selection node.

    :param graph: a directed graph whose nodes are ``str`` names with a ``role`` attribute in
        ``{"feature", "spec", "selection"}``. It is copied; later changes to it have no effect.
    :raises GraphError: when the graph breaks a structural assumption of Sec. 3.1; the message
        names the offending node or edge.

    >>> g = nx.DiGraph()
    >>> g.add_nodes_from(["x1", "x2"], role="feature")
    >>> g.add_node("z1", role="spec")
    >>> g.add_node("S", role="selection")
    >>> g.add_edges_from([("x1", "z1"), ("x2", "z1"), ("z1", "S")])
    >>> SpecGraph(g)
    SpecGraph(features=2, specs=1, selection='S')
    """

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, graph: nx.DiGraph) -> None:
        if not isinstance(graph, nx.Graph):
            raise GraphError(f"expected a networkx DiGraph, got {type(graph).__name__}")
        if not graph.is_directed() or graph.is_multigraph():
            raise GraphError(
                f"expected a networkx DiGraph (directed, no parallel edges), "
                f"got {type(graph).__name__}"
            )
        g = nx.DiGraph()
        g.graph.update(graph.graph)
        g.add_nodes_from(graph.nodes(data=True))
        g.add_edges_from(graph.edges(data=True))
        self._graph = g
        self._validate()
        roles = nx.get_node_attributes(g, "role")
        self._features = _sorted(n for n, r in roles.items() if r == FEATURE)
        self._specs = _sorted(n for n, r in roles.items() if r == SPEC)
        self._selection = next(n for n, r in roles.items() if r == SELECTION)

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        validate(self._graph)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_parents(
        cls,
        parents: Mapping[str, Iterable[str]],
        *,
        selection: str = "S",
        selection_parents: Iterable[str] | None = None,
        feature_edges: Iterable[tuple[str, str]] = (),
        features: Iterable[str] = (),
    ) -> SpecGraph:
        """Build a graph from each specification's feature parents.

        :param parents: maps each specification to its feature parents :math:`V_i`.
        :param selection: name of the selection node that is added.
        :param selection_parents: the specifications that feed the selection node; all
            specifications when ``None``.
        :param feature_edges: extra ``(feature, feature)`` edges among the features.
        :param features: extra features, e.g. ones with no specification child.
        :returns: the validated graph.
        :raises GraphError: when ``parents`` is not a dict of lists of names (the message
            names the specification), when a name is used both as a specification and as a
            feature (the message names the edge), when ``selection`` clashes with another name, when
            ``selection_parents`` names a non-specification, or when validation fails.

        >>> g = SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
        >>> g.parents("S")
        ('z1', 'z2')
        """
        return cls(
            parents_graph(
                parents,
                selection=selection,
                selection_parents=selection_parents,
                feature_edges=feature_edges,
                features=features,
            )
        )

    # ------------------------------------------------------------------ queries

    @property
    def features(self) -> tuple[str, ...]:
        """The feature nodes X, in natural order.

        >>> SpecGraph.from_parents({"z1": ["x10", "x2"]}).features
        ('x2', 'x10')
        """
        return self._features

    @property
    def specs(self) -> tuple[str, ...]:
        """The specification nodes Z, in natural order.

        >>> SpecGraph.from_parents({"z2": ["x1"], "z1": ["x1"]}).specs
        ('z1', 'z2')
        """
        return self._specs

    @property
    def selection(self) -> str:
        """The name of the selection node S.

        >>> SpecGraph.from_parents({"z1": ["x1"]}, selection="sel").selection
        'sel'
        """
        return self._selection

    @property
    def nodes(self) -> tuple[str, ...]:
        """All nodes: features, then specifications, then the selection node.

        >>> SpecGraph.from_parents({"z1": ["x1"]}).nodes
        ('x1', 'z1', 'S')
        """
        return (*self._features, *self._specs, self._selection)

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """All edges ``(source, target)``, in natural order.

        >>> SpecGraph.from_parents({"z1": ["x1"]}).edges
        (('x1', 'z1'), ('z1', 'S'))
        """
        return tuple(
            sorted(self._graph.edges, key=lambda e: (natural_key(e[0]), natural_key(e[1])))
        )

    def _require(self, node: str) -> None:
        if node not in self._graph:
            raise GraphError(
                f"unknown node {node!r}; expected one of {', '.join(map(repr, self.nodes))}"
            )

    def role(self, node: str) -> str:
        """Return the role of ``node``: ``"feature"``, ``"spec"`` or ``"selection"``.

        :param node: a node name.
        :returns: the node's role.
        :raises GraphError: when the node is not in the graph.

        >>> SpecGraph.from_parents({"z1": ["x1"]}).role("z1")
        'spec'
        """
        self._require(node)
        return str(self._graph.nodes[node]["role"])

    def parents(self, node: str) -> tuple[str, ...]:
        """Return the parents of ``node`` in natural order (:math:`V_i` for a spec :math:`Z_i`).

        :param node: a node name.
        :returns: the parents.
        :raises GraphError: when the node is not in the graph.

        >>> SpecGraph.from_parents({"z1": ["x10", "x2"]}).parents("z1")
        ('x2', 'x10')
        """
        self._require(node)
        return _sorted(self._graph.predecessors(node))

    def children(self, node: str) -> tuple[str, ...]:
        """Return the children of ``node`` in natural order.

        :param node: a node name.
        :returns: the children.
        :raises GraphError: when the node is not in the graph.

        >>> SpecGraph.from_parents({"z1": ["x1"], "z2": ["x1"]}).children("x1")
        ('z1', 'z2')
        """
        self._require(node)
        return _sorted(self._graph.successors(node))

    def feature_graph(self) -> nx.DiGraph:
        """Return a copy of the subgraph over the features only.

        :returns: a new :class:`networkx.DiGraph` with the feature nodes and the edges among them.

        >>> g = SpecGraph.from_parents({"z1": ["x1", "x2"]}, feature_edges=[("x1", "x2")])
        >>> list(g.feature_graph().edges)
        [('x1', 'x2')]
        """
        return self._graph.subgraph(self._features).copy()

    def is_d_separated(
        self,
        a: Iterable[str] | str,
        b: Iterable[str] | str,
        given: Iterable[str] | str = (),
    ) -> bool:
        """Whether ``a`` and ``b`` are d-separated given ``given`` in the full graph.

        Uses :func:`networkx.is_d_separator`; the selection node is an ordinary node here, so
        conditioning on the training distribution means putting S in ``given``.

        :param a: a node or a set of nodes.
        :param b: a node or a set of nodes.
        :param given: the conditioning set.
        :returns: ``True`` when every path between ``a`` and ``b`` is blocked by ``given``.
        :raises GraphError: when a node is unknown or the three sets overlap.

        >>> g = SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
        >>> g.is_d_separated("x1", "x3", given=["z1"])
        True
        >>> g.is_d_separated("x1", "x3", given=["z1", "z2"])
        False
        """
        sets = {"a": _as_names(a), "b": _as_names(b), "given": _as_names(given)}
        for arg, names in sets.items():
            for name in _sorted(names):
                if name not in self._graph:
                    raise GraphError(
                        f"{arg} names unknown node {name!r}; expected nodes of the graph"
                    )
        names = list(sets)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                common = sets[first] & sets[second]
                if common:
                    raise GraphError(
                        f"{first} and {second} share {', '.join(map(repr, _sorted(common)))}; "
                        "expected disjoint sets"
                    )
        return bool(nx.is_d_separator(self._graph, sets["a"], sets["b"], sets["given"]))

    # ------------------------------------------------------------------ dunder

    def __contains__(self, node: object) -> bool:
        return isinstance(node, str) and node in self._graph

    def __len__(self) -> int:
        return self._graph.number_of_nodes()

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpecGraph):
            return NotImplemented
        mine, theirs = self._graph, other._graph
        same_roles = dict(mine.nodes(data="role")) == dict(theirs.nodes(data="role"))
        return same_roles and set(mine.edges) == set(theirs.edges)

    def __repr__(self) -> str:
        return (
            f"SpecGraph(features={len(self._features)}, specs={len(self._specs)}, "
            f"selection={self._selection!r})"
        )

    # ------------------------------------------------------------------ serialisation

    def to_networkx(self, *, copy: bool = True) -> nx.DiGraph:
        """Return the underlying graph, with ``role`` node attributes.

        :param copy: ``True`` for an independent copy; ``False`` for a read-only view that
            costs nothing (for algorithms on large graphs).
        :returns: a networkx DiGraph.

        >>> SpecGraph.from_parents({"z1": ["x1"]}).to_networkx().nodes["z1"]
        {'role': 'spec'}
        """
        if copy:
            return self._graph.copy()
        return nx.freeze(self._graph.copy(as_view=True))

    # ------------------------------------------------------------------ drawing

    def _layers(self) -> dict[str, int]:
        # Features feeding other features sit in sub-layers above their parents so that
        # feature -> feature edges point upwards like every other edge.
        layers: dict[str, int] = {}
        generations = list(nx.topological_generations(self.feature_graph()))
        for depth, generation in enumerate(generations):
            layers.update(dict.fromkeys(generation, depth))
        top = len(generations)
        layers.update(dict.fromkeys(self._specs, top))
        layers[self._selection] = top + 1
        return layers

    def draw(
        self,
        ax: Axes | None = None,
        *,
        pos: Mapping[str, Any] | None = None,
        with_labels: bool = True,
    ) -> Axes:
        """Draw the graph with matplotlib, features at the bottom and S at the top.

        Features, specifications and the selection node get one colour each. Nothing is shown;
        the caller saves or shows the figure.

        :param ax: the axes to draw on; a new figure is created when ``None``.
        :param pos: node positions ``{node: (x, y)}``; a layered layout when ``None``.
        :param with_labels: write node names on the nodes.
        :returns: the axes drawn on.
        :raises GraphError: when ``pos`` lacks a node.

        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> ax = SpecGraph.from_parents({"z1": ["x1"]}).draw()
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        layers = self._layers()
        g = nx.DiGraph()
        # Insertion order fixes the left-to-right order inside each layer.
        g.add_nodes_from((n, {"layer": layers[n]}) for n in self.nodes)
        g.add_edges_from(self._graph.edges)
        if pos is None:
            pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal")
        else:
            missing = [n for n in self.nodes if n not in pos]
            if missing:
                raise GraphError(
                    f"pos lacks node(s) {', '.join(map(repr, missing))}; "
                    "expected a position for every node"
                )
        groups = {FEATURE: self._features, SPEC: self._specs, SELECTION: (self._selection,)}
        for role, nodes in groups.items():
            if nodes:
                nx.draw_networkx_nodes(
                    g,
                    pos,
                    nodelist=list(nodes),
                    node_color=_ROLE_COLOURS[role],
                    label=_ROLE_WORDS[role],
                    ax=ax,
                )
        nx.draw_networkx_edges(g, pos, ax=ax, arrows=True)
        if with_labels:
            nx.draw_networkx_labels(g, pos, ax=ax)
        ax.legend(loc="best", fontsize="small")
        ax.set_axis_off()
        return ax
