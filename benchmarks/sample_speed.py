"""Sampling speed of every method on the paper's synthetic problem (Sec. 5.1), CPU.

Usage: ``python benchmarks/sample_speed.py [--rows 20000] [--draws 1000] [--threads 1]``.
Prints a Markdown table and writes ``benchmarks/results/sample_speed.json``.

Three models are fitted once (model A, Gaussian likelihoods): with an empirical prior (for
``plan`` and ``opt``), an affine-coupling flow prior (``langevin`` MALA/ULA, ``svi``, ``nuts``)
and a DDPM prior (``dps``, annealed ``langevin``). Each method then draws for the paper's novel
target ``Z1 <= 0.8, Z2 >= 1.0``, which no training row meets.

Columns: draws per second (all chains), the fraction of draws whose *true* specifications
(simulated from the draws' features with the data-generating equations) meet the target, and
the squared MMD to the Oracle rows (unbiased, so it can dip below 0; features standardised,
median bandwidth); the last row is the Oracle against a disjoint set of its own rows. For
``dps`` and ``langevin`` the ``overhead`` column is the sampler's wall time divided by the time of a
plain torch loop that performs the same network evaluations (forward and gradient, same batch,
same number of steps) and nothing else: 1.0 means the sampler costs no more than its networks.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

import sedge_pyro as sp
from sedge_pyro.options import set_threads

TARGET = {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)}

#: (label, prior, method, chains, options); draws per chain from --draws unless in options
RUNS = [
    ("plan", "empirical", "plan", 1, {}),
    ("opt (Alg. 1)", "empirical", "opt", 1, {}),
    ("langevin MALA", "flow", "langevin", 1, {"kind": "mala"}),
    ("langevin ULA", "flow", "langevin", 1, {"kind": "ula"}),
    ("langevin annealed", "diffusion", "langevin", 1, {"kind": "annealed"}),
    ("dps (Alg. 2)", "diffusion", "dps", 1, {}),
    ("smc (twisted diffusion)", "diffusion", "smc", 1, {}),
    ("svi (flow guide)", "flow", "svi", 1, {}),
    ("nuts", "flow", "nuts", 1, {"n": 200}),
]


def true_satisfaction(x: np.ndarray, rng: np.random.Generator) -> float:
    """Fraction of feature rows whose simulated specs meet ``TARGET`` (App. D.1 equations)."""
    x1, x2, x3 = x[:, 0], x[:, 1], x[:, 2]
    z1 = 0.8 * x1 + 0.6 * x2 + rng.uniform(0.0, 0.2, len(x))
    z2 = 0.6 * x3 + 0.8 * x2 + rng.uniform(0.0, 0.2, len(x))
    return float(np.mean((z1 <= 0.8) & (z2 >= 1.0)))


def bare_cost(model: sp.SEDGEModel, s: sp.Samples) -> float:
    """Seconds of a plain torch loop doing a run's network evaluations and nothing else.

    Per step, on the run's whole batch: ``langevin`` MALA/ULA one forward and backward pass of
    ``log p(x) + l(x)`` (warmup included); annealed ``langevin`` one epsilon-network forward
    and the likelihoods' gradient; ``dps`` one epsilon-network forward, the run's guidance
    loss at Tweedie's x0 and a backward pass through both. No bookkeeping, no checks, no noise;
    evaluated at fixed training rows (the cost does not depend on where).
    """
    from sedge_pyro.inference.target import Problem, Target

    problem = Problem(model, Target(model, TARGET), torch.device("cpu"))
    prior, info, settings = model.prior, s.info, s.settings
    kind = settings.get("kind", s.method)
    if s.method == "langevin" and kind != "annealed":
        steps, batch = int(settings["warmup"]) + int(info["steps"]), s.chains * info["walkers"]
    else:
        steps, batch = int(info["steps"]), s.chains * s.draws
    rows = torch.randint(
        problem.train_x.shape[0], (batch,), generator=torch.Generator().manual_seed(0)
    )
    x0_fixed = problem.train_x[rows]
    t = max(1, prior.T // 2) if hasattr(prior, "T") else 0
    start = time.perf_counter()
    for _ in range(steps):
        # the same evaluations at fixed training rows: the cost, without the dynamics
        x = x0_fixed.detach().clone().requires_grad_(True)
        if kind == "annealed":
            with torch.no_grad():
                eps = prior.eps(x, t)
            (g,) = torch.autograd.grad(problem.log_likelihood(x).sum(), x)
            _ = g - eps
        elif s.method == "dps":
            eps = prior.eps(x, t)
            x0 = prior.predict_x0(x, t, eps=eps)
            loss = problem.target.loss(x0, settings["loss"]).sum()
            (g,) = torch.autograd.grad(loss, x)
            _ = prior.posterior_mean(x, t, eps=eps.detach()) + g
        else:
            torch.autograd.grad(problem.log_density(x).sum(), x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="population rows simulated")
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain")
    parser.add_argument("--steps", type=int, default=2000, help="SVI steps when fitting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="labels to run (substring match)")
    parser.add_argument("--out", default="benchmarks/results/sample_speed.json")
    args = parser.parse_args()
    set_threads(args.threads)

    seen, oracle, graph = sp.datasets.paper_synthetic(args.rows, seed=args.seed)
    runs = [r for r in RUNS if not args.only or any(o in r[0] for o in args.only)]
    models: dict[str, sp.SEDGEModel] = {}
    fit_seconds: dict[str, float] = {}
    for prior in dict.fromkeys(r[1] for r in runs):
        start = time.perf_counter()
        options = {"T": 200} if prior == "diffusion" else None
        models[prior] = sp.SEDGEModel(
            graph, likelihood="gaussian", prior=prior, prior_options=options
        ).fit(seen, steps=args.steps, batch_size=512, lr=3e-3, seed=args.seed, progress=False)
        fit_seconds[prior] = time.perf_counter() - start

    ox = oracle[["x1", "x2", "x3"]].to_numpy()
    rng = np.random.default_rng(args.seed)
    rows = []
    for label, prior, method, chains, options in runs:
        opts = dict(options)
        n = int(opts.pop("n", args.draws))
        model = models[prior]
        s = model.sample(TARGET, n=n, method=method, chains=chains, seed=args.seed, **opts)
        rng = np.random.default_rng(args.seed)  # the same simulation noise for every method
        v = s.to_numpy()
        seconds = float(s.info["seconds"])
        overhead = math.nan
        # a run that fit a surrogate DDPM (a selection-aware target) or refined on another
        # density does other work than the bare loop counts: no overhead figure
        if method in ("dps", "langevin") and "diffusion_fit" not in s.info:
            overhead = seconds / bare_cost(model, s)
        sub = v[rng.permutation(len(v))[: min(len(v), 1000)]]
        rows.append(
            {
                "method": label,
                "prior": prior,
                "draws": int(v.shape[0]),
                "seconds": round(seconds, 3),
                "draws_per_s": round(v.shape[0] / seconds, 1),
                "overhead": None if math.isnan(overhead) else round(overhead, 2),
                "true_satisfaction": round(true_satisfaction(v, rng), 3),
                "mmd2_to_oracle": float(sp.mmd(sub, ox[:1000], standardize=True).mmd2),
            }
        )
        r = rows[-1]
        print(
            f"{label}: {r['draws_per_s']} draws/s, satisfaction {r['true_satisfaction']}",
            flush=True,
        )

    # the reference: Oracle rows themselves (a disjoint set), what a perfect sampler gives
    half = ox[1000:2000] if len(ox) >= 2000 else ox[len(ox) // 2 :]
    rows.append(
        {
            "method": "Oracle rows (truth)",
            "prior": "",
            "draws": len(half),
            "seconds": None,
            "draws_per_s": None,
            "overhead": None,
            "true_satisfaction": round(true_satisfaction(half, rng), 3),
            "mmd2_to_oracle": float(sp.mmd(half, ox[:1000], standardize=True).mmd2),
        }
    )
    print()
    print(
        "| method | prior | draws | s | draws/s | overhead vs bare loop | true satisfaction "
        "| MMD² to Oracle |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ov = "" if r["overhead"] is None else f"{r['overhead']:.2f}"
        sec = "" if r["seconds"] is None else f"{r['seconds']:.2f}"
        rate = "" if r["draws_per_s"] is None else f"{r['draws_per_s']:.0f}"
        print(
            f"| {r['method']} | {r['prior']} | {r['draws']} | {sec} | "
            f"{rate} | {ov} | {r['true_satisfaction']:.3f} | "
            f"{r['mmd2_to_oracle']:.1e} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "rows": args.rows,
        "seen_rows": len(seen),
        "oracle_rows": len(oracle),
        "threads": args.threads,
        "fit_seconds": {k: round(v, 1) for k, v in fit_seconds.items()},
        "machine": platform.platform(),
        "torch": torch.__version__,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
