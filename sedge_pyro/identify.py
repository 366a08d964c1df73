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

The algorithm (see ``docs/identification.md``):

1. Assumption 1 (Eq. 1 / Eqs. 24-26): each target value must be seen alone.
2. Components: connected pieces of the skeleton over the features and the target specs.
   Features in different components are independent and each target spec's parents lie in one
   component, so ``p(X | Z_T) = prod_a p(F_a | Z_Ba)``; features joined to no target spec make
   one further term ``pD(F_0)``.
3. A component whose target combination is seen is one term ``pD(F_a | Z_Ba = z_Ba)`` (Thm 1).
4. A novel component gets shared features ``X_c`` (Thm 2/3): start with the features that are
   parents of two or more of its target specs; split the moral graph of the component without
   ``X_c`` into pieces (pieces are then independent given ``X_c``, the moral-graph criterion of
   d-separation); a piece holding two or more specs whose combination is unseen gives their
   parents to ``X_c``; repeat until stable. The factorization is Eq. (3) generalised,
   ``pD(X_c, G_1 | z_B1) prod_{r>1} pD(z_Br | X_c) pD(G_r | X_c, z_Br)``, and, when every
   target spec's parents fall in ``X_c``, the paper's prior x likelihood form
   ``pD(F_a) prod_i pD(z_i | V_i)``.
5. A term ``p(A | C)`` is marked exact when ``A`` is d-separated from ``S`` given ``C``
   (networkx ``is_d_separator``), checked on the component's own graph with the selection
   node attached (equivalent to the whole graph, and fast on graphs of 10,000 features).

The question (target, tolerance, rows) and the answer (:class:`Identification`, :class:`Status`,
:class:`Component`) are in :mod:`sedge_pyro.identification`, re-exported here.

References:
    Zhang et al., "SEDGE: Structural Extrapolated Data Generation", Sec. 3 and App. A.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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

__all__ = ["Assumption", "Check", "Component", "Identification", "Status", "identify"]


def _sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=natural_key)


def _set_text(names: Iterable[str]) -> str:
    return "{" + ", ".join(_sorted(names)) + "}"


# ---------------------------------------------------------------------------------------------
# Structure


def _components(
    graph: SpecGraph, targets: list[str]
) -> tuple[list[tuple[set[str], set[str]]], list[set[str]]]:
    """Components of the skeleton over features and target specs (step 2)."""
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
    comps.sort(key=lambda c: natural_key(min(c[1], key=natural_key)))
    return comps, rest


class _Local:
    """The component's subgraph with the selection node attached, for exactness checks.

    A path from the component to ``S`` leaves it only through a spec that feeds ``S``: a target
    spec of the component, or a non-target spec fed by one of its features (a non-target spec
    is never conditioned on, so ``x -> z -> S`` acts as ``x -> S``). Other paths out cross an
    unconditioned collider. So d-separation from ``S`` on this small graph equals d-separation
    on the whole graph.
    """

    def __init__(
        self, graph: SpecGraph, features: set[str], specs: set[str], sel_parents: set[str]
    ) -> None:
        g = graph.to_networkx(copy=False)
        self.selection = graph.selection
        self.dag = nx.DiGraph(g.subgraph(features | specs))
        self.dag.add_node(self.selection)
        for z in specs & sel_parents:
            self.dag.add_edge(z, self.selection)
        for x in features:
            for child in g.successors(x):
                if child not in specs and child in sel_parents:
                    self.dag.add_edge(x, self.selection)
                    break

    def exact(self, lhs: Iterable[str], rhs: Iterable[str]) -> bool:
        return nx.is_d_separator(self.dag, set(lhs), {self.selection}, set(rhs))


def _pieces(
    moral: nx.Graph, shared: set[str], specs: set[str]
) -> list[tuple[frozenset[str], frozenset[str], frozenset[str]]]:
    """Pieces (features, specs, boundary in X_c) of the moral graph without ``shared``."""
    rest = moral.subgraph(n for n in moral if n not in shared)
    out = []
    for nodes in nx.connected_components(rest):
        boundary = {m for n in nodes for m in moral.neighbors(n) if m in shared}
        out.append((frozenset(nodes - specs), frozenset(nodes & specs), frozenset(boundary)))
    return out


def _separator(
    moral: nx.Graph,
    features: frozenset[str],
    specs: frozenset[str],
    is_seen: Callable[[Iterable[str]], bool],
) -> set[str]:
    """Features to add to X_c so that a piece with an unseen combination splits (step 4).

    A smallest set of features separating two of the piece's specs in the moral graph: the
    first spec and, preferably, one whose pair with it is unseen. The pieces are recomputed
    after every cut, so repeated cuts end with every piece's combination seen.
    """
    first, *others = _sorted(specs)
    partner = next((z for z in others if not is_seen((first, z))), others[0])
    # other specs only relay between their (married) parents, so they can be left out
    sub = moral.subgraph(features | {first, partner})
    return set(nx.minimum_node_cut(sub, first, partner))


def _piece_key(piece: tuple[frozenset, frozenset, frozenset]) -> tuple:
    feats, specs, _ = piece
    if specs:
        return (0, natural_key(min(specs, key=natural_key)))
    return (1, natural_key(min(feats, key=natural_key)))


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
        combination of two or more target specs is treated as novel.
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

    References: Prop. 1 and 4, Thms 1-3, Eq. (3) of the SEDGE paper.

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
    targets = list(target)
    query = Term(
        tuple(Var(x) for x in graph.features),
        tuple(Var(k, v) for k, v in target.items()),
        source="P",
        exact=True,
    )
    coverage = None
    if seen is not None:
        seen = validate_seen(graph, seen, target)
        coverage = Coverage(seen, target, tolerance)
    assume_coverage = coverage_assumption(target, tolerance)

    # step 1: Assumption 1, every target value seen alone
    if coverage is not None:
        never = [k for k in targets if coverage.count([k]) == 0]
        if never:
            values = ", ".join(Var(k, target[k]).to_text() for k in never)
            reason = (
                f"target value {values} is never seen in the {coverage.n} training rows "
                "(Assumption 1 fails): p(X | target) is not identifiable, and no sample can be "
                "constructed from the data"
            )
            return _strict(
                strict,
                graph,
                target,
                Status.IMPOSSIBLE,
                [],
                frozenset(),
                None,
                [assume_coverage],
                (),
                query,
                reason,
                seen,
            )

    def is_seen(names: Iterable[str]) -> bool:
        names = list(names)
        if len(names) <= 1:
            return True
        return coverage is not None and coverage.count(names) > 0

    def event_vars(names: Iterable[str]) -> tuple[Var, ...]:
        return tuple(Var(n, target[n]) for n in names)

    def free_vars(names: Iterable[str]) -> tuple[Var, ...]:
        return tuple(Var(n) for n in names)

    # step 2: independent components
    comps, rest = _components(graph, targets)
    terms: list[Term] = []
    components: list[Component] = []
    blocks: list[frozenset[str]] = []
    proportional = False
    g = graph.to_networkx(copy=False)
    sel_parents = set(g.predecessors(graph.selection))
    for features, specs in comps:
        local = _Local(graph, features, specs, sel_parents)

        def term(
            lhs_free: Iterable[str],
            lhs_events: Iterable[str],
            rhs_free: Iterable[str],
            rhs_events: Iterable[str],
            local: _Local = local,
        ) -> Term:
            lhs_free, lhs_events = list(lhs_free), list(lhs_events)
            rhs_free, rhs_events = list(rhs_free), list(rhs_events)
            return Term(
                free_vars(lhs_free) + event_vars(lhs_events),
                free_vars(rhs_free) + event_vars(rhs_events),
                source="D",
                exact=local.exact(lhs_free + lhs_events, rhs_free + rhs_events),
            )

        # step 3: a seen combination (Thm 1)
        if is_seen(specs):
            terms.append(term(features, (), (), specs))
            components.append(
                Component(
                    frozenset(features),
                    frozenset(specs),
                    True,
                    frozenset(),
                    (frozenset(specs),),
                    (frozenset(features),),
                )
            )
            blocks.append(frozenset(specs))
            continue

        # step 4: a novel combination, grow X_c until the pieces are seen (Thm 2/3)
        proportional = True
        moral = nx.moral_graph(g.subgraph(features | specs))
        n_parents: dict[str, int] = {}
        for z in specs:
            for x in g.predecessors(z):
                n_parents[x] = n_parents.get(x, 0) + 1
        shared = {x for x, k in n_parents.items() if k >= 2}
        while True:
            pieces = _pieces(moral, shared, specs)
            grow: set[str] = set()
            for piece_feats, piece_specs, _ in pieces:
                if len(piece_specs) >= 2 and not is_seen(piece_specs):
                    grow |= _separator(moral, piece_feats, piece_specs, is_seen)
            if not grow:
                break
            shared |= grow
        pieces.sort(key=_piece_key)
        spec_pieces = [p for p in pieces if p[1]]
        feature_pieces = [p for p in pieces if not p[1]]
        if all(not feats for feats, _, _ in spec_pieces):
            # the limit: the paper's prior x likelihood form, pD(F_a) prod_i pD(z_i | V_i)
            terms.append(term(features, (), (), ()))
            for z in _sorted(specs):
                terms.append(term((), (z,), g.predecessors(z), ()))
        else:
            # Eq. (3) generalised: the first block joins X_c, the others are weighed given X_c
            first_feats, first_specs, _ = spec_pieces[0]
            terms.append(term(shared | first_feats, (), (), first_specs))
            for feats, piece_specs, boundary in spec_pieces[1:]:
                if not feats:
                    (z,) = piece_specs
                    terms.append(term((), (z,), g.predecessors(z), ()))
                    continue
                terms.append(term((), piece_specs, boundary, ()))
                terms.append(term(feats, (), boundary, piece_specs))
            for feats, _, boundary in feature_pieces:
                terms.append(term(feats, (), boundary, ()))
        comp_blocks = tuple(frozenset(p[1]) for p in spec_pieces)
        components.append(
            Component(
                frozenset(features),
                frozenset(specs),
                False,
                frozenset(shared),
                comp_blocks,
                tuple(frozenset(p[0]) for p in spec_pieces),
            )
        )
        blocks.extend(comp_blocks)

    # features joined to no target spec: p(F_0) = p(F_exact) p(F_approx), as the components of
    # F_0 are independent; keeping the d-separated ones apart keeps their term exact
    # (with nothing conditioned on, F is d-separated from S iff no feature of F feeds a spec
    # that feeds S: every open path is then x -> z -> S)
    feeds_s = {x for z in sel_parents for x in g.predecessors(z)}
    split: dict[bool, set[str]] = {True: set(), False: set()}
    for nodes in rest:
        split[not (nodes & feeds_s)] |= nodes
    for exact, nodes in split.items():
        if nodes:
            terms.append(Term(free_vars(nodes), (), source="D", exact=exact))
            components.append(
                Component(frozenset(nodes), frozenset(), True, frozenset(), (), (frozenset(nodes),))
            )

    factorization = Factorization.from_terms(terms, proportional=proportional)
    status = Status.IDENTIFIABLE if factorization.exact else Status.CONSERVATIVE
    blocks.sort(key=lambda b: natural_key(min(b, key=natural_key)))
    shared_all = frozenset().union(*(c.shared for c in components))
    novel = [c for c in components if c.specs and not c.seen]
    assumptions = [assume_coverage, positivity_assumption(factorization, target, tolerance)]
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
    return _strict(
        strict,
        graph,
        target,
        status,
        blocks,
        shared_all,
        factorization,
        assumptions,
        tuple(components),
        query,
        "",
        seen,
    )


def _strict(strict: bool, *args: Any) -> Identification:
    """The :class:`Identification` of ``args``; with ``strict``, raise if a check fails."""
    res = Identification(*args)
    failed = res.failures() if strict else []
    if failed:
        rows = len(res.seen) if res.seen is not None else 0
        what = "; ".join(f"{a.name}: {c.detail}" for a, c in failed)
        raise AssumptionFailed(
            f"{len(failed)} assumption check(s) failed on the {rows} training rows: "
            f"{what} (without strict, the result is returned flagged)"
        )
    return res
