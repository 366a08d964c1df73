"""The paper's synthetic experiment (Sec. 5.1, Fig. 3, App. D.1) over several seeds.

Usage: ``python benchmarks/paper_synthetic.py [--seeds 5] [--quick] [--threads 2]``.
Prints mean and standard deviation per method and writes
``benchmarks/results/paper_synthetic.json``. Each seed is one run of
:func:`~sedge_pyro.experiments.paper.paper_experiment` (what ``sedge demo`` runs): new data, new
fits, new draws. Columns as in the demo: MMD (bandwidth 1, biased, raw features: the paper's Table 2
magnitude) and its ratio to the finite-sample floor, the standardised median-bandwidth MMD,
spec satisfaction under the true mechanism and its gap to the Oracle's own, the share of draws
outside the true support.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sedge_pyro.experiments.paper import paper_experiment
from sedge_pyro.options import set_threads

METRICS = ["mmd", "mmd_over_floor", "mmd_std", "satisfaction", "satisfaction_gap", "outside"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the demo's --quick sizes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--only", nargs="*", help="method labels, e.g. 'A plan' 'A opt'")
    parser.add_argument("--out", default="benchmarks/results/paper_synthetic.json")
    args = parser.parse_args()
    set_threads(args.threads)  # every fit and sampler of the run

    runs = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        exp = paper_experiment(seed=seed, quick=args.quick, only=args.only, progress=False)
        runs.append(
            {
                "seed": seed,
                "floor": exp.floor,
                "oracle_satisfaction": exp.oracle_satisfaction,
                "rows": exp.rows,
                "config": exp.config,
            }
        )
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)

    keys = [(r["method"], r["target"]) for r in runs[0]["rows"]]
    summary = []
    for method, target in keys:
        per_seed = [
            next(r for r in run["rows"] if r["method"] == method and r["target"] == target)
            for run in runs
        ]
        entry = {"method": method, "target": target}
        for m in METRICS:
            values = np.array([r[m] for r in per_seed], dtype=float)
            entry[m] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1))}
        summary.append(entry)
    floor = np.array([r["floor"] for r in runs])
    sat = np.array([r["oracle_satisfaction"] for r in runs])

    def cell(entry: dict, m: str, fmt: str) -> str:
        return f"{entry[m]['mean']:{fmt}} ± {entry[m]['sd']:{fmt.lstrip('+')}}"

    print()
    print(
        f"{args.seeds} seeds; floor (Oracle vs Oracle) MMD {floor.mean():.4f} ± "
        f"{floor.std(ddof=1):.4f}; Oracle satisfaction {sat.mean():.3f} ± {sat.std(ddof=1):.3f}"
    )
    print()
    print("| method | target | MMD | MMD / floor | MMD (std.) | satisfaction | gap | outside |")
    print("|---|---|---|---|---|---|---|---|")
    for e in summary:
        print(
            f"| {e['method']} | {e['target']} | {cell(e, 'mmd', '.4f')} | "
            f"{cell(e, 'mmd_over_floor', '.2f')} | {cell(e, 'mmd_std', '.4f')} | "
            f"{cell(e, 'satisfaction', '.3f')} | {cell(e, 'satisfaction_gap', '+.3f')} | "
            f"{cell(e, 'outside', '.3f')} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "seeds": args.seeds,
        "quick": args.quick,
        "threads": args.threads,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": platform.platform(),
        "torch": torch.__version__,
    }
    out.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
