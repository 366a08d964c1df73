"""The result of the paper's synthetic experiment (:class:`Experiment`) and its outputs: the
table as Markdown, the figure, and the output folder with a stamp of the run's configuration
(see :mod:`sedge_pyro.experiments.paper`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.diagnostics import pair_plot
from sedge_pyro.errors import SedgeError


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
