"""The files of a :class:`~sedge_pyro.graph.SpecGraph`: node-link JSON and GML text, and
``save`` / ``read`` of either by the file's suffix (a mixin: ``self`` is the graph).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import networkx as nx

from sedge_pyro.errors import GraphError

#: the class a classmethod is called on (a subclass of SpecGraph reads as itself)
_G = TypeVar("_G", bound="_GraphFiles")


class _GraphFiles:
    """``to_json``, ``from_json``, ``to_gml``, ``from_gml``, ``save`` and ``read``."""

    _graph: nx.DiGraph

    def to_json(self) -> str:
        """Serialise to networkx node-link JSON (edges under the ``"edges"`` key).

        :returns: the JSON text, indented by two spaces.
        :raises GraphError: when a node or edge attribute cannot be written as JSON.

        >>> from sedge_pyro.graph import SpecGraph
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
    def from_json(cls: type[_G], s: str) -> _G:
        """Read node-link JSON as written by :meth:`to_json` or :func:`networkx.node_link_data`.

        :param s: JSON text with a ``"nodes"`` list of objects with an ``"id"`` and a
            ``"role"``, and an ``"edges"`` (or ``"links"``) list of objects with ``"source"``
            and ``"target"``.
        :returns: the validated graph.
        :raises GraphError: when the text is not JSON, lacks that structure, or fails validation.

        >>> from sedge_pyro.graph import SpecGraph
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

        >>> from sedge_pyro.graph import SpecGraph
        >>> g = SpecGraph.from_parents({"z1": ["x1"]})
        >>> SpecGraph.from_gml(g.to_gml()) == g
        True
        """
        try:
            return "\n".join(nx.generate_gml(self._graph)) + "\n"
        except nx.NetworkXError as err:
            raise GraphError(f"graph attributes cannot be written as GML: {err}") from err

    @classmethod
    def from_gml(cls: type[_G], s: str) -> _G:
        """Read GML text as written by :meth:`to_gml`; node names come from the labels.

        :param s: GML text of a directed graph whose nodes have ``label`` and ``role``.
        :returns: the validated graph.
        :raises GraphError: when the text is not GML of a directed graph or fails validation.

        >>> from sedge_pyro.graph import SpecGraph
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

        >>> from sedge_pyro.graph import SpecGraph
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
    def read(cls: type[_G], path: str | os.PathLike[str]) -> _G:
        """Read a graph written by :meth:`save`, choosing JSON or GML by the file suffix.

        :param path: a ``.json`` or ``.gml`` file.
        :returns: the validated graph.
        :raises GraphError: when the suffix is unknown, the file is missing or unreadable, or
            its content is invalid.

        >>> from sedge_pyro.graph import SpecGraph
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
