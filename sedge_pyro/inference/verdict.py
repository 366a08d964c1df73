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

Where each part lives: the bars in :mod:`~sedge_pyro.inference.verdict_bars`, the figures in
:mod:`~sedge_pyro.inference.verdict_figures` (support, satisfaction, distinct draws,
R-hat/ESS) and :mod:`~sedge_pyro.inference.verdict_agreement` (the cross-check), the checks
that word the warnings in :mod:`~sedge_pyro.inference.verdict_checks`; this module holds
:class:`Verdict` and :func:`verdict`, which runs the named checks in turn, and re-exports
the others' public names. Not from the paper, which scores draws by their MMD to the Oracle
(Sec. 5.1): these are the checks a user can run on the draws of Sec. 4.2 without one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sedge_pyro.inference.verdict_agreement import (
    agreement,
    cross_check_skipped,
    mean_shift,
    mean_z,
)
from sedge_pyro.inference.verdict_bars import (
    AGREEMENT_RATIO,
    AGREEMENT_ROWS,
    ANNEALED_UNREFINED,
    APPROXIMATE,
    CROSS_CHECKED,
    DISTINCT_FRACTION,
    DISTINCT_MIN,
    ESS_FRACTION,
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
from sedge_pyro.inference.verdict_checks import CHECKS, Run
from sedge_pyro.inference.verdict_figures import (
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
    "mean_z",
    "outside_seen",
    "rhat_ess",
    "satisfaction",
    "verdict",
]


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
    """All checks on draws ``(chains, draws, features)`` in raw units: the named steps of
    :data:`~sedge_pyro.inference.verdict_checks.CHECKS`, in turn, each guarded.

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
    run = Run(
        model=model,
        values=np.asarray(values, dtype=float),
        features=features,
        target=target,
        method=method,
        settings=dict(settings or {}),
        info=dict(info or {}),
        tolerance=tolerance,
        reference=reference,
    )
    run.diag.update({"draws": run.total, "errors": {}})
    for name, check in CHECKS:
        try:
            check(run)
        except Exception as err:  # a diagnostic's failure must not break sampling ...
            run.diag["errors"][name] = f"{type(err).__name__}: {err}"
            # ... nor pass for a clean bill of health
            run.warnings.append(f"the {name} check could not run ({type(err).__name__}: {err})")
    return run.diag, run.warnings
