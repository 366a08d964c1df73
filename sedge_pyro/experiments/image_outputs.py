"""The result of the image experiment (:class:`ImageExperiment`) and its outputs: the figure of
generated images, the table as Markdown and the output folder (see
:mod:`sedge_pyro.experiments.images`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.experiments.paper import refuse_other_run

#: column order of the table and the figure: (label, description)
METHODS: tuple[tuple[str, str], ...] = (
    ("A plan", "sedge-pyro: model A, the factorisation's plan"),
    ("A smc", "sedge-pyro: model A, DDPM prior, twisted diffusion sampling"),
    ("A dps", "sedge-pyro: model A, DDPM prior, DPS (Algorithm 2)"),
    ("A langevin", "sedge-pyro: model A, DDPM prior, annealed Langevin"),
    ("B smc", "baseline: model B (dense product of experts), twisted diffusion sampling"),
    ("D direct", "baseline: model D, p(X | Z) in concept space"),
    ("composed", "baseline: conditional DDPM, classifier-free guidance, composed experts"),
    ("CVAE", "baseline: conditional VAE p(image | attributes) in pixels"),
)

SEDGE_METHODS = ("A plan", "A smc", "A dps", "A langevin")

#: below this read-back of recombined concept blocks a held-out combination is warned about
#: (:meth:`~sedge_pyro.experiments.ImageSEDGE.check_combinations`; seen combinations read
#: 0.98-1.00 on the full run)
CONCEPT_CHECK_WARN = 0.9


@dataclass
class ImageExperiment:
    """What :func:`image_experiment` measured.

    :ivar rows: one dict per held-out combination and method (the table): ``combo``,
        ``method``, ``status`` (``identify``'s verdict), each target attribute's accuracy,
        ``joint``, ``mmd``, ``diversity``, ``seconds`` (sampling and decoding); a method
        that raised a :class:`~sedge_pyro.SedgeError` for the combination scores joint 0,
        other scores NaN, with the message under ``error``.
    :ivar config: the settings of the run.
    :ivar graph: the learned :class:`~sedge_pyro.SpecGraph`.
    :ivar masks: the concept model's mask probabilities (attributes x concepts).
    :ivar judge_accuracy: the judge's accuracy per attribute on the real held-out images.
    :ivar images: ``(combo, method)`` -> the first generated images, for the figure.
    :ivar seconds: wall-clock time of each stage.
    :ivar concept_check: combination -> the concept model's joint read-back of recombined
        blocks (:meth:`~sedge_pyro.experiments.ImageSEDGE.check_combinations`), measured
        before generation, with no judge.
    """

    rows: list[dict[str, Any]]
    config: dict[str, Any]
    graph: Any
    masks: pd.DataFrame
    judge_accuracy: dict[str, float]
    images: dict[tuple[str, str], np.ndarray] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)
    concept_check: dict[str, float] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """One line per held-out combination whose concept check is below 0.9: the concept
        model may draw it unreliably, and then every concept-space method's images of it are
        capped by the decoder, whatever the sampler. Over 3 seeds of the benchmark the check
        ranked the hardest combination lowest every time, but the threshold gave one hit, one
        false alarm and one miss (``docs/images.md``): a pointer, not a verdict.
        """
        return [
            f"the concept model draws {name} from recombined concept blocks as asked only "
            f"{value:.0%} of the time (its own classifier reading the decoded images back, "
            f"below {CONCEPT_CHECK_WARN:.0%}): every concept-space method's images of {name} "
            "are likely capped by its decoder, whatever the sampler (a pointer, not a "
            f"verdict: look at the images of {name}); refit the concept model (another "
            "seed, more steps or a larger pool) and check again"
            for name, value in self.concept_check.items()
            if value < CONCEPT_CHECK_WARN
        ]

    @property
    def table(self) -> pd.DataFrame:
        """The rows as a DataFrame indexed by ``(combo, method)``."""
        return pd.DataFrame(self.rows).set_index(["combo", "method"])

    @property
    def summary(self) -> pd.DataFrame:
        """Mean over the held-out combinations, per method."""
        cols = ["joint", "mmd", "diversity"]
        return pd.DataFrame(self.rows).groupby("method", sort=False)[cols].mean()

    @property
    def best(self) -> tuple[str, float]:
        """sedge-pyro's method with the highest mean joint accuracy, and that accuracy."""
        s = self.summary["joint"]
        s = s[[m for m in SEDGE_METHODS if m in s.index]]
        return str(s.idxmax()), float(s.max())


def _mosaic(images: np.ndarray, cols: int = 4, rows: int = 2) -> np.ndarray:
    """A ``rows x cols`` grid of ``(3, s, s)`` images as one ``(H, W, 3)`` array, 1 px apart."""
    s = images.shape[-1]
    out = np.ones((rows * (s + 1) - 1, cols * (s + 1) - 1, 3), dtype=np.float32)
    for k, img in enumerate(images[: rows * cols]):
        r, c = divmod(k, cols)
        out[r * (s + 1) : r * (s + 1) + s, c * (s + 1) : c * (s + 1) + s] = np.transpose(
            img, (1, 2, 0)
        )
    return np.clip(out, 0.0, 1.0)


def image_figure(exp: ImageExperiment) -> Any:
    """Fig. 4 style: a row per held-out combination, a column per method (real images first),
    eight generated images per cell, the judge's joint accuracy under each.
    """
    from matplotlib.figure import Figure

    combos = list(dict.fromkeys(r["combo"] for r in exp.rows))
    columns = ["real"] + [m for m, _ in METHODS]
    joint = {(r["combo"], r["method"]): r["joint"] for r in exp.rows}
    status = {r["combo"]: r["status"] for r in exp.rows}
    fig = Figure(figsize=(2.1 * len(columns), 1.45 * len(combos) + 0.6), layout="constrained")
    axes = fig.subplots(len(combos), len(columns), squeeze=False)
    for i, combo in enumerate(combos):
        for j, method in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(_mosaic(exp.images[combo, method]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            failed = len(exp.images[combo, method]) == 0
            ax.set_xlabel("failed" if failed else f"joint {joint[combo, method]:.2f}", fontsize=8)
            if i == 0:
                ax.set_title(method, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{combo.replace('+', ' + ')}\n{status[combo]}", fontsize=8)
    fig.suptitle(
        "held-out combinations (never in training): real images, sedge-pyro and baselines; "
        "joint accuracy by an independent judge",
        fontsize=9,
    )
    return fig


def table_markdown(exp: ImageExperiment) -> str:
    """The per-combination table and the mean over combinations, as Markdown."""
    lines = [
        "| combination | identify | method | joint | "
        + " | ".join(a for a in exp.config["held_out"][0])
        + " | MMD (judge features) | diversity |",
        "|---|---|---|---|" + "---|" * len(exp.config["held_out"][0]) + "---|---|",
    ]
    for r in exp.rows:
        attrs = [f"{r[a]:.3f}" for a in exp.config["held_out"][0]]
        lines.append(
            f"| {r['combo']} | {r['status']} | {r['method']} | {r['joint']:.3f} | "
            + " | ".join(attrs)
            + f" | {r['mmd']:.3f} | {r['diversity']:.2f} |"
        )
    lines += ["", "| method | mean joint accuracy | MMD | diversity |", "|---|---|---|---|"]
    for method, r in exp.summary.iterrows():
        lines.append(f"| {method} | {r['joint']:.3f} | {r['mmd']:.3f} | {r['diversity']:.2f} |")
    if exp.concept_check:
        lines += [
            "",
            "Concept check, before generation (recombined concept blocks decoded and read back "
            "by the concept model's own classifier): "
            + ", ".join(f"{k} {v:.3f}" for k, v in exp.concept_check.items()),
        ]
        lines += [f"- warning: {line}" for line in exp.warnings]
    return "\n".join(lines)


def write_image_outputs(exp: ImageExperiment, out: str | Path, *, force: bool = False) -> Path:
    """Write ``figure.png``, ``table.md``, ``table.json`` and ``run.json`` to ``out``.

    :raises SedgeError: when ``out`` is a file, or holds a different run and ``force`` is
        false.
    """
    path = Path(out)
    key = {"seed": exp.config["seed"], "quick": exp.config["quick"], "pool": exp.config["pool"]}
    refuse_other_run(path, key, force)
    path.mkdir(parents=True, exist_ok=True)
    image_figure(exp).savefig(path / "figure.png", dpi=120)
    (path / "table.md").write_text(table_markdown(exp) + "\n")
    payload = {
        "config": exp.config,
        "graph": {z: list(exp.graph.parents(z)) for z in exp.graph.specs},
        "masks": exp.masks.round(3).to_dict(orient="index"),
        "judge_accuracy_on_real_held_out": exp.judge_accuracy,
        "seconds": exp.seconds,
        "concept_check": exp.concept_check,
        "warnings": exp.warnings,
        "rows": exp.rows,
    }
    (path / "table.json").write_text(json.dumps(payload, indent=2))
    (path / "run.json").write_text(json.dumps({"config": key}, indent=2))
    return path
