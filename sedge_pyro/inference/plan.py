r"""The ``plan`` sampler: draws that follow :func:`~sedge_pyro.identify`'s factorization.

The factorization of :math:`p(X \mid Z_T = z)` is a product of terms on the training
distribution :math:`p_D` (Thms 1-3, Prop. 4, Eq. (3)). Each term is compiled into one of two
operations on a population of particles (partial feature vectors):

* a **draw term** :math:`p_D(F \mid C, Z_E \in A_E)` fills the features ``F`` of every particle
  with those of a training row whose ``C`` matches the particle's and whose specs meet the
  events ``E``, chosen with probability proportional to the row's weight;
* a **weight term** :math:`p_D(Z_E \in A_E \mid C)` multiplies each particle's importance
  weight by that probability, estimated on the training rows whose ``C`` matches.

A row's weight for events ``E`` is the product over its specs of an *empirical* indicator
:math:`1[z_i \in A_i]` (a category, a 0/1 value or an interval: the exact conditional of the
training rows), or, for a point target on a continuous spec (an event of probability zero),
the *fitted* likelihood :math:`\hat p(z_i \mid V_i)` at the row's features. Rows "match" on
``C`` exactly when ``C`` takes few distinct values in the training rows (at most one per five
rows: discrete features), else through the ``k`` nearest rows in normalised units.

Identifiable targets need no weights: every component is drawn from its own block of rows and
the blocks are recombined (Thm 1). For a conservative target (Eq. (3)), the shared features
:math:`X_c` and the first block are drawn from :math:`p_D(X_c, F_1 \mid z_{B_1})`, weighted by
:math:`\prod_{r \ge 2} p_D(z_{B_r} \mid X_c)` and resampled (sampling-importance-resampling,
whose effective sample size is reported), and each group's private features are then drawn
given :math:`X_c` and its own specs. Draws are always training values (per block), so ``plan``
never leaves the support of the training rows.

**Selection-aware weights** (``selection="odds"``, the default where it applies). Eq. (3)
weighs the first block's rows by :math:`\prod_{r \ge 2} p_D(z_{B_r} \mid X_c)`, which is exact
only as the held-out combination becomes rare (Prop. 4, Thm 3). When the training rows are
:math:`p(x, z \mid S = 1)` with :math:`S = 0` exactly on the target combination (no training
row meets the whole target, which the rows confirm), the selection is known and the
approximation can be replaced by an exact correction. Rows meeting the first block's events
have :math:`p_D(X_c, F_1 \mid A_1) \propto p(X_c, F_1) P(A_1 \mid \cdot) (1 - \Pi(X_c))`,
:math:`\Pi(X_c) = \prod_{r \ge 2} P(A_r \mid X_c)`, so weighting them by the odds
:math:`\Pi / (1 - \Pi)` gives :math:`p(X_c, F_1 \mid A_1, \ldots, A_m)` exactly; the later
blocks' draw terms :math:`p_D(F_r \mid X_c, A_r)` need no correction (the selection's factor
does not depend on :math:`F_r` given :math:`X_c`). :math:`P(A_r \mid X_c)` itself is biased in
:math:`p_D` but not on the rows where another block's event fails: the selection never
touched them, and given :math:`X_c` the blocks are independent (Thm 1), so it is estimated
there, by the same neighbours or groups as the rarity form. The rarity form stays for point
targets on continuous specs (events of probability zero), for training rows that do meet the
target (the selection was something else) and for targets spanning several components.


``plan`` does not move a state: :func:`kernel`'s ``init`` compiles the plan (the
identification and the training rows' weights) and its ``step`` draws one batch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from sedge_pyro.errors import OptionError, SamplingError
from sedge_pyro.identify import Identification, identify
from sedge_pyro.inference.draws import Draws, Kernel, check_finite
from sedge_pyro.inference.langevin import sample_langevin
from sedge_pyro.inference.plan_terms import CompiledPlan
from sedge_pyro.inference.target import Problem
from sedge_pyro.options import number, whole

__all__ = ["SELECTIONS", "PlanInfo", "PlanState", "kernel", "sample_plan"]

#: the choices of ``sample_plan``'s ``selection`` option
SELECTIONS = ("auto", "odds", "rarity")

#: a component falls back to the rarity form when the odds' unreliable share exceeds this
_UNRELIABLE_SHARE = 0.1


class PlanState(NamedTuple):
    """The compiled plan and its last batch of draws.

    :param plan: the training rows, their per-event weights and the terms' operations.
    :param res: the identification whose factorization the plan follows.
    :param rows: per draw and feature, the training row its value copies (-1: none yet),
        shape ``(draws, d)``.
    :param log_w: per draw, its importance weight before resampling (0 when none),
        ``(draws,)``.
    :param fixed: the shared features drawn by MCMC instead, feature -> normalised values
        ``(draws,)`` (not training rows).
    """

    plan: CompiledPlan
    res: Identification
    rows: torch.Tensor
    log_w: torch.Tensor
    fixed: dict[str, torch.Tensor]


class PlanInfo(NamedTuple):
    """One batch's diagnostics.

    :param ess: per component, the smallest effective sample size of its resampling.
    :param ess_fraction: per component, that ESS over the particles.
    """

    ess: list[float]
    ess_fraction: list[float]


def sample_plan(
    problem: Problem,
    n: int,
    *,
    chains: int,
    generator: torch.Generator,
    progress: bool,
    oversample: int = 8,
    k: int | None = None,
    min_ess: float = 100.0,
    selection: str = "auto",
) -> Draws:
    r"""Draw ``chains x n`` feature vectors by compiling the identification's factorization.

    :param problem: the fitted model and compiled target.
    :param n: draws per chain (chains of ``plan`` are independent batches).
    :param oversample: particles per kept draw before importance resampling, for components
        with weight terms (conservative targets).
    :param k: neighbours used to match continuous conditioning features (default
        :math:`\max(10, \sqrt{n_{rows}})`, at most 200).
    :param min_ess: when a conservative component's importance resampling rests on fewer
        effective particles than this, its shared features :math:`X_c` are drawn instead by
        MCMC (``langevin``'s MALA on the model's :math:`p(x \mid Z_T = z)`, whose
        :math:`X_c`-marginal is :math:`p(X_c) \prod_r p(z_{B_r} \mid X_c)`, Eq. (3)), and
        each group's features given them as before. Needs a prior with a density and
        continuous :math:`X_c`; otherwise the resampled draws are kept. ``0``: never;
        ``math.inf``: always.
    :param selection: how a conservative component's weight terms are estimated.
        ``"rarity"``: as Eq. (3) reads, :math:`\prod_{r \ge 2} p_D(z_{B_r} \mid X_c)`, exact
        only as the held-out combination becomes rare (Prop. 4). ``"odds"``: the exact
        correction for a selection that removes the target combination itself (see the
        module): the odds :math:`\Pi / (1 - \Pi)`, :math:`\Pi = \prod_{r \ge 2} P(z_{B_r}
        \in A_r \mid X_c)` estimated on the rows the selection cannot have touched. ``"auto"``
        (default): ``"odds"`` when it applies (every target spec is an event of positive
        probability, no training row meets the whole target, and the target lies in one
        component), else ``"rarity"``, and ``"rarity"`` too for a component whose odds
        are ill-conditioned while the rarity form's resampling is sound: the odds rest on
        fewer than ``min_ess`` effective rows, or over 10% of their weight sits where
        :math:`1 - \Pi(X_c)` is under 3 / ``k`` (a few neighbours' misses decide it). Where
        :math:`\Pi(X_c)` nears 1 the training rows thin out, and the odds' variance and the
        estimate's nonlinearity beat the rarity form's bias (a three-block chain: 92% of the
        weight there, 8.1x the floor against the rarity form's 1.5x);
        ``info["selection"]`` says which ran and ``info["selection_reason"]`` why.
    :returns: :class:`Draws` with per-draw ``log_weight`` (the importance weight of the draw
        before resampling, 0 when there was none), and in ``info`` the identification
        ``status``, the ``factorization`` text, the smallest effective sample size
        ``ess`` (and ``ess_fraction``) of the importance resampling over components, counted
        over *distinct* particles (copies of one training row add their weights: draws that
        rest on two rows have ``ess <= 2``), ``mcmc``: the shared features drawn by MCMC
        (empty when none were), ``distinct``: the number of distinct draws, and
        ``rows_used``: the number of distinct training rows the draws copy values from.
    :raises OptionError: for ``oversample < 1`` or ``k < 1``, or a point target on a
        continuous spec with a model that has no per-spec likelihood.
    :raises SamplingError: when no training row supports a term.
    """
    oversample = whole("oversample", oversample)
    k = whole("k", k, none_ok=True)
    min_ess = number("min_ess", min_ess, positive=False, finite=False)
    if selection not in SELECTIONS:
        raise OptionError(f"selection={selection!r}: expected one of {', '.join(SELECTIONS)}")
    options = {"oversample": oversample, "k": k, "min_ess": min_ess, "selection": selection}
    plan = kernel(problem, n, chains, **options)
    state, info = plan.step(plan.init(generator), generator)
    return _plan_draws(problem, state, info, chains, n)


def kernel(
    problem: Problem,
    n: int,
    chains: int,
    *,
    oversample: int,
    k: int | None,
    min_ess: float,
    selection: str,
) -> Kernel:
    """``plan`` as a :class:`~sedge_pyro.inference.draws.Kernel`: ``init`` identifies the
    target and compiles the plan (no randomness; the plan draws with the generator it is
    given); ``step`` draws a batch of ``chains x n`` (see :func:`sample_plan` for the options).
    """
    model, target = problem.model, problem.target
    total = chains * n

    def init(generator: torch.Generator) -> PlanState:
        res = identify(model.graph, target.target, model.seen, tolerance=target.tolerance)
        plan = CompiledPlan(problem, res, k, generator, selection)
        rows = torch.full((total, problem.dim), -1, dtype=torch.long, device=problem.device)
        return PlanState(plan, res, rows, torch.zeros(total, device=problem.device), {})

    def step(state: PlanState, generator: torch.Generator) -> tuple[PlanState, PlanInfo]:
        plan, res = state.plan, state.res
        plan.g = generator
        rows = torch.full((total, problem.dim), -1, dtype=torch.long, device=problem.device)
        log_w = torch.zeros(total, device=problem.device)
        ess: list[float] = []
        fractions: list[float] = []
        # shared features drawn by MCMC: feature -> normalised values (not training rows)
        fixed: dict[str, torch.Tensor] = {}
        posterior: torch.Tensor | None = None
        for comp, comp_terms in zip(res.components, plan.by_component(), strict=True):
            feats, lw, comp_ess, frac = _component(
                plan, comp_terms, total, oversample, selection, min_ess
            )
            if comp_ess < min_ess and plan.can_use_mcmc(comp):
                if posterior is None:
                    posterior = _posterior_draws(problem, n, chains, generator)
                xc = {f: posterior[:, model.features.index(f)] for f in sorted(comp.shared)}
                feats = plan.run_given(comp_terms, total, xc)
                lw = torch.zeros(total, device=problem.device)
                fixed.update(xc)
            for f, r in feats.items():
                if f not in fixed:
                    rows[:, model.features.index(f)] = r
            log_w += lw.to(log_w.device)
            ess.append(comp_ess)
            fractions.append(frac)
        return PlanState(plan, res, rows, log_w, fixed), PlanInfo(ess, fractions)

    return Kernel(init, step)


def _component(
    plan: CompiledPlan,
    terms: list[Any],
    total: int,
    oversample: int,
    selection: str,
    min_ess: float,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, float, float]:
    """Run one component's terms (:meth:`CompiledPlan.run`); with ``selection="auto"``, fall
    back to the rarity form where the odds are ill-conditioned and its resampling is sound.
    """
    plan.unreliable = 0.0
    feats, lw, comp_ess, frac = plan.run(terms, total, oversample)
    thin = plan.unreliable > _UNRELIABLE_SHARE
    if selection == "auto" and plan.selection == "odds" and (comp_ess < min_ess or thin):
        # the odds rest on few rows where prod_r P(A_r | X_c) is near 1 (positivity in X_c
        # nearly fails): the rarity form's bias beats that variance when its ESS is fine
        plan.selection = "rarity"
        rarity = plan.run(terms, total, oversample)
        if rarity[2] >= min_ess:
            why = (
                f"{plan.unreliable:.0%} of the odds' weight sat where 1 - prod_r P(A_r | "
                "X_c) rests on a few neighbours' misses"
                if thin
                else f"the odds' importance resampling rested on an effective "
                f"{comp_ess:.0f} rows (under min_ess={min_ess:g})"
            )
            feats, lw, comp_ess, frac = rarity
            plan.selection_reason = (
                f"{why}: the rarity form of Eq. (3) was used, biased as far as the "
                "held-out combination is not rare"
            )
        else:
            plan.selection = "odds"
    return feats, lw, comp_ess, frac


def _plan_draws(problem: Problem, state: PlanState, info: PlanInfo, chains: int, n: int) -> Draws:
    """A batch as :class:`Draws`: the training values the rows copy (raw, exactly, and
    normalised) with the MCMC-drawn shared features in their place, and the info.

    :raises SamplingError: when some feature was drawn by no term.
    """
    model, plan, rows, fixed = problem.model, state.plan, state.rows, state.fixed
    missing = [
        f for j, f in enumerate(model.features) if f not in fixed and bool((rows[:, j] < 0).any())
    ]
    if missing:
        raise SamplingError(f"method 'plan' drew no value for feature {missing[0]!r}")
    cols = torch.arange(problem.dim, device=problem.device)
    x = plan.X[rows.clamp(min=0), cols]
    # the raw training values themselves, not a round trip through the normalisation
    assert model.seen is not None and model.columns is not None
    raw = model.seen[list(model.features)].to_numpy(dtype=float)[
        rows.clamp(min=0).cpu().numpy(), cols.cpu().numpy()
    ]
    for f, v in fixed.items():
        j = model.features.index(f)
        x[:, j] = v
        raw[:, j] = model.columns[f].decode(v.detach().cpu().numpy())
    check_finite(x, "plan", "end")
    out: dict[str, Any] = {
        "status": state.res.status.name,
        "factorization": str(state.res.factorization),
        "ess": min(info.ess, default=math.inf),
        "ess_fraction": min(info.ess_fraction) if info.ess_fraction else 1.0,
        "k": plan.k,
        "mcmc": sorted(fixed),
        "distinct": int(np.unique(raw, axis=0).shape[0]),
        "rows_used": int(torch.unique(rows[rows >= 0]).numel()),
        "selection": plan.selection,
        "selection_reason": plan.selection_reason,
    }
    return Draws(
        x.reshape(chains, n, problem.dim),
        {"log_weight": state.log_w.reshape(chains, n)},
        out,
        raw.reshape(chains, n, problem.dim),
    )


def _posterior_draws(
    problem: Problem, n: int, chains: int, generator: torch.Generator
) -> torch.Tensor:
    r"""``chains x n`` draws of the model's :math:`p(x \mid Z_T = z)` by MALA, flattened
    chain-major like the plan's particles.
    """
    draws = sample_langevin(problem, n, chains=chains, generator=generator, progress=False)
    return draws.x.reshape(chains * n, problem.dim)
