r"""The verdict's figures on one set of draws, each a pure function of the draws, the training
rows, the method and the fitted model, so tests can feed them known answers.

* support (:func:`outside_seen`): per feature, the share of draws outside the training range;
* satisfaction (:func:`satisfaction`): the mean fitted probability that a draw meets the
  target, :math:`\frac1n \sum_i \prod_k \hat P(z_k \in A_k \mid V_k(x_i))`, the product of
  the spec likelihoods of Sec. 4.1 (Eq. 4) that the generation of Sec. 4.2 maximises, and the
  share of draws that cannot meet the target at all;
* distinct draws (:func:`distinct_rows`, :func:`few_distinct`);
* R-hat/ESS (:func:`rhat_ess`, :func:`is_markov`, :func:`ess_bar`, :func:`chain_figures`):
  whether they mean anything for the method, and their figures where they do.

The cross-check against ``plan`` is :mod:`~sedge_pyro.inference.verdict_agreement`; the
warnings these figures raise are :mod:`~sedge_pyro.inference.verdict_checks`; the bars are
:mod:`~sedge_pyro.inference.verdict_bars`. Re-exported by :mod:`~sedge_pyro.inference.verdict`.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro import arviz_compat
from sedge_pyro.inference.verdict_bars import (
    _NOT_MCMC,
    DISTINCT_FRACTION,
    DISTINCT_MIN,
    ESS_FRACTION,
    ESS_MIN,
    MARGIN,
    NEGLIGIBLE_FACTOR,
)

__all__ = [
    "chain_figures",
    "distinct_rows",
    "ess_bar",
    "few_distinct",
    "is_markov",
    "outside_seen",
    "rhat_ess",
    "satisfaction",
]


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
    relative = None
    ref, source, scales = _reference_scores(model, features, target, tolerance, max_rows, reference)
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


def _reference_scores(
    model: Any,
    features: Sequence[str],
    target: Mapping[str, Any],
    tolerance: float | Mapping[str, float] | None,
    max_rows: int,
    reference: np.ndarray | None,
) -> tuple[float | None, str | None, list[float]]:
    r""":func:`satisfaction`'s reference: what draws of :math:`p(x \mid \text{target})` score
    (``plan``'s draws, else estimated on the training rows), its source, and the estimates
    of the median :math:`A` of draws that meet the target.
    """
    ref = source = None
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
    return ref, source, scales


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
