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

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sedge_pyro import datasets
from sedge_pyro.diagnostics import mmd as mmd_of
from sedge_pyro.diagnostics import mmd_floor, pair_plot
from sedge_pyro.errors import OptionError, SedgeError
from sedge_pyro.examples import EXAMPLES
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


@dataclass
class Experiment:
    """What :func:`paper_experiment` measured.

    :ivar rows: one dict per method and target kind (the table).
    :ivar config: the settings of the run.
    :ivar floor: the finite-sample MMD floor (bandwidth 1, biased).
    :ivar floor_std: the same for the standardised, median-bandwidth MMD.
    :ivar oracle_satisfaction: the Oracle rows' own spec satisfaction.
    :ivar identification: the :class:`~sedge_pyro.Identification` of the event target.
    :ivar samples: row label -> :class:`~sedge_pyro.Samples`.
    :ivar data: the simulated :class:`~sedge_pyro.datasets.SyntheticData`.
    :ivar reference: the Oracle rows every method is scored against.
    """

    rows: list[dict[str, Any]]
    config: dict[str, Any]
    floor: float
    floor_std: float
    oracle_satisfaction: float
    identification: Any
    samples: dict[str, Any] = field(repr=False)
    data: Any = field(repr=False)
    reference: pd.DataFrame = field(repr=False)

    @property
    def best(self) -> dict[str, Any]:
        """The row with the lowest MMD among methods with no draw outside the support."""
        inside = [r for r in self.rows if r["outside"] == 0] or self.rows
        return min(inside, key=lambda r: r["mmd"])


def _row_key(label: str, target: str) -> str:
    return f"{label} [{target}]"


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
    runs = RUNS
    if only is not None:
        labels = {r[0] for r in RUNS}
        unknown = [o for o in only if o not in labels]
        if unknown:
            raise OptionError(f"only names {unknown[0]!r}: expected labels among {sorted(labels)}")
        runs = [r for r in RUNS if r[0] in only]
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
        models[label] = SEDGEModel(data.graph, **options).fit(seen, progress=progress, **fit_kw)
        fit_seconds[label] = time.perf_counter() - start

    sampler_options = {
        "svi": {"steps": 600} if quick else {},
        "langevin": {"warmup": 300} if quick else {},
    }
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
    config = {
        "rows": rows,
        "draws": draws,
        "seed": seed,
        "steps": steps,
        "quick": quick,
        "only": list(only) if only is not None else None,
        "seen_rows": len(seen),
        "oracle_rows": len(oracle),
        "torch": torch.__version__,
        "sedge_pyro": __version__,
    }
    return Experiment(
        table, config, floor, floor_std, oracle_sat, identification, samples, data, reference
    )


def table_markdown(exp: Experiment) -> str:
    """The experiment's table as Markdown, the reference rows first."""
    lines = [
        "| method | target | MMD | MMD / floor | MMD (std.) | satisfaction | outside | "
        "fit s | sample s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| Oracle rows (floor) | - | {exp.floor:.4f} | 1.00 | {exp.floor_std:.4f} | "
        f"{exp.oracle_satisfaction:.3f} | 0.000 | | |",
    ]
    for r in exp.rows:
        lines.append(
            f"| {r['method']} | {r['target']} | {r['mmd']:.4f} | {r['mmd_over_floor']:.2f} | "
            f"{r['mmd_std']:.4f} | {r['satisfaction']:.3f} | {r['outside']:.3f} | "
            f"{r['fit_seconds']:.1f} | {r['sample_seconds']:.2f} |"
        )
    return "\n".join(lines)


def figure(exp: Experiment) -> Any:
    """Fig. 3 style: an X1-X3 panel per method (Seen grey, Oracle orange, draws blue) and a
    3-D view of Seen, Oracle and the best method.
    """
    from matplotlib.figure import Figure

    keys = list(exp.samples)
    cols = 4
    panels = len(keys) + 1
    nrows = math.ceil(panels / cols)
    fig = Figure(figsize=(4 * cols, 3.6 * nrows), layout="constrained")
    seen = exp.data.seen
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, cols, i + 1)
        pair_plot(seen, exp.samples[key], exp.reference, pairs=[("x1", "x3")], ax=ax)
        ax.set_title(key, fontsize=9)
        if i:
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
    best = exp.best
    ax3 = fig.add_subplot(nrows, cols, panels, projection="3d")
    rng = np.random.default_rng(0)
    for frame, color, label in (
        (seen, "0.6", "seen"),
        (exp.reference, "tab:orange", "oracle"),
        (exp.samples[_row_key(best["method"], best["target"])].to_dataframe(), "tab:blue", "best"),
    ):
        sub = frame.iloc[rng.permutation(len(frame))[:1000]]
        ax3.scatter(sub["x1"], sub["x2"], sub["x3"], s=2, color=color, alpha=0.4, label=label)
    ax3.set_xlabel("x1")
    ax3.set_ylabel("x2")
    ax3.set_zlabel("x3")
    ax3.set_title(f"3-D: {best['method']} [{best['target']}]", fontsize=9)
    return fig


def write_outputs(exp: Experiment, out: str | Path, *, force: bool = False) -> Path:
    """Write ``table.md``, ``table.json``, ``figure.png``, ``best.nc`` and ``run.json``.

    :raises SedgeError: when ``out`` holds another run's results (different settings) and
        ``force`` is false, or ``out`` is a file.
    """
    path = Path(out)
    stamp = path / "run.json"
    refuse_other_run(path, _comparable(exp.config), force)
    path.mkdir(parents=True, exist_ok=True)
    (path / "table.md").write_text(table_markdown(exp) + "\n")
    payload = {
        "config": exp.config,
        "floor": exp.floor,
        "floor_std": exp.floor_std,
        "oracle_satisfaction": exp.oracle_satisfaction,
        "rows": exp.rows,
    }
    (path / "table.json").write_text(json.dumps(payload, indent=2))
    fig = figure(exp)
    fig.savefig(path / "figure.png", dpi=110)
    best = exp.best
    exp.samples[_row_key(best["method"], best["target"])].save(path / "best.nc", overwrite=True)
    stamp.write_text(json.dumps({"config": _comparable(exp.config)}, indent=2))
    return path


def refuse_other_run(path: Path, config: dict[str, Any], force: bool) -> None:
    """Refuse to write into ``path`` when it is a file, or a non-empty folder whose
    ``run.json`` stamp does not hold ``config`` (each key the same), unless ``force``.

    :raises SedgeError: naming the folder and the way out (``--force`` or another ``--out``).
    """
    if path.exists() and not path.is_dir():
        raise SedgeError(f"--out {str(path)!r} is a file: expected a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        stamp = path / "run.json"
        previous = _stamped_config(stamp) if stamp.is_file() else None
        if previous is None or any(previous.get(k) != v for k, v in config.items()):
            raise SedgeError(
                f"{str(path)!r} holds a different run: pass --force to replace it, or --out "
                "another folder"
            )


def _stamped_config(stamp: Path) -> dict[str, Any]:
    """The ``config`` object of a ``run.json`` stamp.

    :raises SedgeError: naming the file when it is not a JSON object with a ``config`` object.
    """
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    config = data.get("config", {}) if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise SedgeError(
            f"{str(stamp)!r} is not a run stamp (a JSON object with a 'config' object): pass "
            "--force to replace the folder's run, or --out another folder"
        )
    return config


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("torch", "sedge_pyro")}


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
