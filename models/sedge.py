"""``SEDGEModel``: the Pyro program of Sec. 3.1, assembled from a :class:`SpecGraph`.

Features come from a prior ``p(X)``, each specification from its likelihood ``p(Z_i | V_i)``
given only its parents ``V_i`` (Eq. 4), and the selection site ``S`` is observed at 1 on
training rows. The paper's baselines (Sec. 5.1) are options of the same builder:

========================  ==========================================================
``structure``             what is modelled
========================  ==========================================================
``"sparse"`` (A, default)  ``p(X) prod_i p(Z_i | V_i)``
``"dense"`` (B)            ``p(X) prod_i p(Z_i | X)``
``"joint"`` (C)            ``p(X) p(Z | X)``, one correlated Gaussian
``"reverse"`` (D)          ``p(X | Z)``, a conditional flow
``"reverse-factorized"``   (E) ``prod_j p(X_j | Z)``
========================  ==========================================================

Fitting (:meth:`SEDGEModel.fit`) fits every component by SVI on its own Pyro program with
:func:`~sedge_pyro.inference.fit_component`; the selection mechanism is never fitted (training
rows all have ``S = 1``, which says nothing about it).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from tqdm.auto import tqdm

from sedge_pyro.errors import DataError, OptionError, SedgeError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.models import likelihoods as L
from sedge_pyro.models import priors as P
from sedge_pyro.models.base import ConditionalDensity, Prior, data_plate
from sedge_pyro.models.columns import Columns, as_frame
from sedge_pyro.models.dual import DualDivergencePrior
from sedge_pyro.models.factorized import FactorizedPrior
from sedge_pyro.models.files import load_model, rebuilding, write_state
from sedge_pyro.options import device as check_device
from sedge_pyro.options import number, whole
from sedge_pyro.options import seed as check_seed
from sedge_pyro.options import threads as torch_threads

__all__ = ["AUTO_MARGIN", "STRUCTURES", "SEDGEModel"]

STRUCTURES = ("sparse", "dense", "joint", "reverse", "reverse-factorized")
LIKELIHOODS = ("auto", "gaussian", "bernoulli", "monotone", "categorical", "flow")
PRIORS = ("auto", "flow", "empirical", "diffusion", "factorized", "gaussian", "dual")
#: ``"auto"`` keeps the flexible candidate (a flow) only where its held-out NLL per row beats
#: the Gaussian's by more than this many nats; otherwise the simpler Gaussian stays
AUTO_MARGIN = 0.01
FORMAT_VERSION = 1

_CLASSES: dict[str, type[nn.Module]] = {
    c.__name__: c
    for c in (
        L.GaussianMLP,
        L.BernoulliMLP,
        L.MonotoneBernoulli,
        L.CategoricalMLP,
        L.ConditionalFlow,
        L.JointGaussian,
        P.EmpiricalPrior,
        P.FlowPrior,
        P.GaussianPrior,
        P.DiffusionPrior,
        DualDivergencePrior,
    )
}


#: component class -> the option value that builds it (:attr:`SEDGEModel.chosen`)
_KIND = {
    "GaussianMLP": "gaussian",
    "BernoulliMLP": "bernoulli",
    "MonotoneBernoulli": "monotone",
    "CategoricalMLP": "categorical",
    "ConditionalFlow": "flow",
    "JointGaussian": "joint",
    "FlowPrior": "flow",
    "GaussianPrior": "gaussian",
    "EmpiricalPrior": "empirical",
    "DiffusionPrior": "diffusion",
    "DualDivergencePrior": "dual",
    "FactorizedPrior": "factorized",
}


def _key(name: str) -> str:
    # nn.ModuleDict keys may not contain dots
    return name.replace(".", "\u2024")


class SEDGEModel(PyroModule):
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

    def __init__(
        self,
        graph: SpecGraph,
        likelihood: str | Mapping[str, str] = "auto",
        prior: str | Mapping[str, str] = "auto",
        structure: str = "sparse",
        *,
        hidden: Sequence[int] = (64, 64),
        prior_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(graph, SpecGraph):
            raise SedgeError(f"graph is {type(graph).__name__}: expected an sp.SpecGraph")
        if structure not in STRUCTURES:
            raise OptionError(f"structure={structure!r}: expected one of {', '.join(STRUCTURES)}")
        self.graph = graph
        self.structure = structure
        if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence | np.ndarray):
            raise OptionError(f"hidden={hidden!r}: expected layer sizes such as (64, 64)")
        self.hidden = tuple(int(whole(f"hidden[{i}]", h) or 0) for i, h in enumerate(hidden))
        self.prior_options = dict(prior_options or {})
        self.likelihood_choice = self._choices(likelihood, graph.specs, LIKELIHOODS, "likelihood")
        if isinstance(prior, Mapping):
            self.prior_choice: str | dict[str, str] = self._choices(
                prior, graph.features, ("gaussian", "flow"), "prior"
            )
        elif prior in PRIORS:
            self.prior_choice = prior
        else:
            raise OptionError(f"prior={prior!r}: expected one of {', '.join(PRIORS)} or a dict")
        self.columns: Columns | None = None
        #: the training rows (features and specs, raw units) the model was fit on
        self.seen: pd.DataFrame | None = None
        self.components = nn.ModuleDict()
        self.history: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _choices(
        choice: str | Mapping[str, str], names: Sequence[str], allowed: Sequence[str], what: str
    ) -> dict[str, str]:
        if isinstance(choice, str):
            if choice not in allowed:
                raise OptionError(f"{what}={choice!r}: expected one of {', '.join(allowed)}")
            return dict.fromkeys(names, choice)
        unknown = [k for k in choice if k not in names]
        if unknown:
            raise OptionError(
                f"{what} names {unknown[0]!r}, not a node of that role: expected one of "
                f"{', '.join(names)}"
            )
        out = {}
        for name in names:
            value = choice.get(name, allowed[0])
            if value not in allowed:
                raise OptionError(
                    f"{what} for {name!r} is {value!r}: expected one of {', '.join(allowed)}"
                )
            out[name] = value
        return out

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self.columns is not None

    @property
    def features(self) -> tuple[str, ...]:
        """The graph's features, in the order of the model's X."""
        return self.graph.features

    @property
    def specs(self) -> tuple[str, ...]:
        """The graph's specifications."""
        return self.graph.specs

    def context_of(self, spec: str) -> tuple[str, ...]:
        """The features a specification's likelihood sees (``V_i``, or all for model B)."""
        if self.structure == "sparse":
            return self.graph.parents(spec)
        return self.features

    def likelihood(self, spec: str) -> ConditionalDensity:
        """The fitted likelihood of ``spec`` (models A and B)."""
        self._require_fitted()
        if self.structure not in ("sparse", "dense"):
            raise SedgeError(f"structure {self.structure!r} has no per-spec likelihood")
        if spec not in self.specs:
            raise SedgeError(f"{spec!r} is not a specification: expected one of {self.specs}")
        return self.components[_key(spec)]

    @property
    def prior(self) -> Prior:
        """The fitted feature prior (models A-C)."""
        self._require_fitted()
        if "prior" not in self.components:
            raise SedgeError(f"structure {self.structure!r} has no feature prior")
        return self.components["prior"]

    @property
    def chosen(self) -> dict[str, str]:
        """What each fitted component is, ``"auto"`` resolved: ``{"prior": "flow", "z1":
        "gaussian", ...}`` (the prior's entry only for models with one).
        """
        self._require_fitted()
        return {
            ("prior" if key == "prior" else key.replace("\u2024", ".")): _KIND.get(
                type(m).__name__, type(m).__name__
            )
            for key, m in self.components.items()
            if key == "prior" or key.replace("\u2024", ".") in self.specs
        }

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise SedgeError("the model is not fitted: call model.fit(data) first")

    def _build(self) -> None:
        cols = self.columns
        assert cols is not None
        comps = nn.ModuleDict()
        d = len(self.features)
        if self.structure in ("sparse", "dense"):
            for z in self.specs:
                comps[_key(z)] = self._likelihood(z, len(self.context_of(z)))
        elif self.structure == "joint":
            bad = [z for z in self.specs if cols[z].kind != "continuous"]
            if bad:
                raise DataError(
                    f"structure 'joint' (model C) needs continuous specifications; {bad[0]!r} is "
                    f"{cols[bad[0]].kind}"
                )
            comps["joint"] = L.JointGaussian(len(self.specs), d, hidden=self.hidden)
        else:
            width = sum(cols[z].width for z in self.specs)
            if self.structure == "reverse":
                comps["reverse"] = L.ConditionalFlow(d, width, hidden=self.hidden)
            else:
                for x in self.features:
                    comps[_key(x)] = L.GaussianMLP(width, hidden=self.hidden)
        if self.structure in ("sparse", "dense", "joint"):
            comps["prior"] = self._make_prior()
        self.components = comps

    def _likelihood(self, spec: str, context_dim: int) -> ConditionalDensity:
        assert self.columns is not None
        col = self.columns[spec]
        choice = self.likelihood_choice[spec]
        if choice == "auto":
            choice = {"continuous": "gaussian", "binary": "bernoulli"}.get(col.kind, col.kind)
        wanted = {
            "gaussian": "continuous",
            "flow": "continuous",
            "bernoulli": "binary",
            "monotone": "binary",
        }
        if (
            choice in wanted
            and col.kind != wanted[choice]
            and not (choice in ("gaussian", "flow") and col.kind == "binary")
        ):
            raise DataError(
                f"likelihood {choice!r} for {spec!r} needs a {wanted[choice]} column; it is "
                f"{col.kind}"
            )
        if choice == "gaussian":
            return L.GaussianMLP(context_dim, hidden=self.hidden)
        if choice == "flow":
            return L.ConditionalFlow(1, context_dim, hidden=self.hidden)
        if choice == "bernoulli":
            return L.BernoulliMLP(context_dim, hidden=self.hidden)
        if choice == "monotone":
            if context_dim < 1:
                raise OptionError(
                    f"likelihood 'monotone' for {spec!r} needs a parent to be monotone in; "
                    f"{spec!r} has none"
                )
            return L.MonotoneBernoulli(context_dim, hidden=self.hidden)
        return L.CategoricalMLP(context_dim, col.width, hidden=self.hidden)

    def _make_prior(self) -> Prior:
        d = len(self.features)
        choice = self.prior_choice
        if isinstance(choice, dict) or choice == "factorized":
            per = choice if isinstance(choice, dict) else dict.fromkeys(self.features, "gaussian")
            return FactorizedPrior(self.graph, per, hidden=self.hidden)
        cls = {
            "auto": P.FlowPrior,  # the flexible candidate; fit() also tries a Gaussian
            "flow": P.FlowPrior,
            "empirical": P.EmpiricalPrior,
            "diffusion": P.DiffusionPrior,
            "dual": DualDivergencePrior,
            "gaussian": P.GaussianPrior,
        }
        try:
            return cls[choice](d, **self.prior_options)
        except TypeError as err:
            raise OptionError(f"prior_options {self.prior_options}: {err}") from None

    # ------------------------------------------------------------------ data

    def _frame(self, data: Any) -> pd.DataFrame:
        df = as_frame(data)
        if len(df) == 0:
            raise DataError("data has no rows: expected training rows (S=1)")
        sel = self.graph.selection
        if sel in df.columns and not (df[sel] == 1).all():
            bad = int((df[sel] != 1).sum())
            raise DataError(
                f"column {sel!r} has {bad} row(s) with S != 1: fit on training rows (S=1) only"
            )
        return df

    def tensors(self, data: Any, *, device: Any = None) -> dict[str, torch.Tensor]:
        """Normalised tensors of a frame: ``"X"`` (features) and one per spec.

        :param data: a DataFrame or dict of arrays with the graph's columns.
        :param device: where to put them (default: the model's device).
        """
        self._require_fitted()
        assert self.columns is not None
        df = as_frame(data)
        from sedge_pyro.models.columns import check_columns

        check_columns(df, list(self.features) + list(self.specs))
        device = self.device if device is None else device
        out = {"X": self.columns.tensor(df, self.features, device=device)}
        for z in self.specs:
            out[z] = self.columns.tensor(df, [z], device=device)
        out["Z"] = self.columns.tensor(df, self.specs, one_hot=True, device=device)
        return out

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters and buffers (CPU before fitting)."""
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ the Pyro program

    def model(self, data: Any = None, n: int | None = None) -> dict[str, torch.Tensor]:
        """The generative story of Sec. 3.1 as a Pyro program.

        With ``data`` (training rows), every site is observed and ``S`` is observed at 1;
        without, ``n`` rows are generated (``X`` from the prior, then each spec).

        :returns: the normalised values of the sites ``X`` and each spec.
        """
        self._require_fitted()
        t = self.tensors(data) if data is not None else None
        n_rows = t["X"].shape[0] if t is not None else int(n or 1)
        out: dict[str, torch.Tensor] = {}
        with data_plate("rows", n_rows, None):
            if "prior" in self.components:
                prior = self.components["prior"]
                x = t["X"] if t is not None else None
                if prior.has_log_prob:
                    x = pyro.sample("X", _PriorDistribution(prior, n_rows), obs=x)
                elif x is None:
                    x = pyro.deterministic("X", prior.sample(n_rows), event_dim=1)
                out["X"] = x
                if self.structure == "joint":
                    d = self.components["joint"].condition(x)
                    zs = pyro.sample("Z", d, obs=None if t is None else t["Z"])
                    out.update({z: zs[..., i : i + 1] for i, z in enumerate(self.specs)})
                else:
                    for z in self.specs:
                        idx = [self.features.index(f) for f in self.context_of(z)]
                        d = self.components[_key(z)].condition(x[..., idx])
                        obs = None if t is None else _obs(t[z], d)
                        out[z] = pyro.sample(z, d, obs=obs)
            else:
                if t is None:
                    raise SedgeError(f"structure {self.structure!r} generates X given Z: pass data")
                zc = t["Z"]
                if self.structure == "reverse":
                    out["X"] = pyro.sample(
                        "X", self.components["reverse"].condition(zc), obs=t["X"]
                    )
                else:
                    for j, x in enumerate(self.features):
                        d = self.components[_key(x)].condition(zc)
                        out[x] = pyro.sample(x, d, obs=t["X"][..., j])
            if t is not None:
                # the selection site: training rows are the rows with S = 1; its mechanism is
                # not identified from them and is left unmodelled: a point mass at 1 (log 1 = 0)
                ones = torch.ones(n_rows, device=self.device)
                pyro.sample("S", dist.Delta(ones), obs=ones)
        return out

    # ------------------------------------------------------------------ fitting

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
            self.to(device)
            t = self.tensors(df, device=device)
            if prior_data is not None:
                t = dict(t, X_prior=self._prior_rows(prior_data, device))
            jobs = self._jobs(t)
            if components is not None:
                unknown = [c for c in components if c not in jobs]
                if unknown:
                    raise SedgeError(f"component {unknown[0]!r}: expected one of {', '.join(jobs)}")
                jobs = {k: v for k, v in jobs.items() if k in components}
            outer = tqdm(jobs.items(), desc="SEDGE fit", disable=not progress, leave=False)
            from sedge_pyro.inference.fit import fit_component

            for i, (name, (module, fn, tensors)) in enumerate(outer):
                outer.set_postfix(component=name)
                if isinstance(module, Prior):
                    module.setup(tensors[0])
                    if not module.trainable:
                        self.history[name] = {"name": name, "steps": 0, "seconds": 0.0}
                        continue
                fit_kw = {
                    "name": name,
                    "steps": steps,
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "lr": lr,
                    "val_fraction": val_fraction,
                    "patience": patience,
                    "seed": seed + i,
                    "progress": progress,
                }
                record = fit_component(module, fn, tensors, **fit_kw).to_dict()
                rival = self._rival(name, module, seed + i)
                if rival is not None:
                    record = self._choose(name, module, record, rival, tensors, fit_kw)
                if name == "prior":
                    # p(X) of the population, or the training rows' p_D(X): the samplers of
                    # a diffusion prior treat the two differently (inference/selection.py)
                    record["population"] = "X_prior" in t
                self.history[name] = record
        return self

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
        from sedge_pyro.inference.fit import fit_component, split

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
            fn = _fn(rival.model, "X" if name == "prior" else name)
            other = fit_component(rival, fn, tensors, **fit_kw).to_dict()
        other["seconds"] = time.perf_counter() - start
        kind = {id(m): _KIND[type(m).__name__] for m in (module, rival)}
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
            self.components[_key(name)] = rival
        out = dict(out)
        out["auto"] = {"held_out_nll": losses, "chosen": pick, "margin": AUTO_MARGIN}
        return out

    def _prior_rows(self, data: Any, device: torch.device) -> torch.Tensor:
        """The normalised feature tensor of ``prior_data``, checked."""
        from sedge_pyro.models.columns import check_columns

        assert self.columns is not None
        df = as_frame(data)
        if len(df) < 2:
            raise DataError(f"prior_data has {len(df)} rows: expected feature rows for the prior")
        check_columns(df, list(self.features), what="prior_data")
        return self.columns.tensor(df, self.features, device=device)

    def _jobs(self, t: Mapping[str, torch.Tensor]) -> dict[str, tuple[nn.Module, Any, tuple]]:
        jobs: dict[str, tuple[nn.Module, Any, tuple]] = {}
        comps = self.components
        if "prior" in comps:
            prior = comps["prior"]
            jobs["prior"] = (prior, _fn(prior.model, "X"), (t.get("X_prior", t["X"]),))
        if self.structure in ("sparse", "dense"):
            for z in self.specs:
                idx = [self.features.index(f) for f in self.context_of(z)]
                m = comps[_key(z)]
                jobs[z] = (m, _fn(m.model, z), (t[z], t["X"][:, idx]))
        elif self.structure == "joint":
            m = comps["joint"]
            zs = torch.cat([t[z] for z in self.specs], dim=1)
            jobs["joint"] = (m, _fn(m.model, "Z"), (zs, t["X"]))
        elif self.structure == "reverse":
            m = comps["reverse"]
            jobs["reverse"] = (m, _fn(m.model, "X"), (t["X"], t["Z"]))
        else:
            for j, x in enumerate(self.features):
                m = comps[_key(x)]
                jobs[x] = (m, _fn(m.model, x), (t["X"][:, j : j + 1], t["Z"]))
        return jobs

    # ------------------------------------------------------------------ densities

    @torch.no_grad()
    def log_prob(self, data: Any) -> np.ndarray:
        """Per-row log-density of the specifications given the features (raw units).

        ``sum_i log p(z_i | V_i)`` for models A/B, ``log p(z | x)`` for C, ``log p(x | z)`` for
        D/E, plus ``log p(x)`` when the prior has a density; continuous columns include the
        Jacobian of the normalisation, so values are densities of the raw data.
        """
        self._require_fitted()
        assert self.columns is not None
        t = self.tensors(data)
        total = torch.zeros(t["X"].shape[0], device=t["X"].device)
        cols = self.columns
        jac_x = float(sum(np.log(cols[x].std) for x in self.features))
        jac_z = float(sum(np.log(cols[z].std) for z in self.specs if cols[z].kind == "continuous"))
        comps = self.components
        if "prior" in comps and comps["prior"].has_log_prob:
            total += comps["prior"].log_prob(t["X"]) - jac_x
        if self.structure in ("sparse", "dense"):
            for z in self.specs:
                idx = [self.features.index(f) for f in self.context_of(z)]
                total += comps[_key(z)].log_prob(t[z], t["X"][:, idx])
            total -= jac_z
        elif self.structure == "joint":
            zs = torch.cat([t[z] for z in self.specs], dim=1)
            total += comps["joint"].log_prob(zs, t["X"]) - jac_z
        elif self.structure == "reverse":
            total += comps["reverse"].log_prob(t["X"], t["Z"]) - jac_x
        else:
            for j, x in enumerate(self.features):
                total += comps[_key(x)].log_prob(t["X"][:, j : j + 1], t["Z"])
            total -= jac_x
        return total.cpu().numpy()

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
        from sedge_pyro.inference.target import Target

        self._require_fitted()
        assert self.columns is not None
        df = as_frame(data)
        from sedge_pyro.models.columns import check_columns

        check_columns(df, list(self.features))
        x = self.columns.tensor(df, self.features, device=self.device)
        probs = Target(self, target, tolerance=tolerance).event_probabilities(x)
        out = pd.DataFrame({k: v.cpu().numpy() for k, v in probs.items()}, index=df.index)
        out["all"] = out.prod(axis=1)
        return out

    # ------------------------------------------------------------------ sampling

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

        :param target: specification -> value (a number or category) or
            :class:`~sedge_pyro.Interval`, on any subset of the specs.
        :param n: draws per chain.
        :param method: ``"plan"`` (default for models A/B: follows :func:`~sedge_pyro.identify`'s
            factorization), ``"opt"`` (Algorithm 1), ``"dps"`` (Algorithm 2), ``"langevin"``,
            ``"svi"``, ``"nuts"``, ``"direct"`` (models D/E), or ``"auto"``: the method
            :func:`~sedge_pyro.backtest` finds best on the model's own training rows (rare
            seen combinations like the target, held out; one fit per held-out cell, so
            minutes), or on ``backtest=`` a result you ran; an unreliable backtest adds a
            warning, and ``info["auto"]`` records the choice; see
            :mod:`sedge_pyro.inference.sample`.
        :param chains: independent chains (ArviZ's ``chain`` dimension).
        :param seed: seeds the draws.
        :param device: where to sample (default: the model's device).
        :param tolerance: for point targets on continuous specs, how close a training value
            must be to count as the target (as in :func:`~sedge_pyro.identify`).
        :param progress: show a progress bar.
        :param threads: torch's CPU threads while sampling, restored afterwards (``None``:
            :func:`~sedge_pyro.options.default_threads`).
        :param options: the method's own options (e.g. ``steps``, ``step_size``).
        :returns: :class:`~sedge_pyro.inference.Samples`, shape ``(chains, n)`` per feature.
        :raises TargetError: for an unknown spec, a value outside a categorical's levels, an
            interval holding no value, or a value never seen alone (Assumption 1).
        :raises SamplingError: when the sampler diverges (names the method and step).
        :raises OptionError: for a ``threads`` that is not a whole number >= 1.

        >>> import sedge_pyro as sp
        >>> seen, oracle, graph = sp.datasets.paper_synthetic(1000, seed=0)
        >>> model = sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=20, progress=False)
        >>> s = model.sample({"z1": 1.0}, n=50, method="plan")
        >>> s.to_dataframe().shape
        (50, 3)
        """
        from sedge_pyro.inference.sample import sample

        with torch_threads(threads):
            return sample(
                self,
                target,
                n,
                method,
                chains=chains,
                seed=seed,
                device=device,
                tolerance=tolerance,
                progress=progress,
                **options,
            )

    # ------------------------------------------------------------------ persistence

    def state(self) -> dict[str, Any]:
        """Everything :meth:`load` needs, as plain Python and tensors."""
        self._require_fitted()
        assert self.columns is not None
        comps = {}
        for key, module in self.components.items():
            comps[key] = {
                "class": type(module).__name__,
                "config": module.config(),
                "state": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            }
        return {
            "format": FORMAT_VERSION,
            "graph": self.graph.to_json(),
            "structure": self.structure,
            "likelihood": self.likelihood_choice,
            "prior": self.prior_choice,
            "prior_options": self.prior_options,
            "hidden": list(self.hidden),
            "columns": self.columns.to_dict(),
            "seen": None if self.seen is None else {c: self.seen[c].to_numpy() for c in self.seen},
            "components": comps,
            "history": copy.deepcopy(self.history),
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save the fitted model to ``path``: one safetensors file, the weights and training
        rows as tensors, everything else (graph, component configurations, column statistics,
        history, format and package version) as JSON in its header. Nothing in it is code.

        The bytes go to a temporary file in the same folder, renamed to ``path`` once
        complete, so an interrupted save leaves an earlier file intact.

        :param path: the file (``.safetensors`` by convention).
        :param overwrite: replace an existing file; by default an existing file is kept.
        :returns: the path.
        :raises SedgeError: when the file exists and ``overwrite`` is false.
        """
        return write_state(self.state(), path, overwrite=overwrite)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
    ) -> SEDGEModel:
        """Load a model written by :meth:`save`. Reading never runs code from the file.

        :param path: the file.
        :param device: where to put the model.
        :raises OptionError: for a device that does not exist here.
        :raises SedgeError: naming the path when it is missing, damaged, not a sedge-pyro
            model, or a file of the old pickle format (see :func:`sedge_pyro.models.convert`).
        """
        return load_model(cls, path, FORMAT_VERSION, device)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, where: Any = "state") -> SEDGEModel:
        """Rebuild a model from :meth:`state` (on the CPU).

        :param where: the file the state came from, for messages.
        :raises SedgeError: naming ``where`` when an entry is missing or malformed.
        """
        with rebuilding(where, "SEDGEModel"):
            graph = SpecGraph.from_json(state["graph"])
            model = cls(
                graph,
                likelihood=state["likelihood"],
                prior=state["prior"],
                structure=state["structure"],
                hidden=state["hidden"],
                prior_options=state["prior_options"],
            )
            model.columns = Columns.from_dict(state["columns"])
            if state.get("seen") is not None:
                model.seen = pd.DataFrame(
                    {k: np.asarray(v) for k, v in dict(state["seen"]).items()}
                )
            comps = nn.ModuleDict()
            for key, item in dict(state["components"]).items():
                name = item["class"]
                if name == "FactorizedPrior":
                    module = FactorizedPrior(graph, **item["config"])
                elif name in _CLASSES:
                    config = dict(item["config"])
                    if name == "DiffusionPrior":
                        config.setdefault("box", False)  # saved before the box existed
                    module = _CLASSES[name](**config)
                else:
                    raise SedgeError(
                        f"{str(where)!r}: component {key!r} has an unknown class {name!r}: "
                        f"expected one of {', '.join(sorted(_CLASSES))} or FactorizedPrior"
                    )
                module.load_state_dict(item["state"])
                comps[key] = module
            model.components = comps
            model.history = dict(state["history"])
        return model


class _PriorDistribution(dist.TorchDistribution):
    """A prior with a density as a Pyro distribution over rows of X (event dim 1)."""

    arg_constraints: dict = {}
    support = dist.constraints.real_vector

    def __init__(self, prior: Prior, n: int) -> None:
        self.prior = prior
        super().__init__(batch_shape=torch.Size([n]), event_shape=torch.Size([prior.dim]))

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        n = int(np.prod(shape)) * self.batch_shape[0]
        x = self.prior.sample(n)
        return x.reshape(*shape, *self.batch_shape, self.prior.dim)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(value)


def _obs(values: torch.Tensor, d: dist.Distribution) -> torch.Tensor:
    return values.squeeze(-1) if d.event_shape == () else values


def _fn(method: Any, name: str) -> Any:
    def fn(*tensors: torch.Tensor, n_total: int | None = None) -> None:
        method(*tensors, name=name, n_total=n_total)

    return fn
