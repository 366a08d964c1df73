"""Bias and spread of DualDivergencePrior's divergence estimate on Gaussians of known TC.

Usage: ``python benchmarks/dual_estimator.py [--dims 2 10] [--objectives dv mine nwj]
[--paths 1 4] [--seeds 5] [--steps 2000] [--rows 2000]
[--out benchmarks/results/dual_estimator.json]``

The target is a zero-mean Gaussian in ``d`` dimensions with an equicorrelated correlation
matrix ``R`` (off-diagonal ``rho``, solved by bisection so that the total correlation
``TC = KL(p || prod_j p_j) = -0.5 log det R`` is 0.5 nats for d = 2 and 5 nats for d = 10).
For every (d, objective, path_steps K, seed) a :class:`DualDivergencePrior` (hidden 64-64) is
set up on ``--rows`` rows, fit with :func:`~sedge_pyro.inference.fit.fit_component`, and
``divergence`` is evaluated on 5000 fresh rows. Also recorded: the Pearson correlation of
``log_ratio`` with the analytic log ratio ``log N(z; 0, R) - sum_j log N(z_j; 0, 1)`` on 2000
fresh rows plus 2000 product-of-marginals rows, the fit seconds, steps and best step.

Prints a Markdown table per d, a line per (d, objective) with std and RMSE ratios K / K=1,
and writes every run's row to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: the total correlation (nats) aimed at per dimension; other dimensions interpolate in d
TARGET_TC = {2: 0.5, 10: 5.0}
#: fresh rows for the divergence estimate, and rows of each kind for the log-ratio check
N_FRESH, N_CHECK = 5000, 2000


def equicorrelation(d: int, rho: float) -> np.ndarray:
    """The ``d x d`` correlation matrix with every off-diagonal entry ``rho``."""
    return (1.0 - rho) * np.eye(d) + rho * np.ones((d, d))


def total_correlation(r: np.ndarray) -> float:
    """``-0.5 log det R``: the KL (nats) of ``N(0, R)`` to the product of its marginals."""
    return -0.5 * float(np.linalg.slogdet(r)[1])


def solve_rho(d: int, tc: float) -> float:
    """The ``rho`` in [0, 1) of the equicorrelated ``R`` with total correlation ``tc``."""
    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total_correlation(equicorrelation(d, mid)) < tc else (lo, mid)
    return 0.5 * (lo + hi)


def draw(n: int, chol: torch.Tensor, seed: int) -> torch.Tensor:
    """``n`` float32 rows of ``N(0, L L^T)`` drawn with a generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, chol.shape[0], generator=g, dtype=torch.float64) @ chol.T).float()


def analytic_log_ratio(z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, R) - sum_j log N(z_j; 0, 1)``."""
    z = z.double()
    joint = torch.distributions.MultivariateNormal(torch.zeros(r.shape[0], dtype=r.dtype), r)
    return joint.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)


def run_one(d: int, r: np.ndarray, objective: str, k: int, seed: int, args) -> dict[str, Any]:
    """Fit one prior and measure its estimates; the row."""
    from sedge_pyro.inference import fit_component
    from sedge_pyro.models import DualDivergencePrior

    rt = torch.as_tensor(r)
    chol = torch.linalg.cholesky(rt)
    torch.manual_seed(seed)
    x = draw(args.rows, chol, seed)
    p = DualDivergencePrior(d, objective=objective, path_steps=k, hidden=(64, 64))
    p.setup(x)
    start = time.perf_counter()
    h = fit_component(
        p, p.model, (x,), steps=args.steps, batch_size=256, lr=1e-3, seed=seed, progress=False
    )
    seconds = time.perf_counter() - start
    x_fresh = draw(N_FRESH, chol, 1000 + seed)
    est = p.divergence(x_fresh)
    z_data = draw(N_CHECK, chol, 2000 + seed)
    z_q = p.product_of_marginals(N_CHECK, generator=torch.Generator().manual_seed(3000 + seed))
    z = torch.cat([z_data, z_q])
    with torch.no_grad():
        ours = p.log_ratio(z).double().numpy()
    corr = float(np.corrcoef(ours, analytic_log_ratio(z, rt).numpy())[0, 1])
    return {
        "d": d,
        "objective": objective,
        "path_steps": k,
        "seed": seed,
        "estimate": est,
        "log_ratio_corr": corr,
        "fit_seconds": seconds,
        "steps": h.steps,
        "best_step": h.best_step,
    }


def summarise(rows: list[dict[str, Any]], tc: float, key: str) -> dict[str, float]:
    """Mean, bias, std (ddof 1), RMSE and relative RMSE of ``key`` over the rows."""
    v = np.array([r[key] for r in rows])
    rmse = float(np.sqrt(np.mean((v - tc) ** 2)))
    std = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return {
        "mean": float(v.mean()),
        "bias": float(v.mean() - tc),
        "std": std,
        "rmse": rmse,
        "rel_rmse": rmse / tc,
    }


def report(rows: list[dict[str, Any]], targets: dict[int, dict[str, float]], args) -> list[str]:
    """Print a Markdown table per d; return the K ratio lines."""
    lines = []
    for d, t in targets.items():
        tc = t["tc"]
        print(f"\n### d = {d}, rho = {t['rho']:.4f}, TC = {tc:.3f} nats ({args.seeds} seeds)\n")
        print(
            "| objective | K | TC | mean est | bias | std | RMSE | rel RMSE "
            "| log-ratio corr | fit s | steps (best) |"
        )
        print("|---" * 11 + "|")
        stats = {}
        for obj in args.objectives:
            for k in args.paths:
                mine = [
                    r
                    for r in rows
                    if r["d"] == d and r["objective"] == obj and r["path_steps"] == k
                ]
                s = stats[obj, k] = summarise(mine, tc, "estimate")
                corr = np.mean([r["log_ratio_corr"] for r in mine])
                secs = np.mean([r["fit_seconds"] for r in mine])
                steps = np.mean([r["steps"] for r in mine])
                best = np.mean([r["best_step"] for r in mine])
                print(
                    f"| {obj} | {k} | {tc:.3f} | {s['mean']:.3f} | {s['bias']:+.3f} "
                    f"| {s['std']:.3f} | {s['rmse']:.3f} | {s['rel_rmse']:.3f} | {corr:.3f} "
                    f"| {secs:.1f} | {steps:.0f} ({best:.0f}) |"
                )
        for k in [k for k in args.paths if k > 1 and 1 in args.paths]:
            for obj in args.objectives:
                a, b = stats[obj, k], stats[obj, 1]
                lines.append(
                    f"d={d} {obj}: std(K={k})/std(K=1) = {a['std'] / b['std']:.2f}, "
                    f"RMSE(K={k})/RMSE(K=1) = {a['rmse'] / b['rmse']:.2f}"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 10])
    parser.add_argument(
        "--objectives", nargs="+", choices=["dv", "mine", "nwj"], default=["dv", "mine", "nwj"]
    )
    parser.add_argument("--paths", type=int, nargs="+", default=[1, 4], help="path_steps K")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. seeds - 1")
    parser.add_argument("--steps", type=int, default=2000, help="fit_component steps")
    parser.add_argument("--rows", type=int, default=2000, help="training rows")
    parser.add_argument("--out", default="benchmarks/results/dual_estimator.json")
    args = parser.parse_args()
    from sedge_pyro.options import set_threads

    set_threads(1)
    start = time.perf_counter()
    targets = {}
    for d in args.dims:
        want = TARGET_TC.get(d, float(np.interp(d, [2, 10], [0.5, 5.0])))
        rho = solve_rho(d, want)
        r = equicorrelation(d, rho)
        targets[d] = {"rho": rho, "tc": total_correlation(r), "R": r}
        print(f"d={d}: rho = {rho:.6f}, TC = {targets[d]['tc']:.6f} nats", flush=True)
    rows = []
    for d in args.dims:
        for obj in args.objectives:
            for k in args.paths:
                for seed in range(args.seeds):
                    row = run_one(d, targets[d]["R"], obj, k, seed, args)
                    rows.append(row)
                    print(
                        f"d={d} {obj} K={k} seed={seed}: est {row['estimate']:.3f}, "
                        f"corr {row['log_ratio_corr']:.3f}, {row['fit_seconds']:.1f} s",
                        flush=True,
                    )
    wall = time.perf_counter() - start
    for t in targets.values():
        del t["R"]
    print()
    for line in report(rows, targets, args):
        print(line)
    print(f"\n{len(rows)} fit(s) in {wall:.0f} s wall")
    meta = {
        **vars(args),
        "targets": targets,
        "n_fresh": N_FRESH,
        "n_check": N_CHECK,
        "hidden": [64, 64],
        "batch_size": 256,
        "lr": 1e-3,
        "threads": 1,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "wall_seconds": wall,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
