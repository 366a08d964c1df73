"""Check identify() against exact enumeration on random small discrete Bayesian networks.

Each case is a random SEDGE graph (binary features X -> binary specs Z -> selection S) with
random conditional probability tables, some entries exactly 0 or 1 so that supports are not
full, and a selection mechanism that often removes the target combination from training. The
full joint table over (X, Z, S) is enumerated, the training coverage ``seen`` is its support
under S = 1, and the factorization returned by :func:`identify` is evaluated on the table and
compared with the true p(X | Z_T = z):

1. IMPOSSIBLE exactly when some target value has P(Z_i = z_i, S = 1) = 0 (Assumption 1);
2. with population terms the factorization equals p(X | Z_T = z);
3. exact terms agree under pD and p wherever pD is defined;
4. IDENTIFIABLE factorizations equal the truth with pD terms;
5. CONSERVATIVE factorizations never leave the true support;
6. blocks partition the target specs, X_c is a set of features, the free variables are X;
7. each term's ``exact`` flag is d-separation of lhs from S given rhs on the whole graph.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from sedge_pyro.expr import Term
from sedge_pyro.graph import SpecGraph
from sedge_pyro.identify import Identification, Status, identify

N_CASES = 300
N_SUMMARY = 200
ATOL = 1e-10


@dataclass
class Case:
    """A random network, its enumerated joint table and a target."""

    graph: SpecGraph
    features: list[str]
    specs: list[str]
    sel_parents: list[str]
    joint: pd.DataFrame
    target: dict[str, int]

    def describe(self) -> str:
        g = self.graph.to_networkx()
        edges = sorted(g.edges)
        return f"edges={edges} target={self.target}"


def _cpt(rng: np.random.Generator, n_parents: int, p_degenerate: float = 0.3) -> np.ndarray:
    """P(node = 1 | parents) for each parent assignment (index = sum bit_j 2^j)."""
    probs = rng.uniform(0.05, 0.95, size=2**n_parents)
    degenerate = rng.random(2**n_parents) < p_degenerate
    probs[degenerate] = rng.integers(0, 2, size=int(degenerate.sum())).astype(float)
    return probs


def _index(values: np.ndarray, columns: list[int]) -> np.ndarray:
    """Row index into a CPT from the parents' bits (column j weighs 2^j)."""
    idx = np.zeros(len(values), dtype=np.int64)
    for j, c in enumerate(columns):
        idx += values[:, c].astype(np.int64) << j
    return idx


def _draw(rng: np.random.Generator) -> Case | None:
    """Draw one candidate case; ``None`` when P(Z_T = z) = 0 or P(S = 1) = 0."""
    n_x = int(rng.integers(2, 6))
    n_z = int(rng.integers(1, 5))
    features = [f"x{i + 1}" for i in range(n_x)]
    specs = [f"z{i + 1}" for i in range(n_z)]
    # a sparse case (one parent per spec, fewer feature edges) now and then, so that specs
    # often fall in separate components (Prop. 1 / Thm 1, identifiable although novel)
    sparse = rng.random() < 0.25
    feature_edges = [
        (features[i], features[j])
        for i in range(n_x)
        for j in range(i + 1, n_x)
        if rng.random() < (0.15 if sparse else 0.3)
    ]
    parents: dict[str, list[str]] = {}
    for z in specs:
        k = 1 if sparse else int(rng.integers(1, min(3, n_x) + 1))
        parents[z] = sorted(rng.choice(features, size=k, replace=False).tolist())
    if n_z > 1 and rng.random() < 0.35:
        k = int(rng.integers(1, n_z + 1))
        sel_parents = sorted(rng.choice(specs, size=k, replace=False).tolist())
    else:
        sel_parents = list(specs)
    graph = SpecGraph.from_parents(
        parents,
        selection_parents=sel_parents,
        feature_edges=feature_edges,
        features=features,
    )

    # target: a non-empty subset of the specs (half the time all of them), random values
    if rng.random() < 0.5:
        t_specs = list(specs)
    else:
        k = int(rng.integers(1, n_z + 1))
        t_specs = sorted(rng.choice(specs, size=k, replace=False).tolist())
    target = {z: int(rng.integers(0, 2)) for z in t_specs}

    # conditional probability tables
    names = features + specs + ["S"]
    col = {n: i for i, n in enumerate(names)}
    feature_parents = {
        x: [u for u, v in feature_edges if v == x] for x in features
    }  # lower index only
    cpts = {x: _cpt(rng, len(feature_parents[x])) for x in features}
    cpts.update({z: _cpt(rng, len(parents[z])) for z in specs})
    s_cpt = rng.uniform(0.1, 1.0, size=2 ** len(sel_parents))
    s_bits = np.array(list(itertools.product([0, 1], repeat=len(sel_parents))))[:, ::-1]
    # s_bits[i, j] is the bit of sel_parents[j] in assignment i (index = sum bit_j 2^j)
    if rng.random() < 0.7:
        in_sel = [(j, z) for j, z in enumerate(sel_parents) if z in target]
        if in_sel:
            novel = np.all([s_bits[:, j] == target[z] for j, z in in_sel], axis=0)
            s_cpt[novel] = 0.0
    extra = rng.random(len(s_cpt)) < 0.15
    s_cpt[extra] = 0.0

    # enumerate the joint
    values = np.array(list(itertools.product([0, 1], repeat=len(names))), dtype=np.int64)
    prob = np.ones(len(values))
    for x in features:
        p1 = cpts[x][_index(values, [col[u] for u in feature_parents[x]])]
        prob *= np.where(values[:, col[x]] == 1, p1, 1.0 - p1)
    for z in specs:
        p1 = cpts[z][_index(values, [col[u] for u in parents[z]])]
        prob *= np.where(values[:, col[z]] == 1, p1, 1.0 - p1)
    p1 = s_cpt[_index(values, [col[z] for z in sel_parents])]
    prob *= np.where(values[:, col["S"]] == 1, p1, 1.0 - p1)
    joint = pd.DataFrame(values, columns=names)
    joint["p"] = prob
    assert abs(joint["p"].sum() - 1.0) < 1e-12

    if _prob(joint, target) == 0.0 or _prob(joint, {"S": 1}) == 0.0:
        return None
    return Case(graph, features, specs, sel_parents, joint, target)


def _prob(joint: pd.DataFrame, event: dict[str, int]) -> float:
    mask = np.ones(len(joint), dtype=bool)
    for name, value in event.items():
        mask &= joint[name].to_numpy() == value
    return float(joint["p"].to_numpy()[mask].sum())


def make_case(seed: int) -> Case:
    """The case of a seed: draw until P(Z_T = z) > 0 and P(S = 1) > 0."""
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        case = _draw(rng)
        if case is not None:
            return case
    raise AssertionError(f"seed {seed}: no valid case drawn")  # pragma: no cover


def seen_rows(case: Case) -> pd.DataFrame:
    """One training row per support point of the joint under S = 1."""
    joint = case.joint
    rows = joint[(joint["S"] == 1) & (joint["p"] > 0)]
    return rows[case.features + case.specs].reset_index(drop=True)


def truth(case: Case) -> pd.DataFrame:
    """p(X | Z_T = z) from the joint, one row per feature assignment."""
    joint = case.joint
    mask = np.ones(len(joint), dtype=bool)
    for name, value in case.target.items():
        mask &= joint[name].to_numpy() == value
    weights = joint["p"].to_numpy() * mask
    frame = pd.DataFrame({**{x: joint[x].to_numpy() for x in case.features}, "w": weights})
    out = frame.groupby(case.features, as_index=False)["w"].sum()
    out["truth"] = out["w"] / out["w"].sum()
    return out.drop(columns="w")


def _aligned(case: Case, evaluated: pd.DataFrame) -> pd.DataFrame:
    """Merge an evaluation with the truth on the feature columns."""
    true = truth(case)
    merged = true.merge(evaluated, on=case.features, how="outer", validate="one_to_one")
    assert len(merged) == 2 ** len(case.features), "evaluation does not cover every assignment"
    return merged


def _context(seed: int, case: Case, res: Identification) -> str:
    fac = res.factorization
    return f"seed={seed} {case.describe()} status={res.status.name} factorization={fac}"


def _term_names(term: Term) -> tuple[set[str], set[str]]:
    return {v.name for v in term.lhs}, {v.name for v in term.rhs}


@pytest.mark.parametrize("seed", range(N_CASES))
def test_identify_matches_enumeration(seed: int) -> None:
    case = make_case(seed)
    seen = seen_rows(case)
    res = identify(case.graph, case.target, seen)
    ctx = _context(seed, case, res)

    # 1. IMPOSSIBLE iff some target value is never seen (Assumption 1)
    unseen = [z for z, v in case.target.items() if _prob(case.joint, {z: v, "S": 1}) == 0.0]
    assert (res.status is Status.IMPOSSIBLE) == bool(unseen), ctx
    if unseen:
        assert res.factorization is None, ctx
        assert any(z in res.reason for z in unseen), ctx
        return
    fac = res.factorization
    assert fac is not None, ctx

    # 6. structure: blocks partition T, X_c within X, free variables are exactly X
    blocks = list(res.blocks)
    assert all(blocks), ctx
    assert sum(len(b) for b in blocks) == len(case.target), ctx
    assert frozenset().union(*blocks) == frozenset(case.target), ctx
    assert res.shared <= frozenset(case.features), ctx
    assert set(fac.free) == set(case.features), ctx
    assert (res.status is Status.IDENTIFIABLE) == fac.exact, ctx

    # 7. exactness is d-separation of lhs from S given rhs on the whole graph
    g = case.graph.to_networkx()
    for term in fac.terms:
        lhs, rhs = _term_names(term)
        want = nx.is_d_separator(g, lhs, {case.graph.selection}, rhs)
        assert term.exact == want, f"{ctx} term={term}"
        assert term.exact == case.graph.is_d_separated(lhs, case.graph.selection, rhs), ctx

    # 2. the factorization with population terms is p(X | Z_T = z)
    pop = _aligned(case, fac.evaluate(case.joint, population=True))
    assert not pop["p"].isna().any(), f"{ctx}\n{pop}"
    np.testing.assert_allclose(pop["p"], pop["truth"], atol=ATOL, rtol=0, err_msg=ctx)

    # 3. exact terms agree under pD and p wherever pD is defined
    for term in fac.terms:
        if not term.exact:
            continue
        d = term.evaluate(case.joint)
        p = term.evaluate(case.joint, population=True)
        keys = list(term.free)
        both = d.merge(p, on=keys, suffixes=("_d", "_p")) if keys else d.join(p, rsuffix="_p")
        if not keys:
            both = both.rename(columns={"p": "p_d"})
        defined = both["p_d"].notna()
        np.testing.assert_allclose(
            both.loc[defined, "p_d"],
            both.loc[defined, "p_p"],
            atol=ATOL,
            rtol=0,
            err_msg=f"{ctx} term={term}",
        )

    d_eval = _aligned(case, fac.evaluate(case.joint))
    if res.status is Status.IDENTIFIABLE:
        # 4. identifiable: the pD factorization is the truth
        assert not d_eval["p"].isna().any(), f"{ctx}\n{d_eval}"
        np.testing.assert_allclose(d_eval["p"], d_eval["truth"], atol=ATOL, rtol=0, err_msg=ctx)
    else:
        # 5. conservative: never leaves the true support
        positive = d_eval["p"].notna() & (d_eval["p"] > 0)
        outside = d_eval[positive & (d_eval["truth"] <= 0)]
        assert outside.empty, f"{ctx}\n{outside}"


def _target_seen(case: Case, seen: pd.DataFrame) -> bool:
    mask = np.ones(len(seen), dtype=bool)
    for name, value in case.target.items():
        mask &= seen[name].to_numpy() == value
    return bool(mask.any())


def test_generator_exercises_every_status() -> None:
    """The generator reaches every branch: each status, novel targets of both kinds."""
    counts: Counter[tuple[Status, bool]] = Counter()
    for seed in range(N_SUMMARY):
        case = make_case(seed)
        seen = seen_rows(case)
        res = identify(case.graph, case.target, seen)
        counts[res.status, _target_seen(case, seen)] += 1
    summary = {f"{s.name}/{'seen' if k else 'novel'}": n for (s, k), n in sorted(counts.items())}
    for status in Status:
        assert counts[status, True] + counts[status, False] >= 10, summary
    # novel combinations: identifiable across components (Prop. 1) and conservative (Thm 3)
    assert counts[Status.IDENTIFIABLE, False] >= 2, summary
    assert counts[Status.CONSERVATIVE, False] >= 20, summary
    # seen combinations can still be conservative (a feature feeds S through another spec)
    assert counts[Status.CONSERVATIVE, True] >= 5, summary
