r"""The verdict's cross-check: draws against ``plan``'s reference on the same model and target.

``plan`` draws by the identification's factorization (Thm 1, Eq. 3), copying training rows
and using no sampler, so a model-based sampler's draws (Sec. 4.2) that disagree with it
point at the sampler or at fitted densities that the training rows contradict. The figures:
the standardised MMD over its split-half floor (:func:`agreement`; the MMD is the paper's
score, Sec. 5.1), the largest shift of means over its floor (:func:`mean_shift`) and the
shift of means in standard errors (:func:`mean_z`); :func:`cross_check_skipped` says when
the cross-check does not apply. Re-exported by :mod:`~sedge_pyro.inference.verdict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sedge_pyro.diagnostics import mmd
from sedge_pyro.inference.verdict_bars import CROSS_CHECKED

__all__ = ["agreement", "cross_check_skipped", "mean_shift", "mean_z"]


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
