"""The model file of :class:`~sedge_pyro.models.sedge.SEDGEProgram`: its state as plain Python
and tensors, saved as one safetensors file (weights and rows as tensors, the rest as JSON in
the header) and rebuilt without running code from the file. A mixin: ``self`` is the
program, with its graph, options, columns and components.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from sedge_pyro.errors import SedgeError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.models import likelihoods as L
from sedge_pyro.models import priors as P
from sedge_pyro.models.columns import Columns
from sedge_pyro.models.dual import DualDivergencePrior
from sedge_pyro.models.factorized import FactorizedPrior
from sedge_pyro.models.files import load_model, rebuilding, write_state

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


#: the class a classmethod of :class:`~sedge_pyro.models.sedge.SEDGEProgram` is called on
#: (``SEDGEModel.load`` gives a ``SEDGEModel``)
_Program = TypeVar("_Program", bound="_ModelFile")


class _ModelFile:
    """:meth:`state`, :meth:`save`, :meth:`load` and :meth:`from_state` of
    :class:`~sedge_pyro.models.sedge.SEDGEProgram`.
    """

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
            "data_rows": dict(self.data_rows),
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
        cls: type[_Program], path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
    ) -> _Program:
        """Load a model written by :meth:`save`. Reading never runs code from the file.

        :param path: the file.
        :param device: where to put the model.
        :raises OptionError: for a device that does not exist here.
        :raises SedgeError: naming the path when it is missing, damaged, not a sedge-pyro
            model, or a file of the old pickle format (see :func:`sedge_pyro.legacy`).
        """
        return load_model(cls, path, FORMAT_VERSION, device)

    @classmethod
    def from_state(
        cls: type[_Program], state: Mapping[str, Any], *, where: Any = "state"
    ) -> _Program:
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
            # files of before issue 24 do not say how many rows the fit read
            model.data_rows = {k: int(v) for k, v in dict(state.get("data_rows") or {}).items()}
        return model
