"""Node roles and names of the SEDGE graph: the three roles, the natural order of names
(``x2`` before ``x10``) and the checks of lists of names that the constructors share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sedge_pyro.errors import GraphError

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
