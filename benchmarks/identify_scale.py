"""How long ``sp.identify`` takes on large random SEDGE graphs.

For each size d the script builds a random :class:`sp.SpecGraph` with d features and d/10
specifications, simulates 2,000 binary training rows, removes from them a novel target
combination on about d/100 pairs of specifications that share a feature (so the conservative
branch, X_c growth included, runs many times), and times ``sp.identify(graph, target, seen)``
alone: graph generation and data simulation are outside the timer.

Graph model (seeded):

- features ``x0 .. x{d-1}``, specifications ``z0 .. z{d/10 - 1}``, every spec feeds ``S``;
- spec ``z_j`` has 1-3 parents drawn from a local window of ``--window`` features starting at
  ``10 j`` (each parent is instead drawn anywhere with probability ``--p-far``);
- feature edges ``x_i -> x_{i+s}`` for ``s = 1..3`` with probability ``--p-edge`` each (all
  within a window), plus ``d/500`` long-range edges ``x_u -> x_v`` with ``u < v``;
- ``d/100`` novel pairs ``(z_j, z_{j+1})``: ``z_{j+1}`` also gets a parent of ``z_j``, and rows
  with ``z_j = 1`` and ``z_{j+1} = 1`` are removed from the training rows.

Features are Bernoulli(0.2 + 0.6 mean(parents)) (0.5 without parents); specs are
Bernoulli(0.02 + 0.12 mean(parents)), rare enough that 2,000 rows survive the removals while
every target value is still seen alone.

Target: ``--target all`` (default) sets every specification to 1; ``--target novel`` sets only
the specifications of the novel pairs to 1.

Usage::

    python benchmarks/identify_scale.py --sizes 100 1000 10000 --repeats 3
    python benchmarks/identify_scale.py --sizes 10000 --profile   # cProfile of one call
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

import sedge_pyro as sp


def make_graph(
    d: int,
    rng: np.random.Generator,
    *,
    window: int,
    p_edge: float,
    p_far: float,
) -> tuple[sp.SpecGraph, list[tuple[str, str]]]:
    """A random graph and its novel pairs of specifications (which share a feature)."""
    names = [f"x{i}" for i in range(d)]
    n_specs = max(2, d // 10)
    stride = d / n_specs
    parents: dict[str, list[str]] = {}
    for j in range(n_specs):
        lo = int(j * stride)
        chosen: set[int] = set()
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < p_far:
                chosen.add(int(rng.integers(d)))
            else:
                chosen.add(min(d - 1, lo + int(rng.integers(window))))
        parents[f"z{j}"] = [names[i] for i in sorted(chosen)]
    # novel pairs (z_j, z_j+1): give z_j+1 one of z_j's parents so they share a feature
    n_pairs = max(1, d // 100)
    starts = rng.choice(
        np.arange(0, n_specs - 1, 2), size=min(n_pairs, n_specs // 2), replace=False
    )
    pairs = []
    for j in sorted(int(s) for s in starts):
        a, b = f"z{j}", f"z{j + 1}"
        shared = parents[a][int(rng.integers(len(parents[a])))]
        if shared not in parents[b]:
            parents[b] = [*parents[b], shared]
        pairs.append((a, b))
    edges = []
    for i in range(d):
        for step in (1, 2, 3):
            if i + step < d and rng.random() < p_edge:
                edges.append((names[i], names[i + step]))
    for _ in range(max(1, d // 500)):
        u, v = sorted(rng.choice(d, size=2, replace=False))
        edges.append((names[int(u)], names[int(v)]))
    graph = sp.SpecGraph.from_parents(parents, feature_edges=edges, features=names)
    return graph, pairs


def simulate(graph: sp.SpecGraph, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Binary population rows along the graph (features dense, specs rare)."""
    g = graph.to_networkx(copy=False)
    values: dict[str, np.ndarray] = {}
    specs = set(graph.specs)
    for node in nx.topological_sort(g):
        if node == graph.selection:
            continue
        ps = list(g.predecessors(node))
        mean = np.mean([values[p] for p in ps], axis=0) if ps else None
        if node in specs:
            prob = 0.02 + 0.12 * mean
        else:
            prob = np.full(n, 0.5) if mean is None else 0.2 + 0.6 * mean
        values[node] = (rng.random(n) < prob).astype(np.int8)
    return pd.DataFrame({k: values[k] for k in graph.features + graph.specs})


def training_rows(
    graph: sp.SpecGraph, pairs: list[tuple[str, str]], n: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, float]:
    """``n`` training rows: population rows without the novel pairs' (1, 1) combinations."""

    def keep(rows: pd.DataFrame) -> np.ndarray:
        out = np.ones(len(rows), dtype=bool)
        for a, b in pairs:
            out &= ~((rows[a].to_numpy() == 1) & (rows[b].to_numpy() == 1))
        return out

    pilot = simulate(graph, n, rng)
    kept = float(keep(pilot).mean())
    size = int(np.ceil(n / max(kept, 0.05) * 1.2))
    while True:
        rows = simulate(graph, size, rng)
        mask = keep(rows)
        if mask.sum() >= n:
            return rows.loc[mask].head(n).reset_index(drop=True), kept
        size *= 2


def run_size(d: int, args: argparse.Namespace) -> dict:
    # seeded by (seed, d): a size gives the same graph and rows whatever else is run
    rng = np.random.default_rng([args.seed, d])
    t0 = time.perf_counter()
    graph, pairs = make_graph(d, rng, window=args.window, p_edge=args.p_edge, p_far=args.p_far)
    seen, kept = training_rows(graph, pairs, args.rows, rng)
    setup = time.perf_counter() - t0
    if args.target == "all":
        target = dict.fromkeys(graph.specs, 1)
    else:
        target = {z: 1 for pair in pairs for z in pair}

    times = []
    res = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = sp.identify(graph, target, seen)
        times.append(time.perf_counter() - t)
    assert res is not None

    comps = [c for c in res.components if c.specs]
    novel = [c for c in comps if not c.seen]
    sizes = [len(c.features) for c in comps] or [0]
    n_terms = len(res.factorization.terms) if res.factorization is not None else 0
    record = {
        "features": len(graph.features),
        "specs": len(graph.specs),
        "edges": len(graph.edges),
        "target_specs": len(target),
        "novel_pairs": len(pairs),
        "rows": len(seen),
        "kept_fraction": round(kept, 4),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
        "setup_s": setup,
        "components": len(comps),
        "novel_components": len(novel),
        "largest_component_features": max(sizes),
        # features joined to no target spec (one or two pD(F_0) terms, exact and not)
        "features_without_target": sum(len(c.features) for c in res.components if not c.specs),
        "terms": n_terms,
        "status": res.status.name,
        "shared": len(res.shared),
        "approximate_terms": 0
        if res.factorization is None
        else sum(1 for t in res.factorization.terms if not t.exact),
    }
    if args.profile:
        record["profile"] = profile(graph, target, seen, args.profile_lines)
    return record


def profile(graph: sp.SpecGraph, target: dict, seen: pd.DataFrame, lines: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    sp.identify(graph, target, seen)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def table(records: list[dict], target: str) -> str:
    head = (
        "| features | specs | target specs | novel pairs | rows | median s | min s | "
        "components (novel) | largest | terms | approx. terms | status | \\|X_c\\| |"
    )
    rows = [head, "|" + "|".join(["---"] * 13) + "|"]
    for r in records:
        rows.append(
            f"| {r['features']:,} | {r['specs']:,} | {r['target_specs']:,} | {r['novel_pairs']} "
            f"| {r['rows']:,} | {r['median_s']:.3f} | {r['min_s']:.3f} "
            f"| {r['components']:,} ({r['novel_components']:,}) "
            f"| {r['largest_component_features']} | {r['terms']:,} | {r['approximate_terms']:,} "
            f"| {r['status']} | {r['shared']:,} |"
        )
    note = (
        f"\nTarget: {'every specification = 1' if target == 'all' else 'the novel pairs = 1'}. "
        "Time of `sp.identify(graph, target, seen)` only. components = components holding "
        "target specs (novel: their combination is unseen); largest = features in the largest "
        "such component."
    )
    return "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000, help="training rows (S = 1)")
    parser.add_argument("--target", choices=["all", "novel"], default="all")
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument("--p-edge", type=float, default=0.08)
    parser.add_argument("--p-far", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/identify_scale.json"))
    parser.add_argument("--profile", action="store_true", help="cProfile one call per size")
    parser.add_argument("--profile-lines", type=int, default=25)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    records = []
    for d in args.sizes:
        record = run_size(d, args)
        records.append(record)
        print(
            f"d={d}: median {record['median_s']:.3f} s, min {record['min_s']:.3f} s "
            f"(setup {record['setup_s']:.1f} s)",
            file=sys.stderr,
        )
        if args.profile:
            print(record["profile"], file=sys.stderr)

    print(table(records, args.target))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "script": "benchmarks/identify_scale.py",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "sedge_pyro": sp.__version__,
        "networkx": nx.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "torch_imported": "torch" in sys.modules,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target": "every specification = 1"
        if args.target == "all"
        else "specifications of the novel pairs = 1",
    }
    for r in records:
        r.pop("profile", None)
    args.out.write_text(json.dumps({"meta": meta, "results": records}, indent=2) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
