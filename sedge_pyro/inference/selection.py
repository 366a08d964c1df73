r"""Selection-aware densities for the model-based samplers of a CONSERVATIVE target.

``langevin``, ``nuts`` and ``svi`` follow :math:`p(x) \prod_r P(Z_{B_r} \in A_r \mid V_r)`. The
model's prior and likelihoods are fit on the training rows, :math:`p_D = p(\cdot \mid S = 1)`,
and when the selection removed the target combination :math:`S = 0 \iff Z_T \in A` (no
training row meets the whole target), :math:`p_D(x) = p(x) (1 - \prod_r P(A_r \mid x))` has a
hole exactly where the target lives: on the paper's task no training row at all has
:math:`x_1 < 0.19` and :math:`x_3 > 0.63` together, where :math:`p(x \mid A)` is largest. No
density estimate of :math:`p_D` can fill it; the graph can. Given the shared features
:math:`X_c`, the blocks of a component are independent (Thm 1, Eq. 3), so

.. math:: p(x) = p(x_c) \prod_r p(F_r \mid x_c) \; p(x_{\text{rest}}),

and each factor can be estimated free of the selection:

* :math:`p(F_r \mid x_c)` and :math:`P(Z_{B_r} \mid V_r)` on the rows where a target event
  *outside* block :math:`r` fails: the selection never touched them, and given :math:`x_c`
  block :math:`r` is independent of the events that kept them (as ``plan``'s
  ``selection="odds"`` estimates :math:`P(A_r \mid X_c)`);
* :math:`p(x_c) \propto p_D(x_c) / (1 - \prod_r P(A_r \mid x_c))`, fit on the training rows
  resampled by that weight, :math:`P(A_r \mid x_c)` from the nearest untouched rows;
* the features of other components, :math:`p(x_{\text{rest}})`, on every row.

:class:`BlockPrior` is that product (normalising flows: :class:`~sedge_pyro.models.likelihoods.
ConditionalFlow` per factor, fit by the same SVI loop as the model's components; its own
module, :mod:`~sedge_pyro.inference.block_prior`, re-exported here), and
:func:`selection_aware` fits it and the refit likelihoods for one target, cached on the model.
The samplers use them through :meth:`SelectionAware.applied`, which swaps them into the model
for the run. References: Thm 1, Eq. (3), Prop. 4 of the SEDGE paper.

The diffusion-guided methods (``dps``, Algorithm 2, and annealed Langevin) need a prior with
scores at every noise level, a :class:`~sedge_pyro.models.DiffusionPrior`. On a model with
another prior, :func:`diffusion_surrogate` fits one for the run (cached like the pieces):
on draws of the block prior where the pieces apply, so the diffusion has mass in the hole the
selection left, else on the training rows (what ``prior="diffusion"`` fits).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sedge_pyro.assumptions import Coverage
from sedge_pyro.errors import OptionError
from sedge_pyro.identify import Status, identify
from sedge_pyro.inference.block_prior import EDGE_TOLERANCE, BlockPrior
from sedge_pyro.inference.fit import fit_component
from sedge_pyro.models.priors import DiffusionPrior
from sedge_pyro.models.sedge import component_key, component_program

if TYPE_CHECKING:
    from sedge_pyro.inference.target import Problem

__all__ = [
    "CHOICES",
    "CORRECTED",
    "DIFFUSION_ROWS",
    "EDGE_TOLERANCE",
    "BlockPrior",
    "SelectionAware",
    "corrected",
    "diffusion_surrogate",
    "selection_aware",
]

#: rows of the neighbourhood estimating P(A_r | x_c) for the weights of p(x_c)
_K_MIN, _K_MAX = 10, 200
#: bound on row-by-candidate distances held at once
_MAX_DISTANCES = 1 << 22
#: attribute of the model holding the fitted per-target pieces
_CACHE = "_selection_aware_cache"
#: SVI steps at most per piece, and no more than the model's own components took (held-out
#: early stopping as every fit): the pieces are fit when a target is first sampled, so their
#: budget is the sampler's
FIT_STEPS = 2000
#: draws of the block prior a surrogate diffusion prior is fit on
DIFFUSION_ROWS = 20_000


class SelectionAware:
    """The per-target pieces: a :class:`BlockPrior` and refit likelihoods, with what they
    were fit on (``info``).
    """

    def __init__(self, prior: BlockPrior, likelihoods: dict[str, nn.Module], info: dict) -> None:
        self.prior = prior
        self.likelihoods = likelihoods
        self.info = info

    @contextlib.contextmanager
    def applied(self, model: Any) -> Iterator[None]:
        """Swap the pieces into ``model`` for the duration (restored afterwards)."""
        saved = {"prior": model.components["prior"]}
        saved.update({z: model.components[component_key(z)] for z in self.likelihoods})
        try:
            model.components["prior"] = self.prior
            for z, m in self.likelihoods.items():
                model.components[component_key(z)] = m
            yield
        finally:
            model.components["prior"] = saved.pop("prior")
            for z, m in saved.items():
                model.components[component_key(z)] = m


def _cache(model: Any) -> dict[str, Any]:
    """The model's cache of per-target pieces (dropped by :meth:`SEDGEModel.fit`)."""
    cache = getattr(model, _CACHE, None)
    if cache is None:
        cache = {}
        object.__setattr__(model, _CACHE, cache)
    return cache


def _steps(model: Any) -> int:
    """As many steps as the model's own components took (a quick fit gets quick pieces), at
    most :data:`FIT_STEPS`.
    """
    taken = [int(h.get("steps") or 0) for h in model.history.values()]
    return min(FIT_STEPS, max(taken, default=0) or FIT_STEPS)


def _key_of(problem: Problem) -> str:
    # the target and the device: pieces fit on one device are not moved to another
    return f"{problem.target!r} on {problem.device}"


def selection_aware(problem: Problem, *, seed: int = 0, progress: bool = False) -> Any:
    """Fit (or fetch from the model's cache) the selection-aware pieces for the target, or
    return why they do not apply (a string).

    Applies to models A (``structure="sparse"``) whose target ``identify()`` calls
    CONSERVATIVE with its specs in one component of several blocks, every target value an
    event of positive probability, and no training row meeting the whole target.
    """
    model = problem.model
    found = _component(problem)
    if isinstance(found, str):
        return found
    comp, specs = found
    cache = _cache(model)
    key = _key_of(problem)
    if key in cache:
        return cache[key]
    masks = _event_masks(problem, specs)
    if isinstance(masks, str):
        return masks
    history: dict[str, Any] = {}
    fit_kw = {"seed": seed, "progress": progress, "steps": _steps(model)}
    prior, rest = _fit_block_prior(problem, comp, masks, seed, fit_kw, history)
    likelihoods = _refit_likelihoods(problem, comp, masks, fit_kw, history)
    feats = list(model.features)
    info = {
        "shared": sorted(comp.shared),
        "groups": [sorted(g) for g in comp.groups],
        "rest": [feats[j] for j in rest],
        "fits": history,
    }
    out = SelectionAware(prior, likelihoods, info)
    cache[key] = out
    return out


def _component(problem: Problem) -> tuple[Any, set[str]] | str:
    """The target's component and specs where the pieces apply, else why not (a string)."""
    model, target = problem.model, problem.target
    if model.structure != "sparse":
        return f"structure {model.structure!r}: only models A (sparse) have per-block pieces"
    if any(e.density for e in target.events):
        return "a point target on a continuous spec is an event of probability zero"
    res = identify(model.graph, target.target, model.seen, tolerance=target.tolerance)
    if res.status is not Status.CONSERVATIVE:
        return f"the target is {res.status.name}: no selection hole to correct"
    specs = {e.spec for e in target.events}
    comps = [c for c in res.components if c.specs & specs]
    if len(comps) != 1 or len(comps[0].blocks) < 2 or not specs <= comps[0].specs:
        return "the target's specs are not the blocks of one component"
    return comps[0], specs


def _event_masks(problem: Problem, specs: set[str]) -> dict[str, torch.Tensor] | str:
    """Per target spec, the training rows meeting its event; or why the pieces do not apply
    (a string) when some rows meet the whole target.
    """
    seen, target, dev = problem.model.seen, problem.target, problem.device
    cov = Coverage(seen, target.target, target.tolerance)
    masks = {s: torch.as_tensor(cov.masks[s], device=dev) for s in specs}
    everything = torch.ones(len(seen), dtype=torch.bool, device=dev)
    for m in masks.values():
        everything = everything & m
    if bool(everything.any()):
        return "training rows meet the whole target: the selection was not its removal"
    return masks


def _untouched(masks: dict[str, torch.Tensor], block: frozenset) -> torch.Tensor:
    """The rows where a target event outside ``block`` fails: the selection never touched
    them.
    """
    first = next(iter(masks.values()))
    hit = torch.ones(len(first), dtype=torch.bool, device=first.device)
    for s in [s for s in masks if s not in block]:
        hit = hit & masks[s]
    return ~hit


def _fit_block_prior(
    problem: Problem,
    comp: Any,
    masks: dict[str, torch.Tensor],
    seed: int,
    fit_kw: dict[str, Any],
    history: dict[str, Any],
) -> tuple[BlockPrior, list[int]]:
    """The :class:`BlockPrior` of ``comp``, each factor fit on the rows free of the selection
    (``history`` gets each fit's rows and steps); returns it and the other components'
    features.
    """
    model, x = problem.model, problem.train_x
    feats = list(model.features)
    shared = [feats.index(f) for f in sorted(comp.shared)]
    groups = [[feats.index(f) for f in sorted(g)] for g in comp.groups]
    inside = set(shared) | {j for g in groups for j in g}
    rest = [j for j in range(len(feats)) if j not in inside]
    box = problem.box
    prior = BlockPrior(len(feats), shared, groups, rest, hidden=model.hidden, box=box)
    prior = prior.to(problem.device)
    prior.standardise(x)
    v = prior.to_unconstrained(x)

    def fit(name: str, ys: list[int], rows: torch.Tensor, ctx: torch.Tensor) -> None:
        module = prior.factors[name]
        y = v[rows][:, ys]
        h = fit_component(
            module, component_program(module.model, name), (y, ctx), name=name, **fit_kw
        )
        history[name] = {"rows": int(len(rows)), "steps": h.steps}

    # p(x_c): training rows resampled by 1 / (1 - prod_r P(A_r | x_c))
    if shared:
        xc = x[:, shared]
        idx = _shared_rows(problem, comp, masks, xc, seed)
        fit("shared", shared, idx, xc[idx, :0])
    for r, (block, g_idx) in enumerate(zip(comp.blocks, groups, strict=True)):
        if g_idx:
            use = torch.nonzero(_untouched(masks, block)).squeeze(1)
            fit(f"block{r}", g_idx, use, x[use][:, shared])
    if rest:
        every = torch.arange(len(x), device=problem.device)
        fit("rest", rest, every, x[:, :0])
    prior.eval()
    return prior, rest


def _shared_rows(
    problem: Problem, comp: Any, masks: dict[str, torch.Tensor], xc: torch.Tensor, seed: int
) -> torch.Tensor:
    r"""The training rows resampled by :math:`1 / (1 - \prod_r P(A_r \mid x_c))`, each
    :math:`P(A_r \mid x_c)` from the nearest untouched rows: draws of :math:`p(x_c)`.
    """
    n, dev = len(xc), problem.device
    k = int(min(_K_MAX, max(_K_MIN, math.isqrt(n))))
    log_pi = torch.zeros(n, device=dev)
    for block in comp.blocks:
        use = _untouched(masks, block)
        event = torch.ones(n, device=dev)
        for s in block:
            event = event * masks[s].float()
        cand = torch.nonzero(use).squeeze(1)
        kk = min(k, cand.numel())
        # in chunks: rows x candidates distances of a large table would not fit in memory
        step = max(1, _MAX_DISTANCES // max(1, cand.numel()))
        nb = torch.cat(
            [
                torch.cdist(xc[i : i + step], xc[cand]).topk(kk, largest=False).indices
                for i in range(0, n, step)
            ]
        )
        log_pi = log_pi + event[cand][nb].mean(1).clamp_min(1e-12).log()
    w = 1.0 / (-log_pi.exp()).log1p().exp().clamp_min(1.0 / (2 * k))
    g = torch.Generator(device=dev).manual_seed(seed)
    return torch.multinomial(w, n, replacement=True, generator=g)


def _refit_likelihoods(
    problem: Problem,
    comp: Any,
    masks: dict[str, torch.Tensor],
    fit_kw: dict[str, Any],
    history: dict[str, Any],
) -> dict[str, nn.Module]:
    """Each target spec's likelihood refit (a copy) on the rows its block's selection never
    touched.
    """
    model, x, seen = problem.model, problem.train_x, problem.model.seen
    feats = list(model.features)
    likelihoods: dict[str, nn.Module] = {}
    for block in comp.blocks:
        use = _untouched(masks, block)
        for z in block:
            m = copy.deepcopy(model.components[component_key(z)])
            idx = [feats.index(f) for f in model.context_of(z)]
            zt = model.columns.tensor(seen, [z], device=problem.device)
            h = fit_component(
                m, component_program(m.model, z), (zt[use], x[use][:, idx]), name=z, **fit_kw
            )
            history[z] = {"rows": int(use.sum()), "steps": h.steps}
            m.eval()
            likelihoods[z] = m
    return likelihoods


#: the methods whose target the selection-aware pieces correct
CORRECTED = ("langevin", "nuts", "svi")
#: the choices of their ``selection`` option (as ``plan``'s)
CHOICES = ("auto", "odds", "rarity")


@contextlib.contextmanager
def corrected(
    problem: Problem, choice: str, *, seed: int = 0, progress: bool = False
) -> Iterator[dict[str, Any]]:
    """Run the body with the selection-aware pieces swapped into the model when they apply
    (``choice`` ``"auto"`` or ``"odds"``); yields the ``info`` entries ``selection``
    (``"odds"`` or ``"none"``), ``selection_reason`` and, when applied, ``selection_fits``.

    :raises OptionError: for an unknown choice, or ``"odds"`` where it does not apply.
    """
    if choice not in CHOICES:
        raise OptionError(f"selection={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "rarity":
        yield {"selection": "none", "selection_reason": "asked for (selection='rarity')"}
        return
    out = selection_aware(problem, seed=seed, progress=progress)
    if isinstance(out, str):
        if choice == "odds":
            raise OptionError(f"selection='odds' does not apply to this target: {out}")
        yield {"selection": "none", "selection_reason": out}
        return
    with out.applied(problem.model):
        yield {
            "selection": "odds",
            "selection_reason": (
                "no training row meets the whole target: prior and likelihoods refit block "
                "by block on the rows the selection did not touch"
            ),
            "selection_fits": out.info,
        }


@contextlib.contextmanager
def diffusion_surrogate(
    problem: Problem, *, seed: int = 0, progress: bool = False
) -> Iterator[dict[str, Any]]:
    """Run the body with a :class:`~sedge_pyro.models.DiffusionPrior` as the model's prior,
    for ``dps`` and annealed Langevin on a model fit with another prior. Where the
    selection-aware pieces apply (:func:`corrected`), they are swapped in and the diffusion is
    fit on :data:`DIFFUSION_ROWS` draws of their block prior; otherwise on the training rows.
    Either way it is fit on those inside the seen box (:attr:`~sedge_pyro.inference.target.
    Problem.box`), in the box's unconstrained coordinates (the logit of the position in it,
    ``problem.prior_in_box`` set while the body runs), so its draws cannot leave the box: fit
    on the features themselves, a DDPM of 20,000 rows put 20% of the grid's ``tanh`` draws
    outside the features' range.

    A model whose prior is already a diffusion runs on it, with two cases: fit on population
    rows (``fit(prior_data=...)``, ``history["prior"]["population"]``), it is the
    population's :math:`p(X)` and runs as it is; fit on the training rows, it is the
    selection's :math:`p_D(X)`, which holds little mass where an unseen target lives (the
    paper's task: ``smc`` 16x the MMD floor, annealed Langevin 18x), so where the
    selection-aware pieces apply the surrogate is fit on their block prior's draws as for any
    other model (and ``smc`` and annealed Langevin refine on the block prior's density).
    Yields the ``info`` entries ``diffusion_prior`` (what it was fit on) and
    ``diffusion_fit``, with :func:`corrected`'s.
    """
    model = problem.model
    if "prior" not in model.components:
        yield {}
        return
    own = isinstance(model.prior, DiffusionPrior)
    if own and model.history.get("prior", {}).get("population"):
        yield {"diffusion_prior": "the model's own, fit on population rows (prior_data)"}
        return
    with corrected(problem, "auto", seed=seed, progress=progress) as info:
        pieces = info.get("selection") == "odds"
        if own and not pieces:
            yield {**info, "diffusion_prior": "the model's own, fit on the training rows"}
            return
        key = f"diffusion: {_key_of(problem) if pieces else 'training rows'} on {problem.device}"
        cache = _cache(model)
        if key not in cache:
            with torch.random.fork_rng(
                devices=[problem.device] if problem.device.type == "cuda" else []
            ):
                torch.manual_seed(seed)
                if pieces:
                    x = model.components["prior"].sample(DIFFUSION_ROWS)
                    source = f"{DIFFUSION_ROWS} draws of the selection-aware block prior"
                else:
                    x = problem.train_x
                    source = f"the {len(x)} training rows"
                lo, hi = problem.box
                x = problem.to_box(x[((x > lo) & (x < hi)).all(-1)])
                source += " inside the seen box, in its unconstrained coordinates"
                prior = DiffusionPrior(problem.dim, hidden=model.hidden, box=False)
                prior = prior.to(problem.device)
                h = fit_component(
                    prior,
                    component_program(prior.model, "X"),
                    (x,),
                    name="diffusion",
                    steps=_steps(model),
                    seed=seed,
                    progress=progress,
                )
            prior.eval()
            cache[key] = (prior, {"rows": int(len(x)), "steps": h.steps, "source": source})
        prior, fit = cache[key]
        saved = model.components["prior"]
        model.components["prior"] = prior
        problem.prior_in_box = True
        problem.density_prior = saved if saved.has_log_prob else None
        try:
            yield {
                **info,
                "diffusion_prior": f"fit for this run on {fit['source']}",
                "diffusion_fit": {"rows": fit["rows"], "steps": fit["steps"]},
            }
        finally:
            model.components["prior"] = saved
            problem.prior_in_box = False
            problem.density_prior = None
