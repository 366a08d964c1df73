r"""The verdict every :class:`~sedge_pyro.inference.Samples` carries on its own draws.

Five checks, each cheap (milliseconds for thousands of draws; the cross-check adds a ``plan``
run, about 0.2 s) and each a pure function of the draws, the training rows, the method and
(for the cross-check) a reference, so tests can feed them known answers:

* **support** (:func:`outside_seen`): per feature, the share of draws outside the range the
  training rows span, widened by a margin. Draws far outside every training row are the
  model's extrapolation, not data it has seen.
* **satisfaction** (:func:`satisfaction`): the mean fitted probability that a draw meets the
  target, :math:`\frac1n \sum_i \prod_k \hat P(z_k \in A_k \mid V_k(x_i))`, against what
  ``plan``'s reference draws score under the same model (models A/B only; without them, an
  estimate of what exact draws of :math:`p(x \mid \text{target})` would score from the
  training rows). And the share of draws that cannot meet the target at all: whose fitted
  probability is under :data:`NEGLIGIBLE_FACTOR` of what draws meeting the target score
  (median); over :data:`NEGLIGIBLE_SHARE` warns, since a mean satisfaction can stay
  respectable while half the draws sit where the target is impossible under the model.
* **distinct draws** (:func:`distinct_rows`): how many different feature vectors the draws
  hold, and for ``plan`` the ESS of its resampling, counted over distinct training rows.
  ``plan`` copies training rows; a thousand draws resting on two rows are two draws.
* **R-hat/ESS** (:func:`rhat_ess`, :func:`chain_figures`): whether R-hat and ESS mean
  anything for the method, and where they do their figures. They describe Markov chains
  (``langevin``'s MALA/ULA, ``nuts``, with two chains or more); for independent optimisations
  (``opt``), importance resampling (``plan``) or amortised draws (``svi``, ``direct``,
  ``dps``) ArviZ still prints numbers, which say nothing; ``plan`` that drew its shared
  features by MALA (``info["mcmc"]``) has chains for those features only. Where they mean
  something, the rank-normalised split R-hat over :data:`RHAT_MAX` (the chains disagree:
  they did not mix) or a bulk ESS under :func:`ess_bar` warns.
* **agreement** (:func:`agreement`): for the model-based methods (:data:`CROSS_CHECKED`) on
  models A/B, the draws against a reference drawn by ``plan`` (the factorization, which
  copies training rows and does not use the sampler at all) on the same model and target:
  the standardised MMD over the split-half floor (as :meth:`Samples.compare`). Over
  :data:`AGREEMENT_RATIO` warns: the sampler, or the fitted densities it follows, and the
  training rows tell two different stories.
* **approximate** (``opt``, ``dps``, annealed Langevin without ``refine``): these methods do
  not draw from :math:`p(x \mid \text{target})` by construction (a mode-seeker; a guidance
  or unadjusted steps on scores that are not the posterior's), and their verdict always says
  so (:data:`APPROXIMATE`, :data:`ANNEALED_UNREFINED`).
* **importance** (``svi``, ``smc``): ``smc``'s final weights warn on an ESS under
  :data:`ESS_MIN` (the particles rest on few ancestors); ``svi``'s draws resampled from the
  pool (the default, the prior's draws in it) warn on an ESS under :data:`ESS_MIN`; draws
  not resampled warn on a Pareto
  :math:`\hat k` of the guide's importance weights at or over :data:`KHAT_MAX`: the draws
  are the guide's own, and the guide may miss modes (a two-mode posterior: 13x the MMD
  floor).

:func:`verdict` runs them all and returns ``(diagnostics, warnings)``: a JSON-ready dict and
one-line warnings (empty when all is well). A check that fails records its error under
``diagnostics["errors"]`` and warns that it could not run, instead of raising: a diagnostic
never breaks sampling, nor passes for a clean bill of health.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro import arviz_compat
from sedge_pyro.diagnostics import mmd
from sedge_pyro.errors import SedgeError

__all__ = [
    "ANNEALED_UNREFINED",
    "APPROXIMATE",
    "AGREEMENT_RATIO",
    "KHAT_MAX",
    "AGREEMENT_ROWS",
    "CROSS_CHECKED",
    "DISTINCT_FRACTION",
    "DISTINCT_MIN",
    "ESS_FRACTION",
    "ESS_MIN",
    "MARGIN",
    "NEGLIGIBLE_FACTOR",
    "NEGLIGIBLE_SHARE",
    "OUTSIDE_SHARE",
    "RHAT_MAX",
    "SATISFACTION_LOW",
    "SHIFT_FLOOR_RATIO",
    "SHIFT_SMALL",
    "SHIFT_Z",
    "SHIFT_MIN",
    "Verdict",
    "agreement",
    "chain_figures",
    "cross_check_skipped",
    "distinct_rows",
    "ess_bar",
    "few_distinct",
    "is_markov",
    "mean_shift",
    "outside_seen",
    "rhat_ess",
    "satisfaction",
    "verdict",
]

#: the seen range of a feature is widened by this fraction of its width on each side
MARGIN = 0.05
#: a feature with more than this share of draws outside its widened seen range is flagged
OUTSIDE_SHARE = 0.01
#: draws whose mean fitted probability of the target is below this fraction of what exact
#: draws of p(x | target) would score are flagged
SATISFACTION_LOW = 0.5
#: a draw whose fitted probability of the whole target, A(x), is below this fraction of the
#: median A of draws that meet the target (see :func:`satisfaction`) is negligible: it cannot
#: meet the target under the fitted model. Relative, so that a point target on a continuous
#: spec, whose A is the small probability of the tolerance window for every draw, never trips
#: it; for an event it is at most 1e-3 absolute.
NEGLIGIBLE_FACTOR = 1e-3
#: more than this share of negligible draws is flagged
NEGLIGIBLE_SHARE = 0.05
#: fewer distinct draws than this fraction of the draws (or of the training rows' distinct
#: vectors, when fewer) is flagged
DISTINCT_FRACTION = 0.1
#: ... and so is fewer than this many distinct draws, when under half the draws
DISTINCT_MIN = 50
#: Markov chains whose largest rank-normalised split R-hat exceeds this did not mix. Vehtari
#: et al. (2021) ask for 1.01 before trusting estimates; 1.05 flags chains that clearly
#: disagree without flagging every short run (four chains with means 0, 0, 1, 1 and unit
#: noise: 1.14)
RHAT_MAX = 1.05
#: a bulk ESS under this many draws is flagged (the Monte Carlo error of a mean is then
#: over a tenth of the posterior sd) ...
ESS_MIN = 100
#: ... or, for runs of fewer than ESS_MIN / ESS_FRACTION draws, under this fraction of the
#: draws: a short run is not a fault in itself, chains that barely move are
ESS_FRACTION = 0.1
#: the model-based methods whose draws are cross-checked against ``plan``'s
CROSS_CHECKED = ("langevin", "svi", "nuts", "opt", "dps", "smc")
#: methods whose draws follow p(x | target) only approximately by construction: their
#: verdict always says so (a cross-check can miss a modest bias: ``dps`` on the grid's
#: ``product`` variant read 3.03x the MMD floor and passed every other check)
APPROXIMATE = {
    "opt": (
        "opt seeks modes (Algorithm 1): its draws are points near the target's modes, "
        "narrower than p(x | target) by design; for draws of p(x | target) use plan, "
        "langevin or svi"
    ),
    "dps": (
        "dps follows p(x | target) only approximately (Algorithm 2: the guidance is not the "
        "posterior's score; on the extrapolation grid 2.4-6.7x the MMD floor where langevin "
        "read 0.5-1.7x): for draws of p(x | target) use plan, langevin or svi"
    ),
}
#: annealed Langevin that ends without Metropolis-adjusted moves (``refine=0``, or a prior
#: with no density to refine on) is approximate too
ANNEALED_UNREFINED = (
    "annealed Langevin without refinement follows p(x | target) only approximately "
    "(unadjusted steps on the diffusion prior's scores, never corrected): for draws of "
    "p(x | target) use refine > 0 on a prior with a density (the default), plan, langevin or svi"
)
#: draws whose MMD to ``plan``'s reference exceeds this many times the split-half floor are
#: flagged. Correct samplers score about 1 on the linear-Gaussian model with exact densities
#: (MALA 0.4 with one chain, 1.4 with two; SVI 0.5; NUTS 0.8), MALA stuck at its start 53,
#: ``opt`` (a mode-seeker: narrower than p(x | target) by design) 3.6. The margin over
#: :meth:`Samples.compare`'s 2 allows for the reference itself: ``plan`` copies training rows
#: (weighting point targets on continuous specs by the fitted likelihood), the others follow
#: the fitted prior, so a modest model error shows as a modest excess, not a failure.
AGREEMENT_RATIO = 3.0
#: svi's Pareto k-hat at and above which its importance weights are not trusted (Vehtari et
#: al.'s bar for usable importance sampling): svi does not resample there, and this warns
KHAT_MAX = 0.7
#: ... and so are draws whose largest per-feature mean difference to the reference, in pooled
#: standard deviations, exceeds this and SHIFT_FLOOR_RATIO times the same figure between the
#: two halves of the reference. The MMD over a median bandwidth on standardised features sees a
#: half-sd shift of two features at a few hundred draws only as 1-2x its floor (measured:
#: MALA on the paper's task, 0.6 sd off in x1 and x3, read 1.0x at 300 draws and 2.0x at
#: 2,000); a mean shift is what the paper's bandwidth-1 MMD on raw features reports.
SHIFT_MIN = 0.25
#: see SHIFT_MIN
SHIFT_FLOOR_RATIO = 3.0
#: ... and so are draws whose mean differs from the reference's in some feature by more than
#: SHIFT_SMALL pooled standard deviations *and* more than SHIFT_Z standard errors of that
#: difference given both sets' effective sizes (:func:`mean_z`). The paper's bandwidth-1 MMD
#: on raw features reads a 0.15 sd shift of two features as 3.5x its floor at 1,000 draws
#: (MALA and SVI on the paper's task: 3.3-3.5 standard errors from plan's draws), under
#: SHIFT_MIN; a certain difference of a tenth of a standard deviation means one of the two
#: methods is off by that much
SHIFT_SMALL = 0.1
#: see SHIFT_SMALL
SHIFT_Z = 3.0
#: the reference draws of ``plan``: as many as the draws, at most this many (the MMD
#: compares at most 500 draws of each set, see :func:`agreement`; the rest serve the
#: satisfaction's reference)
AGREEMENT_ROWS = 1000

_NOT_MCMC = {
    "plan": "importance resampling of training rows: the draws are no Markov chain",
    "opt": "independent optimisations from training rows: the draws are no Markov chain",
    "dps": "independent diffusion runs: the draws are no Markov chain",
    "smc": "a resampled particle system: the draws are no Markov chain",
    "svi": "independent draws of a fitted guide (amortised): the draws are no Markov chain",
    "direct": "independent draws of the fitted p(X | Z) (amortised): the draws are no Markov chain",
}


@dataclass(frozen=True)
class Verdict:
    """The verdict on a set of draws, for a person to read first (``print(v)``).

    :ivar method: the sampler's name.
    :ivar diagnostics: the checks' figures (see :func:`verdict`); empty for draws made
        before verdicts were recorded.
    :ivar warnings: one line per problem found; empty when all is well.
    """

    method: str
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No warning (and the checks ran)."""
        return not self.warnings and bool(self.diagnostics)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready data."""
        return {
            "method": self.method,
            "diagnostics": dict(self.diagnostics),
            "warnings": list(self.warnings),
        }

    def __str__(self) -> str:
        d = self.diagnostics
        if not d:
            return f"no verdict recorded for these draws by {self.method}"
        n = d.get("draws", "?")
        head = f"verdict on {n} draws by {self.method}: " + (
            f"{len(self.warnings)} warning(s)" if self.warnings else "no warnings"
        )
        lines = [head]
        outside = d.get("outside")
        if outside is not None:
            worst = max(outside.items(), key=lambda kv: kv[1], default=(None, 0.0))
            text = (
                "every draw within the training range"
                if not worst[1]
                else f"largest share outside the training range: {worst[1]:.1%} ({worst[0]})"
            )
            lines.append(f"  support:      {text}")
        if "satisfaction" in d:
            p = d["satisfaction"]
            text = "n/a (no per-spec likelihood, or per-draw target)" if p is None else f"{p:.3f}"
            rel = d.get("satisfaction_relative")
            if p is not None and rel is not None:
                whose = (
                    "plan's draws score"
                    if d.get("satisfaction_source") == "plan"
                    else "exact draws would score"
                )
                text += f", {rel:.0%} of what {whose}"
            by_spec = d.get("satisfaction_by_spec") or {}
            if by_spec:
                text += " (per spec: " + ", ".join(f"{k} {v:.2f}" for k, v in by_spec.items())
                text += ")"
            lines.append(f"  mean P(target | x) under the model: {text}")
            if d.get("negligible") is not None:
                lines.append(
                    f"  draws that cannot meet the target (P(target | x) under "
                    f"{d['negligible_below']:.3g}): {d['negligible']:.1%}"
                )
        if "distinct" in d:
            lines.append(f"  distinct draws: {d['distinct']} of {n}")
        if "rhat_ess" in d:
            r = d["rhat_ess"]
            text = f"{r.get('kind')} ({r.get('reason')})"
            if r.get("max_r_hat") is not None:
                text += f"; max R-hat {r['max_r_hat']:.3f}"
            if r.get("min_ess_bulk") is not None:
                text += f", min bulk ESS {r['min_ess_bulk']:.0f}"
            lines.append(f"  R-hat/ESS:    {text}")
        if "agreement" in d:
            a = d["agreement"]
            text = (
                f"MMD {a['ratio']:.2f}x the split-half floor against {a['reference_draws']} "
                "plan draws"
                if a.get("reference")
                else f"not checked ({a.get('reason')})"
            )
            lines.append(f"  agreement:    {text}")
        for name, err in (d.get("errors") or {}).items():
            lines.append(f"  {name}: check failed ({err})")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def outside_seen(
    values: np.ndarray,
    seen: pd.DataFrame,
    features: Sequence[str],
    *,
    margin: float = MARGIN,
) -> dict[str, dict[str, Any]]:
    """Per feature, the share of draws outside the training rows' range widened by ``margin``.

    :param values: draws ``(..., features)`` in raw units.
    :param seen: the training rows (raw units), a column per feature.
    :param margin: fraction of each feature's range added on both sides.
    :returns: feature -> ``{"share": float, "low": float, "high": float}`` (the seen range,
        not widened).

    >>> import pandas as pd
    >>> seen = pd.DataFrame({"x": [0.0, 10.0]})
    >>> outside_seen(np.array([[-1.0], [5.0], [10.2], [20.0]]), seen, ["x"])["x"]["share"]
    0.5
    """
    x = np.asarray(values, dtype=float).reshape(-1, len(features))
    out: dict[str, dict[str, Any]] = {}
    for j, f in enumerate(features):
        col = seen[f].to_numpy(dtype=float)
        col = col[np.isfinite(col)]
        if col.size == 0:
            continue
        low, high = float(col.min()), float(col.max())
        pad = margin * (high - low)
        share = float(np.mean((x[:, j] < low - pad) | (x[:, j] > high + pad))) if len(x) else 0.0
        out[f] = {"share": share, "low": low, "high": high}
    return out


def satisfaction(
    model: Any,
    values: np.ndarray,
    features: Sequence[str],
    target: Mapping[str, Any],
    *,
    tolerance: float | Mapping[str, float] | None = None,
    max_rows: int = 2000,
    reference: np.ndarray | None = None,
) -> dict[str, Any] | None:
    r"""How well the draws meet the target under the fitted model (``spec_probability``).

    With :math:`A(x) = \prod_k \hat P(z_k \in A_k \mid V_k(x))`, ``all`` is its mean over
    the draws and ``reference`` what draws of :math:`p(x \mid Z_T \in A)` score. With
    ``reference`` draws (``plan``'s, which follow the identification's factorization on the
    training rows), their mean :math:`A`, under the same fitted model: the draws are held to
    what the factorization's own draws achieve (``source`` ``"plan"``). Without, what exact
    draws would score, :math:`E_{p(x \mid A)}[A(x)] = E_p[A^2] / E_p[A]`, estimated on (at
    most ``max_rows``) training rows as draws of :math:`p(x)` (``source`` ``"training
    rows"``); that estimate rests on the training rows near the target, and where few are
    it can read far off (well over 100% for good draws). ``relative = all /
    reference``: about 1 for good draws whatever the target (a point target on a continuous
    spec scores a small probability of its tolerance window even for perfect draws), well
    below 1 for draws that miss it. ``by_spec``: each spec's mean probability over the draws.

    ``negligible``: the share of draws that cannot meet the target under the fitted model,
    those with :math:`A(x)` below :data:`NEGLIGIBLE_FACTOR` times ``negligible_scale``, the
    median :math:`A` of draws that meet the target: the larger of the reference draws'
    median and the median under :math:`p(x \mid A)` estimated on the training rows (the
    :math:`A`-weighted median of their :math:`A`), so that reference draws stuck the same
    way as the draws (``plan``'s can be) do not lower the bar. A mean hides this: draws half
    of which score 0 and half well still average half the reference.

    :param reference: reference draws ``(..., features)`` in raw units, or ``None``.
    :returns: ``{"all", "reference", "relative", "source", "by_spec", "negligible",
        "negligible_scale", "negligible_below"}`` (``reference`` and ``relative`` ``None``
        when the reference gives the target no probability, the ``negligible*`` figures
        ``None`` when neither the reference nor the training rows do), or ``None`` for
        models without per-spec likelihoods (structures other than ``sparse``/``dense``) and
        for per-draw targets.

    >>> import types
    >>> model = types.SimpleNamespace(structure="sparse", seen=None,
    ...     spec_probability=lambda df, t, tolerance=None: df.assign(all=df["x"]))
    >>> draws = np.array([0.0] * 6 + [0.5] * 4)[:, None]   # A(x) is x
    >>> satisfaction(model, draws, ["x"], {"z": 1}, reference=np.full((4, 1), 0.5))["negligible"]
    0.6
    """
    if getattr(model, "structure", None) not in ("sparse", "dense"):
        return None
    if any(isinstance(v, np.ndarray) and v.ndim > 0 for v in target.values()):
        return None
    df = pd.DataFrame(np.asarray(values).reshape(-1, len(features)), columns=list(features))
    probs = model.spec_probability(df, target, tolerance=tolerance)
    drawn = probs["all"].to_numpy(dtype=float)
    mean = float(drawn.mean())
    ref = relative = source = None
    scales: list[float] = []  # the median A of draws that meet the target, as estimated
    if reference is not None:
        source = "plan"
        rdf = pd.DataFrame(
            np.asarray(reference, dtype=float).reshape(-1, len(features)), columns=list(features)
        )
        a = model.spec_probability(rdf, target, tolerance=tolerance)["all"].to_numpy(dtype=float)
        if a.mean() > 0:
            ref = float(a.mean())
            scales.append(float(np.median(a)))
    if getattr(model, "seen", None) is not None:
        seen = model.seen[list(features)]
        if len(seen) > max_rows:
            seen = seen.sample(max_rows, random_state=0)
        a = model.spec_probability(seen, target, tolerance=tolerance)["all"].to_numpy(dtype=float)
        if a.sum() > 0:
            scales.append(_weighted_median(a, a))
            if reference is None:
                source = "training rows"
                ref = float((a * a).sum() / a.sum())
    if ref is not None:
        relative = mean / ref
    negligible = scale = below = None
    if scales and max(scales) > 0:
        scale = max(scales)
        below = NEGLIGIBLE_FACTOR * scale
        negligible = float(np.mean(drawn < below)) if len(drawn) else 0.0
    by_spec = {k: float(probs[k].mean()) for k in probs.columns if k != "all"}
    return {
        "all": mean,
        "reference": ref,
        "relative": relative,
        "source": source,
        "by_spec": by_spec,
        "negligible": negligible,
        "negligible_scale": scale,
        "negligible_below": below,
    }


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of ``values`` under ``weights``: the smallest value with half the weight at
    or below it.
    """
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def distinct_rows(values: np.ndarray) -> int:
    """The number of distinct feature vectors among the draws ``(..., features)``.

    >>> distinct_rows(np.array([[[1.0, 2.0], [1.0, 2.0], [3.0, 2.0]]]))
    2
    """
    x = np.asarray(values)
    x = x.reshape(-1, x.shape[-1])
    return int(np.unique(x, axis=0).shape[0]) if len(x) else 0


def few_distinct(distinct: float, draws: int, available: int | None = None) -> bool:
    """Whether ``distinct`` distinct draws out of ``draws`` are too few: fewer than
    :data:`DISTINCT_FRACTION` of ``m``, or fewer than :data:`DISTINCT_MIN` and under half of
    ``m``, where ``m`` is ``draws`` or, when smaller, the ``available`` distinct training
    vectors (discrete features cannot give more).

    >>> few_distinct(2, 1000), few_distinct(900, 1000), few_distinct(10, 10)
    (True, False, False)
    """
    m = draws if available is None else min(draws, available)
    return distinct < DISTINCT_FRACTION * m or (distinct < DISTINCT_MIN and distinct < 0.5 * m)


def rhat_ess(
    method: str, chains: int, settings: Mapping[str, Any], info: Mapping[str, Any]
) -> dict[str, Any]:
    """Whether R-hat and ESS mean anything for these draws.

    :returns: ``{"kind": "mcmc" | "partial" | "n/a", "reason": str, "features": [...]}``;
        ``features`` lists those drawn by Markov chains (all of them for ``"mcmc"``, the
        shared features ``plan`` drew by MALA for ``"partial"``, none for ``"n/a"``).

    >>> rhat_ess("opt", 4, {}, {})["kind"], rhat_ess("nuts", 2, {}, {})["kind"]
    ('n/a', 'mcmc')
    """
    if method in ("langevin", "nuts"):
        if method == "langevin" and settings.get("kind") == "annealed":
            return {
                "kind": "n/a",
                "reason": "annealed Langevin follows a noise schedule: no stationary chain",
                "features": [],
            }
        if chains < 2:
            return {
                "kind": "n/a",
                "reason": "one chain: R-hat needs two or more (sample with chains=4)",
                "features": [],
            }
        return {"kind": "mcmc", "reason": f"{chains} Markov chains", "features": None}
    mcmc = list(info.get("mcmc") or []) if method == "plan" else []
    if mcmc:
        # plan replaced the importance step for these shared features by MALA chains
        drawn = (
            f"{', '.join(mcmc)} drawn by MCMC (MALA), the other features by importance "
            "resampling of training rows"
        )
        if chains < 2:
            return {
                "kind": "n/a",
                "reason": f"{drawn}; one chain: R-hat needs two or more (sample with chains=4)",
                "features": [],
            }
        return {"kind": "partial", "reason": f"{drawn}; {chains} chains", "features": mcmc}
    reason = _NOT_MCMC.get(method, f"method {method!r} runs no Markov chain")
    return {"kind": "n/a", "reason": reason, "features": []}


def is_markov(method: str, settings: Mapping[str, Any] | None = None) -> bool:
    """Whether ``method``'s draws are Markov chains, neighbours in draw order being
    neighbours in time (``langevin``'s MALA/ULA and ``nuts``).

    >>> is_markov("nuts"), is_markov("langevin", {"kind": "annealed"}), is_markov("plan")
    (True, False, False)
    """
    if method == "langevin":
        return (settings or {}).get("kind", "mala") != "annealed"
    return method == "nuts"


def ess_bar(draws: int) -> float:
    """The bulk ESS under which draws are flagged: :data:`ESS_MIN`, or :data:`ESS_FRACTION`
    of the ``draws`` (all chains) when that is smaller.

    >>> ess_bar(4000), ess_bar(200)
    (100, 20.0)
    """
    return min(ESS_MIN, ESS_FRACTION * draws)


def chain_figures(
    values: np.ndarray, features: Sequence[str], which: Sequence[str] | None = None
) -> dict[str, dict[str, float | None]]:
    """Per feature, the rank-normalised split R-hat and the bulk ESS of Markov chains.

    ArviZ's own estimators (Vehtari et al. 2021) through
    :func:`sedge_pyro.arviz_compat.summary` (ArviZ 0.x or 1.x). A feature constant over
    every draw has no R-hat (``None``); chains each constant at different values get
    ``inf`` (ArviZ gives NaN or infinity: they have not moved at all).

    :param values: draws ``(chains, draws, features)``, two chains or more.
    :param which: the features to compute (default all).
    :returns: feature -> ``{"r_hat": float | None, "ess_bulk": float | None}``.

    References: Vehtari, Gelman, Simpson, Carpenter, Buerkner, Rank-normalization, folding,
    and localization: an improved R-hat for assessing convergence of MCMC, Bayesian
    Analysis 2021.
    """
    x = np.asarray(values, dtype=float)
    names = list(features) if which is None else [f for f in features if f in set(which)]
    index = {f: j for j, f in enumerate(features)}
    out: dict[str, dict[str, float | None]] = {}
    moving: dict[str, np.ndarray] = {}
    for f in names:
        col = x[:, :, index[f]]
        if np.ptp(col) == 0:
            out[f] = {"r_hat": None, "ess_bulk": None}
        else:
            moving[f"v{len(moving)}"] = col  # plain names: features may hold "/" or "%"
    if moving:
        data = arviz_compat.from_groups({"posterior": moving})
        with _warnings.catch_warnings():  # constant chains make ArviZ divide by zero
            _warnings.simplefilter("ignore")
            table = arviz_compat.summary(data, kind="diagnostics", round_to="none")
        for name, f in zip(moving, [f for f in names if f not in out], strict=True):
            rhat = float(table.loc[name, "r_hat"])
            ess = float(table.loc[name, "ess_bulk"])
            out[f] = {
                "r_hat": rhat if np.isfinite(rhat) else float("inf"),
                "ess_bulk": ess if np.isfinite(ess) else 0.0,
            }
    return {f: out[f] for f in names}


def _halves(
    x: np.ndarray, half: int, rng: np.random.Generator, ordered: bool
) -> tuple[np.ndarray, np.ndarray]:
    if ordered:
        # each chain's first and second half, thinned evenly: two stretches of a Markov chain
        # are as far apart as its effective size makes them, while random halves interleave
        # neighbours and sit closer than two independent samples would. Halving within each
        # chain keeps chains that disagree (R-hat's business) from raising the floor.
        x = x if x.ndim == 3 else x[None]
        m = x.shape[1] // 2
        first = x[:, :m].reshape(-1, x.shape[-1])
        second = x[:, m : 2 * m].reshape(-1, x.shape[-1])
        pick = np.linspace(0, len(first), half, endpoint=False).astype(int)
        return first[pick], second[pick]
    x = x.reshape(-1, x.shape[-1])
    i = rng.permutation(len(x))
    return x[i[:half]], x[i[half : 2 * half]]


def agreement(
    a: np.ndarray,
    b: np.ndarray,
    *,
    max_rows: int = 1000,
    seed: int = 0,
    ordered: tuple[bool, bool] = (False, False),
) -> tuple[float, float]:
    r"""The standardised MMD between two sets of draws and its split-half floor.

    The MMD (:func:`~sedge_pyro.mmd`, biased estimate) between half of each set, against the
    larger MMD between the two halves of either set: all on equal numbers of rows, so their
    finite-sample bias is the same, and all on one scale (features standardised by the four
    halves together) with one kernel (the median bandwidth of the two halves compared).
    Independent draws are halved at random; Markov chains (``ordered``) in draw order, each
    chain in two, so that their floor reflects their effective size, not their count.

    :param a: draws ``(rows, features)``, or ``(chains, draws, features)``.
    :param b: draws of the same features.
    :param max_rows: at most this many rows of each set (the MMD is quadratic).
    :param seed: seeds the random halves.
    :param ordered: whether ``a``, ``b`` are Markov chains (see :func:`is_markov`).
    :returns: ``(mmd, floor)``.

    >>> rng = np.random.default_rng(0)
    >>> mmd, floor = agreement(rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + 1)
    >>> mmd > 3 * floor
    True
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    rows = [int(np.prod(x.shape[:-1])) for x in (a, b)]
    half = min(*rows, max_rows) // 2
    a1, a2 = _halves(a, half, rng, ordered[0])
    b1, b2 = _halves(b, half, rng, ordered[1])
    # one scale and one kernel for all three: standardising each pair on its own would blow
    # a set that barely moves (a stuck chain) up to unit spread and give it a high floor
    pooled = np.concatenate([a1, a2, b1, b2])
    mu, sd = pooled.mean(0), pooled.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    a1, a2, b1, b2 = ((x - mu) / sd for x in (a1, a2, b1, b2))
    first = mmd(a1, b1, unbiased=False)  # the median bandwidth of the pooled a1, b1
    h, value = float(first.bandwidth), float(first)
    floor = max(
        float(mmd(a1, a2, bandwidth=h, unbiased=False)),
        float(mmd(b1, b2, bandwidth=h, unbiased=False)),
    )
    return value, floor


def mean_shift(
    a: np.ndarray,
    b: np.ndarray,
    *,
    seed: int = 0,
    ordered: tuple[bool, bool] = (False, False),
) -> tuple[float, float]:
    r"""The largest per-feature difference of means between two sets of draws, in pooled
    standard deviations, and its split-half floor: the same figure between the two halves of
    ``b``, the reference (halved as :func:`agreement` halves it). Only the reference's halves
    set the floor: the halves of Markov draws are groups of walkers, and walkers stuck apart
    would raise the floor exactly when the draws are worst.

    :returns: ``(shift, floor)``.

    >>> rng = np.random.default_rng(0)
    >>> shift, floor = mean_shift(rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + 0.5)
    >>> bool(shift > 0.4 and floor < 0.2)
    True
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    fa, fb = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    sd = np.sqrt((fa.var(0) + fb.var(0)) / 2)
    sd = np.where(sd > 0, sd, 1.0)

    def gap(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.max(np.abs(x.mean(0) - y.mean(0)) / sd))

    floor = gap(*_halves(b, len(fb) // 2, rng, ordered[1]))
    return gap(fa, fb), floor


def mean_z(
    a: np.ndarray, b: np.ndarray, ess_a: float | None = None, ess_b: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Per feature, the difference of two sets' means in pooled standard deviations, and in
    standard errors :math:`|\bar a - \bar b| / \sqrt{s_a^2 / n_a + s_b^2 / n_b}` with the
    effective sizes ``ess_a``, ``ess_b`` (default: the rows) as :math:`n`.

    :param a: draws ``(..., features)``.
    :param b: draws of the same features.
    :returns: ``(shift, z)``, each of shape ``(features,)``.

    >>> rng = np.random.default_rng(0)
    >>> shift, z = mean_z(rng.normal(size=(2000, 1)) + 0.2, rng.normal(size=(2000, 1)))
    >>> bool(0.1 < shift[0] < 0.3 and z[0] > 4)
    True
    """
    fa = np.asarray(a, dtype=float).reshape(-1, np.shape(a)[-1])
    fb = np.asarray(b, dtype=float).reshape(-1, np.shape(b)[-1])
    na = float(len(fa) if ess_a is None else max(1.0, min(ess_a, len(fa))))
    nb = float(len(fb) if ess_b is None else max(1.0, min(ess_b, len(fb))))
    va, vb = fa.var(0), fb.var(0)
    gap = np.abs(fa.mean(0) - fb.mean(0))
    sd = np.sqrt((va + vb) / 2)
    se = np.sqrt(va / na + vb / nb)
    shift = np.where(sd > 0, gap / np.where(sd > 0, sd, 1.0), 0.0)
    z = np.where(se > 0, gap / np.where(se > 0, se, 1.0), 0.0)
    return shift, z


def _markov_ess(values: np.ndarray, features: Sequence[str]) -> float | None:
    """The smallest bulk ESS over features of Markov draws (ArviZ), or ``None``. One chain is
    split in two (ArviZ wants two), as split R-hat splits it.
    """
    x = np.asarray(values, dtype=float)
    if x.shape[0] < 2:
        half = x.shape[1] // 2
        if half < 4:
            return None
        x = np.stack([x[0, :half], x[0, half : 2 * half]])
    try:
        figures = chain_figures(x, features)
    except Exception:  # noqa: BLE001 - one chain too short for ArviZ: use the count
        return None
    esses = [f["ess_bulk"] for f in figures.values() if f["ess_bulk"] is not None]
    return float(min(esses)) if esses else None


def verdict(
    model: Any,
    values: np.ndarray,
    features: Sequence[str],
    target: Mapping[str, Any],
    method: str,
    *,
    settings: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    tolerance: float | Mapping[str, float] | None = None,
    reference: Callable[[], Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """All checks of the module on draws ``(chains, draws, features)`` in raw units.

    :param model: the fitted model (``seen``, ``structure``, ``spec_probability``).
    :param info: the sampler's run figures (``plan``'s ``distinct`` and ``ess`` are used when
        present).
    :param reference: draws ``plan``'s reference for the cross-check when called: returns a
        :class:`~sedge_pyro.inference.Samples` (its ``to_numpy()``, ``warnings``); called
        only when the cross-check applies (see :func:`cross_check_skipped`). A
        :class:`~sedge_pyro.SedgeError` it raises (``plan`` refusing the target) skips the
        cross-check with the reason in ``diagnostics["agreement"]``.
    :returns: ``(diagnostics, warnings)``; a check that raises leaves its message in
        ``diagnostics["errors"]`` and a warning that it could not run.
    """
    settings, info = dict(settings or {}), dict(info or {})
    values = np.asarray(values, dtype=float)
    chains, total = values.shape[0], values.shape[0] * values.shape[1]
    diag: dict[str, Any] = {"draws": total, "errors": {}}
    warnings: list[str] = []
    seen = getattr(model, "seen", None)

    def guarded(name: str, check: Any) -> None:
        try:
            check()
        except Exception as err:  # a diagnostic's failure must not break sampling ...
            diag["errors"][name] = f"{type(err).__name__}: {err}"
            # ... nor pass for a clean bill of health
            warnings.append(f"the {name} check could not run ({type(err).__name__}: {err})")

    def support() -> None:
        if seen is None:
            return
        out = outside_seen(values, seen, features)
        diag["outside"] = {f: v["share"] for f, v in out.items()}
        diag["seen_range"] = {f: [v["low"], v["high"]] for f, v in out.items()}
        for f, v in out.items():
            if v["share"] > OUTSIDE_SHARE:
                warnings.append(
                    f"{v['share']:.0%} of draws have {f} outside the training range "
                    f"[{v['low']:.4g}, {v['high']:.4g}] (widened by {MARGIN:.0%}): the model "
                    "extrapolates there"
                )

    ref: list[Any] = []  # plan's reference draws, once drawn

    def agree() -> None:
        why = cross_check_skipped(method, model, target, reference is not None)
        if why is not None:
            diag["agreement"] = {"reference": None, "reason": why}
            return
        assert reference is not None
        try:
            drawn = reference()
        except SedgeError as err:  # plan refuses the target: nothing to compare with
            diag["agreement"] = {
                "reference": None,
                "reason": f"plan drew no reference ({type(err).__name__}: {err})",
            }
            return
        ref.append(drawn)
        other = np.asarray(drawn.to_numpy(), dtype=float)
        ordered = (is_markov(method, settings), False)
        value, floor = agreement(values, other, ordered=ordered)
        ratio = value / floor if floor > 0 else (float("inf") if value > 0 else 1.0)
        shift, shift_floor = mean_shift(values, other, ordered=ordered)
        ess_a = _markov_ess(values, features) if ordered[0] else None
        ess_b = drawn.info.get("ess") if isinstance(drawn.info.get("ess"), int | float) else None
        small, z = mean_z(values, other, ess_a, ess_b)
        certain = (small > SHIFT_SMALL) & (z > SHIFT_Z)
        own = list(drawn.warnings)
        diag["agreement"] = {
            "reference": "plan",
            "reference_draws": len(other),
            "mmd": value,
            "floor": floor,
            "ratio": ratio,
            "threshold": AGREEMENT_RATIO,
            "mean_shift": shift,
            "mean_shift_floor": shift_floor,
            "mean_z": {f: float(zz) for f, zz in zip(features, z, strict=True)},
            "reference_warnings": own,
        }
        shifted = shift > SHIFT_MIN and shift > SHIFT_FLOOR_RATIO * shift_floor
        if ratio <= AGREEMENT_RATIO and not shifted and not certain.any():
            return
        if own:  # a weak reference (few training rows near the target) proves nothing
            diag["agreement"]["reason"] = "plan's reference has warnings of its own: not judged"
            return
        if ratio > AGREEMENT_RATIO:
            what = (
                f"MMD {value:.3f} between their draws, {ratio:.1f}x the {floor:.3f} between "
                f"halves of one set (over {AGREEMENT_RATIO:g}x)"
            )
        elif shifted:
            what = (
                f"their means differ by up to {shift:.2f} standard deviations (halves of "
                f"plan's draws: {shift_floor:.2f})"
            )
        else:
            j = int(np.argmax(np.where(certain, z, -np.inf)))
            what = (
                f"their means of {features[j]} differ by {small[j]:.2f} standard deviations, "
                f"{z[j]:.1f} standard errors given their effective sizes"
            )
        warnings.append(
            f"{method} and plan disagree on this model and target: {what}: the sampler "
            "missed p(x | target), or the fitted model and the training rows disagree"
        )

    def satisfied() -> None:
        diag["satisfaction"] = None
        against = ref[0].to_numpy() if ref else None
        sat = satisfaction(model, values, features, target, tolerance=tolerance, reference=against)
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
            warnings.append(
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
            warnings.append(
                f"the draws do not meet the target under the fitted model: mean P(target | x) "
                f"{sat['all']:.3g}, {sat['relative']:.0%} of the {sat['reference']:.3g} {whose}"
            )

    def distinct() -> None:
        n = info.get("distinct")
        n = distinct_rows(values) if n is None else int(n)
        diag["distinct"] = n
        # plan's ESS counts the distinct training rows its resampling rests on: a thousand
        # draws of two rows' shared features are two draws whatever the other features do
        ess = info.get("ess") if method == "plan" else None  # svi's is its importance pool's
        effective = float(n)
        if isinstance(ess, int | float) and np.isfinite(ess):
            effective = min(effective, float(ess))
        if few_distinct(effective, total):
            available = None
            if seen is not None:
                available = distinct_rows(seen[list(features)].to_numpy(dtype=float))
            if not few_distinct(effective, total, available):
                return
            mcmc = list(info.get("mcmc") or []) if method == "plan" else []
            if mcmc and effective != n:
                # the ESS is the importance step's, which plan then replaced for the shared
                # features: the draws do not rest on those rows, but the rows still say how
                # little of the data supports the target
                diag["ess_replaced_by_mcmc"] = mcmc
                drawn = ", ".join(mcmc)
                warnings.append(
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
            warnings.append(
                f"the {total} draws rest on {what}: few training rows support the target "
                "(use more training data near it, or a method that draws from the fitted "
                "model)"
            )

    def chains_check() -> None:
        kind = diag["rhat_ess"] = rhat_ess(method, chains, settings, info)
        if kind["kind"] not in ("mcmc", "partial"):
            return
        figures = chain_figures(values, features, kind["features"])
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
                warnings.append(
                    f"the {chains} chains disagree: R-hat {rhats[worst]:.3g} for {worst} (over "
                    f"{RHAT_MAX:g}), they did not mix; raise warmup or draws, and compare "
                    "the chains' means"
                )
        if esses:
            worst = min(esses, key=lambda f: esses[f])
            kind["min_ess_bulk"] = esses[worst]
            # chains that disagree have a low ESS too: one warning says it
            if esses[worst] < bar and mixed:
                warnings.append(
                    f"bulk ESS {esses[worst]:.3g} for {worst} from {total} draws (under "
                    f"{bar:g}): the chains move slowly; raise warmup, draws or thin"
                )

    def importance() -> None:
        if method == "smc" and info.get("refine"):
            return  # Metropolis-adjusted moves on the model's own posterior followed
        if method == "smc" and isinstance(info.get("ess_min"), int | float):
            ess = float(info["ess_min"])
            diag["importance"] = {"ess": info.get("ess"), "particles": info.get("particles")}
            if ess < ESS_MIN:
                warnings.append(
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
        diag["importance"] = {
            "khat": float(khat),
            "ess": info.get("ess"),
            "resampled": info.get("resampled"),
        }
        ess = info.get("ess")
        if info.get("resampled"):
            if isinstance(ess, int | float) and ess < ESS_MIN:
                warnings.append(
                    f"svi's draws were resampled from an effective {ess:.3g} of its pool's "
                    f"draws (ESS, under {ESS_MIN}): the guide and the prior put little mass "
                    "where the target is likely (try method='langevin', or svi with more "
                    "steps)"
                )
            return
        if not np.isfinite(khat) or khat >= KHAT_MAX:
            warnings.append(
                f"svi's guide does not cover p(x | target): Pareto k-hat {khat:.2f} of its "
                f"importance weights (usable under {KHAT_MAX:g}), so its draws were not "
                "reweighted and follow the guide, which can miss modes and tails (try "
                "method='langevin', or svi with more steps)"
            )

    def approximate() -> None:
        if method in APPROXIMATE:
            diag["approximate"] = True
            warnings.append(APPROXIMATE[method])
        elif method == "langevin" and info.get("kind") == "annealed" and not info.get("refine"):
            diag["approximate"] = True
            warnings.append(ANNEALED_UNREFINED)

    guarded("approximate", approximate)
    guarded("support", support)
    guarded("importance", importance)
    guarded("agreement", agree)
    guarded("satisfaction", satisfied)
    guarded("distinct", distinct)
    guarded("rhat_ess", chains_check)
    return diag, warnings


def cross_check_skipped(
    method: str, model: Any, target: Mapping[str, Any], available: bool = True
) -> str | None:
    """Why the cross-check against ``plan`` does not apply, or ``None`` when it does.

    It applies to the model-based methods (:data:`CROSS_CHECKED`) on models with per-spec
    likelihoods (structures ``sparse``/``dense``, where ``plan`` runs) for targets that hold
    for every draw, when a reference can be drawn (``available``).

    >>> cross_check_skipped("plan", None, {})
    'plan is the reference: compare with another method by s.compare(other)'
    """
    if method == "plan":
        return "plan is the reference: compare with another method by s.compare(other)"
    if method not in CROSS_CHECKED:
        return f"method {method!r}: the cross-check covers {', '.join(CROSS_CHECKED)}"
    structure = getattr(model, "structure", None)
    if structure not in ("sparse", "dense"):
        return f"structure {structure!r}: plan runs on sparse and dense models only"
    if any(isinstance(v, np.ndarray) and v.ndim > 0 for v in target.values()):
        return "per-draw target: plan draws one target at a time"
    if not available:
        return "no reference sampler given"
    return None
