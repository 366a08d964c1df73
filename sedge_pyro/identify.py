"""Identification of p(X | Z_T = z) for a (possibly novel) target combination of specifications.

:func:`identify` answers, from a :class:`~sedge_pyro.graph.SpecGraph` and the coverage of the
training rows (S = 1), whether the distribution of the features under a target combination of
specification values can be constructed from the training distribution ``pD = p(. | S = 1)``:

- ``IDENTIFIABLE``: every term of the returned factorization equals its population counterpart
  (paper Prop. 1, Thm 1);
- ``CONSERVATIVE``: the factorization is an exact identity of the population, but some of its
  terms equal their ``pD`` estimate only under the rarity assumption (Prop. 4, Thm 3);
- ``IMPOSSIBLE``: some target value is never seen in the training rows (Assumption 1 fails).

The status says what the graph and the coverage allow; the result also rests on assumptions
(:mod:`sedge_pyro.assumptions`) that are checked on the training rows. A failed check flags the
result: :attr:`Identification.ok` is ``False``, :meth:`Identification.explain` puts the failures
first, ``sedge identify`` exits 1, and ``identify(..., strict=True)`` raises
:class:`~sedge_pyro.errors.AssumptionFailed`.

The algorithm (see ``docs/identification.md``), one function per step, in the order
:func:`identify` calls them:

1. :func:`step_1_coverage`, Assumption 1 (Eq. 1 / Eqs. 24-26): each target value must be seen
   alone.
2. :func:`step_2_components`: connected pieces of the skeleton over the features and the target
   specs. Features in different components are independent and each target spec's parents lie
   in one component, so ``p(X | Z_T) = prod_a p(F_a | Z_Ba)``; features joined to no target
   spec make one further term ``pD(F_0)`` (:func:`step_2_unjoined`).
3. :func:`step_3_seen`: a component whose target combination is seen is one term
   ``pD(F_a | Z_Ba = z_Ba)`` (Thm 1).
4. :func:`step_4_novel`: a novel component gets shared features ``X_c`` (Thm 2/3) from
   :func:`shared_features`: start with the features that are parents of two or more of its
   target specs; split the moral graph of the component without ``X_c`` into pieces (pieces
   are then independent given ``X_c``, the moral-graph criterion of d-separation); a piece
   holding two or more specs whose combination is unseen is cut by a smallest set of features,
   which joins ``X_c``; repeat until stable. The factorization is Eq. (3) generalised,
   ``pD(X_c, G_1 | z_B1) prod_{r>1} pD(z_Br | X_c) pD(G_r | X_c, z_Br)``, and, when every
   target spec's parents fall in ``X_c``, the paper's prior x likelihood form
   ``pD(F_a) prod_i pD(z_i | V_i)``.
5. :func:`step_5_status`: a term ``p(A | C)`` is marked exact (as steps 3 and 4 build it, by
   :class:`~sedge_pyro.separation.LocalGraph`) when ``A`` is d-separated from ``S`` given ``C``
   (networkx ``is_d_separator``), checked on the component's own graph with the selection node
   attached (equivalent to the whole graph, and fast on graphs of 10,000 features); the result
   is IDENTIFIABLE when every term is exact, CONSERVATIVE otherwise, and lists the assumptions
   to check.

The question (target, tolerance, rows) and the answer (:class:`Identification`, :class:`Status`,
:class:`Component`) are in :mod:`sedge_pyro.identification`, re-exported here; the graph
separation the steps use is in :mod:`sedge_pyro.separation`.

References:
    Zhang et al., "SEDGE: Structural Extrapolated Data Generation", Sec. 3 and App. A.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import networkx as nx
import pandas as pd

from sedge_pyro.assumptions import (
    Assumption,
    Check,
    Coverage,
    Tolerance,
    coverage_assumption,
    independence_assumption,
    overlap_assumption,
    positivity_assumption,
    rarity_assumption,
)
from sedge_pyro.errors import AssumptionFailed, GraphError
from sedge_pyro.expr import Factorization, Term, Var
from sedge_pyro.graph import SpecGraph, natural_key
from sedge_pyro.identification import (
    Component,
    Identification,
    Status,
    normalize_target,
    validate_seen,
    validate_tolerance,
)
from sedge_pyro.separation import LocalGraph, Piece, min_separator, moral_pieces, piece_key
from sedge_pyro.table import Table, is_table

__all__ = [
    "CHECK_ROWS",
    "Assumption",
    "Check",
    "Component",
    "Identification",
    "Status",
    "identify",
]

#: rows of a file the assumption checks run on (a uniform sample)
CHECK_ROWS = 200_000


def _sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)


def _set_text(names: Iterable[str]) -> str:
    return "{" + ", ".join(_sorted(names)) + "}"


def _first_name(names: Iterable[str]) -> tuple:
    return natural_key(min(names, key=natural_key))


def _is_seen(coverage: Coverage | None, names: Iterable[str]) -> bool:
    """Whether the target values of ``names`` occur together (one alone: yes, after step 1)."""
    names = list(names)
    if len(names) <= 1:
        return True
    return coverage is not None and coverage.count(names) > 0


# ---------------------------------------------------------------------------------------------
# The steps, in the order identify() takes them


def step_1_coverage(target: Mapping[str, Any], coverage: Coverage | None) -> str:
    r"""Step 1: Assumption 1, each target value is seen alone in the training rows.

    Eq. (1) of Assumption 1, Eq. (26) of Assumption 4: :math:`P(Z_i = z_i \mid S = 1) > 0`.
    A value never seen leaves :math:`p(x \mid Z_i = z_i)` unknown (Sec. 3.2). Eq. (24) is
    ``seen`` being non-empty (checked before); Eq. (25) cannot be checked on training rows.

    :param target: the normalized target.
    :param coverage: the training rows' coverage; ``None`` (no rows): each value is seen.
    :returns: why the result is ``IMPOSSIBLE``, naming each value never seen; ``""`` if none.
    """
    if coverage is None:
        return ""
    never = [k for k in target if coverage.count([k]) == 0]
    if not never:
        return ""
    values = ", ".join(Var(k, target[k]).to_text() for k in never)
    return (
        f"target value {values} is never seen in the {coverage.n} training rows "
        "(Assumption 1 fails): p(X | target) is not identifiable, and no sample can be "
        "constructed from the data"
    )


def step_2_components(
    graph: SpecGraph, targets: list[str]
) -> tuple[list[tuple[set[str], set[str]]], list[set[str]]]:
    r"""Step 2: the components of Thm 1, connected pieces of the skeleton.

    Thm 1 (App. A.6.1) partitions the specs into subsets with no shared and no adjacent
    features; the finest such partition is the connected pieces of the skeleton of feature ->
    feature and feature -> target-spec edges (a non-target spec, never conditioned on, joins
    nothing). Then ``p(X | Z_T) = prod_a p(F_a | Z_Ba)``, as in the proof of Thm 1 (App. A.7).

    :param graph: the graph.
    :param targets: the target specs.
    :returns: the pieces with target specs, ``(F_a, Z_Ba)`` in natural order of their first
        spec, and those without (for :func:`step_2_unjoined`).

    >>> g = SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x3"], "z3": ["x4"]})
    >>> comps, rest = step_2_components(g, ["z1", "z2"])
    >>> [(sorted(f_a), sorted(z_ba)) for f_a, z_ba in comps], [sorted(f) for f in rest]
    ([(['x1', 'x2'], ['z1']), (['x3'], ['z2'])], [['x4']])
    """
    skeleton = nx.Graph()
    features = graph.features
    skeleton.add_nodes_from(features)
    g = graph.to_networkx(copy=False)
    feature_set = set(features)
    for u, v in g.edges():
        if u in feature_set and v in feature_set:
            skeleton.add_edge(u, v)
    for z in targets:
        skeleton.add_node(z)
        for x in g.predecessors(z):
            skeleton.add_edge(x, z)
    target_set = set(targets)
    comps: list[tuple[set, set]] = []
    rest: list[set[str]] = []
    for nodes in nx.connected_components(skeleton):
        specs = nodes & target_set
        if specs:
            comps.append((nodes - target_set, specs))
        else:
            rest.append(nodes)
    comps.sort(key=lambda c: _first_name(c[1]))
    return comps, rest


def step_2_unjoined(graph: SpecGraph, rest: list[set[str]]) -> list[tuple[Term, Component]]:
    """Step 2, the features joined to no target spec: the term ``pD(F_0)``, split in two.

    ``p(F_0) = p(F_exact) p(F_approx)``, as the components of ``F_0`` are independent; keeping
    the d-separated ones apart keeps their term exact (with nothing conditioned on, ``F`` is
    d-separated from ``S`` iff no feature of ``F`` feeds a spec that feeds ``S``).

    :param graph: the graph.
    :param rest: step 2's components that hold no target spec.
    :returns: up to two pairs of term and :class:`Component`, the exact one first.
    """
    g = graph.to_networkx(copy=False)
    feeds_s = {x for z in g.predecessors(graph.selection) for x in g.predecessors(z)}
    split: dict[bool, set[str]] = {True: set(), False: set()}
    for nodes in rest:
        split[not (nodes & feeds_s)] |= nodes
    return [
        (
            Term(tuple(Var(n) for n in nodes), (), source="D", exact=exact),
            Component(frozenset(nodes), frozenset(), True, frozenset(), (), (frozenset(nodes),)),
        )
        for exact, nodes in split.items()
        if nodes
    ]


def step_3_seen(
    local: LocalGraph, features: set[str], specs: set[str]
) -> tuple[list[Term], Component]:
    r"""Step 3: a component whose target combination is seen is one term (Thm 1).

    :math:`p(F_a \mid z_{B_a}) = p_D(F_a \mid z_{B_a})`, as in the proof of Thm 1 (App. A.7;
    Prop. 1, Eqs. (8)-(9)): the combination has training rows, and the term is exact when
    :math:`F_a \perp S \mid Z_{B_a}`, which fails only if a feature of ``F_a`` feeds a
    non-target spec that feeds ``S``.

    :param local: the component's graph with ``S`` attached.
    :param features: the component's features ``F_a``.
    :param specs: its target specs ``Z_Ba``, whose combination is seen.
    :returns: the one term and the :class:`Component`.
    """
    term = local.term(features, (), (), specs)
    block = frozenset(specs)
    return [term], Component(
        frozenset(features), block, True, frozenset(), (block,), (frozenset(features),)
    )


def shared_features(
    graph: SpecGraph, features: set[str], specs: set[str], coverage: Coverage | None
) -> tuple[set[str], list[Piece]]:
    r"""Step 4: the shared features :math:`X_c` of a novel component, grown to a fixed point.

    Thms 2 and 3 (App. A.6.2) need blocks of specs independent given :math:`X_c`, and each
    feature outside :math:`X_c` independent given :math:`X_c` of the other blocks' features;
    Fig. 2(b) (Props. 2-4) has :math:`X_c = \{X_2\}`. :math:`X_c` starts as the parents of
    two or more target specs; the moral graph without it splits into pieces (independent
    given :math:`X_c`); a smallest cut of a piece whose specs are not seen together joins
    :math:`X_c`, until none is left.

    :param graph: the graph.
    :param features: the component's features ``F_a``.
    :param specs: its target specs, whose combination is novel.
    :param coverage: the training rows' coverage (``None``: every combination is novel).
    :returns: :math:`X_c` and the pieces (features ``G_r``, specs ``B_r``, boundary in
        :math:`X_c`), those with specs first.

    >>> g = SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})  # Fig. 2(b)
    >>> shared, pieces = shared_features(g, {"x1", "x2", "x3"}, {"z1", "z2"}, None)
    >>> sorted(shared), [(sorted(g_r), sorted(b_r)) for g_r, b_r, _ in pieces]
    (['x2'], [(['x1'], ['z1']), (['x3'], ['z2'])])
    """
    g = graph.to_networkx(copy=False)
    moral = nx.moral_graph(g.subgraph(features | specs))
    n_parents: dict[str, int] = {}
    for z in specs:
        for x in g.predecessors(z):
            n_parents[x] = n_parents.get(x, 0) + 1
    shared = {x for x, k in n_parents.items() if k >= 2}
    while True:
        pieces = moral_pieces(moral, shared, specs)
        grow: set[str] = set()
        for piece_feats, piece_specs, _ in pieces:
            if len(piece_specs) >= 2 and not _is_seen(coverage, piece_specs):
                grow |= min_separator(moral, piece_feats, piece_specs, partial(_is_seen, coverage))
        if not grow:
            break
        shared |= grow
    pieces.sort(key=piece_key)
    return shared, pieces


def step_4_novel(
    graph: SpecGraph,
    local: LocalGraph,
    features: set[str],
    specs: set[str],
    coverage: Coverage | None,
) -> tuple[list[Term], Component]:
    r"""Step 4: a novel component, factorized given its shared features (Prop. 4, Thm 3).

    Eq. (3) generalised, with :math:`X_c` and the pieces of :func:`shared_features` and
    :math:`\partial_r \subseteq X_c` a piece's boundary: :math:`p(F_a \mid z) \propto
    p_D(X_c, G_1 \mid z_{B_1}) \prod_{r > 1} p_D(z_{B_r} \mid \partial_r)\,
    p_D(G_r \mid \partial_r, z_{B_r})`, times :math:`p_D(G \mid \partial)` per piece without
    specs; for Fig. 2(b), Eq. (3). When every :math:`V_i \subseteq X_c`, it is Eq. (28)'s prior
    x likelihood form :math:`p_D(F_a) \prod_i p_D(z_i \mid V_i)`. Terms not d-separated from
    ``S`` equal their population counterparts under Assumption 3 only (Thm 3).

    :param graph: the graph.
    :param local: the component's graph with ``S`` attached.
    :param features: the component's features ``F_a``.
    :param specs: its target specs, whose combination is novel.
    :param coverage: the training rows' coverage (``None``: every combination is novel).
    :returns: the component's terms and its :class:`Component`.
    """
    shared, pieces = shared_features(graph, features, specs, coverage)
    g = graph.to_networkx(copy=False)
    spec_pieces = [p for p in pieces if p[1]]
    feature_pieces = [p for p in pieces if not p[1]]
    terms: list[Term] = []
    if all(not feats for feats, _, _ in spec_pieces):
        # the limit: the paper's prior x likelihood form, pD(F_a) prod_i pD(z_i | V_i)
        terms.append(local.term(features, (), (), ()))
        for z in _sorted(specs):
            terms.append(local.term((), (z,), g.predecessors(z), ()))
    else:
        # Eq. (3) generalised: the first block joins X_c, the others are weighed given X_c
        first_feats, first_specs, _ = spec_pieces[0]
        terms.append(local.term(shared | first_feats, (), (), first_specs))
        for feats, piece_specs, boundary in spec_pieces[1:]:
            if not feats:
                (z,) = piece_specs
                terms.append(local.term((), (z,), g.predecessors(z), ()))
                continue
            terms.append(local.term((), piece_specs, boundary, ()))
            terms.append(local.term(feats, (), boundary, piece_specs))
        for feats, _, boundary in feature_pieces:
            terms.append(local.term(feats, (), boundary, ()))
    blocks = tuple(frozenset(p[1]) for p in spec_pieces)
    groups = tuple(frozenset(p[0]) for p in spec_pieces)
    component = Component(
        frozenset(features), frozenset(specs), False, frozenset(shared), blocks, groups
    )
    return terms, component


def step_5_status(
    factorization: Factorization,
    components: list[Component],
    target: Mapping[str, Any],
    tolerance: Tolerance,
) -> tuple[Status, list[Assumption]]:
    """Step 5: the status, from the terms' exactness, and the assumptions to check.

    ``IDENTIFIABLE`` when every term is exact, d-separated from ``S`` (Prop. 1, Thm 1);
    ``CONSERVATIVE`` otherwise, exact under Assumption 3 only (Prop. 4, Thm 3). To check on the
    rows: coverage (Assumption 1, Eq. 26); positivity of each ``pD`` term's condition;
    independence of two or more components with features (Thm 1); overlap on ``X_c`` when one
    is novel (Assumption 2, Thm 2); rarity when conservative (Assumption 3).

    :param factorization: the product of the terms of steps 2 to 4.
    :param components: the components of steps 2 to 4.
    :param target: the normalized target.
    :param tolerance: the tolerance for point targets on continuous specs.
    :returns: the status and the assumptions, in the order above.
    """
    status = Status.IDENTIFIABLE if factorization.exact else Status.CONSERVATIVE
    novel = [c for c in components if c.specs and not c.seen]
    assumptions = [
        coverage_assumption(target, tolerance),
        positivity_assumption(factorization, target, tolerance),
    ]
    parts = [
        (_set_text(c.specs) if c.specs else "no target spec", c.features)
        for c in components
        if c.features
    ]
    if len(parts) >= 2:
        assumptions.append(independence_assumption(parts, target))
    if novel:
        assumptions.append(overlap_assumption(novel, target, tolerance))
    if status is Status.CONSERVATIVE:
        assumptions.append(rarity_assumption(novel, target, tolerance))
    return status, assumptions


# ---------------------------------------------------------------------------------------------
# The engine


def identify(
    graph: SpecGraph,
    target: Mapping[str, Any],
    seen: pd.DataFrame | None = None,
    *,
    tolerance: Tolerance = None,
    strict: bool = False,
) -> Identification:
    r"""Identify :math:`p(X \mid Z_T = z)` from the graph and the training rows' coverage.

    :param graph: the feature -> specification graph with its selection node.
    :param target: specification name -> value (a number or category, a point) or
        :class:`~sedge_pyro.expr.Interval` (an event), on any subset of the specs.
    :param seen: the training rows (S = 1) with a column per target spec; they decide which
        values and combinations are seen. ``None``: each value is assumed seen alone and every
        combination of two or more target specs is treated as novel. Files too large for
        memory may be given as a path to a Parquet or CSV file or folder, a
        ``pyarrow.dataset`` or an :class:`~sedge_pyro.Table`: one pass reads the target specs
        of every row (coverage is exact) and a uniform sample of :data:`CHECK_ROWS` rows, on
        which the assumption checks run (:attr:`Identification.seen`).
    :param tolerance: for point targets on continuous specs, a training value within this
        distance counts as the target value (a number, or a dict per spec); default 0.1
        standard deviations of the column.
    :param strict: raise :class:`~sedge_pyro.errors.AssumptionFailed` when an assumption's
        check fails on ``seen`` (default: return the result, flagged by
        :attr:`Identification.ok` and :meth:`Identification.explain`).
    :returns: an :class:`Identification`.
    :raises TargetError: when the target names an unknown spec or holds a bad value.
    :raises OptionError: when ``tolerance`` is negative, not a number, or names a non-target.
    :raises DataError: when ``seen`` lacks a target column, is empty, holds NaNs, or holds a
        few text cells in a column of numbers.
    :raises AssumptionFailed: with ``strict=True``, when a check fails on ``seen``; the message
        names each failed assumption and what was measured.

    References: Prop. 1 and 4, Thms 1-3, Eq. (3) of the SEDGE paper; the steps
    :func:`step_1_coverage` to :func:`step_5_status` say which statement each applies.

    >>> import sedge_pyro as sp
    >>> g = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
    >>> res = sp.identify(g, {"z1": 1, "z2": 1})
    >>> res.status.name, sorted(res.shared)
    ('CONSERVATIVE', ['x2'])
    >>> str(res.factorization)
    'pD(x1, x2 | z1=1) · pD(z2=1 | x2) · pD(x3 | x2, z2=1)'
    """
    if not isinstance(graph, SpecGraph):
        raise GraphError(f"graph is {type(graph).__name__}: expected an sp.SpecGraph")
    target = normalize_target(graph, target)
    validate_tolerance(tolerance, target)
    coverage = None
    if is_table(seen):
        # files: the target specs of every row decide coverage exactly; the assumption checks
        # run on a uniform sample of every graph column (one pass over the files)
        table = Table(seen)
        table.require(list(target), "seen")
        nodes = [c for c in (*graph.features, *graph.specs, graph.selection) if c in table.columns]
        full, seen = table.read(list(target), nodes, keep=CHECK_ROWS)
        validate_seen(graph, full, target)
        seen = validate_seen(graph, seen, target)
        coverage = Coverage(full, target, tolerance)
    elif seen is not None:
        seen = validate_seen(graph, seen, target)
        coverage = Coverage(seen, target, tolerance)
    factorization: Factorization | None = None
    components: list[Component] = []
    blocks: list[frozenset[str]] = []
    reason = step_1_coverage(target, coverage)
    if reason:
        status, assumptions = Status.IMPOSSIBLE, [coverage_assumption(target, tolerance)]
    else:
        terms, components = _factorize(graph, target, coverage)
        novel = not all(c.seen for c in components)
        factorization = Factorization.from_terms(terms, proportional=novel)
        status, assumptions = step_5_status(factorization, components, target, tolerance)
        blocks = sorted((b for c in components for b in c.blocks), key=_first_name)
    shared = frozenset().union(*(c.shared for c in components))
    res = Identification(
        graph,
        target,
        status,
        blocks,
        shared,
        factorization,
        assumptions,
        tuple(components),
        _query(graph, target),
        reason,
        seen,
    )
    return _strict(res, strict)


def _query(graph: SpecGraph, target: Mapping[str, Any]) -> Term:
    """The population term ``p(X | Z_T = z)`` being identified."""
    features = tuple(Var(x) for x in graph.features)
    return Term(features, tuple(Var(k, v) for k, v in target.items()), source="P", exact=True)


def _factorize(
    graph: SpecGraph, target: Mapping[str, Any], coverage: Coverage | None
) -> tuple[list[Term], list[Component]]:
    """Steps 2 to 4: each component's terms (step 3 if seen, else step 4) and then ``pD(F_0)``."""
    comps, rest = step_2_components(graph, list(target))
    sel_parents = set(graph.to_networkx(copy=False).predecessors(graph.selection))
    terms: list[Term] = []
    components: list[Component] = []
    for features, specs in comps:
        local = LocalGraph(graph, target, features, specs, sel_parents)
        if _is_seen(coverage, specs):
            comp_terms, component = step_3_seen(local, features, specs)
        else:
            comp_terms, component = step_4_novel(graph, local, features, specs, coverage)
        terms.extend(comp_terms)
        components.append(component)
    for term, component in step_2_unjoined(graph, rest):
        terms.append(term)
        components.append(component)
    return terms, components


def _strict(res: Identification, strict: bool) -> Identification:
    """``res``; with ``strict``, raise :class:`AssumptionFailed` if a check fails on its rows."""
    failed = res.failures() if strict else []
    if failed:
        rows = len(res.seen) if res.seen is not None else 0
        what = "; ".join(f"{a.name}: {c.detail}" for a, c in failed)
        raise AssumptionFailed(
            f"{len(failed)} assumption check(s) failed on the {rows} training rows: "
            f"{what} (without strict, the result is returned flagged)"
        )
    return res
