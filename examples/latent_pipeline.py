"""The latent pipeline end to end (Sec. 4.1, App. B.1): observations in, observations out.

Run ``python examples/latent_pipeline.py`` (about 70 s on 2 CPU cores) or with ``--quick``
(about 50 s). Steps:

1. simulate App. B.1's data: Sec. 5.1's features and specs, seen only through 20-dim linear
   mixtures ``Y_X`` and ``Y_Z``; the Oracle combination ``z1 < 0.8, z2 > 1`` is never seen;
2. learn X and Z from the Seen observations with :class:`sedge_pyro.LatentSEDGE` (which
   ends by re-aligning them, :mod:`sedge_pyro.models.align`), save it;
3. read the graph off the masks and hand the encoded rows to the rest of the package:
   ``identify``, ``SEDGEModel.fit`` (model E, the factorised reverse model, which did best
   with learned variables in ``benchmarks/paper_latent.py``), ``sample``;
4. ask for new data with the specs of Oracle examples (their ``Y_Z`` encoded: one target per
   draw), decode the drawn features to observations with ``LatentSEDGE.decode``;
5. check them: MCC of the learned variables, MMD of the generated data against held-out
   Oracle data in ground-truth X space (this last step uses the simulation's mixing matrix,
   which real data would not have).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import sedge_pyro as sp
from sedge_pyro.diagnostics import mcc


def main() -> None:
    """Run the five steps and print what each produced."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and fits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows, steps, draws = (12_000, 2500, 500) if args.quick else (40_000, 4000, 2000)

    # 1. data: only observations are given to the model
    data = sp.datasets.paper_latent(rows, seed=args.seed)
    y_x, y_z = data.observations_x(data.seen), data.observations_z(data.seen)
    print(f"Seen: {len(y_x)} rows of Y_X {y_x.shape[1]}-dim and Y_Z {y_z.shape[1]}-dim")

    # 2. learn the latents (linear decoders: the mixing is linear)
    lat = sp.LatentSEDGE(3, 2, y_x.shape[1], y_z.shape[1], decoder_hidden=())
    lat.fit(y_x, y_z, steps=steps, lr=2e-3, seed=args.seed)
    path = lat.save(Path(tempfile.mkdtemp()) / "latent.safetensors")
    lat = sp.LatentSEDGE.load(path)
    print(f"saved and reloaded {path}")
    # fit ends by re-aligning the latents (an ICA of residuals, kept where Eq. (5) prefers it)
    print("bases kept by the alignment:", lat.alignment["chosen"])

    # 3. the learned variables and graph feed the rest of the package
    seen = lat.encode(y_x, y_z)
    print("mask probabilities (spec x feature):\n" + lat.masks().round(2).to_string())
    graph = lat.learned_graph(threshold=0.5)
    print("learned graph:", {s: graph.parents(s) for s in graph.specs})
    res = sp.identify(graph, {s: float(seen[s].median()) for s in lat.spec_names}, seen=seen)
    print("identify() on the learned graph at the median specs:", res.status.name)
    # model E (the paper's factorised pD(X | Z)) did best with learned variables in
    # benchmarks/paper_latent.py; model A with method="opt" or "dps" is the paper's choice
    model = sp.SEDGEModel(graph, structure="reverse-factorized")
    model.fit(seen, steps=2000, batch_size=512, lr=3e-3, seed=args.seed)

    # 4. targets: the specs of Oracle examples, encoded; one target per draw
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(data.oracle))
    wanted = lat.encode(y_z=data.observations_z(data.oracle.iloc[order[:draws]]))
    # a code outside the Seen range of its learned spec is never seen alone (Assumption 1)
    # and samplers refuse it: clip the few that the encoder puts just outside
    low, high = seen[lat.spec_names].min(), seen[lat.spec_names].max()
    target = {s: wanted[s].clip(low[s], high[s]).to_numpy() for s in lat.spec_names}
    samples = model.sample(target, n=draws, method="direct", seed=args.seed)
    generated_y_x = lat.decode(x=samples.to_dataframe()[lat.feature_names])
    print(f"generated {generated_y_x.shape[0]} observations Y_X of {generated_y_x.shape[1]} dims")

    # 5. checks against the ground truth of the simulation
    r_x = mcc(seen[lat.feature_names], data.seen_latent[["x1", "x2", "x3"]])
    r_z = mcc(seen[lat.spec_names], data.seen_latent[["z1", "z2"]])
    print("MCC:", {k: round(v, 3) for k, v in {**r_x.per_variable, **r_z.per_variable}.items()})
    x_true = generated_y_x @ np.linalg.pinv(data.mixing_x)
    reference = data.oracle_latent.iloc[order[draws : 2 * draws]][["x1", "x2", "x3"]]
    score = sp.mmd(x_true, reference.to_numpy(), bandwidth=1.0, unbiased=False)
    print(f"MMD to Oracle X: {score:.4f}")


if __name__ == "__main__":
    main()
