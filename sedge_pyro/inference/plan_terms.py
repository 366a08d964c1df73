r"""The compiled terms of the ``plan`` sampler (:mod:`~sedge_pyro.inference.plan`): the
training rows, their per-event weights, and the two operations a factorization's term becomes
on a population of particles (a **draw term** fills features from matching training rows, a
**weight term** multiplies the importance weights by an estimated event probability; see
:mod:`~sedge_pyro.inference.plan` for the method and its selection-aware weights).

References: Thms 1-3, Prop. 4 and Eq. (3) of the SEDGE paper; Rubin (1988) for SIR.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sedge_pyro.assumptions import Coverage
from sedge_pyro.errors import OptionError, SamplingError
from sedge_pyro.expr import Term
from sedge_pyro.identify import Identification
from sedge_pyro.inference.target import Problem

__all__ = ["CompiledPlan", "free"]

#: conditioning values count as discrete when there is at most one distinct value per this
#: many training rows
_ROWS_PER_VALUE = 5
#: the odds are unreliable where 1 - Pi is under this many over k (a few neighbour misses) ...
_ODDS_RESOLUTION = 3.0
#: bound on particle-by-row distances held at once
_MAX_DISTANCES = 1 << 22


class CompiledPlan:
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
        weighted = any(not free(t.lhs) and free(t.rhs) for t in terms)
        n_part = n_out * oversample if weighted else n_out
        values: dict[str, torch.Tensor] = {}
        log_w = torch.zeros(n_part, device=self.device)
        # odds: the summed log P(A_r | X_c) of the weight terms, turned into odds at resampling
        log_pi = torch.zeros(n_part, device=self.device)
        kept = torch.zeros(n_part, device=self.device)
        pending = False
        ess, frac = math.inf, 1.0
        for term in terms:
            lhs_free = free(term.lhs)
            lhs_events = [v.name for v in term.lhs if v.value is not None]
            rhs_free = free(term.rhs)
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
            lhs = [f for f in free(term.lhs) if f not in xc]
            if not lhs:
                continue
            cond = list(dict.fromkeys(free(term.rhs) + [f for f in free(term.lhs) if f in xc]))
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


def free(vars_: tuple) -> list[str]:
    """The names of the free variables (no value) among a term's ``vars_``."""
    return [v.name for v in vars_ if v.value is None]
