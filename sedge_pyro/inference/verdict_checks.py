"""The verdict's checks: each reads its figures off one set of draws, records them in the
diagnostics and words a warning where a bar is crossed.

Each check is a named step over one :class:`Run` (the draws, the model, the target, the
sampler's run figures, and the diagnostics and warnings so far), in the order
:func:`~sedge_pyro.inference.verdict.verdict` runs them: :func:`check_approximate`,
:func:`check_support`, :func:`check_importance`, :func:`check_agreement`,
:func:`check_satisfaction`, :func:`check_distinct`, :func:`check_chains`. The figures are
:mod:`~sedge_pyro.inference.verdict_figures` and
:mod:`~sedge_pyro.inference.verdict_agreement`; the bars
:mod:`~sedge_pyro.inference.verdict_bars`. Not from the paper, which scores draws against the
Oracle (Sec. 5.1): these are what a user can check without one, on draws of Sec. 4.2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import SedgeError
from sedge_pyro.inference.verdict_agreement import (
    agreement,
    cross_check_skipped,
    mean_shift,
    mean_z,
)
from sedge_pyro.inference.verdict_bars import (
    AGREEMENT_RATIO,
    ANNEALED_UNREFINED,
    APPROXIMATE,
    ESS_MIN,
    KHAT_MAX,
    MARGIN,
    NEGLIGIBLE_FACTOR,
    NEGLIGIBLE_SHARE,
    OUTSIDE_SHARE,
    RHAT_MAX,
    SATISFACTION_LOW,
    SHIFT_FLOOR_RATIO,
    SHIFT_MIN,
    SHIFT_SMALL,
    SHIFT_Z,
)
from sedge_pyro.inference.verdict_figures import (
    _markov_ess,
    chain_figures,
    distinct_rows,
    ess_bar,
    few_distinct,
    is_markov,
    outside_seen,
    rhat_ess,
    satisfaction,
)

__all__ = [
    "CHECKS",
    "Run",
    "check_agreement",
    "check_approximate",
    "check_chains",
    "check_distinct",
    "check_importance",
    "check_satisfaction",
    "check_support",
]


@dataclass
class Run:
    """One verdict in progress: what the checks read, and what they have found so far.

    :ivar model: the fitted model (``seen``, ``structure``, ``spec_probability``).
    :ivar values: the draws ``(chains, draws, features)`` in raw units.
    :ivar features: the features' names, in the draws' order.
    :ivar target: the target the draws were made for.
    :ivar method: the sampler's name.
    :ivar settings: the sampler's settings (``kind`` for ``langevin``).
    :ivar info: the sampler's run figures.
    :ivar tolerance: the target's tolerance for point targets on continuous specs.
    :ivar reference: draws ``plan``'s reference for the cross-check when called, or ``None``.
    :ivar diag: the diagnostics so far (JSON-ready), ``draws`` and ``errors`` from the start.
    :ivar warnings: the warnings so far, one line each.
    :ivar drawn: ``plan``'s reference draws once :func:`check_agreement` drew them (the
        satisfaction's reference then).
    """

    model: Any
    values: np.ndarray
    features: Sequence[str]
    target: Mapping[str, Any]
    method: str
    settings: dict[str, Any]
    info: dict[str, Any]
    tolerance: float | Mapping[str, float] | None
    reference: Callable[[], Any] | None
    diag: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    drawn: list[Any] = field(default_factory=list)

    @property
    def chains(self) -> int:
        """The number of chains of the draws."""
        return self.values.shape[0]

    @property
    def total(self) -> int:
        """The number of draws, all chains together."""
        return self.values.shape[0] * self.values.shape[1]

    @property
    def seen(self) -> pd.DataFrame | None:
        """The model's training rows, or ``None``."""
        return getattr(self.model, "seen", None)


def check_approximate(run: Run) -> None:
    """Methods that follow p(x | target) only approximately by construction say so."""
    if run.method in APPROXIMATE:
        run.diag["approximate"] = True
        run.warnings.append(APPROXIMATE[run.method])
    elif (
        run.method == "langevin"
        and run.info.get("kind") == "annealed"
        and not run.info.get("refine")
    ):
        run.diag["approximate"] = True
        run.warnings.append(ANNEALED_UNREFINED)


def check_support(run: Run) -> None:
    """Features with over :data:`OUTSIDE_SHARE` of draws outside the widened training range."""
    if run.seen is None:
        return
    out = outside_seen(run.values, run.seen, run.features)
    run.diag["outside"] = {f: v["share"] for f, v in out.items()}
    run.diag["seen_range"] = {f: [v["low"], v["high"]] for f, v in out.items()}
    for f, v in out.items():
        if v["share"] > OUTSIDE_SHARE:
            run.warnings.append(
                f"{v['share']:.0%} of draws have {f} outside the training range "
                f"[{v['low']:.4g}, {v['high']:.4g}] (widened by {MARGIN:.0%}): the model "
                "extrapolates there"
            )


def check_importance(run: Run) -> None:
    """``smc``'s final ESS; ``svi``'s pool ESS when resampled, its Pareto k-hat when not."""
    method, info = run.method, run.info
    if method == "smc" and info.get("refine"):
        return  # Metropolis-adjusted moves on the model's own posterior followed
    if method == "smc" and isinstance(info.get("ess_min"), int | float):
        ess = float(info["ess_min"])
        run.diag["importance"] = {"ess": info.get("ess"), "particles": info.get("particles")}
        if ess < ESS_MIN:
            run.warnings.append(
                f"smc's final weights rest on an effective {ess:.3g} of its "
                f"{info.get('particles')} particles (ESS, under {ESS_MIN}): the diffusion "
                "prior puts little mass where the target is likely, so its draws are "
                "few particles repeated (raise particles=, or the target is outside what "
                "the prior supports)"
            )
        return
    khat = info.get("khat")
    if method != "svi" or not isinstance(khat, int | float):
        return
    run.diag["importance"] = {
        "khat": float(khat),
        "ess": info.get("ess"),
        "resampled": info.get("resampled"),
    }
    ess = info.get("ess")
    if info.get("resampled"):
        if isinstance(ess, int | float) and ess < ESS_MIN:
            run.warnings.append(
                f"svi's draws were resampled from an effective {ess:.3g} of its pool's "
                f"draws (ESS, under {ESS_MIN}): the guide and the prior put little mass "
                "where the target is likely (try method='langevin', or svi with more "
                "steps)"
            )
        return
    if not np.isfinite(khat) or khat >= KHAT_MAX:
        run.warnings.append(
            f"svi's guide does not cover p(x | target): Pareto k-hat {khat:.2f} of its "
            f"importance weights (usable under {KHAT_MAX:g}), so its draws were not "
            "reweighted and follow the guide, which can miss modes and tails (try "
            "method='langevin', or svi with more steps)"
        )


def check_agreement(run: Run) -> None:
    """The draws against ``plan``'s reference (:mod:`~.verdict_agreement`), where it applies:
    warns on an MMD ratio over :data:`AGREEMENT_RATIO`, a shift of means over its bars, or
    means certainly apart.
    """
    why = cross_check_skipped(run.method, run.model, run.target, run.reference is not None)
    if why is not None:
        run.diag["agreement"] = {"reference": None, "reason": why}
        return
    assert run.reference is not None
    try:
        drawn = run.reference()
    except SedgeError as err:  # plan refuses the target: nothing to compare with
        run.diag["agreement"] = {
            "reference": None,
            "reason": f"plan drew no reference ({type(err).__name__}: {err})",
        }
        return
    run.drawn.append(drawn)
    a, small, z = _agreement_figures(run, drawn)
    run.diag["agreement"] = a
    certain = (small > SHIFT_SMALL) & (z > SHIFT_Z)
    shift, shift_floor = a["mean_shift"], a["mean_shift_floor"]
    shifted = shift > SHIFT_MIN and shift > SHIFT_FLOOR_RATIO * shift_floor
    if a["ratio"] <= AGREEMENT_RATIO and not shifted and not certain.any():
        return
    if a["reference_warnings"]:  # a weak reference (few training rows near the target)
        a["reason"] = "plan's reference has warnings of its own: not judged"  # proves nothing
        return
    if a["ratio"] > AGREEMENT_RATIO:
        what = (
            f"MMD {a['mmd']:.3f} between their draws, {a['ratio']:.1f}x the {a['floor']:.3f} "
            f"between halves of one set (over {AGREEMENT_RATIO:g}x)"
        )
    elif shifted:
        what = (
            f"their means differ by up to {shift:.2f} standard deviations (halves of "
            f"plan's draws: {shift_floor:.2f})"
        )
    else:
        j = int(np.argmax(np.where(certain, z, -np.inf)))
        what = (
            f"their means of {run.features[j]} differ by {small[j]:.2f} standard deviations, "
            f"{z[j]:.1f} standard errors given their effective sizes"
        )
    run.warnings.append(
        f"{run.method} and plan disagree on this model and target: {what}: the sampler "
        "missed p(x | target), or the fitted model and the training rows disagree"
    )


def _agreement_figures(run: Run, drawn: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The cross-check's figures against ``plan``'s reference ``drawn`` (its Samples), and the
    per-feature differences of means in standard deviations and in standard errors.
    """
    values, features = run.values, run.features
    other = np.asarray(drawn.to_numpy(), dtype=float)
    ordered = (is_markov(run.method, run.settings), False)
    value, floor = agreement(values, other, ordered=ordered)
    ratio = value / floor if floor > 0 else (float("inf") if value > 0 else 1.0)
    shift, shift_floor = mean_shift(values, other, ordered=ordered)
    ess_a = _markov_ess(values, features) if ordered[0] else None
    ess_b = drawn.info.get("ess") if isinstance(drawn.info.get("ess"), int | float) else None
    small, z = mean_z(values, other, ess_a, ess_b)
    figures = {
        "reference": "plan",
        "reference_draws": len(other),
        "mmd": value,
        "floor": floor,
        "ratio": ratio,
        "threshold": AGREEMENT_RATIO,
        "mean_shift": shift,
        "mean_shift_floor": shift_floor,
        "mean_z": {f: float(zz) for f, zz in zip(features, z, strict=True)},
        "reference_warnings": list(drawn.warnings),
    }
    return figures, small, z


def check_satisfaction(run: Run) -> None:
    """The draws' mean fitted P(target | x) against the reference's (:func:`satisfaction`):
    warns on over :data:`NEGLIGIBLE_SHARE` negligible draws and on a relative satisfaction
    under :data:`SATISFACTION_LOW`.
    """
    diag = run.diag
    diag["satisfaction"] = None
    against = run.drawn[0].to_numpy() if run.drawn else None
    sat = satisfaction(
        run.model, run.values, run.features, run.target, tolerance=run.tolerance, reference=against
    )
    if sat is None:
        return
    diag["satisfaction"] = sat["all"]
    diag["satisfaction_reference"] = sat["reference"]
    diag["satisfaction_relative"] = sat["relative"]
    diag["satisfaction_source"] = sat["source"]
    diag["satisfaction_by_spec"] = sat["by_spec"]
    diag["negligible"] = sat["negligible"]
    diag["negligible_below"] = sat["negligible_below"]
    diag["negligible_scale"] = sat["negligible_scale"]
    if sat["negligible"] is not None and sat["negligible"] > NEGLIGIBLE_SHARE:
        run.warnings.append(
            f"{sat['negligible']:.0%} of draws have a fitted P(target | x) under "
            f"{sat['negligible_below']:.3g} ({NEGLIGIBLE_FACTOR:g} x the median "
            f"{sat['negligible_scale']:.3g} of draws that meet the target; over "
            f"{NEGLIGIBLE_SHARE:.0%} of draws): these draws cannot meet the target "
            "under the fitted model: the sampler is stuck, or the target is outside what "
            "the model supports"
        )
    if sat["relative"] is not None and sat["relative"] < SATISFACTION_LOW:
        whose = (
            "plan's draws score"
            if sat["source"] == "plan"
            else "exact draws of p(x | target) would score"
        )
        run.warnings.append(
            f"the draws do not meet the target under the fitted model: mean P(target | x) "
            f"{sat['all']:.3g}, {sat['relative']:.0%} of the {sat['reference']:.3g} {whose}"
        )


def check_distinct(run: Run) -> None:
    """Draws resting on few distinct feature vectors, or for ``plan`` on an ESS of few
    training rows (:func:`few_distinct`).
    """
    method, info, total = run.method, run.info, run.total
    n = info.get("distinct")
    n = distinct_rows(run.values) if n is None else int(n)
    run.diag["distinct"] = n
    # plan's ESS counts the distinct training rows its resampling rests on: a thousand
    # draws of two rows' shared features are two draws whatever the other features do
    ess = info.get("ess") if method == "plan" else None  # svi's is its importance pool's
    effective = float(n)
    if isinstance(ess, int | float) and np.isfinite(ess):
        effective = min(effective, float(ess))
    if not few_distinct(effective, total):
        return
    available = None
    if run.seen is not None:
        available = distinct_rows(run.seen[list(run.features)].to_numpy(dtype=float))
    if not few_distinct(effective, total, available):
        return
    mcmc = list(info.get("mcmc") or []) if method == "plan" else []
    if mcmc and effective != n:
        # the ESS is the importance step's, which plan then replaced for the shared
        # features: the draws do not rest on those rows, but the rows still say how
        # little of the data supports the target
        run.diag["ess_replaced_by_mcmc"] = mcmc
        drawn = ", ".join(mcmc)
        run.warnings.append(
            f"plan's importance resampling rested on an effective {effective:.3g} "
            f"training rows (ESS), and plan replaced it by MCMC on the fitted model for "
            f"{drawn} ({n} distinct draws of {total}): few training rows support the "
            f"target, so the draws' {drawn} come from the fitted model where it has "
            "little data (use more training data near the target; check the MCMC with "
            "chains=4)"
        )
        return
    what = (
        f"{n} distinct feature vectors"
        if effective == n
        else f"an effective {effective:.3g} training rows (ESS; {n} distinct draws)"
    )
    run.warnings.append(
        f"the {total} draws rest on {what}: few training rows support the target "
        "(use more training data near it, or a method that draws from the fitted "
        "model)"
    )


def check_chains(run: Run) -> None:
    """R-hat and bulk ESS where they mean something (:func:`rhat_ess`): warns on R-hat over
    :data:`RHAT_MAX`, else on a bulk ESS under :func:`ess_bar`.
    """
    chains, total = run.chains, run.total
    kind = run.diag["rhat_ess"] = rhat_ess(run.method, chains, run.settings, run.info)
    if kind["kind"] not in ("mcmc", "partial"):
        return
    figures = chain_figures(run.values, run.features, kind["features"])
    kind["figures"] = figures
    rhats = {f: r["r_hat"] for f, r in figures.items() if r["r_hat"] is not None}
    esses = {f: r["ess_bulk"] for f, r in figures.items() if r["ess_bulk"] is not None}
    bar = ess_bar(total)
    kind["ess_bar"] = bar
    mixed = True
    if rhats:
        worst = max(rhats, key=lambda f: rhats[f])
        kind["max_r_hat"] = rhats[worst]
        if rhats[worst] > RHAT_MAX:
            mixed = False
            run.warnings.append(
                f"the {chains} chains disagree: R-hat {rhats[worst]:.3g} for {worst} (over "
                f"{RHAT_MAX:g}), they did not mix; raise warmup or draws, and compare "
                "the chains' means"
            )
    if esses:
        worst = min(esses, key=lambda f: esses[f])
        kind["min_ess_bulk"] = esses[worst]
        # chains that disagree have a low ESS too: one warning says it
        if esses[worst] < bar and mixed:
            run.warnings.append(
                f"bulk ESS {esses[worst]:.3g} for {worst} from {total} draws (under "
                f"{bar:g}): the chains move slowly; raise warmup, draws or thin"
            )


#: the checks in the order :func:`~sedge_pyro.inference.verdict.verdict` runs them, each under
#: the name its failure is recorded by
CHECKS: tuple[tuple[str, Callable[[Run], None]], ...] = (
    ("approximate", check_approximate),
    ("support", check_support),
    ("importance", check_importance),
    ("agreement", check_agreement),
    ("satisfaction", check_satisfaction),
    ("distinct", check_distinct),
    ("rhat_ess", check_chains),
)
