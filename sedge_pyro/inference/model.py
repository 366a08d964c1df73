"""``SEDGEModel``: the user-facing model, the Pyro program of Sec. 3.1 with fitting and sampling.

:class:`~sedge_pyro.models.sedge.SEDGEProgram` (in :mod:`sedge_pyro.models`) is the program
built from a :class:`~sedge_pyro.SpecGraph`: components, sample sites, densities and the model
file. This class adds what needs the inference layer: :meth:`SEDGEModel.fit` (every component
by SVI on its own Pyro program with :func:`~sedge_pyro.inference.fit.fit_component`, Eq. 4),
:meth:`SEDGEModel.spec_probability` and :meth:`SEDGEModel.sample`
(:func:`~sedge_pyro.inference.sample.sample`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from sedge_pyro.errors import SedgeError
from sedge_pyro.inference.backtest import Backtest, run_backtest, sample_auto
from sedge_pyro.inference.fit import fit_component, split
from sedge_pyro.inference.sample import sample as run_sampler
from sedge_pyro.inference.sample import shares_parameters
from sedge_pyro.inference.target import Target
from sedge_pyro.models import likelihoods as L
from sedge_pyro.models import priors as P
from sedge_pyro.models.base import Prior
from sedge_pyro.models.columns import Columns, as_frame, check_columns
from sedge_pyro.models.sedge import (
    AUTO_MARGIN,
    COMPONENT_KINDS,
    SEDGEProgram,
    component_key,
    component_program,
)
from sedge_pyro.options import device as check_device
from sedge_pyro.options import number, whole
from sedge_pyro.options import seed as check_seed
from sedge_pyro.options import threads as torch_threads

__all__ = ["SEDGEModel", "backtest"]


class SEDGEModel(SEDGEProgram):
    """The SEDGE generative model of a graph, fit on training rows (S = 1).

    :param graph: the feature -> specification graph.
    :param likelihood: ``"auto"`` (the default: Bernoulli for 0/1, categorical for labels;
        for a continuous spec the Gaussian MLP of Eq. (4) and the conditional spline flow of
        App. D.2 are both fit, and the flow is kept only where its held-out NLL is lower by
        more than :data:`AUTO_MARGIN`: uniform, skewed or bounded noise), ``"gaussian"``,
        ``"bernoulli"``, ``"monotone"`` (a Bernoulli whose ``P(z = 1 | parents)`` is monotone
        in each parent, the direction learned: for threshold specs, where an unconstrained
        MLP may turn back outside the rows), ``"categorical"``, ``"flow"``, or a dict spec ->
        one of these.
    :param prior: ``"auto"`` (the default: a flow and a full-covariance Gaussian, the flow
        kept only where its held-out NLL is lower by more than :data:`AUTO_MARGIN`),
        ``"flow"`` (normalizing flow by maximum likelihood), ``"empirical"``
        (training rows), ``"diffusion"`` (DDPM, for DPS and annealed Langevin),
        ``"factorized"`` (``prod_j p(x_j | pa(x_j))`` along the feature -> feature edges, each a
        Gaussian MLP), ``"gaussian"`` (one full-covariance Gaussian, fit in closed form), or
        ``"dual"`` (the dual-divergence prior of seed 003: a density ratio to the product of
        marginals, sampled by gradient walks; for few rows); a
        dict feature -> ``"gaussian"``/``"flow"`` is a factorized prior with per-feature
        choices.
    :param structure: one of :data:`STRUCTURES` (the paper's models A-E).
    :param hidden: hidden layer sizes of the MLPs.
    :param prior_options: extra keyword arguments of the prior's class (e.g.
        ``{"kind": "spline_coupling"}`` for a flow, also the flow of ``"auto"``;
        ``{"T": 200}`` for diffusion).

    What ``"auto"`` chose is :attr:`chosen`; the candidates' held-out NLLs are in
    ``history[name]["auto"]``.
    :raises SedgeError: for an unknown option, naming it and the choices.

    >>> import sedge_pyro as sp
    >>> seen, oracle, graph = sp.datasets.paper_synthetic(2000, seed=0)
    >>> model = sp.SEDGEModel(graph, prior="empirical")
    >>> model = model.fit(seen, steps=50, progress=False)
    >>> sorted(model.history)
    ['prior', 'z1', 'z2']
    """

    def fit(
        self,
        data: Any,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-3,
        device: str | torch.device = "cpu",
        seed: int = 0,
        val_fraction: float = 0.1,
        patience: int = 10,
        components: Sequence[str] | None = None,
        prior_data: Any = None,
        progress: bool = True,
        threads: int | None = None,
    ) -> SEDGEModel:
        """Fit every component on training rows by SVI (maximum likelihood, Eq. 4).

        :param data: training rows (S = 1): a DataFrame or dict of arrays with a column per
            feature and specification.
        :param steps: SVI steps per component. The default grows with the rows: 100 passes
            over the training split, at least 2,000 and at most 10,000 steps (see
            :func:`~sedge_pyro.inference.fit.schedule`), always with held-out early stopping.
        :param epochs: passes over the data per component (overrides ``steps``).
        :param batch_size: rows per step (default 256); a value above the rows of the
            training split is capped at them, so small tables fit full-batch.
        :param lr: Adam's learning rate.
        :param device: ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        :param seed: seeds the split, minibatches and initialisation.
        :param val_fraction: held-out share for early stopping on the held-out NLL.
        :param patience: evaluations (every 50 steps) without improvement before stopping.
        :param components: refit only these (names as in :attr:`history`) of a fitted model.
        :param prior_data: feature rows drawn *without* the selection (a column per feature;
            spec columns, if any, are ignored), to fit the prior on the population
            :math:`p(X)` instead of the training rows' :math:`p_D(X)`. The selection acts on
            the specs, so the training rows' features are tilted towards seen combinations,
            and a novel combination's features may lie outside their support; unlabelled
            rows (e.g. the concepts of a broad image set, the prior of App. D.2) do not have
            that gap. Only the prior uses them: the likelihoods, and ``plan``'s
            :math:`p_D` terms, still come from ``data``.
        :param progress: show progress bars.
        :param threads: torch's CPU threads while fitting, restored afterwards (``None``:
            :func:`~sedge_pyro.options.default_threads`).
        :returns: the model itself.
        :raises DataError: naming the column or count for missing columns, NaN/inf, constant
            columns, or non-binary values of a Bernoulli spec.
        :raises OptionError: for a non-positive ``steps``, ``epochs``, ``batch_size``,
            ``patience``, ``threads`` or ``lr``, or a negative ``seed``.
        """
        steps = whole("steps", steps, none_ok=True)
        epochs = whole("epochs", epochs, none_ok=True)
        batch_size = whole("batch_size", batch_size, none_ok=True)
        patience = whole("patience", patience)
        seed = check_seed(seed)
        lr = number("lr", lr)
        df = self._frame(data)
        # per-target pieces fit on the old components (inference/selection.py) are stale
        self.__dict__.pop("_selection_aware_cache", None)
        with torch_threads(threads):
            device = check_device(device)
            if components is None or not self.fitted:
                self._start_fit(df, seed)
            self.to(device)
            t = self.tensors(df, device=device)
            if prior_data is not None:
                t = dict(t, X_prior=self._prior_rows(prior_data, device))
            jobs = self._fit_jobs(t, components)
            fit_kw = dict(steps=steps, epochs=epochs, batch_size=batch_size, lr=lr)
            fit_kw.update(val_fraction=val_fraction, patience=patience, progress=progress)
            outer = tqdm(jobs.items(), desc="SEDGE fit", disable=not progress, leave=False)
            for i, (name, (module, fn, tensors)) in enumerate(outer):
                outer.set_postfix(component=name)
                kw = {"name": name, **fit_kw, "seed": seed + i}
                self._fit_job(name, module, fn, tensors, kw, population="X_prior" in t)
        return self

    def _start_fit(self, df: pd.DataFrame, seed: int) -> None:
        """A fresh fit: the columns' normalisation, the training rows, new components
        (initialised from ``seed``) and an empty history.
        """
        kinds = {
            z: {
                "gaussian": "continuous",
                "flow": "continuous",
                "bernoulli": "binary",
                "monotone": "binary",
                "categorical": "categorical",
            }.get(self.likelihood_choice[z], "auto")
            for z in self.specs
        }
        self.columns = Columns.fit(df, self.features, self.specs, kinds)
        cols = list(self.features) + list(self.specs)
        self.seen = df[cols].reset_index(drop=True).copy()
        torch.manual_seed(seed)
        self._build()
        self.history = {}

    def _fit_jobs(
        self, t: dict[str, torch.Tensor], components: Sequence[str] | None
    ) -> dict[str, Any]:
        """The components to fit, each ``(module, program, tensors)``: all, or ``components``.

        :raises SedgeError: naming a component the model does not have.
        """
        jobs = self._jobs(t)
        if components is not None:
            unknown = [c for c in components if c not in jobs]
            if unknown:
                raise SedgeError(f"component {unknown[0]!r}: expected one of {', '.join(jobs)}")
            jobs = {k: v for k, v in jobs.items() if k in components}
        return jobs

    def _fit_job(
        self,
        name: str,
        module: nn.Module,
        fn: Any,
        tensors: tuple[torch.Tensor, ...],
        fit_kw: dict[str, Any],
        *,
        population: bool,
    ) -> None:
        """Fit one component with :func:`~sedge_pyro.inference.fit.fit_component` (and its
        ``"auto"`` rival, keeping the better) and record its history under ``name``.
        """
        if isinstance(module, Prior):
            module.setup(tensors[0])
            if not module.trainable:
                self.history[name] = {"name": name, "steps": 0, "seconds": 0.0}
                return
        record = fit_component(module, fn, tensors, **fit_kw).to_dict()
        rival = self._rival(name, module, fit_kw["seed"])
        if rival is not None:
            record = self._choose(name, module, record, rival, tensors, fit_kw)
        if name == "prior":
            # p(X) of the population, or the training rows' p_D(X): the samplers of
            # a diffusion prior treat the two differently (inference/selection.py)
            record["population"] = population
        self.history[name] = record

    def _rival(self, name: str, module: nn.Module, seed: int) -> nn.Module | None:
        """The other candidate of an ``"auto"`` component (a Gaussian for a flow, a flow for
        a Gaussian), or ``None`` where there is no choice to make.
        """
        if name == "prior":
            if self.prior_choice != "auto":
                return None
            if isinstance(module, P.FlowPrior):
                return P.GaussianPrior(len(self.features))
            torch.manual_seed(seed)  # its initialisation, reproducibly
            return self._make_prior()
        if name not in self.specs or self.likelihood_choice[name] != "auto":
            return None
        assert self.columns is not None
        if self.structure not in ("sparse", "dense") or self.columns[name].kind != "continuous":
            return None
        width = len(self.context_of(name))
        torch.manual_seed(seed)
        if isinstance(module, L.GaussianMLP):
            return L.ConditionalFlow(1, width, hidden=self.hidden)
        return L.GaussianMLP(width, hidden=self.hidden)

    def _choose(
        self,
        name: str,
        module: nn.Module,
        record: dict[str, Any],
        rival: nn.Module,
        tensors: tuple[torch.Tensor, ...],
        fit_kw: dict[str, Any],
    ) -> dict[str, Any]:
        """Fit ``rival`` on the same rows and held-out split as ``module`` and keep whichever
        :data:`AUTO_MARGIN` favours (the Gaussian unless the flow's held-out NLL is lower by
        more than it; the Gaussian where nothing is held out). Returns the kept one's history
        with ``"auto"``: the candidates' held-out NLLs and the choice.
        """
        rival.to(tensors[0].device)
        start = time.perf_counter()
        if isinstance(rival, Prior) and not rival.trainable:  # the closed-form Gaussian
            val, train = (
                i.to(tensors[0].device)
                for i in split(int(tensors[0].shape[0]), fit_kw["val_fraction"], fit_kw["seed"])
            )
            x = tensors[0]
            rival.setup(x[train] if len(train) >= 2 else x)
            with torch.no_grad():
                loss = float(-rival.log_prob(x[val]).mean()) if len(val) else math.nan
            rival.setup(x)
            other = {"name": name, "steps": 0, "best_val": loss}
        else:
            if isinstance(rival, Prior):
                rival.setup(tensors[0])
            fn = component_program(rival.model, "X" if name == "prior" else name)
            other = fit_component(rival, fn, tensors, **fit_kw).to_dict()
        other["seconds"] = time.perf_counter() - start
        kind = {id(m): COMPONENT_KINDS[type(m).__name__] for m in (module, rival)}
        losses = {kind[id(module)]: record.get("best_val"), kind[id(rival)]: other["best_val"]}
        flow, gauss = losses["flow"], losses["gaussian"]
        pick = (
            "flow"
            if all(v is not None and math.isfinite(v) for v in (flow, gauss))
            and flow < gauss - AUTO_MARGIN
            else "gaussian"
        )
        kept, out = (module, record) if kind[id(module)] == pick else (rival, other)
        if kept is rival:
            self.components[component_key(name)] = rival
        out = dict(out)
        out["auto"] = {"held_out_nll": losses, "chosen": pick, "margin": AUTO_MARGIN}
        return out

    @torch.no_grad()
    def spec_probability(
        self,
        data: Any,
        target: Mapping[str, Any],
        *,
        tolerance: float | Mapping[str, float] | None = None,
    ) -> pd.DataFrame:
        """Per row of features, the fitted probability that each target spec is met.

        ``P(z_i in A_i | V_i(x))`` from the fitted likelihoods (models A/B); a point target on
        a continuous spec counts as met within the tolerance of :func:`~sedge_pyro.identify`
        (0.1 training standard deviations by default). Column ``"all"`` is their product
        (the specs are independent given ``X``, Sec. 3.1).

        :param data: rows with a column per feature (raw units).
        :param target: specification -> value or :class:`~sedge_pyro.Interval`.
        :returns: a DataFrame with a column per target spec and ``"all"``.
        """
        self._require_fitted()
        assert self.columns is not None
        df = as_frame(data)
        check_columns(df, list(self.features))
        x = self.columns.tensor(df, self.features, device=self.device)
        probs = Target(self, target, tolerance=tolerance).event_probabilities(x)
        out = pd.DataFrame({k: v.cpu().numpy() for k, v in probs.items()}, index=df.index)
        out["all"] = out.prod(axis=1)
        return out

    # ------------------------------------------------------------------ sampling

    @shares_parameters
    def sample(
        self,
        target: Mapping[str, Any],
        n: int = 1000,
        method: str | None = None,
        *,
        chains: int = 1,
        seed: int = 0,
        device: str | torch.device | None = None,
        tolerance: float | Mapping[str, float] | None = None,
        progress: bool = False,
        threads: int | None = None,
        **options: Any,
    ) -> Any:
        """Draw features ``X`` for a target ``Z_T = z`` the training rows may never show.

        {parameters}
        :param threads: torch's CPU threads while sampling, restored afterwards (``None``:
            :func:`~sedge_pyro.options.default_threads`); an :class:`~sedge_pyro.OptionError`
            for a ``threads`` that is not a whole number >= 1.
        {returns}

        >>> import sedge_pyro as sp
        >>> seen, oracle, graph = sp.datasets.paper_synthetic(1000, seed=0)
        >>> model = sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=20, progress=False)
        >>> s = model.sample({"z1": 1.0}, n=50, method="plan")
        >>> s.to_dataframe().shape
        (50, 3)
        """
        kw = {"chains": chains, "seed": seed, "device": device, "tolerance": tolerance}
        with torch_threads(threads):
            if method == "auto":  # a backtest on the training rows chooses (inference.backtest)
                return sample_auto(self, target, n, progress=progress, **kw, **options)
            return run_sampler(self, target, n, method, progress=progress, **kw, **options)


def backtest(graph: Any, data: Any, target: Mapping[str, Any], **options: Any) -> Backtest:
    """``sp.backtest``: :func:`sedge_pyro.inference.backtest.run_backtest` (its keyword arguments
    are ``options``; see it for them and for the procedure), each cell fitting a
    :class:`SEDGEModel` unless ``build=`` names another class.

    >>> import sedge_pyro as sp
    >>> seen, oracle, graph = sp.datasets.paper_synthetic(2000, seed=0)
    >>> bt = sp.backtest(graph, seen, {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)},
    ...                  methods=["plan"], steps=20, draws=200, progress=False)
    >>> [c.label for c in bt.cells]
    ['z1 ≥ 0.8, z2 ≤ 1']
    """
    options.setdefault("build", SEDGEModel)
    return run_backtest(graph, data, target, **options)
