"""The model file of :class:`~sedge_pyro.models.latent.LatentSEDGE`: its configuration,
weights, standardisation and history in one safetensors file (no code), moving it between
devices, and the standardisation itself (each block centred per column and divided by one
overall scale).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from sedge_pyro.errors import SedgeError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.models.files import load_model, rebuilding, write_state
from sedge_pyro.models.latent_nets import _centre_scale
from sedge_pyro.options import device as check_device

_FORMAT = "sedge-pyro/latent-1"


class _LatentFile:
    """Saving, loading and moving a :class:`~sedge_pyro.models.latent.LatentSEDGE`, and its
    standardisation of the observations.
    """

    n_features: int
    n_specs: int
    obs_x_dim: int
    obs_z_dim: int
    hidden: tuple[int, ...]
    decoder_hidden: tuple[int, ...]
    prior_components: int
    full_cov: tuple[str, ...]
    alpha: float
    beta: float
    feature_names: list[str]
    spec_names: list[str]
    mask_init: float
    temperature: float | None
    z_prior: str
    graph: SpecGraph | None
    net: nn.Module
    history: dict[str, list[float]]
    alignment: dict[str, Any] | None
    seconds: float
    device: torch.device
    _fitted: bool
    _stats: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def config(self) -> dict[str, Any]:
        """The constructor arguments, enough to rebuild an unfitted copy."""
        return {
            "n_features": self.n_features,
            "n_specs": self.n_specs,
            "obs_x_dim": self.obs_x_dim,
            "obs_z_dim": self.obs_z_dim,
            "hidden": list(self.hidden),
            "decoder_hidden": list(self.decoder_hidden),
            "prior_components": self.prior_components,
            "full_cov": list(self.full_cov),
            "alpha": self.alpha,
            "beta": self.beta,
            "feature_names": list(self.feature_names),
            "spec_names": list(self.spec_names),
            "mask_init": self.mask_init,
            "temperature": self.temperature,
            "z_prior": self.z_prior,
            "graph": None if self.graph is None else self.graph.to_json(),
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save the model (configuration, weights, standardisation, history) to one
        safetensors file: tensors as tensors, the rest as JSON in its header, no code.

        Written to a temporary file renamed to ``path`` once complete.

        :param path: the file (``.safetensors`` by convention).
        :param overwrite: replace an existing file; by default an existing file is kept.
        :returns: the path.
        :raises SedgeError: when the file exists and ``overwrite`` is false.
        """
        return write_state(self.state(), path, overwrite=overwrite)

    def state(self) -> dict[str, Any]:
        """Everything :meth:`load` needs, as plain Python and tensors."""
        return {
            "format": _FORMAT,
            "config": self.config(),
            "state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "stats": {k: (m.cpu(), s.cpu()) for k, (m, s) in self._stats.items()},
            "history": {k: list(v) for k, v in self.history.items()},
            # a checkpoint taken during fit is usable: weights and standardisation exist
            "fitted": self._fitted or bool(self._stats),
            "alignment": self.alignment,
            "seconds": self.seconds,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Self:
        """Load a model written by :meth:`save` (or a checkpoint of :meth:`fit`). Reading
        never runs code from the file.

        :raises OptionError: for a device that does not exist here.
        :raises SedgeError: naming the path when it is missing, damaged, not a saved
            LatentSEDGE, or of the old pickle format (see :func:`sedge_pyro.legacy`).
        """
        return load_model(cls, path, _FORMAT, device)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, where: Any = "state") -> Self:
        """Rebuild a model from :meth:`state` (on the CPU).

        :param where: the file the state came from, for messages.
        :raises SedgeError: naming ``where`` when an entry is missing or malformed.
        """
        with rebuilding(where, "LatentSEDGE"):
            config = dict(state["config"])
            if config.get("graph") is not None:
                config["graph"] = SpecGraph.from_json(config["graph"])
            model = cls(**config)
            missing, unexpected = model.net.load_state_dict(state["state"], strict=False)
            if unexpected or set(missing) - {"align_x", "align_z"}:
                raise SedgeError(
                    f"{str(where)!r} does not match its configuration: missing {missing}, "
                    f"unexpected {unexpected}"
                )
            model.alignment = state.get("alignment")
            model._stats = {k: (m, s) for k, (m, s) in dict(state["stats"]).items()}
            model.history = dict(state["history"])
            model._fitted = bool(state["fitted"])
            model.seconds = float(state["seconds"])
        model.net.eval()
        return model

    def to(self, device: str | torch.device) -> Self:
        """Move the networks and the standardisation to ``device``; returns ``self``."""
        dev = check_device(device)
        self.device = dev
        self.net.to(dev)
        self._stats = {k: (m.to(dev), s.to(dev)) for k, (m, s) in self._stats.items()}
        return self

    # -- using the fit ------------------------------------------------------------------

    def _standardise(self, t: torch.Tensor, key: str) -> torch.Tensor:
        mean, std = self._stats[key]
        return (t - mean) / std

    def _fit_stats(
        self, a_x: np.ndarray, a_z: np.ndarray, dev: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move to ``dev``, fit the standardisation of both blocks and return them standardised."""
        self.device = dev
        self.net.to(dev)
        t_x = torch.as_tensor(a_x, dtype=torch.float32, device=dev)
        t_z = torch.as_tensor(a_z, dtype=torch.float32, device=dev)
        self._stats = {"x": _centre_scale(t_x), "z": _centre_scale(t_z)}
        return self._standardise(t_x, "x"), self._standardise(t_z, "z")
