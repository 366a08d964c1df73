"""Real data: a failing assumption, what sedge-pyro reports, and what to do about it.

Run ``python examples/real_data.py`` (a few minutes on 2 CPU cores) or with ``--quick``
(shorter fits). It needs scikit-learn for its bundled diabetes table (442 patients, no
download): ``pip install 'sedge-pyro[bench]'``. The walkthrough is ``docs/real-data.md``.

Features: age, sex, bmi, bp (blood pressure), s1..s6 (six blood serum measurements).
Specifications: ``obese`` = bmi >= 30 (parent: bmi) and ``progressed`` = disease
progression one year later >= 180 (parents: bmi, bp, s5). Every patient with both is held out
of training (the novel combination); the package sees the other rows only. Steps:

1. ``sp.identify``: the status, each assumption's check, ``res.ok``, ``res.failures()``;
2. fit ``sp.SEDGEModel(graph)``, sample with ``plan`` (the default) and ``langevin``, and
   print each draw set's verdict (``s.diagnose()``);
3. ``sp.backtest``: which method to trust, from held-out *seen* combinations;
4. the user's options (re-declared parents, a relaxed target, ``plan`` without MCMC, the
   naive baselines), then, since the held-out patients exist here, the scores of every draw
   set against them.

``--write-csv PATH`` also writes the training rows to ``PATH`` and the graph beside it
(``PATH`` with suffix ``.graph.json``) for the command-line version of the same flow.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import sedge_pyro as sp

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
PARENTS = {"obese": ["bmi"], "progressed": ["bmi", "bp", "s5"]}
TARGET = {"obese": 1, "progressed": 1}
SEP = "-" * 88


def load() -> pd.DataFrame:
    """The diabetes table in raw units, with the two binary specifications added."""
    try:
        from sklearn.datasets import load_diabetes
    except ImportError:
        print(
            "real_data.py: scikit-learn is missing (it ships the diabetes table): "
            "pip install 'sedge-pyro[bench]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    df = load_diabetes(scaled=False, as_frame=True).frame
    df.columns = [str(c).strip().lower() for c in df.columns]
    df = df.rename(columns={"target": "progression"})
    df["obese"] = (df["bmi"] >= 30).astype(int)
    df["progressed"] = (df["progression"] >= 180).astype(int)
    return df


def scorer(held: pd.DataFrame, k: int, seed: int = 0):
    """Standardised MMD of ``k`` draws against ``k`` held-out rows, over 5 subsets.

    The same recipe as ``sp.backtest`` (median bandwidth, the biased V-statistic, so the
    floor, two disjoint ``k``-row halves of the held-out rows, has the same bias).
    """
    options = {"bandwidth": "median", "standardize": True, "unbiased": False}
    floor = sp.mmd_floor(held, k, repeats=5, seed=seed, **options)
    rng = np.random.default_rng(seed)
    refs = [held.iloc[rng.choice(len(held), k, replace=False)] for _ in range(5)]

    def score(x: pd.DataFrame) -> tuple[float, float]:
        pick = np.random.default_rng(seed + 1)
        n = min(k, len(x))
        subsets = [x.iloc[pick.choice(len(x), n, replace=False)] for _ in refs]
        d = np.mean([float(sp.mmd(a, r, **options)) for a, r in zip(subsets, refs, strict=True)])
        return float(d), float(d / floor)

    return floor, score


def main() -> None:
    """Run the four steps and print what each produced."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter model fits (not langevin's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-csv", metavar="PATH", help="write the training rows (and graph)")
    args = parser.parse_args()
    steps = 500 if args.quick else None  # None: the package's default budget
    start = time.perf_counter()

    df = load()
    both = (df["obese"] == 1) & (df["progressed"] == 1)
    seen = df.loc[~both, FEATURES + list(PARENTS)].reset_index(drop=True)
    held = df.loc[both, FEATURES].reset_index(drop=True)
    print(f"diabetes table: {len(df)} patients; obese x progressed:")
    print(pd.crosstab(df["obese"], df["progressed"]).to_string())
    print(f"training rows: {len(seen)}; held out (obese=1, progressed=1): {len(held)}")

    graph = sp.SpecGraph.from_parents(PARENTS, features=FEATURES)
    if args.write_csv:
        path = Path(args.write_csv)
        seen.to_csv(path, index=False)
        graph.save(path.with_suffix(".graph.json"), overwrite=True)
        print(f"wrote {path} and {path.with_suffix('.graph.json')}")

    # 1. identify: the status, then every assumption's check on the training rows
    print(f"\n{SEP}\n1. sp.identify(graph, {TARGET}, seen)\n{SEP}")
    res = sp.identify(graph, TARGET, seen)
    print("status:", res.status.name, "| X_c:", sorted(res.shared), "| res.ok:", res.ok)
    for assumption, check in res.checks():
        label = {True: "ok", False: "FAIL", None: "unverified"}[check.ok]
        print(f"  [{label}] {assumption.name}: {check.detail}")
    print("res.failures():", [a.name for a, _ in res.failures()])
    print("res.explain(), first lines:")
    print("\n".join(res.explain().splitlines()[:8]))
    # obese is a function of bmi, so the user can look at bmi directly: no training patient
    # with bmi >= 30 progressed; pD(progressed=1 | bmi) is learned from zero cases there
    print(
        "training patients with bmi >= 30:",
        int((seen["bmi"] >= 30).sum()),
        "of whom progressed:",
        int(seen.loc[seen["bmi"] >= 30, "progressed"].sum()),
    )

    # 2. fit the default model, sample with plan and langevin, read each verdict
    print(f"\n{SEP}\n2. sp.SEDGEModel(graph).fit(seen); sample; s.diagnose()\n{SEP}")
    t0 = time.perf_counter()
    model = sp.SEDGEModel(graph).fit(seen, steps=steps, seed=args.seed, progress=False)
    print(f"fitted in {time.perf_counter() - t0:.0f} s")
    draws: dict[str, pd.DataFrame] = {}
    for method, options in [("plan", {"n": 1000}), ("langevin", {"n": 500, "chains": 4})]:
        t0 = time.perf_counter()
        s = model.sample(TARGET, method=method, seed=args.seed, **options)
        print(f"{method} sampled in {time.perf_counter() - t0:.0f} s")
        print(s.diagnose())
        print(f"  selection: {s.info['selection']} ({s.info['selection_reason']})")
        d = s.to_dataframe()[FEATURES]
        sat = model.spec_probability(d, TARGET)["all"]
        print(
            f"  {method}: share of draws with bmi >= 30 (what obese means): "
            f"{(d['bmi'] >= 30).mean():.0%}; with fitted P(target | x) < 0.001: "
            f"{(sat < 1e-3).mean():.0%}\n"
        )
        draws[method] = d
    # plan drew X_c = bmi by MALA (its ESS was under min_ess): with one chain no R-hat exists
    s = model.sample(TARGET, n=250, method="plan", chains=4, seed=args.seed)
    print(f"plan with chains=4 (drawn by MALA: {s.info['mcmc']}):")
    print("\n".join(f"  warning: {w}" for w in s.warnings) + "\n")

    # 3. backtest: hold out seen combinations of the target's shape, refit, score each method
    print(f"{SEP}\n3. sp.backtest(graph, seen, target, methods=['plan', 'langevin'])\n{SEP}")
    bt = sp.backtest(
        graph,
        seen,
        TARGET,
        methods=["plan", "langevin"],
        draws=500,
        min_rows=30,
        steps=steps,
        seed=args.seed,
        progress=False,
    )
    print(bt)

    # 4. what the user does
    print(f"\n{SEP}\n4. options\n{SEP}")
    # (a) independence failed: the serum measurements are related to bp and s5, so declare it
    related = [("s5", f) for f in ["age", "sex", "s1", "s2", "s3", "s4", "s6"]]
    graph2 = sp.SpecGraph.from_parents(PARENTS, features=FEATURES, feature_edges=related)
    res2 = sp.identify(graph2, TARGET, seen)
    print(
        "(a) parents re-declared (edges s5 -> the other features):",
        res2.status.name,
        "| res.ok:",
        res2.ok,
        "| failures:",
        [a.name for a, _ in res2.failures()],
    )
    print("   ", res2.factorization)
    # (b) a relaxed target that the training rows do show: overweight (bmi >= 27) and progressed
    relaxed = seen.assign(heavy=(seen["bmi"] >= 27).astype(int))
    graph3 = sp.SpecGraph.from_parents(
        {"heavy": ["bmi"], "progressed": PARENTS["progressed"]}, features=FEATURES
    )
    res3 = sp.identify(graph3, {"heavy": 1, "progressed": 1}, relaxed)
    rows = int(((relaxed["heavy"] == 1) & (relaxed["progressed"] == 1)).sum())
    print(f"(b) relaxed target heavy = bmi >= 27 and progressed: {res3.status.name}, {rows} rows")
    # (c) plan without its MCMC step: X_c = bmi resampled from the obese training rows only
    s = model.sample(TARGET, n=1000, method="plan", seed=args.seed, min_ess=0)
    print("(c) plan with min_ess=0:")
    print(s.diagnose())
    draws["plan, min_ess=0"] = s.to_dataframe()[FEATURES]
    # (d) the naive baselines: the training rows that meet one of the two specifications
    draws["rows with obese=1"] = seen.loc[seen["obese"] == 1, FEATURES]
    draws["rows with progressed=1"] = seen.loc[seen["progressed"] == 1, FEATURES]

    # the held-out patients exist here (only for the demonstration): were the warnings right?
    print(f"\n{SEP}\nscored against the {len(held)} held-out patients (obese, progressed)\n{SEP}")
    floor, score = scorer(held, k=len(held) // 2, seed=args.seed)
    print(f"floor (two halves of the held-out rows): standardised MMD {floor:.4f}")
    table = []
    for name, d in draws.items():
        mmd, ratio = score(d)
        table.append(
            {
                "draws": name,
                "n": len(d),
                "MMD": round(mmd, 4),
                "MMD/floor": round(ratio, 2),
                "bmi>=30": f"{(d['bmi'] >= 30).mean():.0%}",
                "mean bmi": round(float(d["bmi"].mean()), 1),
                "mean s5": round(float(d["s5"].mean()), 2),
            }
        )
    table.append(
        {
            "draws": "held-out patients",
            "n": len(held),
            "MMD": np.nan,
            "MMD/floor": 1.0,
            "bmi>=30": "100%",
            "mean bmi": round(float(held["bmi"].mean()), 1),
            "mean s5": round(float(held["s5"].mean()), 2),
        }
    )
    print(pd.DataFrame(table).to_string(index=False))
    print(f"\ndone in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
