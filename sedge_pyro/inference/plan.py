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

References: Thms 1-3, Prop. 4 and Eq. (3) of the SEDGE paper; Rubin (1988) for SIR.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from sedge_pyro.assumptions import Coverage
from sedge_pyro.errors import OptionError, SamplingError
from sedge_pyro.expr import Term
from sedge_pyro.identify import Identification, identify
from sedge_pyro.inference.draws import Draws, check_finite
from sedge_pyro.inference.langevin import sample_langevin
from sedge_pyro.inference.target import Problem
from sedge_pyro.options import number, whole

__all__ = ["SELECTIONS", "sample_plan"]

#: the choices of ``sample_plan``'s ``selection`` option
SELECTIONS = ("auto", "odds", "rarity")

#: conditioning values count as discrete when there is at most one distinct value per this
#: many training rows
_ROWS_PER_VALUE = 5
#: the odds are unreliable where 1 - Pi is under this many over k (a few neighbour misses) ...
_ODDS_RESOLUTION = 3.0
#: ... and a component falls back to the rarity form when that holds this share of the weight
_UNRELIABLE_SHARE = 0.1
#: bound on particle-by-row distances held at once
_MAX_DISTANCES = 1 << 22


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
    model, target = problem.model, problem.target
    res = identify(model.graph, target.target, problem.model.seen, tolerance=target.tolerance)
    plan = _Plan(problem, res, k, generator, selection)
    total = chains * n
    rows = torch.full((total, problem.dim), -1, dtype=torch.long, device=problem.device)
    log_w = torch.zeros(total, device=problem.device)
    ess: list[float] = []
    fractions: list[float] = []
    # shared features drawn by MCMC: feature -> normalised values (not training rows)
    fixed: dict[str, torch.Tensor] = {}
    posterior: torch.Tensor | None = None
    for comp, comp_terms in zip(res.components, plan.by_component(), strict=True):
        plan.unreliable = 0.0
        feats, lw, comp_ess, frac = plan.run(comp_terms, total, oversample)
        thin = plan.unreliable > _UNRELIABLE_SHARE
        if selection == "auto" and plan.selection == "odds" and (comp_ess < min_ess or thin):
            # the odds rest on few rows where prod_r P(A_r | X_c) is near 1 (positivity in X_c
            # nearly fails): the rarity form's bias beats that variance when its ESS is fine
            plan.selection = "rarity"
            rarity = plan.run(comp_terms, total, oversample)
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
    info: dict[str, Any] = {
        "status": res.status.name,
        "factorization": str(res.factorization),
        "ess": min(ess, default=math.inf),
        "ess_fraction": min(fractions) if fractions else 1.0,
        "k": plan.k,
        "mcmc": sorted(fixed),
        "distinct": int(np.unique(raw, axis=0).shape[0]),
        "rows_used": int(torch.unique(rows[rows >= 0]).numel()),
        "selection": plan.selection,
        "selection_reason": plan.selection_reason,
    }
    return Draws(
        x.reshape(chains, n, problem.dim),
        {"log_weight": log_w.reshape(chains, n)},
        info,
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


class _Plan:
    """The training rows, their per-event weights, and the operations of the terms."""

    def __init__(
        self,
        problem: Problem,
        res: Identification,
        k: int | None,
        generator: torch.Generator,
        selection: str = "rarity",
    ) -> None:
        self.problem = problem
        self.model = problem.model
        self.res = res
        self.g = generator
        self.device = problem.device
        self.X = problem.train_x
        self.n_rows = self.X.shape[0]
        self.k = int(k) if k is not None else int(min(200, max(10, math.isqrt(self.n_rows))))
        seen = self.model.seen
        assert seen is not None and res.factorization is not None
        cov = Coverage(seen, problem.target.target, problem.target.tolerance)
        self.weights: dict[str, torch.Tensor] = {}
        for e in problem.target.events:
            if e.density:
                if self.model.structure not in ("sparse", "dense"):
                    raise OptionError(
                        f"method 'plan' weighs a point target on continuous {e.spec!r} by its "
                        f"fitted likelihood; structure {self.model.structure!r} has none: give "
                        "an interval instead"
                    )
                lik = self.model.likelihood(e.spec)
                y = torch.full((self.n_rows, 1), e.low, device=self.device)
                with torch.no_grad():
                    lp = lik.log_prob(y, self.X[:, list(e.context)])
                # densities enter only as relative weights: scale them to at most 1
                self.weights[e.spec] = (lp - lp.max()).exp()
            else:
                mask = cov.masks[e.spec]
                self.weights[e.spec] = torch.as_tensor(mask, dtype=torch.float32).to(self.device)
        self._groups: dict[tuple[int, ...], tuple[torch.Tensor, int] | None] = {}
        self.selection, self.selection_reason = self._selection(selection)
        self.unreliable = 0.0

    def _selection(self, choice: str) -> tuple[str, str]:
        """Which estimate of the weight terms applies (see ``sample_plan``), and why."""
        events = self.problem.target.events
        conservative = [c for c in self.res.components if len(c.blocks) > 1]
        if not conservative:
            return "none", "no conservative component: the factorization has no weight term"
        if choice == "rarity":
            return "rarity", "asked for"
        why = ""
        if any(e.density for e in events):
            why = "a point target on a continuous spec is an event of probability zero"
        elif bool((self._row_weight([e.spec for e in events]) > 0).any()):
            why = (
                "training rows meet the whole target, so the selection did not remove "
                "exactly the target combination"
            )
        elif len(self.res.components) > 1 and any(
            c.specs and c not in conservative for c in self.res.components
        ):
            why = "the target spans several components"
        if why:
            if choice == "odds":
                raise OptionError(f"selection='odds' does not apply to this target: {why}")
            return "rarity", why
        return "odds", (
            "no training row meets the whole target: the selection removed the target "
            "combination, whose odds correct the weight terms exactly (no rarity needed)"
        )

    # ------------------------------------------------------------------ structure

    def by_component(self) -> list[list[Term]]:
        """The factorization's terms, grouped by the component they belong to, in order."""
        assert self.res.factorization is not None
        terms = [f.term for f in self.res.factorization.factors]
        out = []
        for comp in self.res.components:
            names = comp.features | comp.specs
            out.append([t for t in terms if {v.name for v in t.lhs + t.rhs} <= names])
        covered = sum(len(t) for t in out)
        if covered != len(terms):
            raise SamplingError("method 'plan' could not assign every term to a component")
        return out

    def _values(self, names: list[str], values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The particles' normalised values of ``names``, shape ``(particles, len(names))``
        (a particle holds, per feature, the training row it was drawn from).
        """
        idx = self._idx(names)
        cols = [
            values[f] if values[f].is_floating_point() else self.X[values[f], j]
            for f, j in zip(names, idx, strict=True)
        ]
        return torch.stack(cols, 1)

    def _idx(self, names: list[str]) -> list[int]:
        return [self.model.features.index(f) for f in names]

    def _row_weight(self, events: list[str]) -> torch.Tensor:
        w = torch.ones(self.n_rows, device=self.device)
        for e in events:
            w = w * self.weights[e]
        return w

    # ------------------------------------------------------------------ one component

    def run(
        self, terms: list[Term], n_out: int, oversample: int
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, float, float]:
        """Run a component's terms; returns its features' values, the log-weights the kept
        particles had when resampled, the smallest ESS and ESS / particles.
        """
        weighted = any(not _free(t.lhs) and _free(t.rhs) for t in terms)
        n_part = n_out * oversample if weighted else n_out
        values: dict[str, torch.Tensor] = {}
        log_w = torch.zeros(n_part, device=self.device)
        # odds: the summed log P(A_r | X_c) of the weight terms, turned into odds at resampling
        log_pi = torch.zeros(n_part, device=self.device)
        kept = torch.zeros(n_part, device=self.device)
        pending = False
        ess, frac = math.inf, 1.0
        for term in terms:
            lhs_free = _free(term.lhs)
            lhs_events = [v.name for v in term.lhs if v.value is not None]
            rhs_free = _free(term.rhs)
            rhs_events = [v.name for v in term.rhs if v.value is not None]
            if lhs_events and rhs_free:
                if self.selection == "odds":
                    log_pi = log_pi + self._log_event_prob(lhs_events, rhs_free, values, True)
                else:
                    log_w = log_w + self._log_event_prob(lhs_events, rhs_free, values)
                pending = True
            # an event term with nothing free to condition on is a constant factor
            if lhs_free:
                if pending and rhs_free:
                    log_w = log_w + self._log_odds(log_pi)
                    self._note_unreliable(log_w, log_pi)
                    values, kept, e, f = self._resample(values, log_w, kept, n_out)
                    ess, frac = min(ess, e), min(frac, f)
                    log_w = torch.zeros(n_out, device=self.device)
                    log_pi = torch.zeros(n_out, device=self.device)
                    pending = False
                events = rhs_events + lhs_events
                rows, e = self._draw_rows(lhs_free, rhs_free, events, values, log_w.shape[0])
                ess = min(ess, e)
                for f_name in lhs_free:
                    values[f_name] = rows
        if pending or log_w.shape[0] != n_out:
            if pending:
                log_w = log_w + self._log_odds(log_pi)
                self._note_unreliable(log_w, log_pi)
            values, kept, e, f = self._resample(values, log_w, kept, n_out)
            ess, frac = min(ess, e), min(frac, f)
        return values, kept, ess, frac

    def can_use_mcmc(self, comp: Any) -> bool:
        """Whether a component's shared features can be drawn by MCMC instead: it has some,
        they are continuous (not grouped as discrete values), and the prior has a density.
        """
        if not comp.shared or not self.problem.prior.has_log_prob:
            return False
        return self._groups_of(sorted(comp.shared)) is None

    def run_given(
        self, terms: list[Term], n_out: int, xc: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        r"""Run a component's draw terms with its shared features ``xc`` already drawn
        (normalised values): each term :math:`p_D(F, X_c \mid C, Z_E)` becomes
        :math:`p_D(F \mid X_c, C, Z_E)`; weight terms are already in ``xc``'s draws.
        """
        values: dict[str, torch.Tensor] = dict(xc)
        for term in terms:
            lhs = [f for f in _free(term.lhs) if f not in xc]
            if not lhs:
                continue
            cond = list(dict.fromkeys(_free(term.rhs) + [f for f in _free(term.lhs) if f in xc]))
            events = [v.name for v in term.rhs + term.lhs if v.value is not None]
            rows, _ = self._draw_rows(lhs, cond, events, values, n_out)
            for f in lhs:
                values[f] = rows
        return {f: v for f, v in values.items() if f not in xc}

    def _resample(
        self,
        values: dict[str, torch.Tensor],
        log_w: torch.Tensor,
        kept: torch.Tensor,
        n_out: int,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, float, float]:
        """Sampling-importance-resampling of the particles down to ``n_out``."""
        if not bool(torch.isfinite(log_w).any()):
            raise SamplingError(
                "method 'plan': every particle has weight 0: no training row supports the "
                "target's blocks together (the overlap assumption fails for this target)"
            )
        w = (log_w - log_w.max()).exp()
        ess = self._distinct_ess(values, w)
        idx = torch.multinomial(w, n_out, replacement=True, generator=self.g)
        out = {f: v[idx] for f, v in values.items()}
        return out, kept[idx] + log_w[idx], ess, ess / log_w.shape[0]

    def _distinct_ess(self, values: dict[str, torch.Tensor], w: torch.Tensor) -> float:
        r"""The effective sample size :math:`(\sum_u W_u)^2 / \sum_u W_u^2` over the
        *distinct* particles :math:`u` (equal feature values), :math:`W_u` the summed weight of
        the particles equal to ``u``: particles copy training rows, and a thousand copies of
        two rows are two effective draws, not a thousand.
        """
        if values:
            _, inverse = torch.unique(
                self._values(sorted(values), values), dim=0, return_inverse=True
            )
            w = torch.zeros(int(inverse.max()) + 1, dtype=w.dtype, device=w.device).index_add_(
                0, inverse, w
            )
        return float(w.sum() ** 2 / (w * w).sum())

    # ------------------------------------------------------------------ matching rows

    def _groups_of(self, cond: list[str]) -> tuple[torch.Tensor, int] | None:
        """Group ids of the training rows by their ``cond`` values, if discrete."""
        key = tuple(self._idx(cond))
        if key not in self._groups:
            _, inverse = torch.unique(self.X[:, list(key)], dim=0, return_inverse=True)
            n_groups = int(inverse.max()) + 1
            self._groups[key] = (
                (inverse, n_groups) if n_groups * _ROWS_PER_VALUE <= self.n_rows else None
            )
        return self._groups[key]

    def _particle_groups(self, cond: list[str], values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The group id of each particle's ``cond`` values (they are training values)."""
        rows = self.X[:, self._idx(cond)]
        parts = self._values(cond, values)
        _, inverse = torch.unique(torch.cat([rows, parts]), dim=0, return_inverse=True)
        groups = self._groups_of(cond)
        assert groups is not None
        row_ids, n_groups = groups
        # the unique ids of the joint call map onto the training rows' groups
        lookup = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.long, device=self.device)
        lookup[inverse[: self.n_rows]] = row_ids
        return lookup[inverse[self.n_rows :]]

    def _neighbours(
        self, cond: list[str], values: dict[str, torch.Tensor], candidates: torch.Tensor
    ) -> torch.Tensor:
        """Indices (into ``candidates``) of each particle's nearest candidate rows in ``cond``."""
        rows = self.X[candidates][:, self._idx(cond)]
        parts = self._values(cond, values)
        k = min(self.k, rows.shape[0])
        chunk = max(1, _MAX_DISTANCES // max(1, rows.shape[0]))
        out = [
            torch.cdist(parts[i : i + chunk], rows, compute_mode="donot_use_mm_for_euclid_dist")
            .topk(k, dim=1, largest=False)
            .indices
            for i in range(0, parts.shape[0], chunk)
        ]
        return torch.cat(out)

    def _log_odds(self, log_pi: torch.Tensor) -> torch.Tensor:
        r"""The log-odds :math:`\log \Pi - \log(1 - \Pi)` of the weight terms' product
        :math:`\Pi` (``"odds"`` selection), else 0. :math:`1 - \Pi` is kept above
        :math:`1 / (2k)`: an estimate from ``k`` neighbours cannot tell 1 from that.
        """
        if self.selection != "odds":
            return torch.zeros_like(log_pi)
        floor = 1.0 / (2 * self.k)
        return log_pi - (-log_pi.exp()).log1p().clamp_min(math.log(floor))

    def _note_unreliable(self, log_w: torch.Tensor, log_pi: torch.Tensor) -> None:
        r"""Record the share of the importance weight on particles whose :math:`1 - \Pi` is
        under :data:`_ODDS_RESOLUTION` / ``k``: there the neighbours' estimate rests on a
        couple of rows that miss an event, the odds on their count, and a miss more or less
        changes the weight several times over (``self.unreliable``, the largest share seen).
        """
        if self.selection != "odds":
            return
        w = (log_w - log_w.max()).exp()
        thin = (-log_pi.exp()).log1p() < math.log(_ODDS_RESOLUTION / self.k)
        share = float(w[thin].sum() / w.sum()) if float(w.sum()) > 0 else 0.0
        self.unreliable = max(self.unreliable, share)

    def _untouched(self, events: list[str]) -> torch.Tensor:
        r"""The training rows the selection cannot have touched, as far as ``events`` go:
        those where a target event *outside* ``events`` fails. Removing the target
        combination leaves them all, whatever their ``events``, and given the conditioning
        features their specs ``events`` are independent of the others (Thm 1), so on them
        :math:`p_D(Z_E \mid X_c) = p(Z_E \mid X_c)`.
        """
        others = [e.spec for e in self.problem.target.events if e.spec not in events]
        return self._row_weight(others) == 0

    def _log_event_prob(
        self,
        events: list[str],
        cond: list[str],
        values: dict[str, torch.Tensor],
        population: bool = False,
    ) -> torch.Tensor:
        r""":math:`\log p_D(Z_E \in A_E \mid C = c)` for each particle; with ``population``,
        the selection-free :math:`\log P(Z_E \in A_E \mid C = c)`, estimated on the rows
        the selection left untouched (:meth:`_untouched`).
        """
        have = set(cond)
        if all(self._is_density(e) and set(self.model.context_of(e)) <= have for e in events):
            # fitted likelihoods whose parents are all conditioned on: use them at the particle
            total = torch.zeros(next(iter(values.values())).shape[0], device=self.device)
            with torch.no_grad():
                for ev in self.problem.target.events:
                    if ev.spec in events:
                        ctx = self._values(list(self.model.context_of(ev.spec)), values)
                        y = torch.full((ctx.shape[0], 1), ev.low, device=self.device)
                        total += self.model.likelihood(ev.spec).log_prob(y, ctx)
            return total
        w = self._row_weight(events)
        use = self._untouched(events) if population else torch.ones_like(w, dtype=torch.bool)
        if population and not bool(use.any()):
            raise SamplingError(
                f"method 'plan': no training row fails the target outside {', '.join(events)}, "
                "so P(" + ", ".join(events) + " | " + ", ".join(cond) + ") cannot be estimated "
                "free of the selection; use selection='rarity'"
            )
        groups = self._groups_of(cond)
        if groups is not None:
            row_ids, n_groups = groups
            u = use.float()
            sums = torch.zeros(n_groups, device=self.device).index_add_(0, row_ids, w * u)
            counts = torch.zeros(n_groups, device=self.device).index_add_(0, row_ids, u)
            # a group without untouched rows borrows nothing: its particles get weight 0
            p = (sums / counts.clamp_min(1))[self._particle_groups(cond, values)]
        else:
            candidates = torch.nonzero(use).squeeze(1)
            nb = candidates[self._neighbours(cond, values, candidates)]
            p = w[nb].mean(1)
        return p.log()

    def _is_density(self, spec: str) -> bool:
        return any(e.spec == spec and e.density for e in self.problem.target.events)

    def _draw_rows(
        self,
        lhs: list[str],
        cond: list[str],
        events: list[str],
        values: dict[str, torch.Tensor],
        n_part: int,
    ) -> tuple[torch.Tensor, float]:
        r"""A training row per particle, from :math:`p_D(\cdot \mid C = c, Z_E \in A_E)`, and
        the effective number of rows the draw rests on (:math:`(\sum w)^2 / \sum w^2` over
        the rows; infinite when the draw is conditional, its figure is then the SIR's).
        """
        w = self._row_weight(events)
        if float(w.sum()) <= 0:
            raise SamplingError(
                f"method 'plan': no training row meets {', '.join(events)} for the term of "
                f"{', '.join(lhs)}"
            )
        if not cond:
            ess = float(w.sum() ** 2 / (w * w).sum())
            return torch.multinomial(w, n_part, replacement=True, generator=self.g), ess
        groups = self._groups_of(cond)
        if groups is not None:
            rows = self._grouped_draw(groups, w, self._particle_groups(cond, values))
            if rows is not None:
                return rows, math.inf
        candidates = torch.nonzero(w > 0).squeeze(1)
        nb = candidates[self._neighbours(cond, values, candidates)]
        pick = torch.multinomial(w[nb], 1, generator=self.g).squeeze(1)
        return nb.gather(1, pick.unsqueeze(1)).squeeze(1), math.inf

    def _grouped_draw(
        self, groups: tuple[torch.Tensor, int], w: torch.Tensor, part_groups: torch.Tensor
    ) -> torch.Tensor | None:
        """Rows drawn within each particle's group, proportional to ``w``; ``None`` when some
        particle's group has no weight (the caller falls back to nearest neighbours).
        """
        row_ids, n_groups = groups
        order = torch.argsort(row_ids, stable=True)
        ws = w[order].double()
        cum = ws.cumsum(0)
        totals = torch.zeros(n_groups, dtype=torch.float64, device=self.device)
        totals.index_add_(0, row_ids, w.double())
        if bool((totals[part_groups] <= 0).any()):
            return None
        ids = torch.arange(n_groups, device=self.device)
        first = torch.searchsorted(row_ids[order].contiguous(), ids)
        before = cum[first] - ws[first]
        u = torch.rand(
            part_groups.shape[0], dtype=torch.float64, device=self.device, generator=self.g
        )
        # (1 - 1e-12) keeps a draw at the top of a group inside it despite rounding
        t = before[part_groups] + u * (1 - 1e-12) * totals[part_groups]
        pos = torch.searchsorted(cum, t, right=True).clamp(max=cum.shape[0] - 1)
        return order[pos]


def _free(vars_: tuple) -> list[str]:
    return [v.name for v in vars_ if v.value is None]
