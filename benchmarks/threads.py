"""Fit and sampling time against torch's CPU threads, on an idle and on a busy machine.

Usage: ``python benchmarks/threads.py [--rows 5000] [--steps 300] [--draws 2000]
[--threads 1,2,0] [--burners 0,1] [--repeats 3] [--image-steps 20]``.
Prints a Markdown table of medians and writes ``benchmarks/results/threads.json``.

Thread count ``0`` is torch's own default (one per core, read before anything changes it).
The busy case starts ``--burners`` background Python processes that spin (``while True:
pass``), the way another job shares the machine, and kills them afterwards. Each cell is:

- ``fit``: a default :class:`~sedge_pyro.SEDGEModel` (flow prior, Gaussian likelihoods,
  64-64 MLPs) on ``paper_synthetic(rows)``, ``--steps`` SVI steps per component, batch 256;
- ``plan``: ``--draws`` draws of the paper's novel target with ``method="plan"`` from that
  model;
- ``image fit``: ``--image-steps`` steps of a small :class:`~sedge_pyro.experiments.ImageSEDGE`
  (32-pixel shapes, width 16, batch 64), a model with convolutions, where threads can pay;
  ``--image-steps 0`` skips it.

Repeats rotate the order of the thread counts, so drift in the other load spreads evenly;
the table reports medians and the JSON keeps every time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sedge_pyro as sp
from sedge_pyro.options import default_threads

#: torch's default intra-op threads, read before anything sets them
TORCH_DEFAULT = torch.get_num_threads()
TARGET = {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)}


def burners(count: int) -> list[subprocess.Popen]:
    """Start ``count`` processes that spin on one core each."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def one_cell(data: Any, images: Any, threads: int, args: argparse.Namespace) -> dict[str, float]:
    """Seconds of one fit, one plan sample and (optionally) one image fit on ``threads``."""
    out = {}
    model = sp.SEDGEModel(data.graph)
    start = time.perf_counter()
    model.fit(data.seen, steps=args.steps, seed=0, progress=False, threads=threads)
    out["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    model.sample(TARGET, n=args.draws, method="plan", seed=0, threads=threads)
    out["plan"] = time.perf_counter() - start
    if images is not None:
        net = sp.experiments.ImageSEDGE(2, size=32, width=16)
        start = time.perf_counter()
        net.fit(
            images.images, images.labels, steps=args.image_steps, progress=False, threads=threads
        )
        out["image fit"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="paper_synthetic rows")
    parser.add_argument("--steps", type=int, default=300, help="SVI steps per component")
    parser.add_argument("--draws", type=int, default=2000, help="plan draws")
    parser.add_argument("--threads", default="1,2,0", help="thread counts; 0: torch's default")
    parser.add_argument("--burners", default="0,1", help="spinning processes per case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-steps", type=int, default=20, help="0 skips the image fit")
    parser.add_argument("--out", default="benchmarks/results/threads.json")
    args = parser.parse_args()
    counts = list(dict.fromkeys(int(t) or TORCH_DEFAULT for t in args.threads.split(",")))
    notes = {TORCH_DEFAULT: "torch default", default_threads(): "sedge-pyro default"}
    labels = {c: f"{c} ({notes[c]})" if c in notes else f"{c}" for c in counts}
    data = sp.datasets.paper_synthetic(args.rows, seed=0)
    images = sp.datasets.shapes(256, size=32, seed=0) if args.image_steps else None
    one_cell(data, images, 1, args)  # warm up imports and caches
    raw: list[dict[str, Any]] = []
    load: dict[int, float] = {}
    for busy in [int(b) for b in args.burners.split(",")]:
        # the 1-minute load average just before a case: what else was running
        load[busy] = os.getloadavg()[0]
        procs = burners(busy)
        try:
            time.sleep(1.0 if busy else 0.0)
            for r in range(args.repeats):
                order = counts[r % len(counts) :] + counts[: r % len(counts)]
                for c in order:
                    cell = one_cell(data, images, c, args)
                    raw.append({"burners": busy, "threads": c, "repeat": r, **cell})
                    print(
                        f"burners {busy} threads {c:2d} repeat {r}: "
                        + ", ".join(f"{k} {v:.2f} s" for k, v in cell.items())
                    )
        finally:
            stop(procs)
    tasks = [k for k in raw[0] if k not in ("burners", "threads", "repeat")]
    rows = []
    for busy in sorted({r["burners"] for r in raw}):
        for c in counts:
            cells = [r for r in raw if r["burners"] == busy and r["threads"] == c]
            rows.append(
                {"burners": busy, "threads": c}
                | {k: round(statistics.median(r[k] for r in cells), 2) for k in tasks}
            )
    header = "| machine | threads | " + " | ".join(f"{k} s" for k in tasks) + " |"
    print("\n" + header + "\n|---|---|" + "---|" * len(tasks))
    for row in rows:
        busy = row["burners"]
        where = f"load {load[busy]:.1f}" + (f" + {busy} spinning" if busy else "")
        cells = [where, labels[row["threads"]]] + [f"{row[k]:.2f}" for k in tasks]
        print("| " + " | ".join(cells) + " |")
    print(
        f"\nmedians of {args.repeats}; {os.cpu_count()} cores, torch default {TORCH_DEFAULT} "
        f"threads; fit: paper_synthetic({args.rows}), {args.steps} steps per component; plan: "
        f"{args.draws} draws; load: the 1-minute load average before each case."
    )
    meta = {
        "rows": args.rows,
        "steps": args.steps,
        "draws": args.draws,
        "image_steps": args.image_steps,
        "repeats": args.repeats,
        "cores": os.cpu_count(),
        "torch_default_threads": TORCH_DEFAULT,
        "load_average_before": load,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "medians": rows, "raw": raw}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
