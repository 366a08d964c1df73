r"""The demo: the paper's synthetic experiment (Sec. 5.1, Fig. 3, App. D.1), end to end.

``sedge demo`` (what ``make demo`` runs) simulates the paper's three-feature, two-spec data,
prints the identification of :math:`p(X \mid Z_1 < 0.8, Z_2 > 1.0)`, fits the models A-E
(sparse, dense, joint, reverse, reverse-factorized) on the Seen rows only, generates samples
for the Oracle's specifications with every applicable method, and scores them against the
Oracle rows, which no model saw:

* **paper targets**: as in the paper, each draw gets the specifications ``(z1, z2)`` of one
  held-out Oracle row (point targets; this uses Oracle information): A, B and C by ``opt``
  (Algorithm 1) and ``dps`` (Algorithm 2), D and E by drawing their ``p(X | Z)``;
* **event target** ``{"z1": Interval(high=0.8), "z2": Interval(low=1.0)}``: the Oracle region
  itself, leak-free: A by ``plan``, ``langevin`` and ``svi``, D and E directly.

Columns: ``MMD`` is the square root of the biased MMD^2 with a Gaussian kernel of bandwidth 1
on raw features (the magnitude of the paper's Table 2) against Oracle rows; ``floor`` is the
same between two disjoint sets of Oracle rows of the same size, so ``MMD / floor`` near 1 is
as good as a finite sample can show; ``MMD (std.)`` uses standardised features and the
median bandwidth; ``satisfaction`` is the mean exact probability, under the true mechanism,
that the specifications of a draw land in the Oracle region (the Oracle's own is the
reference); ``outside`` is the share of draws outside the support of :math:`p(X \mid Z \in
\text{Oracle region})`.

Outputs go to a folder (default ``sedge-demo-out/``): ``table.md``, ``table.json``,
``figure.png`` (Fig. 3 style: X1-X3 views of Seen, Oracle and each method, and a 3-D view) and
``best.nc`` (the InferenceData of the best method). A folder holding a different run is never
overwritten without ``force=True``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sedge_pyro import datasets
from sedge_pyro.diagnostics import mmd as mmd_of
from sedge_pyro.diagnostics import mmd_floor
from sedge_pyro.errors import OptionError, SedgeError
from sedge_pyro.examples import EXAMPLES
from sedge_pyro.experiments.paper_outputs import (  # noqa: F401 (re-exported)
    Experiment,
    _row_key,
    figure,
    refuse_other_run,
    table_markdown,
    write_outputs,
)
from sedge_pyro.expr import Interval, Var
from sedge_pyro.identify import identify
from sedge_pyro.inference.model import SEDGEModel
from sedge_pyro.options import whole
from sedge_pyro.version import __version__

__all__ = [
    "Experiment",
    "identification_table",
    "paper_experiment",
    "run",
    "run_registry",
]

FEATURES = ["x1", "x2", "x3"]
EVENT = {"z1": Interval(high=0.8), "z2": Interval(low=1.0)}

#: model label -> SEDGEModel arguments (likelihoods Gaussian as in App. D.1)
MODELS: dict[str, dict[str, Any]] = {
    "A": {"structure": "sparse", "likelihood": "gaussian", "prior": "empirical"},
    "A+flow": {"structure": "sparse", "likelihood": "gaussian", "prior": "flow"},
    "A+ddpm": {"structure": "sparse", "likelihood": "gaussian", "prior": "diffusion"},
    "B": {"structure": "dense", "likelihood": "gaussian", "prior": "empirical"},
    "B+ddpm": {"structure": "dense", "likelihood": "gaussian", "prior": "diffusion"},
    "C": {"structure": "joint", "prior": "empirical"},
    "C+ddpm": {"structure": "joint", "prior": "diffusion"},
    "D": {"structure": "reverse"},
    "E": {"structure": "reverse-factorized"},
}

#: (row label, model, method, target kind, sampler options)
RUNS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("A opt", "A", "opt", "paper", {}),
    ("A dps", "A+ddpm", "dps", "paper", {}),
    ("B opt", "B", "opt", "paper", {}),
    ("B dps", "B+ddpm", "dps", "paper", {}),
    ("C opt", "C", "opt", "paper", {}),
    ("C dps", "C+ddpm", "dps", "paper", {}),
    ("D direct", "D", "direct", "paper", {}),
    ("E direct", "E", "direct", "paper", {}),
    ("A plan", "A", "plan", "event", {}),
    ("A langevin", "A+flow", "langevin", "event", {}),
    ("A svi", "A+flow", "svi", "event", {}),
    ("D direct", "D", "direct", "event", {}),
    ("E direct", "E", "direct", "event", {}),
]


def paper_experiment(
    *,
    rows: int = 40_000,
    draws: int = 2000,
    seed: int = 0,
    steps: int = 2000,
    quick: bool = False,
    only: Sequence[str] | None = None,
    progress: bool = True,
    stream: TextIO | None = None,
) -> Experiment:
    """Run the paper's synthetic experiment (Sec. 5.1) with every applicable method.

    :param rows: population rows simulated (about 15% are Oracle rows: three disjoint sets of
        ``draws`` Oracle rows are needed, for targets, reference and floor).
    :param draws: draws per method.
    :param seed: seeds the simulation, the fits and the samplers.
    :param steps: SVI steps at most per component (early stopping on held-out NLL).
    :param quick: 12,000 rows, 500 draws, 300 steps, and lighter samplers: the whole run in
        about a minute.
    :param only: row labels to run (e.g. ``["A plan", "A opt"]``; default all).
    :param progress: progress bars (fits and the run over methods).
    :param stream: where to print progress lines (default standard error).
    :returns: an :class:`Experiment`.
    :raises OptionError: for bad sizes or an unknown label in ``only``.
    """
    if quick:
        rows, draws, steps = min(rows, 12_000), min(draws, 500), min(steps, 300)
    for name, value in (("rows", rows), ("draws", draws), ("steps", steps)):
        whole(name, value, expected="a positive whole number")
    runs = _pick_runs(only)
    err = stream or sys.stderr

    data = datasets.paper_synthetic(rows, seed=seed)
    seen, oracle = data.seen, data.oracle
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(oracle))
    if len(oracle) < 3 * draws:
        raise OptionError(
            f"rows={rows} gives {len(oracle)} Oracle rows: need {3 * draws} (targets, reference "
            "and floor, draws each); raise rows or lower draws"
        )
    targets = oracle.iloc[order[:draws]].reset_index(drop=True)
    rest = oracle.iloc[order[draws:]].reset_index(drop=True)[FEATURES]
    reference = rest.iloc[:draws]
    # the floor: the same MMD between two disjoint Oracle samples of `draws` rows, averaged
    # over 20 splits (one split's figure varies by about a third)
    floor = mmd_floor(rest, draws, repeats=20, seed=seed, bandwidth=1.0, unbiased=False)
    floor_std = mmd_floor(rest, draws, repeats=20, seed=seed, standardize=True)
    oracle_sat = float(np.mean(data.region_probability(reference[FEATURES])))
    identification = identify(data.graph, EVENT, seen)

    fit_kw = {"steps": steps, "batch_size": 512, "lr": 3e-3, "seed": seed}
    models, fit_seconds = _fit_models(data, runs, fit_kw, progress, err)
    sampler_options = {
        "svi": {"steps": 600} if quick else {},
        "langevin": {"warmup": 300} if quick else {},
    }
    table, samples = _sample_runs(
        runs,
        models,
        fit_seconds,
        targets,
        data,
        reference,
        (floor, oracle_sat),
        sampler_options,
        draws=draws,
        seed=seed,
        progress=progress,
    )
    sizes = {"rows": rows, "draws": draws, "seed": seed, "steps": steps, "quick": quick}
    config = _config(sizes, only, data)
    return Experiment(
        table, config, floor, floor_std, oracle_sat, identification, samples, data, reference
    )


def _config(sizes: dict[str, Any], only: Sequence[str] | None, data: Any) -> dict[str, Any]:
    """The run's configuration, as stamped in its output folder."""
    return {
        **sizes,
        "only": list(only) if only is not None else None,
        "seen_rows": len(data.seen),
        "oracle_rows": len(data.oracle),
        "torch": torch.__version__,
        "sedge_pyro": __version__,
    }


def _pick_runs(only: Sequence[str] | None) -> Sequence[tuple[Any, ...]]:
    """The rows of :data:`RUNS` named in ``only`` (all when ``None``)."""
    runs = RUNS
    if only is not None:
        labels = {r[0] for r in RUNS}
        unknown = [o for o in only if o not in labels]
        if unknown:
            raise OptionError(f"only names {unknown[0]!r}: expected labels among {sorted(labels)}")
        runs = [r for r in RUNS if r[0] in only]
    return runs


def _fit_models(
    data: Any, runs: Sequence[tuple[Any, ...]], fit_kw: dict[str, Any], progress: bool, err: TextIO
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit each model (A-E) the runs need once, on the Seen rows; with its seconds."""
    needed = list(dict.fromkeys(r[1] for r in runs))
    models: dict[str, Any] = {}
    fit_seconds: dict[str, float] = {}
    for label in needed:
        options = dict(MODELS[label])
        if options.get("prior") == "diffusion":
            options["prior_options"] = {"T": 200}
        start = time.perf_counter()
        if progress:
            print(f"fitting model {label} ...", file=err, flush=True)
        models[label] = SEDGEModel(data.graph, **options).fit(
            data.seen, progress=progress, **fit_kw
        )
        fit_seconds[label] = time.perf_counter() - start
    return models, fit_seconds


def _sample_runs(
    runs: Sequence[tuple[Any, ...]],
    models: dict[str, Any],
    fit_seconds: dict[str, float],
    targets: pd.DataFrame,
    data: Any,
    reference: pd.DataFrame,
    scale: tuple[float, float],
    sampler_options: dict[str, dict[str, Any]],
    *,
    draws: int,
    seed: int,
    progress: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample each run's method and score its draws against the reference Oracle rows.

    :param scale: the MMD floor and the Oracle's own satisfaction, the table's yardsticks.
    :returns: the table's rows and the samples by row key.
    """
    floor, oracle_sat = scale
    table: list[dict[str, Any]] = []
    samples: dict[str, Any] = {}
    bar = tqdm(runs, desc="sampling", disable=not progress, leave=False)
    for label, model_label, method, kind, options in bar:
        bar.set_postfix(method=label, target=kind)
        model = models[model_label]
        target = (
            {"z1": targets["z1"].to_numpy(), "z2": targets["z2"].to_numpy()}
            if kind == "paper"
            else EVENT
        )
        opts = {**sampler_options.get(method, {}), **options}
        s = model.sample(target, n=draws, method=method, seed=seed, **opts)
        v = s.to_dataframe()[FEATURES]
        mmd = float(mmd_of(v, reference[FEATURES], bandwidth=1.0, unbiased=False))
        mmd_std = float(mmd_of(v, reference[FEATURES], standardize=True))
        sat = float(np.mean(data.region_probability(v)))
        outside = float(1.0 - np.mean(data.in_support(v)))
        key = _row_key(label, kind)
        samples[key] = s
        table.append(
            {
                "method": label,
                "target": kind,
                "mmd": mmd,
                "mmd_over_floor": mmd / floor,
                "mmd_std": mmd_std,
                "satisfaction": sat,
                "satisfaction_gap": sat - oracle_sat,
                "outside": outside,
                "fit_seconds": fit_seconds[model_label],
                "sample_seconds": float(s.info["seconds"]),
            }
        )
    bar.close()
    return table, samples


def run(
    *,
    out: str | Path = "sedge-demo-out",
    quick: bool = False,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
) -> Experiment:
    """``sedge demo``: the paper's experiment, printed and written to ``out``."""
    stdout = stream or sys.stdout
    start = time.perf_counter()
    # refuse before the work, not after it
    refuse_other_run(Path(out), {"quick": quick, "seed": seed}, force)
    exp = paper_experiment(quick=quick, seed=seed, progress=progress)
    res = exp.identification
    print("sedge-pyro demo: the paper's synthetic experiment (Sec. 5.1, Fig. 3)", file=stdout)
    print(
        f"{exp.config['seen_rows']} Seen rows (training), {exp.config['oracle_rows']} Oracle "
        f"rows (Z1 < 0.8 and Z2 > 1.0: never seen); {exp.config['draws']} draws per method\n",
        file=stdout,
    )
    print(f"identify p(X | Z1 <= 0.8, Z2 >= 1.0): {res.status.name}", file=stdout)
    print(f"  {res.factorization}\n", file=stdout)
    print(table_markdown(exp), file=stdout)
    path = write_outputs(exp, out, force=force)
    best = exp.best
    print(
        f"\nbest: {best['method']} [{best['target']}], MMD {best['mmd']:.4f} = "
        f"{best['mmd_over_floor']:.2f} x the floor; wrote {path}/ (table.md, table.json, "
        f"figure.png, best.nc) in {time.perf_counter() - start:.0f} s",
        file=stdout,
    )
    return exp


# ------------------------------------------------------------------ the registry's table


def _set(names: Any) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def identification_table(n: int = 2000, seed: int = 0) -> list[dict[str, str]]:
    """Identify every registry example on ``n`` simulated training rows.

    :param n: population rows simulated per example (training rows are those with S = 1).
    :param seed: seed of the simulation.
    :returns: one row per example with keys ``example``, ``reference``, ``target``,
        ``status``, ``checks`` (``ok`` or ``FAIL:`` and the failed assumptions), ``blocks``,
        ``X_c``, ``factorization``.
    """
    rows = []
    for name, ex in EXAMPLES.items():
        target = ", ".join(Var(k, v).to_text() for k, v in ex.target.items())
        row = {"example": name, "reference": ex.reference, "target": target}
        try:
            res = ex.identify(n=n, seed=seed)
        except SedgeError as err:
            row.update(
                status=type(err).__name__, checks="", blocks="", X_c="", factorization=str(err)
            )
            rows.append(row)
            continue
        fac = res.factorization
        failed = [a.name for a, _ in res.failures()]
        row.update(
            status=res.status.name,
            checks="FAIL: " + ", ".join(failed) if failed else "ok",
            blocks=" ".join(_set(b) for b in res.blocks),
            X_c=_set(res.shared) if res.shared else "",
            factorization=("∝ " if fac.proportional else "= ") + str(fac)
            if fac is not None
            else res.reason,
        )
        rows.append(row)
    return rows


def _markdown(rows: list[dict[str, str]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    head = "| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |"
    rule = "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"
    body = ["| " + " | ".join(r[c].ljust(widths[c]) for c in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def run_registry(
    stream: TextIO | None = None, n: int = 2000, seed: int = 0
) -> list[dict[str, str]]:
    """Print the identification table of the example registry (``sedge examples --identify``).

    :param stream: where to print (default standard output).
    :param n: population rows simulated per example.
    :param seed: seed of the simulation.
    :returns: the table's rows.
    """
    out = stream or sys.stdout
    rows = identification_table(n=n, seed=seed)
    print("can p(X | Z_T = z) be built from training rows (S=1)?", file=out)
    print(f"({len(rows)} registry graphs, {n} simulated rows each, seed {seed})\n", file=out)
    columns = ["example", "target", "status", "checks", "blocks", "X_c", "factorization"]
    print(_markdown(rows, columns), file=out)
    print(
        "\nIDENTIFIABLE: every term equals the population's (Thm 1). CONSERVATIVE: exact up to "
        "terms that\nneed the rarity assumption (Thm 3). IMPOSSIBLE: a target value never seen "
        "(Assumption 1).\nchecks: the assumption checks on the simulated rows (FAIL flags the "
        "result).\nDetails: sedge identify EXAMPLE, e.g. `sedge identify fig2b`.",
        file=out,
    )
    return rows
