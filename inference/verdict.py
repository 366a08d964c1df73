r"""The verdict every :class:`~sedge_pyro.inference.Samples` carries on its own draws.

Four checks, each cheap (milliseconds for thousands of draws) and each a pure function of the
draws, the training rows and the method, so tests can feed them known answers:

* **support** (:func:`outside_seen`): per feature, the share of draws outside the range the
  training rows span, widened by a margin. Draws far outside every training row are the
  model's extrapolation, not data it has seen.
* **satisfaction** (:func:`satisfaction`): the mean fitted probability that a draw meets the
  target, :math:`\frac1n \sum_i \prod_k \hat P(z_k \in A_k \mid V_k(x_i))`, against what
  exact draws of :math:`p(x \mid \text{target})` would score (models A/B only).
* **distinct draws** (:func:`distinct_rows`): how many different feature vectors the draws
  hold, and for ``plan`` the ESS of its resampling, counted over distinct training rows.
  ``plan`` copies training rows; a thousand draws resting on two rows are two draws.
* **R-hat/ESS** (:func:`rhat_ess`): whether R-hat and ESS mean anything for the method. They
  describe Markov chains (``langevin``'s MALA/ULA, ``nuts``, with two chains or more); for
  independent optimisations (``opt``), importance resampling (``plan``) or amortised draws
  (``svi``, ``direct``, ``dps``) ArviZ still prints numbers, which say nothing.

:func:`verdict` runs them all and returns ``(diagnostics, warnings)``: a JSON-ready dict and
one-line warnings (empty when all is well). A check that fails records its error under
``diagnostics["errors"]`` and warns that it could not run, instead of raising: a diagnostic
never breaks sampling, nor passes for a clean bill of health.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DISTINCT_FRACTION",
    "DISTINCT_MIN",
    "MARGIN",
    "OUTSIDE_SHARE",
    "SATISFACTION_LOW",
    "Verdict",
    "distinct_rows",
    "few_distinct",
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
#: fewer distinct draws than this fraction of the draws (or of the training rows' distinct
#: vectors, when fewer) is flagged
DISTINCT_FRACTION = 0.1
#: ... and so is fewer than this many distinct draws, when under half the draws
DISTINCT_MIN = 50

_NOT_MCMC = {
    "plan": "importance resampling of training rows: the draws are no Markov chain",
    "opt": "independent optimisations from training rows: the draws are no Markov chain",
    "dps": "independent diffusion runs: the draws are no Markov chain",
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
                text += f", {rel:.0%} of what exact draws would score"
            by_spec = d.get("satisfaction_by_spec") or {}
            if by_spec:
                text += " (per spec: " + ", ".join(f"{k} {v:.2f}" for k, v in by_spec.items())
                text += ")"
            lines.append(f"  mean P(target | x) under the model: {text}")
        if "distinct" in d:
            lines.append(f"  distinct draws: {d['distinct']} of {n}")
        if "rhat_ess" in d:
            r = d["rhat_ess"]
            lines.append(f"  R-hat/ESS:    {r.get('kind')} ({r.get('reason')})")
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
) -> dict[str, Any] | None:
    r"""How well the draws meet the target under the fitted model (``spec_probability``).

    With :math:`A(x) = \prod_k \hat P(z_k \in A_k \mid V_k(x))`, ``all`` is its mean over
    the draws and ``reference`` what exact draws of :math:`p(x \mid Z_T \in A)` would score:
    :math:`E_{p(x \mid A)}[A(x)] = E_p[A^2] / E_p[A]`, estimated on (at most ``max_rows``)
    training rows as draws of :math:`p(x)`. ``relative = all / reference``: about 1 for good
    draws whatever the target (a point target on a continuous spec scores a small
    probability of its tolerance window even for perfect draws), well below 1 for draws
    that miss it. ``by_spec``: each spec's mean probability over the draws.

    :returns: ``{"all", "reference", "relative", "by_spec"}`` (``reference`` and
        ``relative`` ``None`` when no training row gives the target any probability), or
        ``None`` for models without per-spec likelihoods (structures other than
        ``sparse``/``dense``) and for per-draw targets.
    """
    if getattr(model, "structure", None) not in ("sparse", "dense"):
        return None
    if any(isinstance(v, np.ndarray) and v.ndim > 0 for v in target.values()):
        return None
    df = pd.DataFrame(np.asarray(values).reshape(-1, len(features)), columns=list(features))
    probs = model.spec_probability(df, target, tolerance=tolerance)
    mean = float(probs["all"].mean())
    reference = relative = None
    if model.seen is not None:
        seen = model.seen[list(features)]
        if len(seen) > max_rows:
            seen = seen.sample(max_rows, random_state=0)
        a = model.spec_probability(seen, target, tolerance=tolerance)["all"].to_numpy()
        if a.sum() > 0:
            reference = float((a * a).sum() / a.sum())
            relative = mean / reference
    by_spec = {k: float(probs[k].mean()) for k in probs.columns if k != "all"}
    return {"all": mean, "reference": reference, "relative": relative, "by_spec": by_spec}


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
            return {"kind": "n/a", "reason": "one chain: R-hat needs two or more", "features": []}
        return {"kind": "mcmc", "reason": f"{chains} Markov chains", "features": None}
    mcmc = list(info.get("mcmc") or []) if method == "plan" else []
    if mcmc and chains >= 2:
        return {
            "kind": "partial",
            "reason": f"{_NOT_MCMC['plan']}, except {', '.join(mcmc)} drawn by MALA chains",
            "features": mcmc,
        }
    reason = _NOT_MCMC.get(method, f"method {method!r} runs no Markov chain")
    return {"kind": "n/a", "reason": reason, "features": []}


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
) -> tuple[dict[str, Any], list[str]]:
    """All checks of the module on draws ``(chains, draws, features)`` in raw units.

    :param model: the fitted model (``seen``, ``structure``, ``spec_probability``).
    :param info: the sampler's run figures (``plan``'s ``distinct`` and ``ess`` are used when
        present).
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

    def satisfied() -> None:
        diag["satisfaction"] = None
        sat = satisfaction(model, values, features, target, tolerance=tolerance)
        if sat is None:
            return
        diag["satisfaction"] = sat["all"]
        diag["satisfaction_reference"] = sat["reference"]
        diag["satisfaction_relative"] = sat["relative"]
        diag["satisfaction_by_spec"] = sat["by_spec"]
        if sat["relative"] is not None and sat["relative"] < SATISFACTION_LOW:
            warnings.append(
                f"the draws do not meet the target under the fitted model: mean P(target | x) "
                f"{sat['all']:.3g}, {sat['relative']:.0%} of the {sat['reference']:.3g} exact "
                "draws of p(x | target) would score"
            )

    def distinct() -> None:
        n = info.get("distinct")
        n = distinct_rows(values) if n is None else int(n)
        diag["distinct"] = n
        # plan's ESS counts the distinct training rows its resampling rests on: a thousand
        # draws of two rows' shared features are two draws whatever the other features do
        ess = info.get("ess")
        effective = float(n)
        if isinstance(ess, int | float) and np.isfinite(ess):
            effective = min(effective, float(ess))
        if few_distinct(effective, total):
            available = None
            if seen is not None:
                available = distinct_rows(seen[list(features)].to_numpy(dtype=float))
            if few_distinct(effective, total, available):
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
        diag["rhat_ess"] = rhat_ess(method, chains, settings, info)

    guarded("support", support)
    guarded("satisfaction", satisfied)
    guarded("distinct", distinct)
    guarded("rhat_ess", chains_check)
    return diag, warnings
