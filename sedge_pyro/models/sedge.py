"""``SEDGEProgram``: the Pyro program of Sec. 3.1, assembled from a :class:`SpecGraph`.

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

The user-facing :class:`sedge_pyro.SEDGEModel` (:mod:`sedge_pyro.inference.model`) adds
fitting (every component by SVI on its own Pyro program, :meth:`component_program`; the
selection mechanism is never fitted: training rows all have ``S = 1``, which says nothing about
it) and sampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from sedge_pyro.errors import DataError, OptionError, SedgeError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.models import likelihoods as L
from sedge_pyro.models import priors as P
from sedge_pyro.models.base import ConditionalDensity, Prior, data_plate
from sedge_pyro.models.columns import Columns, as_frame, check_columns
from sedge_pyro.models.dual import DualDivergencePrior
from sedge_pyro.models.factorized import FactorizedPrior
from sedge_pyro.models.program_file import FORMAT_VERSION, _ModelFile  # noqa: F401 (re-export)
from sedge_pyro.options import whole

__all__ = ["AUTO_MARGIN", "STRUCTURES", "SEDGEProgram", "component_key", "component_program"]

STRUCTURES = ("sparse", "dense", "joint", "reverse", "reverse-factorized")
LIKELIHOODS = ("auto", "gaussian", "bernoulli", "monotone", "categorical", "flow")
PRIORS = ("auto", "flow", "empirical", "diffusion", "factorized", "gaussian", "dual")
#: ``"auto"`` keeps the flexible candidate (a flow) only where its held-out NLL per row beats
#: the Gaussian's by more than this many nats; otherwise the simpler Gaussian stays
AUTO_MARGIN = 0.01


#: component class -> the option value that builds it (:attr:`SEDGEModel.chosen`)
COMPONENT_KINDS = {
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


def component_key(name: str) -> str:
    """The key of node ``name``'s component in :attr:`SEDGEProgram.components` (an
    ``nn.ModuleDict``, whose keys may not contain dots).
    """
    return name.replace(".", "\u2024")


class SEDGEProgram(_ModelFile, PyroModule):
    """The Pyro program of a graph (Sec. 3.1): the components, the sample sites ``X`` (or one per
    feature), one per spec and the selection site ``S``, densities, and the model file.

    It holds no fitting and no sampling: :class:`sedge_pyro.SEDGEModel`
    (:mod:`sedge_pyro.inference.model`) adds them above it, so that no module of
    :mod:`sedge_pyro.models` imports :mod:`sedge_pyro.inference`. The parameters are those of
    :class:`~sedge_pyro.SEDGEModel`.
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
        #: the training rows (features and specs, raw units) the model was fit on; at most
        #: ``sedge_pyro.models.stream.KEEP_ROWS`` of them, a uniform sample, for larger data
        self.seen: pd.DataFrame | None = None
        #: the rows of the last fit: ``rows`` and ``kept_rows`` (those in :attr:`seen`), and
        #: from a file also ``train_rows`` and ``held_out_rows`` (the held-out rows scored)
        self.data_rows: dict[str, int] = {}
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
        return self.components[component_key(spec)]

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
            ("prior" if key == "prior" else key.replace("\u2024", ".")): COMPONENT_KINDS.get(
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
                comps[component_key(z)] = self._likelihood(z, len(self.context_of(z)))
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
                    comps[component_key(x)] = L.GaussianMLP(width, hidden=self.hidden)
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
                        d = self.components[component_key(z)].condition(x[..., idx])
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
                        d = self.components[component_key(x)].condition(zc)
                        out[x] = pyro.sample(x, d, obs=t["X"][..., j])
            if t is not None:
                # the selection site: training rows are the rows with S = 1; its mechanism is
                # not identified from them and is left unmodelled: a point mass at 1 (log 1 = 0)
                ones = torch.ones(n_rows, device=self.device)
                pyro.sample("S", dist.Delta(ones), obs=ones)
        return out

    # ------------------------------------------------------------------ fitting helpers

    def _prior_rows(self, data: Any, device: torch.device) -> torch.Tensor:
        """The normalised feature tensor of ``prior_data``, checked."""
        assert self.columns is not None
        df = as_frame(data)
        if len(df) < 2:
            raise DataError(f"prior_data has {len(df)} rows: expected feature rows for the prior")
        check_columns(df, list(self.features), what="prior_data")
        return self.columns.tensor(df, self.features, device=device)

    def _jobs(self, t: Mapping[str, torch.Tensor]) -> dict[str, tuple[nn.Module, Any, tuple]]:
        """Every component to fit as ``(module, program, tensors)``, its tensors taken from
        the model's tensors ``t`` (see :meth:`tensors`).
        """
        return {name: (m, fn, pick(t)) for name, (m, fn, pick) in self._job_parts().items()}

    def _job_parts(self) -> dict[str, tuple[nn.Module, Any, Any]]:
        """Every component to fit as ``(module, program, pick)``: ``pick(t)`` takes its
        program's tensors from the model's tensors ``t`` (all rows, or one minibatch).
        """
        jobs: dict[str, tuple[nn.Module, Any, Any]] = {}
        comps = self.components
        if "prior" in comps:
            prior = comps["prior"]
            jobs["prior"] = (
                prior,
                component_program(prior.model, "X"),
                lambda t: (t.get("X_prior", t["X"]),),
            )
        if self.structure in ("sparse", "dense"):
            for z in self.specs:
                idx = [self.features.index(f) for f in self.context_of(z)]
                m = comps[component_key(z)]
                jobs[z] = (
                    m,
                    component_program(m.model, z),
                    lambda t, z=z, idx=idx: (t[z], t["X"][:, idx]),
                )
        elif self.structure == "joint":
            m = comps["joint"]
            jobs["joint"] = (
                m,
                component_program(m.model, "Z"),
                lambda t: (torch.cat([t[z] for z in self.specs], dim=1), t["X"]),
            )
        elif self.structure == "reverse":
            m = comps["reverse"]
            jobs["reverse"] = (m, component_program(m.model, "X"), lambda t: (t["X"], t["Z"]))
        else:
            for j, x in enumerate(self.features):
                m = comps[component_key(x)]
                jobs[x] = (
                    m,
                    component_program(m.model, x),
                    lambda t, j=j: (t["X"][:, j : j + 1], t["Z"]),
                )
        return jobs

    def code_tensors(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's tensors (as :meth:`tensors`) of rows already encoded: a column per
        feature then per spec, in normalised units and category codes
        (:class:`~sedge_pyro.models.stream.StreamedRows`).
        """
        assert self.columns is not None
        d = len(self.features)
        out = {"X": codes[:, :d]}
        parts = []
        for j, z in enumerate(self.specs):
            col = codes[:, d + j : d + j + 1]
            out[z] = col
            width = self.columns[z].width
            if self.columns[z].kind == "categorical":
                col = torch.nn.functional.one_hot(col.squeeze(1).long(), width).to(codes.dtype)
            parts.append(col)
        out["Z"] = torch.cat(parts, dim=1) if parts else codes[:, :0]
        return out

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
                total += comps[component_key(z)].log_prob(t[z], t["X"][:, idx])
            total -= jac_z
        elif self.structure == "joint":
            zs = torch.cat([t[z] for z in self.specs], dim=1)
            total += comps["joint"].log_prob(zs, t["X"]) - jac_z
        elif self.structure == "reverse":
            total += comps["reverse"].log_prob(t["X"], t["Z"]) - jac_x
        else:
            for j, x in enumerate(self.features):
                total += comps[component_key(x)].log_prob(t["X"][:, j : j + 1], t["Z"])
            total -= jac_x
        return total.cpu().numpy()


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


def component_program(method: Any, name: str) -> Any:
    """A component's ``model`` method as the Pyro program one fit runs: sample site ``name``,
    called with the component's tensors and ``n_total`` (the rows a minibatch stands for).
    """

    def fn(*tensors: torch.Tensor, n_total: int | None = None) -> None:
        method(*tensors, name=name, n_total=n_total)

    return fn
