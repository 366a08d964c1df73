"""Issue 7 (Sec. 5.2, App. D.2 at laptop scale): novel attribute combinations of images.

Usage: ``python benchmarks/images.py [--seeds 3] [--quick] [--no-pool]``.

Each seed draws :func:`sedge_pyro.datasets.shapes` (labelled training images with the held-out
combinations removed, S = 1), fits :class:`sedge_pyro.models.image.ImageSEDGE` (image concepts
from pixels with masked attribute heads; with ``--pool`` default, also an unlabelled pool of
images of every combination as the backbone's broad data, App. D.2), reads the graph off the
masks, encodes the training images, and for every held-out combination

* ``identify``'s verdict on the learned graph;
* **sedge-pyro**: model A (``SEDGEModel``, categorical heads, DDPM prior over concepts)
  sampled with ``plan`` and ``dps`` (``langevin`` needs a prior with a density, so a flow
  prior: not run yet);
* **baselines**, same concepts and decoder: ``dense`` (model B: every concept feeds every
  attribute, the unstructured product of experts, sampled with ``dps``) and ``reverse``
  (model D, :math:`p(X \\mid Z)` as a conditional flow, sampled ``direct``);
* ``recombine``: the factorisation ``plan`` follows, done by hand on the encoded rows (shape
  concepts of a circle image, colour concepts of a blue one, the rest of the circle's): the
  ceiling of block recombination with this representation;

decodes the concepts and scores the images with an independent judge
(:class:`~sedge_pyro.models.judge.AttributeClassifier`, trained on its own draw of every
combination): accuracy of each target attribute and joint accuracy, MMD in the judge's
feature space to real images of that combination, and diversity (mean pairwise feature
distance relative to real images of the combination).

Writes ``benchmarks/results/images.json`` and prints one table per seed and the mean.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


def _score(judge: Any, images: np.ndarray, combo: dict[str, str], ref: np.ndarray) -> dict:
    from sedge_pyro.diagnostics import mmd

    pred = judge.predict(images)
    hit = np.ones(len(pred), bool)
    out: dict[str, Any] = {}
    for attr, value in combo.items():
        ok = (pred[attr].astype(str) == value).to_numpy()
        out[attr] = float(ok.mean())
        hit &= ok
    out["joint"] = float(hit.mean())
    f, r = judge.features(images), judge.features(ref)
    out["mmd"] = float(mmd(f, r))

    def spread(a: np.ndarray) -> float:
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        return float(d.sum() / (len(a) * (len(a) - 1)))

    out["diversity"] = spread(f[:200]) / spread(r[:200])
    return out


def one_run(seed: int, quick: bool, pool: bool) -> dict[str, Any]:
    import pandas as pd
    import torch

    import sedge_pyro as sp
    from sedge_pyro.datasets import shapes
    from sedge_pyro.models.image import ImageSEDGE
    from sedge_pyro.models.judge import AttributeClassifier

    n, steps, draws, fit_steps = (3000, 1500, 100, 500) if quick else (6000, 3000, 200, 1500)
    t0 = time.perf_counter()
    data = shapes(n, seed=seed)
    unlabelled = shapes(n, seed=seed + 1000, held_out=()).images if pool else None
    torch.manual_seed(seed)
    vae = ImageSEDGE().fit(
        data.images, data.labels, pool=unlabelled, steps=steps, seed=seed, progress=False
    )
    t_vae = time.perf_counter() - t0
    attrs = list(vae.attributes)
    selected = sorted({a for c in data.held_out for a in c})
    graph = vae.learned_graph(selection_parents=selected)
    x = vae.encode(data.images)
    df = pd.concat([x, data.labels[attrs].astype(str)], axis=1)
    own = shapes(4000, seed=seed + 2000, held_out=())  # the judge's own draw, every combination
    judge = AttributeClassifier().fit(own.images, own.labels, progress=False)
    real = shapes(3000, seed=seed + 3000, held_out=())

    t1 = time.perf_counter()
    model_a = sp.SEDGEModel(graph, likelihood="categorical", prior="diffusion")
    model_a.fit(df, steps=fit_steps, seed=seed, progress=False)
    dense_graph = sp.SpecGraph.from_parents(
        {a: list(vae.feature_names) for a in attrs}, selection_parents=selected
    )
    model_b = sp.SEDGEModel(dense_graph, likelihood="categorical", prior="diffusion")
    model_b.fit(df, steps=fit_steps, seed=seed, progress=False)
    model_d = sp.SEDGEModel(graph, structure="reverse", prior="empirical")
    model_d.fit(df, steps=fit_steps, seed=seed, progress=False)
    t_fit = time.perf_counter() - t1

    masks = vae.masks()
    rows = []
    for combo in data.held_out:
        ref = real.images[np.all([real.labels[a].eq(v).to_numpy() for a, v in combo.items()], 0)]
        res = sp.identify(graph, target=dict(combo), seen=df)
        gens: dict[str, np.ndarray] = {}
        for method in ("plan", "dps"):
            s = model_a.sample(dict(combo), n=draws, method=method, seed=seed)
            gens[method] = s.to_dataframe()[list(vae.feature_names)].to_numpy()
        gens["dense dps"] = (
            model_b.sample(dict(combo), n=draws, method="dps", seed=seed)
            .to_dataframe()[list(vae.feature_names)]
            .to_numpy()
        )
        try:
            s = model_d.sample(dict(combo), n=draws, method="direct", seed=seed)
            gens["reverse direct"] = s.to_dataframe()[list(vae.feature_names)].to_numpy()
        except sp.SedgeError as err:
            print(f"reverse direct for {combo}: {err}")
        # block recombination by hand: every attribute's concepts from a row with its value
        rng = np.random.default_rng(seed)
        rec = x.to_numpy()[rng.integers(0, len(x), draws)]
        for attr, value in combo.items():
            rows_a = np.flatnonzero(df[attr].eq(value).to_numpy())
            cols = (masks.loc[attr] > 0.5).to_numpy()
            rec[:, cols] = x.to_numpy()[rng.choice(rows_a, draws)][:, cols]
        gens["recombine"] = rec
        for method, xs in gens.items():
            score = _score(judge, vae.decode(xs), combo, ref)
            print(f"  {'+'.join(combo.values())} {method}: joint {score['joint']:.3f}", flush=True)
            rows.append(
                {
                    "combo": "+".join(combo.values()),
                    "method": method,
                    "status": str(res.status),
                    **score,
                }
            )
        rows.append(
            {
                "combo": "+".join(combo.values()),
                "method": "real images",
                "status": str(res.status),
                **_score(judge, ref[:draws], combo, ref[draws:]),
            }
        )
    return {
        "seed": seed,
        "pool": pool,
        "graph": {a: list(graph.parents(a)) for a in attrs},
        "masks": masks.round(3).to_dict(),
        "rows": rows,
        "seconds": {"vae": t_vae, "fit": t_fit, "total": time.perf_counter() - t0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-pool", dest="pool", action="store_false")
    args = parser.parse_args()
    import pandas as pd

    runs = []
    for seed in range(args.seeds):
        run = one_run(seed, args.quick, args.pool)
        runs.append(run)
        table = pd.DataFrame(run["rows"]).set_index(["combo", "method"])
        print(f"\nseed {seed}: graph {run['graph']}; {run['seconds']['total']:.0f} s")
        print(table.round(3).to_string())
    allrows = pd.DataFrame([r for run in runs for r in run["rows"]])
    mean = allrows.groupby("method")[["joint", "mmd", "diversity"]].agg(["mean", "std"])
    print("\nover seeds and held-out combinations:")
    print(mean.round(3).to_string())
    out = Path(__file__).parent / "results" / "images.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "pool": args.pool,
                "machine": platform.platform(),
                "runs": runs,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
