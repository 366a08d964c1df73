"""Small-sample generative benchmark: priors p(X) fit on 100 to 500 rows, scored on held-out rows.

Usage: ``python benchmarks/small_sample.py [--seeds 3] [--sizes 100 200 500]
[--datasets digits var] [--methods ...] [--draws 500] [--threads 1] [--jobs 1] [--quick]
[--out benchmarks/results/small_sample.json]`` (needs scikit-learn: ``pip install -e '.[bench]'``).

Two 64-dimensional data sets: scikit-learn's 8 x 8 ``digits`` (dequantized, scaled to [0, 1))
and ``var``, a stationary VAR(2) series of 4 channels x 16 steps. For every (data set,
``n_train``, seed) cell each prior in :data:`METHODS` is set up on the training rows
(standardised per feature by the training mean and standard deviation), fit with
:func:`~sedge_pyro.inference.fit.fit_component` when it has parameters (10% of the rows held
out for early stopping), sampled ``--draws`` times, and the draws, mapped back to raw units, are
scored against held-out rows by :func:`mmd2`, :func:`marginal_kl`, :func:`dependence_error`,
:func:`diversity` and :func:`memorisation`. Two reference rows per cell: ``held-out (floor)``,
fresh held-out rows disjoint from those scored against (what a perfect generator scores), and
``train rows (copy)``, the training rows themselves (what pure memorisation scores).

Prints, per data set and ``n_train``, a Markdown table of the mean +- standard deviation over
seeds, a line per data set naming the methods with a lower MMD^2 than the dual-divergence prior
at ``n_train = 200``, and writes every cell's row to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

#: held-out rows every method is scored against (the same rows for every method in a cell)
N_SCORE = 500
#: std floor when standardising (some digit pixels are nearly constant)
STD_FLOOR = 1e-3
#: reference rows added to every cell's table
FLOOR, COPY = "held-out (floor)", "train rows (copy)"

# --------------------------------------------------------------------------- data sets


def digits(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8 x 8 digits (1797 x 64, integers 0..16), dequantized and split.

    Each value gets ``U(0, 1)`` noise and is divided by 17, so it lies in [0, 1). A seeded
    permutation gives ``n_train`` training rows; the test rows are the next ``n_test`` of the
    others (all of them when fewer remain).
    """
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    rng = np.random.default_rng(seed)
    x = (x + rng.uniform(size=x.shape)) / 17.0
    if not 0 < n_train < len(x):
        raise ValueError(f"n_train={n_train}: digits has {len(x)} rows")
    order = rng.permutation(len(x))
    train, test = order[:n_train], order[n_train:][:n_test]
    return x[train].astype(np.float32), x[test].astype(np.float32)


#: VAR(2) shape: channels x time steps (flattened channel-major to 64 features), burn-in steps
VAR_CHANNELS, VAR_STEPS, VAR_BURN_IN = 4, 16, 50
#: spectral radius the VAR(2) companion matrix is scaled to
VAR_RADIUS = 0.85


@functools.lru_cache(maxsize=1)
def var_coefficients() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed VAR(2) process: ``(A1, A2, Sigma)``, the same for every run seed.

    ``A1`` and ``A2`` are drawn with seed 12345 (entries ``N(0, 0.4^2)`` and ``N(0, 0.2^2)``),
    then scaled as ``c A1``, ``c^2 A2``, which multiplies every eigenvalue of the companion
    matrix ``[[A1, A2], [I, 0]]`` by ``c``, so that its spectral radius is ``VAR_RADIUS``
    (checked below 0.95: stationary). The innovations are ``N(0, Sigma)`` with
    ``Sigma_ij = s_i s_j 0.6^|i - j|``, ``s = (1, 0.8, 1.2, 0.6)``.
    """
    k = VAR_CHANNELS
    rng = np.random.default_rng(12345)
    a1, a2 = rng.normal(0.0, 0.4, (k, k)), rng.normal(0.0, 0.2, (k, k))

    def radius(a1: np.ndarray, a2: np.ndarray) -> float:
        companion = np.block([[a1, a2], [np.eye(k), np.zeros((k, k))]])
        return float(np.max(np.abs(np.linalg.eigvals(companion))))

    c = VAR_RADIUS / radius(a1, a2)
    a1, a2 = c * a1, c * c * a2
    rho = radius(a1, a2)
    if not rho < 0.95:
        raise AssertionError(f"VAR(2) companion spectral radius {rho:.3f}: expected < 0.95")
    s = np.array([1.0, 0.8, 1.2, 0.6])
    lag = np.abs(np.subtract.outer(np.arange(k), np.arange(k)))
    sigma = np.outer(s, s) * 0.6**lag
    return a1, a2, sigma


def var_series(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent sequences of the stationary VAR(2) :func:`var_coefficients`, raw units.

    Each sequence starts at zero, runs ``VAR_BURN_IN`` steps and keeps the next
    ``VAR_STEPS``; a row is the ``channels x time`` array flattened row-major (channel-major:
    feature ``c * 16 + t``). ``n_train + n_test`` sequences drawn with ``seed``; the first
    ``n_train`` are the training rows.
    """
    a1, a2, sigma = var_coefficients()
    rng = np.random.default_rng(seed)
    n, k = n_train + n_test, VAR_CHANNELS
    chol = np.linalg.cholesky(sigma)
    prev2, prev1 = np.zeros((n, k)), np.zeros((n, k))
    kept = []
    for step in range(VAR_BURN_IN + VAR_STEPS):
        x = prev1 @ a1.T + prev2 @ a2.T + rng.standard_normal((n, k)) @ chol.T
        prev2, prev1 = prev1, x
        if step >= VAR_BURN_IN:
            kept.append(x)
    rows = np.stack(kept, axis=2).reshape(n, k * VAR_STEPS)  # (n, channel, time) flattened
    return rows[:n_train].astype(np.float32), rows[n_train:].astype(np.float32)


DATASETS: dict[str, Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]] = {
    "digits": digits,
    "var": var_series,
}

# --------------------------------------------------------------------------- methods


def _fit(steps: int, quick_steps: int, quick: bool) -> dict[str, Any]:
    return {"steps": quick_steps if quick else steps, "batch_size": 128, "lr": 1e-3}


def gaussian(dim: int, quick: bool) -> tuple[Any, dict[str, Any] | None]:
    """Full-covariance Gaussian, closed-form fit."""
    from sedge_pyro.models.priors import GaussianPrior

    return GaussianPrior(dim), None


def flow(dim: int, quick: bool) -> tuple[Any, dict[str, Any] | None]:
    """RealNVP: 4 affine coupling layers, conditioners 128-128."""
    from sedge_pyro.models.priors import FlowPrior

    prior = FlowPrior(dim, kind="affine_coupling", n_transforms=4, hidden=(128, 128))
    return prior, _fit(2000, 300, quick)


def ddpm(dim: int, quick: bool) -> tuple[Any, dict[str, Any] | None]:
    """DDPM, T = 200, epsilon network 256-256, linear schedule.

    The cosine schedule's last step (beta_T = 0.999) divides by sqrt(alpha_T) = 0.03 on the
    first reverse step, which turns a small noise-prediction error at t = T into draws of
    spread ~100 when the network is fit on a few hundred 64-dim rows; the linear schedule
    does not.
    """
    from sedge_pyro.models.priors import DiffusionPrior

    prior = DiffusionPrior(dim, T=200, schedule="linear", hidden=(256, 256))
    return prior, _fit(4000, 400, quick)


def dual(dim: int, quick: bool) -> tuple[Any, dict[str, Any] | None]:
    """The dual-divergence prior with its defaults (DV, direct), sampled by gradient walks."""
    from sedge_pyro.models import DualDivergencePrior

    return DualDivergencePrior(dim), _fit(2000, 300, quick)


def dual_path(dim: int, quick: bool) -> tuple[Any, dict[str, Any] | None]:
    """The dual-divergence prior with the path-based estimate (4 local divergences)."""
    from sedge_pyro.models import DualDivergencePrior

    return DualDivergencePrior(dim, path_steps=4), _fit(2000, 300, quick)


#: name -> factory(dim, quick) returning (prior, fit_component options or None: no fitting)
METHODS: dict[str, Callable[[int, bool], tuple[Any, dict[str, Any] | None]]] = {
    "gaussian": gaussian,
    "flow": flow,
    "ddpm": ddpm,
    "dual": dual,
    "dual-path4": dual_path,
    "dual-langevin": dual,
}
#: run unless --methods names them (dual-langevin: ~1 min of sampling per cell, see docs)
DEFAULT_METHODS = ["gaussian", "flow", "ddpm", "dual", "dual-path4"]
#: methods that sample another method's fitted prior (fit once per cell) instead of their own
SHARES_FIT = {"dual-langevin": "dual"}
#: extra keyword arguments to ``prior.sample``
SAMPLE_OPTIONS: dict[str, dict[str, Any]] = {"dual-langevin": {"method": "langevin"}}


def available(name: str) -> str | None:
    """``None`` when the method's prior class imports, else why not."""
    try:
        METHODS[name](2, True)
    except ImportError as e:
        return str(e)
    return None


# --------------------------------------------------------------------------- metrics


def mmd2(g: np.ndarray, h: np.ndarray) -> float:
    """Squared MMD of ``g`` against ``h``: :func:`sedge_pyro.diagnostics.mmd`, Gaussian kernel,
    median pooled pairwise distance as bandwidth, unbiased (can dip below 0), raw units.
    """
    from sedge_pyro.diagnostics import mmd

    return float(mmd(g, h, bandwidth="median", unbiased=True, standardize=False).mmd2)


def marginal_kl(g: np.ndarray, h: np.ndarray, bins: int = 20) -> float:
    """Mean over features of ``KL(H_j || G_j)`` in nats between 1-D histograms.

    ``bins`` equal-width bins over the pooled range ``[min, max]`` of both samples, 0.5 added
    to every bin count before normalising; a feature constant in both samples contributes 0.
    """
    values = []
    for j in range(h.shape[1]):
        lo = min(h[:, j].min(), g[:, j].min())
        hi = max(h[:, j].max(), g[:, j].max())
        if not hi > lo:
            values.append(0.0)
            continue
        edges = np.linspace(lo, hi, bins + 1)
        p = np.histogram(h[:, j], edges)[0] + 0.5
        q = np.histogram(g[:, j], edges)[0] + 0.5
        p, q = p / p.sum(), q / q.sum()
        values.append(float(np.sum(p * np.log(p / q))))
    return float(np.mean(values))


def gaussian_mi(x: np.ndarray) -> np.ndarray:
    """Pairwise Gaussian mutual information ``-0.5 log(1 - rho^2)`` (nats) of the columns.

    ``rho`` is the Pearson correlation, clipped to ``|rho| <= 0.999``; a constant column has
    ``rho = 0`` with every other.
    """
    std = x.std(axis=0)
    z = np.zeros_like(x, dtype=np.float64)
    ok = std > 0
    z[:, ok] = (x[:, ok] - x[:, ok].mean(axis=0)) / std[ok]
    rho = np.clip(z.T @ z / len(x), -0.999, 0.999)
    return -0.5 * np.log1p(-(rho**2))


def dependence_error(g: np.ndarray, h: np.ndarray) -> float:
    """Mean over feature pairs ``i < j`` of ``|I_G(i, j) - I_H(i, j)|``, :func:`gaussian_mi`."""
    i, j = np.triu_indices(h.shape[1], k=1)
    return float(np.mean(np.abs(gaussian_mi(g)[i, j] - gaussian_mi(h)[i, j])))


def diversity(g: np.ndarray, h: np.ndarray) -> float:
    """Mean pairwise Euclidean distance within ``g`` over the same within ``h`` (1: as diverse
    as the held-out rows; below 1: collapsed, above 1: over-dispersed).
    """
    return float(pdist(g).mean() / pdist(h).mean())


def memorisation(g: np.ndarray, r: np.ndarray, h_m: np.ndarray) -> dict[str, float]:
    """How close the draws ``g`` sit to the training rows ``r`` compared with fresh rows.

    ``h_m`` holds held-out rows, as many as ``r``, so that both nearest-neighbour searches run
    over equally many rows. Per draw, ``d_train`` is its Euclidean nearest-neighbour distance
    to ``r`` and ``d_test`` to ``h_m``.

    * ``nn_ratio = median(d_train) / median(d_test)``: about 1 for draws from the data
      distribution; below 1, the draws sit closer to the training rows than to fresh data
      (memorisation).
    * ``copy_rate``: the fraction of draws with ``d_train`` below half the median
      nearest-neighbour distance from the rows of ``h_m`` to ``r`` (near copies).
    """
    d_train = cKDTree(r).query(g)[0]
    d_test = cKDTree(h_m).query(g)[0]
    threshold = 0.5 * float(np.median(cKDTree(r).query(h_m)[0]))
    return {
        "nn_ratio": float(np.median(d_train) / np.median(d_test)),
        "copy_rate": float(np.mean(d_train < threshold)),
    }


def score(g: np.ndarray, r: np.ndarray, h: np.ndarray, h_m: np.ndarray) -> dict[str, float]:
    """Every metric of draws ``g`` (raw units) against held-out ``h``, training rows ``r`` and
    the memorisation subset ``h_m``.
    """
    g, r, h, h_m = (np.asarray(a, dtype=np.float64) for a in (g, r, h, h_m))
    return {
        "mmd2": mmd2(g, h),
        "marginal_kl": marginal_kl(g, h),
        "dependence_error": dependence_error(g, h),
        "diversity": diversity(g, h),
        **memorisation(g, r, h_m),
    }


# --------------------------------------------------------------------------- one cell


def run_cell(
    dataset: str,
    n_train: int,
    seed: int,
    methods: list[str],
    draws: int,
    quick: bool,
    threads: int,
) -> list[dict[str, Any]]:
    """Fit, sample and score every method on one (data set, n_train, seed); the rows."""
    import pyro
    import torch

    from sedge_pyro.inference.fit import fit_component
    from sedge_pyro.options import set_threads

    set_threads(threads)
    train, test = DATASETS[dataset](n_train, N_SCORE + draws, seed)
    if len(test) < N_SCORE + 2:
        raise ValueError(f"{dataset}: {len(test)} test rows: need more than {N_SCORE}")
    h, h_ref = test[:N_SCORE], test[N_SCORE : N_SCORE + draws]
    rng = np.random.default_rng(seed)
    # memorisation compares equally many training and held-out rows: all the training rows
    # up to len(h) of them, a random subset beyond
    m = min(n_train, len(h))
    r_m = train if m == n_train else train[rng.choice(n_train, m, replace=False)]
    h_m = h[rng.choice(len(h), m, replace=False)]
    base = {"dataset": dataset, "n_train": n_train, "seed": seed}

    mean = train.mean(axis=0)
    std = np.maximum(train.std(axis=0), STD_FLOOR)
    x = torch.as_tensor((train - mean) / std, dtype=torch.float32)

    rows: list[dict[str, Any]] = []
    fitted: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name in methods:
        row: dict[str, Any] = {**base, "method": name}
        try:
            owner = SHARES_FIT.get(name, name)
            if owner not in fitted:
                start = time.perf_counter()
                # network initialisation draws from the global RNGs: seed them per method, so
                # a method's result does not depend on which methods ran before it
                pyro.set_rng_seed(seed)
                prior, fit = METHODS[owner](x.shape[1], quick)
                prior.setup(x)
                info: dict[str, Any] = {"fit_steps": 0}
                if prior.trainable and fit is not None:
                    history = fit_component(
                        prior,
                        prior.model,
                        (x,),
                        name=f"{owner} {dataset} n={n_train} seed={seed}",
                        seed=seed,
                        progress=False,
                        **fit,
                    )
                    info = {
                        "fit_steps": history.steps,
                        "best_step": history.best_step,
                        "best_val": history.best_val,
                        "stopped_early": history.stopped_early,
                    }
                prior.eval()
                info["fit_seconds"] = time.perf_counter() - start
                fitted[owner] = (prior, info)
            prior, info = fitted[owner]
            row.update(info)
            if owner != name:
                row["fit_shared_with"] = owner
            start = time.perf_counter()
            gen = torch.Generator().manual_seed(seed)
            s = prior.sample(draws, generator=gen, **SAMPLE_OPTIONS.get(name, {}))
            row["sample_seconds"] = time.perf_counter() - start
            g = s.detach().cpu().double().numpy() * std + mean
            finite = np.isfinite(g).all(axis=1)
            row["nonfinite_draws"] = int((~finite).sum())
            row.update(score(g[finite], r_m, h, h_m) if finite.sum() >= 2 else {})
        except Exception as e:  # a failing method must not lose the cell's other methods
            row["error"] = f"{type(e).__name__}: {e}"
            print(
                f"{dataset} n={n_train} seed={seed} {name} failed:\n{traceback.format_exc()}",
                file=sys.stderr,
                flush=True,
            )
        rows.append(row)
        secs = row.get("fit_seconds", 0.0) + row.get("sample_seconds", 0.0)
        print(
            f"{dataset} n={n_train} seed={seed} {name}: mmd2 {row.get('mmd2', math.nan):.2e}, "
            f"{secs:.1f} s",
            flush=True,
        )
    rows.append({**base, "method": FLOOR, **score(h_ref, r_m, h, h_m)})
    rows.append({**base, "method": COPY, **score(train, r_m, h, h_m)})
    return rows


# --------------------------------------------------------------------------- report

#: (row key, column header, format) of the printed tables
COLUMNS = [
    ("mmd2", "MMD²", ".2e"),
    ("marginal_kl", "marginal KL", ".3f"),
    ("dependence_error", "dependence err.", ".4f"),
    ("diversity", "diversity", ".3f"),
    ("nn_ratio", "nn_ratio", ".3f"),
    ("copy_rate", "copy_rate", ".3f"),
    ("seconds", "seconds", ".1f"),
]


def _values(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    if key == "seconds":
        out = [
            r["fit_seconds"] + r["sample_seconds"]
            for r in rows
            if "fit_seconds" in r and "sample_seconds" in r
        ]
    else:
        out = [r[key] for r in rows if r.get(key) is not None]
    return np.asarray(out, dtype=np.float64)


def _cell(values: np.ndarray, fmt: str) -> str:
    if values.size == 0:
        return "–"
    if values.size == 1:
        return format(values[0], fmt)
    return f"{format(values.mean(), fmt)} ± {format(values.std(ddof=1), fmt)}"


def print_tables(rows: list[dict[str, Any]], methods: list[str]) -> None:
    """A Markdown table per (data set, n_train): mean ± std over seeds per method."""
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for n in sorted({r["n_train"] for r in rows if r["dataset"] == dataset}):
            cell = [r for r in rows if r["dataset"] == dataset and r["n_train"] == n]
            seeds = len({r["seed"] for r in cell})
            print(f"\n### {dataset}, n_train = {n} ({seeds} seed(s), mean ± std)\n")
            print("| method | " + " | ".join(c[1] for c in COLUMNS) + " |")
            print("|---" * (len(COLUMNS) + 1) + "|")
            for method in [*methods, FLOOR, COPY]:
                mine = [r for r in cell if r["method"] == method]
                if not mine:
                    continue
                failed = sum("error" in r for r in mine)
                label = method + (f" ({failed} failed)" if failed else "")
                cells = [_cell(_values(mine, key), fmt) for key, _, fmt in COLUMNS]
                print(f"| {label} | " + " | ".join(cells) + " |")


def summary_lines(rows: list[dict[str, Any]], n_train: int = 200) -> list[str]:
    """Per data set at ``n_train``: the methods with a lower mean MMD² than each dual sampler."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        cell = [r for r in rows if r["dataset"] == dataset and r["n_train"] == n_train]
        if not cell:
            continue
        means = {
            m: float(_values([r for r in cell if r["method"] == m], "mmd2").mean())
            for m in dict.fromkeys(r["method"] for r in cell)
            if _values([r for r in cell if r["method"] == m], "mmd2").size
        }
        duals = [d for d in ("dual", "dual-langevin") if d in means]
        if not duals:
            lines.append(f"{dataset}, n_train={n_train}: no dual sampler ran")
        for d in duals:
            lower = [m for m, v in means.items() if v < means[d] and m not in (d, FLOOR, COPY)]
            lines.append(
                f"{dataset}, n_train={n_train}: lower MMD² than {d} ({means[d]:.2e}): "
                + (", ".join(f"{m} ({means[m]:.2e})" for m in lower) or "none")
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. seeds - 1")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS)
    parser.add_argument("--draws", type=int, default=500, help="generated rows per method")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per cell")
    parser.add_argument("--jobs", type=int, default=1, help="cells run side by side")
    parser.add_argument("--quick", action="store_true", help="fewer fit steps (smoke runs)")
    parser.add_argument("--out", default="benchmarks/results/small_sample.json")
    args = parser.parse_args()
    import sklearn
    import torch

    start = time.perf_counter()
    methods, skipped = [], {}
    for name in dict.fromkeys(args.methods):
        why = available(name)
        if why is None:
            methods.append(name)
        else:
            skipped[name] = why
            print(f"skipping {name}: {why}", flush=True)
    cells = [
        (d, n, s) for d in args.datasets for n in sorted(args.sizes) for s in range(args.seeds)
    ]
    extra = (methods, args.draws, args.quick, args.threads)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as ex:
            futures = [ex.submit(run_cell, *c, *extra) for c in cells]
            rows = [row for f in futures for row in f.result()]
    else:
        rows = [row for c in cells for row in run_cell(*c, *extra)]
    wall = time.perf_counter() - start

    print_tables(rows, methods)
    print()
    for line in summary_lines(rows):
        print(line)
    print(f"\n{len(cells)} cell(s) in {wall:.0f} s wall ({args.jobs} job(s))")
    meta = {
        **vars(args),
        "methods_run": methods,
        "methods_skipped": skipped,
        "n_score_rows": N_SCORE,
        "std_floor": STD_FLOOR,
        "var_radius": VAR_RADIUS,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "wall_seconds": wall,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: None if v != v else v for k, v in r.items()} for r in rows]  # NaN -> null
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
