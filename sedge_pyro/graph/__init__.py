"""The SEDGE graph: features generate specifications, specifications feed selection.

:class:`SpecGraph` wraps a :class:`networkx.DiGraph` whose nodes carry a ``role`` attribute in
``{"feature", "spec", "selection"}`` and checks the structural assumptions of the paper
(Sec. 3.1): the graph is a DAG, (i) no edge goes from a specification to a feature, (ii) no edge
joins two specifications, and (iii) the selection variable has no children and only
specifications as parents.

References
----------
- SEDGE paper, Sec. 3.1 "Formulation" (``../shared/seeds/001_3c227d5987cc847a.txt``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from sedge_pyro.errors import GraphError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["FEATURE", "ROLES", "SELECTION", "SPEC", "SpecGraph", "natural_key"]

FEATURE = "feature"
SPEC = "spec"
SELECTION = "selection"
ROLES = (FEATURE, SPEC, SELECTION)

_ROLE_WORDS = {FEATURE: "feature", SPEC: "specification", SELECTION: "selection node"}
_ROLE_COLOURS = {FEATURE: "#4c72b0", SPEC: "#dd8452", SELECTION: "#55a868"}
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders digit runs by value, so ``"x2"`` sorts before ``"x10"``.

    :param name: a node name.
    :returns: a key for :func:`sorted`; the name itself breaks ties such as ``"x1"``/``"x01"``.

    >>> sorted(["x10", "x2", "z1", "x1"], key=natural_key)
    ['x1', 'x2', 'x10', 'z1']
    """
    # re.split with a capture group alternates text and digits, so equal positions of two keys
    # always hold the same type and the tuples compare without TypeError.
    parts = tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(name)))
    return parts, name


def _sorted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=natural_key))


def _edge(u: str, v: str) -> str:
    return f"{u} -> {v}"


def _parent_list(spec: Any, parents: Any, what: str = "parents") -> list[Any]:
    """A specification's parents as a list of names; a string is not a list of parents.

    ``what="edges"`` / ``"names"`` checks the ``feature_edges`` / ``features`` arguments.
    """
    if what == "parents":
        where, is_, holds = f"the parents of {spec!r}", "are", "include"
        example = f"e.g. {{{spec!r}: ['x1', 'x2']}}"
    else:
        where, is_, holds, example = spec, "is", "holds", "e.g. ['x1']"
    if isinstance(parents, str | bytes) or not isinstance(parents, Iterable):
        raise GraphError(f"{where} {is_} {parents!r}: expected a list of feature {what}, {example}")
    out = list(parents)
    for name in out:
        if what != "edges" and not isinstance(name, str):
            raise GraphError(f"{where} {holds} {name!r}: expected feature names (strings)")
        if what == "edges" and (isinstance(name, str) or not isinstance(name, Iterable)):
            raise GraphError(f"{where} {holds} {name!r}: expected (feature, feature) pairs")
    return out


def _as_names(nodes: Iterable[str] | str) -> set[str]:
    return {nodes} if isinstance(nodes, str) else set(nodes)


class SpecGraph:
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
        g = self._graph
        for node in g.nodes:
            if not isinstance(node, str):
                raise GraphError(
                    f"node {node!r} has a name of type {type(node).__name__}; "
                    "SpecGraph needs str node names"
                )
        for node in _sorted(g.nodes):
            if "role" not in g.nodes[node]:
                raise GraphError(
                    f"node {node!r} has no 'role' attribute; expected one of "
                    "'feature', 'spec', 'selection'"
                )
            role = g.nodes[node]["role"]
            if role not in ROLES:
                raise GraphError(
                    f"node {node!r} has unknown role {role!r}; expected one of "
                    "'feature', 'spec', 'selection'"
                )
        for u, v in sorted(g.edges, key=lambda e: (natural_key(e[0]), natural_key(e[1]))):
            self._check_edge_kind(u, v)
        # After the edge-kind checks only feature -> feature edges can close a cycle.
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = []
        if cycle:
            path = " -> ".join([str(cycle[0][0])] + [str(v) for _, v in cycle])
            raise GraphError(
                f"the graph has a cycle {path}; SEDGE needs a directed acyclic graph (Sec. 3.1)"
            )
        selections = _sorted(n for n, r in g.nodes(data="role") if r == SELECTION)
        if not selections:
            raise GraphError(
                "no node with role 'selection'; add one or build with "
                "SpecGraph.from_parents, which adds S"
            )
        if len(selections) > 1:
            raise GraphError(
                f"{len(selections)} nodes have role 'selection' ({', '.join(selections)}); "
                "SEDGE has exactly one selection variable S (Sec. 3.1)"
            )
        for node in _sorted(n for n, r in g.nodes(data="role") if r == SPEC):
            if not any(g.nodes[p]["role"] == FEATURE for p in g.predecessors(node)):
                raise GraphError(
                    f"specification {node!r} has no feature parent; every specification "
                    "is generated by at least one feature (Sec. 3.1)"
                )

    def _check_edge_kind(self, u: str, v: str) -> None:
        ru, rv = self._graph.nodes[u]["role"], self._graph.nodes[v]["role"]
        edge = _edge(u, v)
        if ru == SELECTION:
            raise GraphError(
                f"edge {edge} leaves the selection node {u!r}; SEDGE needs the selection "
                "variable to have no children (Sec. 3.1 (iii))"
            )
        if ru == SPEC and rv == FEATURE:
            raise GraphError(
                f"edge {edge} goes from a specification to a feature; "
                "SEDGE needs features -> specifications (Sec. 3.1 (i))"
            )
        if ru == SPEC and rv == SPEC:
            raise GraphError(
                f"edge {edge} joins two specifications; SEDGE allows no edges among "
                "specifications (Sec. 3.1 (ii))"
            )
        if rv == SELECTION and ru != SPEC:
            raise GraphError(
                f"edge {edge} goes from a {_ROLE_WORDS[ru]} to the selection node; SEDGE "
                "needs the selection variable's parents to be specifications (Sec. 3.1 (iii))"
            )

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
        if not isinstance(parents, Mapping):
            raise GraphError(
                f"parents is {type(parents).__name__}: expected a dict specification -> list "
                "of feature parents, e.g. {'z1': ['x1', 'x2']}"
            )
        for spec in parents:
            if not isinstance(spec, str):
                raise GraphError(
                    f"parents has the key {spec!r}: expected specification names (strings)"
                )
        spec_parents = {spec: _parent_list(spec, ps) for spec, ps in parents.items()}
        specs = set(spec_parents)
        for spec, ps in spec_parents.items():
            for p in ps:
                if p in specs:
                    raise GraphError(
                        f"edge {_edge(p, spec)} joins two specifications: {p!r} is a key of "
                        "parents (a specification) and also listed as a parent; SEDGE allows "
                        "no edges among specifications (Sec. 3.1 (ii))"
                    )
        f_edges = [tuple(e) for e in _parent_list("feature_edges", feature_edges, "edges")]
        for e in f_edges:
            if len(e) != 2 or not all(isinstance(name, str) for name in e):
                raise GraphError(f"feature_edges holds {e!r}: expected (feature, feature) pairs")
        extra = _parent_list("features", features, "names")
        for u, v in f_edges:
            for name in (u, v):
                if name in specs:
                    raise GraphError(
                        f"feature_edges holds edge {_edge(u, v)}, but {name!r} is a "
                        "specification (a key of parents); feature_edges joins features only"
                    )
        for name in extra:
            if name in specs:
                raise GraphError(
                    f"features lists {name!r}, which is a specification (a key of parents)"
                )
        feats = {p for ps in spec_parents.values() for p in ps}
        feats.update(n for e in f_edges for n in e)
        feats.update(extra)
        if not isinstance(selection, str):
            raise GraphError(f"selection is {selection!r}: expected a node name (a string)")
        if selection in specs or selection in feats:
            raise GraphError(
                f"selection name {selection!r} is already used by a specification or feature; "
                "pass another selection name"
            )
        if selection_parents is None:
            s_parents = list(specs)
        else:
            s_parents = list(selection_parents)
            for name in s_parents:
                if name not in specs:
                    raise GraphError(
                        f"selection_parents names {name!r}, which is not a specification "
                        f"(keys of parents: {', '.join(_sorted(specs))})"
                    )
        g = nx.DiGraph()
        g.add_nodes_from(_sorted(feats), role=FEATURE)
        g.add_nodes_from(_sorted(specs), role=SPEC)
        g.add_node(selection, role=SELECTION)
        g.add_edges_from(f_edges)
        g.add_edges_from((p, spec) for spec, ps in spec_parents.items() for p in ps)
        g.add_edges_from((spec, selection) for spec in _sorted(s_parents))
        return cls(g)

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

    def to_json(self) -> str:
        """Serialise to networkx node-link JSON (edges under the ``"edges"`` key).

        :returns: the JSON text, indented by two spaces.
        :raises GraphError: when a node or edge attribute cannot be written as JSON.

        >>> g = SpecGraph.from_parents({"z1": ["x1"]})
        >>> SpecGraph.from_json(g.to_json()) == g
        True
        """
        data = nx.node_link_data(self._graph, edges="edges")
        try:
            return json.dumps(data, indent=2)
        except TypeError as err:
            raise GraphError(f"graph attributes cannot be written as JSON: {err}") from err

    @classmethod
    def from_json(cls, s: str) -> SpecGraph:
        """Read node-link JSON as written by :meth:`to_json` or :func:`networkx.node_link_data`.

        :param s: JSON text with a ``"nodes"`` list of objects with an ``"id"`` and a
            ``"role"``, and an ``"edges"`` (or ``"links"``) list of objects with ``"source"``
            and ``"target"``.
        :returns: the validated graph.
        :raises GraphError: when the text is not JSON, lacks that structure, or fails validation.

        >>> SpecGraph.from_json(SpecGraph.from_parents({"z1": ["x1"]}).to_json()).specs
        ('z1',)
        """
        try:
            data = json.loads(s)
        except (json.JSONDecodeError, TypeError) as err:
            raise GraphError(f"expected node-link JSON text, could not parse it: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise GraphError("expected a JSON object with a 'nodes' list (node-link format)")
        if data.get("directed", True) is False:
            raise GraphError('expected a directed graph; the JSON has "directed": false')
        key = "edges" if "edges" in data else "links"
        edges = data.get(key, [])
        if not isinstance(edges, list):
            raise GraphError(f"expected '{key}' to be a list of {{source, target}} objects")
        g = nx.DiGraph()
        if isinstance(data.get("graph"), dict):
            g.graph.update(data["graph"])
        for i, node in enumerate(data["nodes"]):
            if not isinstance(node, dict) or "id" not in node:
                raise GraphError(f"nodes[{i}] is {node!r}; expected an object with an 'id'")
            if not isinstance(node["id"], str):
                raise GraphError(
                    f"nodes[{i}] has id {node['id']!r}; expected a node name (a string)"
                )
            g.add_node(node["id"], **{k: v for k, v in node.items() if k != "id"})
        for i, link in enumerate(edges):
            if not isinstance(link, dict) or "source" not in link or "target" not in link:
                raise GraphError(
                    f"{key}[{i}] is {link!r}; expected an object with 'source' and 'target'"
                )
            u, v = link["source"], link["target"]
            for end in (u, v):
                if end not in g:
                    raise GraphError(
                        f"{key}[{i}] ({u} -> {v}) names {end!r}, which is not in 'nodes'"
                    )
            attrs = {k: val for k, val in link.items() if k not in ("source", "target", "key")}
            g.add_edge(u, v, **attrs)
        return cls(g)

    def to_gml(self) -> str:
        """Serialise to GML text with ``role`` node attributes.

        :returns: the GML text.
        :raises GraphError: when an attribute cannot be written as GML.

        >>> g = SpecGraph.from_parents({"z1": ["x1"]})
        >>> SpecGraph.from_gml(g.to_gml()) == g
        True
        """
        try:
            return "\n".join(nx.generate_gml(self._graph)) + "\n"
        except nx.NetworkXError as err:
            raise GraphError(f"graph attributes cannot be written as GML: {err}") from err

    @classmethod
    def from_gml(cls, s: str) -> SpecGraph:
        """Read GML text as written by :meth:`to_gml`; node names come from the labels.

        :param s: GML text of a directed graph whose nodes have ``label`` and ``role``.
        :returns: the validated graph.
        :raises GraphError: when the text is not GML of a directed graph or fails validation.

        >>> SpecGraph.from_gml(SpecGraph.from_parents({"z1": ["x1"]}).to_gml()).features
        ('x1',)
        """
        try:
            g = nx.parse_gml(s, label="label")
        except (nx.NetworkXError, ValueError, KeyError, TypeError) as err:
            raise GraphError(f"expected GML text of a directed graph: {err}") from err
        if not g.is_directed() or g.is_multigraph():
            raise GraphError("expected GML of a directed graph ('directed 1', no 'multigraph 1')")
        return cls(g)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the graph to ``path`` as JSON (``.json``) or GML (``.gml``).

        :param path: the file to write; its suffix picks the format.
        :param overwrite: replace an existing file instead of refusing.
        :raises GraphError: when the suffix is neither ``.json`` nor ``.gml``, or the file
            exists and ``overwrite`` is false.

        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.json"
        >>> SpecGraph.from_parents({"z1": ["x1"]}).save(p)
        >>> SpecGraph.read(p).specs
        ('z1',)
        """
        p = Path(path)
        text = self._writer(p)()
        try:
            # Mode "x" refuses atomically, so there is no window between a check and the write.
            with p.open("w" if overwrite else "x", encoding="utf-8") as fh:
                fh.write(text)
        except FileExistsError as err:
            raise GraphError(
                f"{str(p)!r} already exists; pass overwrite=True to replace it"
            ) from err

    def _writer(self, p: Path) -> Callable[[], str]:
        suffix = p.suffix.lower()
        if suffix == ".json":
            return self.to_json
        if suffix == ".gml":
            return self.to_gml
        raise GraphError(f"cannot tell the format of {str(p)!r}; expected a .json or .gml suffix")

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SpecGraph:
        """Read a graph written by :meth:`save`, choosing JSON or GML by the file suffix.

        :param path: a ``.json`` or ``.gml`` file.
        :returns: the validated graph.
        :raises GraphError: when the suffix is unknown, the file is missing or unreadable, or
            its content is invalid.

        >>> SpecGraph.read("missing.json")
        Traceback (most recent call last):
        ...
        sedge_pyro.errors.GraphError: 'missing.json' does not exist; expected a saved SpecGraph
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".json", ".gml"):
            raise GraphError(
                f"cannot tell the format of {str(p)!r}; expected a .json or .gml suffix"
            )
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise GraphError(f"{str(p)!r} does not exist; expected a saved SpecGraph") from err
        except UnicodeDecodeError as err:
            raise GraphError(
                f"{str(p)!r} is not UTF-8 text (byte {err.start}): expected a saved SpecGraph"
            ) from err
        except OSError as err:
            raise GraphError(f"cannot read {str(p)!r}: {err}") from err
        try:
            return cls.from_json(text) if suffix == ".json" else cls.from_gml(text)
        except GraphError as err:
            raise GraphError(f"{str(p)!r}: {err}") from err

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
