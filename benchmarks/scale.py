"""Scale: fitting from Parquet files of 10^4 to 10^7 rows, in one process or several (gloo).

Usage::

    python benchmarks/scale.py [--rows 1e4,1e5,1e6,1e7] [--features 3,10] [--nproc 1,2]
        [--device cpu] [--steps 1000] [--frame-rows 1e6]

Each dataset is made by the package's own generator (:func:`sedge_pyro.datasets.synthetic`:
uniform features, ``max(2, d // 4)`` continuous specifications over overlapping windows of
features, linear and tanh links, uniform noise) in chunks of 10^6 rows and written to Parquet
(row groups of 65,536) under ``benchmarks/results/scale-data/``. Each cell runs in fresh
processes (``python -m torch.distributed.run`` for several), fits a ``SEDGEModel`` with
Gaussian likelihoods and a Gaussian prior for ``--steps`` steps per component from the file
(or, up to ``--frame-rows`` rows, also from the same rows read into a DataFrame), then draws
with ``plan`` (4 chains of 1,000, spread over the processes). It reports:

- ``scan s``: the checking pass over the file (statistics, held-out and kept rows);
- ``rows/s``: training rows consumed per second while fitting (steps x batch x processes /
  the components' fit seconds), and ``epoch s``: the seconds one pass over the training rows
  would take at that rate;
- ``fit RSS``: the largest resident memory of any process of the cell (``ru_maxrss``) by the
  end of the fit, and ``peak RSS`` by the end of the cell (scoring and sampling included);
- ``NLL``: per-row negative log-likelihood of 20,000 fresh rows (raw units);
- ``draws/s`` of ``plan``.

Prints a Markdown table, writes ``benchmarks/results/scale.json`` and a figure
``benchmarks/results/scale.png`` (epoch time and peak memory against rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
RESULTS = Path("benchmarks/results")
DATA = RESULTS / "scale-data"
CHUNK = 1_000_000
TEST_ROWS = 20_000


def problem(d: int):
    """The features, mechanisms and novel region of a ``d``-feature problem."""
    import sedge_pyro as sp
    from sedge_pyro.datasets import Mechanism

    features = {f"x{i + 1}": (0.0, 1.0) for i in range(d)}
    k = max(2, d // 4)
    width = max(2, d // k)
    specs = {}
    for j in range(k):
        start = min(j * (d - width) // max(1, k - 1), d - width) if k > 1 else 0
        parents = tuple(f"x{start + i + 1}" for i in range(width + (1 if start + width < d else 0)))
        weights = tuple(1.0 if i % 2 == 0 else -0.7 for i in range(len(parents)))
        link = "linear" if j % 2 == 0 else "tanh"
        specs[f"z{j + 1}"] = Mechanism(parents, weights, noise=0.3, link=link)
    # the novel corner: both of the first two specs high (each is seen alone)
    return features, specs, {"z1": sp.Interval(low=0.9), "z2": sp.Interval(low=0.75)}


def generate(rows: int, d: int, seed: int = 0) -> tuple[Path, Path]:
    """The Parquet file of ``rows`` seen rows with ``d`` features (made once), its graph."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import sedge_pyro as sp

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"rows{rows}_d{d}.parquet"
    graph_path = DATA / f"graph_d{d}.json"
    features, specs, novel = problem(d)
    if not graph_path.exists():
        graph = sp.datasets.synthetic(100, 0, features=features, specs=specs, novel=novel).graph
        graph_path.write_text(graph.to_json())
    if path.exists():
        return path, graph_path
    tmp = path.with_suffix(".tmp")
    writer, done, chunk = None, 0, 0
    while done < rows:
        want = min(CHUNK, rows - done)
        # the generator drops the novel rows (S = 0): ask for a few more, keep what is needed
        seen = sp.datasets.synthetic(
            int(want * 1.3) + 100,
            seed * 1000 + chunk,
            features=features,
            specs=specs,
            novel=novel,
        ).seen.iloc[:want]
        table = pa.Table.from_pandas(seen, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=65_536)
        done += len(seen)
        chunk += 1
    writer.close()
    tmp.rename(path)
    return path, graph_path


def test_rows(d: int):
    import sedge_pyro as sp

    features, specs, novel = problem(d)
    return sp.datasets.synthetic(
        int(TEST_ROWS * 1.3), 999_999, features=features, specs=specs, novel=novel
    ).seen.iloc[:TEST_ROWS]


def worker(args: argparse.Namespace) -> None:
    """One process of a cell: fit, score, sample; write this rank's figures."""
    import pandas as pd
    import torch

    import sedge_pyro as sp
    from sedge_pyro.inference.distributed import world

    graph = sp.SpecGraph.read(args.graph)
    data = pd.read_parquet(args.data) if args.frame else args.data
    rank = int(os.environ.get("RANK", "0"))
    model = sp.SEDGEModel(graph, likelihood="gaussian", prior="gaussian")
    start = time.perf_counter()
    model.fit(data, steps=args.steps, device=args.device, progress=False)
    total = time.perf_counter() - start
    where = world()
    comp = [h for h in model.history.values() if h.get("steps")]
    fit_s = sum(h["seconds"] for h in comp)
    rows_fed = sum(h["steps"] * h["batch_size"] * where.size for h in comp)
    fit_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    test = test_rows(args.features)
    nll = float(-np.mean(model.log_prob(test)))
    chains, n = 4, 1000
    t0 = time.perf_counter()
    model.sample(problem(args.features)[2], n=n, chains=chains, method="plan")
    sample_s = time.perf_counter() - t0
    train_rows = model.data_rows.get("train_rows", int(0.9 * model.data_rows["rows"]))
    rate = rows_fed / fit_s if fit_s else float("nan")
    out = {
        "rank": rank,
        "scan_s": total - sum(h.get("seconds", 0.0) for h in model.history.values()),
        "fit_s": fit_s,
        "total_s": total,
        "steps": [h["steps"] for h in comp],
        "batch": comp[0]["batch_size"] if comp else 0,
        "rows_per_s": rate,
        "epoch_s": train_rows / rate if rate else float("nan"),
        "fit_rss_mb": fit_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "nll": nll,
        "draws_per_s": chains * n / sample_s,
        "threads": torch.get_num_threads(),
    }
    Path(f"{args.out}.rank{rank}.json").write_text(json.dumps(out))


def cell(path: Path, graph: Path, d: int, nproc: int, frame: bool, args) -> dict:
    """Run one cell in fresh processes and gather their figures."""
    stem = RESULTS / f"scale-cell-{os.getpid()}"
    for old in RESULTS.glob(f"{stem.name}.rank*.json"):
        old.unlink()
    script = [str(HERE), "--worker", "--data", str(path), "--graph", str(graph)]
    script += ["--features", str(d), "--steps", str(args.steps), "--device", args.device]
    script += ["--out", str(stem)] + (["--frame"] if frame else [])
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            *script,
        ]
    else:
        cmd = [sys.executable, *script]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(cmd, check=True, env=env)
    ranks = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"{stem.name}.rank*.json"))]
    for p in RESULTS.glob(f"{stem.name}.rank*.json"):
        p.unlink()
    main = next(r for r in ranks if r["rank"] == 0)
    return dict(
        main,
        fit_rss_mb=max(r["fit_rss_mb"] for r in ranks),
        peak_rss_mb=max(r["peak_rss_mb"] for r in ranks),
    )


def figure(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    keys = sorted({(r["features"], r["nproc"], r["source"]) for r in rows})
    for key in keys:
        sel = sorted(
            (r for r in rows if (r["features"], r["nproc"], r["source"]) == key),
            key=lambda r: r["rows"],
        )
        label = f"d={key[0]}, {key[1]} proc, {key[2]}"
        axes[0].plot([r["rows"] for r in sel], [r["epoch_s"] for r in sel], "o-", label=label)
        axes[1].plot([r["rows"] for r in sel], [r["fit_rss_mb"] for r in sel], "o-", label=label)
    names = ["seconds per pass over the rows", "peak RSS while fitting (MB)"]
    for ax, name in zip(axes, names, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training rows")
        ax.set_ylabel(name)
    axes[1].axhline(2048, color="grey", ls=":", lw=1)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e4,1e5,1e6,1e7")
    parser.add_argument("--features", default="3,10")
    parser.add_argument("--nproc", default="1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--frame-rows",
        type=float,
        default=1e6,
        help="also fit from a DataFrame up to this many rows",
    )
    parser.add_argument("--out", default=str(RESULTS / "scale.json"))
    # one process of a cell
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--graph", help=argparse.SUPPRESS)
    parser.add_argument("--frame", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.features = int(args.features)
        worker(args)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_rows = []
    header = (
        "| rows | d | procs | source | scan s | fit s | rows/s | epoch s | peak RSS MB "
        "| NLL | draws/s |"
    )
    print(header)
    print("|" + "---|" * 12)
    for d in [int(v) for v in args.features.split(",")]:
        for n in [int(float(v)) for v in args.rows.split(",")]:
            path, graph = generate(n, d)
            for nproc in [int(v) for v in args.nproc.split(",")]:
                sources = ["parquet"] + (["frame"] if n <= args.frame_rows and nproc == 1 else [])
                for source in sources:
                    r = cell(path, graph, d, nproc, source == "frame", args)
                    r.update(rows=n, features=d, nproc=nproc, source=source)
                    out_rows.append(r)
                    print(
                        f"| {n:.0e} | {d} | {nproc} | {source} | {r['scan_s']:.1f} | "
                        f"{r['fit_s']:.1f} | {r['rows_per_s']:,.0f} | {r['epoch_s']:,.1f} | "
                        f"{r['fit_rss_mb']:,.0f} | {r['peak_rss_mb']:,.0f} | {r['nll']:.4f} | "
                        f"{r['draws_per_s']:,.0f} |",
                        flush=True,
                    )
                    Path(args.out).write_text(
                        json.dumps({"meta": meta(args), "rows": out_rows}, indent=2)
                    )
    figure(out_rows, Path(args.out).with_suffix(".png"))


def meta(args: argparse.Namespace) -> dict:
    import torch

    return {
        "steps": args.steps,
        "device": args.device,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": "SEDGEModel(likelihood='gaussian', prior='gaussian')",
    }


if __name__ == "__main__":
    main()
