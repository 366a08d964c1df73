"""Generation and scoring of the image experiment: every method's images of each held-out
combination, read by the judge (see :mod:`sedge_pyro.experiments.images`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.diagnostics import mmd
from sedge_pyro.errors import SedgeError
from sedge_pyro.experiments.image_outputs import METHODS
from sedge_pyro.graph import SpecGraph
from sedge_pyro.identify import identify

#: sampler options per method: DPS guidance 1.0, inside the range of the paper's Fig. 11
#: (0.1-1.5; the default 0.1 left the draws close to the prior's); annealed Langevin with the
#: DDPM prior's scores (a flow prior on the near one-hot aligned concepts is degenerate);
#: ``smc`` with its defaults
SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {
    "A dps": {"guidance": 1.0},
    "A langevin": {"kind": "annealed"},
}


#: Composable Diffusion's weight: of 1, 2 and 3, the best joint accuracy on two seen
#: combinations (circle+red, square+blue; seed 0: 0.955 and 0.92 at 1, 0.58-0.88 at 3)
COMPOSED_GUIDANCE = 1.0


def score_images(
    judge: Any, images: np.ndarray, combo: dict[str, str], reference: np.ndarray
) -> dict[str, float]:
    """The judge's verdict on generated images of one combination.

    :param judge: a fitted :class:`~sedge_pyro.experiments.AttributeClassifier`.
    :param images: generated images ``(N, 3, size, size)``.
    :param combo: attribute -> asked-for value.
    :param reference: real images of the combination.
    :returns: each attribute's accuracy, ``joint`` (all at once), ``mmd`` (in the judge's
        feature space, to ``reference``) and ``diversity`` (mean pairwise feature distance
        over that of ``reference``, up to 200 images each).
    """
    pred = judge.predict(images)
    hit = np.ones(len(pred), bool)
    out: dict[str, float] = {}
    for attr, value in combo.items():
        ok = (pred[attr].astype(str) == value).to_numpy()
        out[attr] = float(ok.mean())
        hit &= ok
    out["joint"] = float(hit.mean())
    f, r = judge.features(images), judge.features(reference)
    out["mmd"] = float(mmd(f, r))

    def spread(a: np.ndarray) -> float:
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        return float(d.sum() / max(len(a) * (len(a) - 1), 1))

    out["diversity"] = spread(f[:200]) / max(spread(r[:200]), 1e-12)
    return out


def _combo_name(combo: dict[str, str]) -> str:
    return "+".join(combo.values())


def _generate(
    data: Any,
    graph: SpecGraph,
    df: pd.DataFrame,
    concept_samplers: Mapping[str, tuple[Any, str]],
    generators: Mapping[str, Any],
    judge: Any,
    draws: int,
    seed: int,
    dev: Any,
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], np.ndarray]]:
    """Every method's images of every held-out combination, scored by the judge; the real
    images' own figures (one half against the other) as the row ``real``.

    :returns: the table's rows and the first images of each (combination, method).
    """
    rows: list[dict[str, Any]] = []
    kept: dict[tuple[str, str], np.ndarray] = {}
    for combo in data.held_out:
        name = _combo_name(combo)
        hit = [data.held_labels[a].astype(str).eq(v).to_numpy() for a, v in combo.items()]
        reference = data.held_images[np.all(hit, axis=0)]
        status = str(identify(graph, target=dict(combo), seen=df).status)
        kept[name, "real"] = reference[:8]
        for label, _ in METHODS:
            row, shown = _one_method(
                label,
                combo,
                reference,
                status,
                concept_samplers,
                generators,
                judge,
                draws,
                seed,
                dev,
                say,
            )
            rows.append(row)
            kept[name, label] = shown
        # the real images' own figures: one half of them scored against the other
        half = len(reference) // 2
        score = score_images(judge, reference[:half], combo, reference[half:])
        rows.append({"combo": name, "method": "real", "status": status, **score, "seconds": 0.0})
    return rows, kept


def _one_method(
    label: str,
    combo: Mapping[str, str],
    reference: np.ndarray,
    status: str,
    concept_samplers: Mapping[str, tuple[Any, str]],
    generators: Mapping[str, Any],
    judge: Any,
    draws: int,
    seed: int,
    dev: Any,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], np.ndarray]:
    """One method's images of one combination and their scores (a failed method is a row).

    :returns: the table row and the first images, for the figure.
    """
    name = _combo_name(combo)
    vae = generators["decoder"]
    start = time.perf_counter()
    try:
        if label == "CVAE":
            images = generators["CVAE"].sample(combo, draws, seed=seed)
        elif label == "composed":
            composed = generators["composed"]
            x_new = composed.sample(combo, draws, guidance=COMPOSED_GUIDANCE, seed=seed)
            images = vae.decode(x_new)
        else:
            model, method = concept_samplers[label]
            s = model.sample(
                dict(combo),
                n=draws,
                method=method,
                seed=seed,
                device=dev,
                progress=False,
                **SAMPLER_OPTIONS.get(label, {}),
            )
            images = vae.decode(s.to_dataframe()[list(vae.feature_names)].to_numpy())
    except SedgeError as err:
        # one method failing on one target (e.g. plan without overlap) is a result
        say(f"  {name:<16} {label:<11} failed: {err}")
        nan = {a: math.nan for a in combo} | {"joint": 0.0, "mmd": math.nan}
        row = {
            "combo": name,
            "method": label,
            "status": status,
            **nan,
            "diversity": math.nan,
            "seconds": time.perf_counter() - start,
            "error": str(err),
        }
        return row, np.zeros((0, *reference.shape[1:]), np.float32)
    took = time.perf_counter() - start
    score = score_images(judge, images, combo, reference)
    say(f"  {name:<16} {label:<11} joint accuracy {score['joint']:.3f}")
    return {"combo": name, "method": label, "status": status, **score, "seconds": took}, images[:8]
