"""Issue 7 (Sec. 5.2, App. D.2 at laptop scale): novel attribute combinations of images.

Usage: ``python benchmarks/images.py [--seeds 3] [--first-seed 0] [--quick] [--no-pool] [--jobs 1]
[--device cpu] [--out PATH] [--merge JSON ...]``.

Runs :func:`sedge_pyro.experiments.images.image_experiment` (what ``sedge images`` runs: concepts
learned by :class:`~sedge_pyro.experiments.ImageSEDGE`, the learned graph, ``identify``, model A
sampled by ``plan``, ``smc``, ``dps`` and annealed ``langevin``, the baselines model B
``smc``, model D ``direct``, Composable Diffusion and the pixel conditional VAE, all judged
by an independent classifier) once per seed, prints each seed's table, the mean and spread
over seeds and each stage's seconds, and writes ``benchmarks/results/images.json`` (with the
device the run used: ``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def one_run(seed: int, quick: bool, pool: bool, threads: int, device: str) -> dict[str, Any]:
    from sedge_pyro.experiments.images import image_experiment
    from sedge_pyro.options import set_threads

    set_threads(threads)
    start = time.perf_counter()
    exp = image_experiment(seed=seed, quick=quick, pool=pool, device=device, progress=False)
    return {
        "seed": seed,
        "graph": {z: list(exp.graph.parents(z)) for z in exp.graph.specs},
        "judge_accuracy_on_real_held_out": exp.judge_accuracy,
        "masks": exp.masks.round(3).to_dict(orient="index"),
        "rows": exp.rows,
        "concept_check": exp.concept_check,
        "warnings": exp.warnings,
        "seconds": {**exp.seconds, "total": time.perf_counter() - start},
    }


def load_runs(path: str) -> list[dict[str, Any]]:
    """The runs of an earlier output: this script's JSON (its ``runs``) or the ``table.json``
    that ``sedge images --out DIR`` writes (one seed).
    """
    data = json.loads(Path(path).read_text())
    if "runs" in data:
        return list(data["runs"])
    keys = ("graph", "judge_accuracy_on_real_held_out", "masks", "rows", "seconds")
    if "config" in data and all(k in data for k in keys):
        run = {k: data[k] for k in keys}
        run["concept_check"] = data.get("concept_check", {})
        run["seconds"] = {**run["seconds"], "total": sum(run["seconds"].values())}
        return [{"seed": data["config"]["seed"], **run, "config": data["config"]}]
    raise SystemExit(f"{path}: neither this script's JSON nor a `sedge images` table.json")


def report(runs: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Print each seed's table, the per-combination joint accuracy and the summary over seeds;
    return the summary and the per-combination table.
    """
    import pandas as pd

    for run in runs:
        table = pd.DataFrame(run["rows"]).set_index(["combo", "method"])
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in run["seconds"].items())
        print(f"\nseed {run['seed']}: graph {run['graph']}; {stages}")
        print(f"judge on real held-out images: {run['judge_accuracy_on_real_held_out']}")
        if run.get("concept_check"):
            print(f"concept check (read-back of recombined blocks): {run['concept_check']}")
        print(table.drop(columns=["seconds"]).round(3).to_string())
    rows = pd.DataFrame([dict(r, seed=run["seed"]) for run in runs for r in run["rows"]])
    per_seed = rows.groupby(["method", "seed"], sort=False)[
        ["joint", "mmd", "diversity", "seconds"]
    ].mean()
    summary = per_seed.groupby("method", sort=False).agg(["mean", "std"])
    combos = rows.groupby(["method", "combo"], sort=False)["joint"].mean().unstack()
    worst = rows.groupby(["method", "combo"], sort=False)["joint"].min().unstack()
    print("\njoint accuracy per held-out combination, mean over seeds:")
    print(combos.round(3).to_string())
    print("\njoint accuracy per held-out combination, worst seed:")
    print(worst.round(3).to_string())
    print("\nover combinations, mean and std over seeds (seconds: drawing and decoding one)")
    print(summary.round(3).to_string())
    return summary, combos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds from this one on")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-pool", dest="pool", action="store_false")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run side by side")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", default=None, help="JSON path (default results/images.json)")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="run nothing: summarise earlier outputs together (this script's JSON or a "
        "`sedge images` table.json per seed)",
    )
    args = parser.parse_args()
    import torch

    start = time.perf_counter()
    threads = max(1, torch.get_num_threads() // args.jobs)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.merge:
        runs = sorted((r for path in args.merge for r in load_runs(path)), key=lambda r: r["seed"])
        if len({r["seed"] for r in runs}) < len(runs):
            raise SystemExit("--merge: two runs of one seed")
    elif args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as ex:
            n = len(seeds)
            runs = list(
                ex.map(
                    one_run,
                    seeds,
                    [args.quick] * n,
                    [args.pool] * n,
                    [threads] * n,
                    [args.device] * n,
                )
            )
    else:
        runs = [one_run(s, args.quick, args.pool, threads, args.device) for s in seeds]
    summary, combos = report(runs)
    wall = time.perf_counter() - start
    print(f"\n{len(runs)} seed(s) in {wall:.0f} s wall ({args.jobs} job(s))")
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / "images.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "pool": args.pool,
                "jobs": args.jobs,
                "device": args.device,
                "merged": args.merge,
                "wall_seconds": None if args.merge else wall,
                "machine": platform.platform(),
                "summary": {
                    method: {f"{k}_{stat}": float(v) for (k, stat), v in r.items()}
                    for method, r in summary.iterrows()
                },
                "per_combination_joint": combos.to_dict(),
                "runs": runs,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
