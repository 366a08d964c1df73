"""Fit time and held-out NLL of every component on the paper's synthetic data (Sec. 5.1).

Usage: ``python benchmarks/fit_speed.py [--rows 20000] [--steps 2000] [--threads 1]``.
Prints a Markdown table and writes ``benchmarks/results/fit_speed.json``.

``--sizes 200,2000,20000 [--seeds 0,1]`` instead compares the default step budget and batch
(:func:`sedge_pyro.inference.fit.schedule`: grows with the rows, always with held-out early
stopping) with the fixed 2,000 steps of batch 256 it replaced, for the default
``SEDGEModel`` on ``paper_synthetic(size)``; it reports steps, seconds and the held-out NLL of
each component, in the fit's own history (normalised units) and on 10,000 fresh Seen rows
(raw units), and writes ``benchmarks/results/fit_defaults.json``.

NLL is per row on 10% held-out Seen rows, in nats of the raw data (the normalisation's Jacobian
included), so models are comparable; the diffusion prior has no density and reports its DDPM
denoising loss instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import sedge_pyro as sp

CONFIGS = [
    ("A sparse, gaussian", {"likelihood": "gaussian", "prior": "empirical"}),
    ("A sparse, flow likelihood", {"likelihood": "flow", "prior": "empirical"}),
    (
        "prior: flow (affine coupling)",
        {"prior": "flow", "prior_options": {"kind": "affine_coupling"}},
    ),
    (
        "prior: flow (spline coupling)",
        {"prior": "flow", "prior_options": {"kind": "spline_coupling", "n_transforms": 2}},
    ),
    ("prior: factorized", {"prior": "factorized"}),
    ("prior: diffusion (T=200)", {"prior": "diffusion", "prior_options": {"T": 200}}),
    ("B dense", {"structure": "dense", "prior": "empirical"}),
    ("C joint", {"structure": "joint", "prior": "empirical"}),
    ("D reverse", {"structure": "reverse"}),
    ("E reverse-factorized", {"structure": "reverse-factorized"}),
]


def held_out_nll(model: sp.SEDGEModel, test, name: str) -> float:
    """Per-row held-out NLL of one component in raw units (DDPM loss for diffusion)."""
    t = model.tensors(test)
    cols = model.columns
    with torch.no_grad():
        if name == "prior":
            prior = model.prior
            if not prior.has_log_prob:
                if hasattr(prior, "loss"):
                    return float(prior.loss(t["X"]).mean())
                return float("nan")
            jac = sum(np.log(cols[x].std) for x in model.features)
            return float(-(prior.log_prob(t["X"]) - jac).mean())
        if name in model.specs:
            idx = [model.features.index(f) for f in model.context_of(name)]
            lp = model.likelihood(name).log_prob(t[name], t["X"][:, idx])
            jac = np.log(cols[name].std) if cols[name].kind == "continuous" else 0.0
            return float(-(lp - jac).mean())
        comp = model.components[name]
        if name == "joint":
            zs = torch.cat([t[z] for z in model.specs], dim=1)
            jac = sum(np.log(cols[z].std) for z in model.specs)
            return float(-(comp.log_prob(zs, t["X"]) - jac).mean())
        if name == "reverse":
            jac = sum(np.log(cols[x].std) for x in model.features)
            return float(-(comp.log_prob(t["X"], t["Z"]) - jac).mean())
        j = model.features.index(name)
        return float(-(comp.log_prob(t["X"][:, j : j + 1], t["Z"]) - np.log(cols[name].std)).mean())


BUDGETS = [("2,000 steps, batch 256 (before)", {"steps": 2000, "batch_size": 256}), ("default", {})]


def compare_budgets(args: argparse.Namespace) -> None:
    """The default budget against the fixed 2,000 steps, per size, seed and component."""
    fresh = sp.datasets.paper_synthetic(12_000, seed=10_000).seen.head(10_000)
    rows = []
    for size in [int(n) for n in args.sizes.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            data = sp.datasets.paper_synthetic(size, seed=seed)
            for label, budget in BUDGETS:
                model = sp.SEDGEModel(data.graph)
                start = time.perf_counter()
                model.fit(data.seen, seed=seed, progress=False, threads=args.threads, **budget)
                total = time.perf_counter() - start
                for name, h in model.history.items():
                    rows.append(
                        {
                            "size": size,
                            "rows": len(data.seen),
                            "seed": seed,
                            "budget": label,
                            "component": name,
                            "max_steps": h["max_steps"],
                            "steps": h["steps"],
                            "batch_size": h["batch_size"],
                            "seconds": round(h["seconds"], 2),
                            "fit_seconds": round(total, 2),
                            "history_nll": round(h["best_val"], 4),
                            "fresh_nll": round(held_out_nll(model, fresh, name), 4),
                        }
                    )
                    r = rows[-1]
                    print(
                        f"{size:6d} seed {seed} {label:32s} {name:6s} {r['steps']:5d}/"
                        f"{r['max_steps']:5d} steps {r['seconds']:7.2f} s  history NLL "
                        f"{r['history_nll']:.4f}  fresh NLL {r['fresh_nll']:.4f}"
                    )
    print(
        "\n| size (Seen rows) | component | budget | steps run / budget | seconds "
        "| history NLL | fresh NLL |\n|---|---|---|---|---|---|---|"
    )
    seeds = sorted({r["seed"] for r in rows})
    for size in sorted({r["size"] for r in rows}):
        for name in dict.fromkeys(r["component"] for r in rows if r["size"] == size):
            for label, _ in BUDGETS:
                cell = [
                    r
                    for r in rows
                    if (r["size"], r["component"], r["budget"]) == (size, name, label)
                ]
                seen = "/".join(str(r["rows"]) for r in cell)
                steps = "/".join(f"{r['steps']}" for r in cell) + f" / {cell[0]['max_steps']}"
                cols = [
                    f"{size} ({seen})",
                    name,
                    label,
                    steps,
                    f"{np.mean([r['seconds'] for r in cell]):.1f}",
                    f"{np.mean([r['history_nll'] for r in cell]):.4f}",
                    f"{np.mean([r['fresh_nll'] for r in cell]):.4f}",
                ]
                print("| " + " | ".join(cols) + " |")
    print(
        f"\nmeans over seeds {seeds} (steps per seed); {args.threads} torch thread(s); NLL per "
        "row: history = best held-out value during the fit (normalised units), fresh = 10,000 "
        "new Seen rows (raw units)."
    )
    out = Path(args.out).with_name("fit_defaults.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"threads": args.threads, "torch": torch.__version__}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="population rows simulated")
    parser.add_argument("--steps", type=int, default=2000, help="SVI steps per component")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/fit_speed.json")
    parser.add_argument("--sizes", help="compare step budgets at these population sizes")
    parser.add_argument("--seeds", default="0,1", help="seeds of --sizes")
    args = parser.parse_args()
    if args.sizes:
        compare_budgets(args)
        return

    seen, oracle, graph = sp.datasets.paper_synthetic(args.rows, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    test_mask = rng.random(len(seen)) < 0.1
    train, test = seen[~test_mask].reset_index(drop=True), seen[test_mask].reset_index(drop=True)
    rows = []
    for label, config in CONFIGS:
        model = sp.SEDGEModel(graph, **config)
        start = time.perf_counter()
        model.fit(
            train,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            progress=False,
            threads=args.threads,
        )
        total = time.perf_counter() - start
        for name, h in model.history.items():
            if label.startswith("prior") and name != "prior":
                continue
            if (
                not label.startswith("prior")
                and name == "prior"
                and config.get("prior") == "empirical"
            ):
                continue
            rows.append(
                {
                    "config": label,
                    "component": name,
                    "steps": h.get("steps", 0),
                    "seconds": round(h.get("seconds", 0.0), 2),
                    "held_out_nll": round(held_out_nll(model, test, name), 4),
                    "stopped_early": h.get("stopped_early", False),
                    "config_seconds": round(total, 2),
                }
            )
            r = rows[-1]
            print(f"{label:34s} {name:8s} {r['seconds']:7.2f} s  NLL {r['held_out_nll']:.4f}")
    header = "| config | component | steps | fit s | held-out NLL (nats/row) |"
    print("\n" + header + "\n|---|---|---|---|---|")
    for r in rows:
        cells = [r["config"], r["component"], r["steps"], r["seconds"], r["held_out_nll"]]
        print("| " + " | ".join(map(str, cells)) + " |")
    print(
        f"\n{len(train)} training rows, {len(test)} held out; {args.threads} torch thread(s); "
        f"{args.steps} max steps, batch {args.batch_size}, lr {args.lr}; diffusion: DDPM loss."
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "rows": args.rows,
        "train": len(train),
        "test": len(test),
        "threads": args.threads,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
