"""The image experiment's networks and what its two pixel models share.

The convolutional encoder and decoder of :class:`~sedge_pyro.experiments.ImageSEDGE` and
:class:`~sedge_pyro.experiments.ConditionalImageVAE` (the same architecture, so the
comparison is fair), ImageSEDGE's masked attribute heads, and :class:`_PixelModel`: image and
label checks, the device and the model file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sedge_pyro.datasets import attribute_codes, image_array
from sedge_pyro.errors import DataError, OptionError, SedgeError
from sedge_pyro.models.files import load_model, rebuilding, write_state
from sedge_pyro.models.masks import SigmoidMask
from sedge_pyro.models.nets import mlp
from sedge_pyro.models.train import svi, train
from sedge_pyro.options import device as check_device
from sedge_pyro.options import number, whole
from sedge_pyro.options import seed as check_seed
from sedge_pyro.options import threads as torch_threads

_MIN_SCALE = 1e-3


def _conv(size: int, out: int, width: int) -> nn.Sequential:
    """Three stride-2 convolutions and a linear layer to ``out`` outputs."""
    return nn.Sequential(
        nn.Conv2d(3, width, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 4, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * width * (size // 8) ** 2, out),
    )


class _Encoder(nn.Module):
    """Three stride-2 convolutions, then the Gaussian posterior's location and scale."""

    def __init__(self, size: int, d: int, width: int) -> None:
        super().__init__()
        self.net = _conv(size, 2 * d, width)
        self.d = d

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(y)
        return out[:, : self.d], F.softplus(out[:, self.d :]) + _MIN_SCALE


class _Decoder(nn.Module):
    """The mirror of :class:`_Encoder`: pixel means in ``(0, 1)``."""

    def __init__(self, size: int, d: int, width: int) -> None:
        super().__init__()
        self.side, self.width = size // 8, width
        self.fc = nn.Linear(d, 2 * width * self.side**2)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 3, 4, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x).view(-1, 2 * self.width, self.side, self.side)
        return torch.sigmoid(self.net(h))


class _Head(nn.Module):
    r"""One attribute's likelihood :math:`p(z_i \mid x \odot M_i, z_{-i})`: categorical logits
    from the gated, masked concepts and the other attributes' one-hot codes (unmasked).
    """

    def __init__(self, d: int, n_other: int, n_values: int, hidden: Sequence[int], init: float):
        super().__init__()
        self.mask = SigmoidMask(d, init=init, temperature=0.5)
        self.net = mlp(d + n_other, n_values, hidden)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.mask(x), other], -1))


class _Networks(nn.Module):
    def __init__(
        self,
        d: int,
        size: int,
        width: int,
        attributes: Mapping[str, Sequence[str]],
        hidden: Sequence[int],
        mask_init: float,
    ) -> None:
        super().__init__()
        total = sum(len(v) for v in attributes.values())
        # the free concepts' posterior, and a separate trunk for the aligned concepts' logits
        # (measured: sharing one trunk lets the free concepts carry the attributes too)
        self.enc = _Encoder(size, d, width)
        self.cls = _conv(size, total, width)
        self.dec = _Decoder(size, d + total, width)
        self.heads = nn.ModuleDict(
            {
                a: _Head(d + total, total - len(v), len(v), hidden, mask_init)
                for a, v in attributes.items()
            }
        )
        self.sizes = [len(v) for v in attributes.values()]
        self.raw_sigma = nn.Parameter(torch.tensor(-2.0))

    def aligned(self, logits: torch.Tensor) -> torch.Tensor:
        """The aligned concepts: each attribute's softmax over its values, side by side."""
        return torch.cat([F.softmax(b, -1) for b in logits.split(self.sizes, -1)], -1)

    def sigma(self) -> torch.Tensor:
        return F.softplus(self.raw_sigma) + _MIN_SCALE

    def l1(self) -> torch.Tensor:
        return sum((h.mask.l1() for h in self.heads.values()), self.raw_sigma.new_zeros(()))

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> list[torch.Tensor]:
        """Every head's logits for concepts ``x`` and attribute codes ``z``."""
        hot = [F.one_hot(z[:, j], k).to(x.dtype) for j, k in enumerate(self.sizes)]
        return [
            head(x, torch.cat([x.new_zeros(len(x), 0), *hot[:j], *hot[j + 1 :]], -1))
            for j, head in enumerate(self.heads.values())
        ]


class _PixelModel:
    """What :class:`ImageSEDGE` and :class:`~sedge_pyro.experiments.ConditionalImageVAE` share:
    image and label checks, the device, and saving (``_FORMAT`` names the file format).
    """

    _FORMAT = ""
    attributes: dict[str, tuple[str, ...]]
    size: int
    net: nn.Module
    history: dict[str, list[float]]
    seconds: float
    device: torch.device
    _fitted: bool

    def config(self) -> dict[str, Any]:  # pragma: no cover - each model defines it
        raise NotImplementedError

    def model(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - each defines it
        raise NotImplementedError

    def guide(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - each defines it
        raise NotImplementedError

    def _check_shape(
        self, n_features: int, size: int, attributes: Mapping[str, Sequence[str]], width: int
    ) -> None:
        """Check and keep the options both models share: the counts, the image side (a
        multiple of 8) and the attributes (at least one, each with two or more values).
        """
        self.n_features = whole("n_features", n_features)
        self.size = whole("size", size, low=8)
        if self.size % 8:
            raise OptionError(f"size={size}: expected a multiple of 8 pixels")
        self.attributes = {str(k): tuple(str(v) for v in vals) for k, vals in attributes.items()}
        if not self.attributes or any(len(v) < 2 for v in self.attributes.values()):
            raise OptionError(
                f"attributes={attributes!r}: expected at least one attribute, each with two or "
                "more values"
            )
        self.width = whole("width", width)

    def _svi_args(
        self, y: torch.Tensor, z: torch.Tensor, pool: torch.Tensor | None, batch: int
    ) -> tuple[Any, ...]:
        """The arguments of :meth:`model` and :meth:`guide` for one SVI step."""
        return y, z, pool, batch

    def _before_step(self, step: int, steps: int) -> None:
        """Called before SVI step ``step`` of ``steps`` (a schedule of the objective)."""

    def _fit_pixels(
        self,
        images: Any,
        labels: pd.DataFrame,
        pool: Any,
        *,
        steps: int,
        batch_size: int,
        lr: float,
        seed: int,
        progress: bool,
        device: str | torch.device,
        threads: int | None,
    ) -> Any:
        """Both models' ``fit``: SVI on minibatches through the one training loop
        (:func:`sedge_pyro.models.train.train`), the per-row loss of every step appended to
        ``history``. See the models' ``fit`` for the arguments.
        """
        steps = whole("steps", steps)
        batch_size = whole("batch_size", batch_size)
        lr = number("lr", lr)
        seed = check_seed(seed)
        with torch_threads(threads):
            self.to(device)
            y, z = self._images(images), self.codes(labels)
            if len(y) != len(z):
                raise DataError(f"images has {len(y)} rows and labels {len(z)}: expected the same")
            u = None if pool is None else self._images(pool, "pool")
            batch = min(batch_size, len(y), len(y) if u is None else len(u))
            args = self._svi_args(y, z, u, batch)
            start = time.perf_counter()
            self.net.train()

            def step(i: int) -> float:
                self._before_step(i, steps)
                return run.step(*args) / len(y)

            with svi(self.model, self.guide, lr=lr, seed=seed) as run:
                train(
                    step,
                    steps,
                    desc=f"fit {type(self).__name__}",
                    lr=lr,
                    on_step=lambda _, loss: self.history["loss"].append(loss),
                    progress=progress,
                    fmt=".1f",
                )
            self.net.eval()
            self._fitted = True
            self.seconds += time.perf_counter() - start
        return self

    def _images(self, images: Any, name: str = "images") -> torch.Tensor:
        return torch.as_tensor(image_array(images, self.size, name), device=self.device)

    def codes(self, labels: pd.DataFrame) -> torch.Tensor:
        """Integer codes of the attribute columns of ``labels``, ``(N, n_attributes)``.

        :raises DataError: naming a missing column or an unknown value.
        """
        return torch.as_tensor(attribute_codes(labels, self.attributes), device=self.device)

    def to(self, device: str | torch.device) -> Any:
        """Move the networks to ``device``; returns ``self``."""
        self.device = check_device(device)
        self.net.to(self.device)
        return self

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise SedgeError("the model is not fitted: call model.fit(images, labels) first")

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save configuration, weights and history to one safetensors file (the tensors as
        tensors, the rest as JSON in its header, no code), written atomically.

        :param path: the file (``.safetensors`` by convention).
        :param overwrite: replace an existing file; by default an existing file is kept.
        :raises SedgeError: when the file exists and ``overwrite`` is false.
        """
        return write_state(self.state(), path, overwrite=overwrite)

    def state(self) -> dict[str, Any]:
        """Everything :meth:`load` needs, as plain Python and tensors."""
        return {
            "format": self._FORMAT,
            "config": self.config(),
            "state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "history": {k: list(v) for k, v in self.history.items()},
            "fitted": self._fitted,
            "seconds": self.seconds,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Any:
        """Load a model written by :meth:`save`. Reading never runs code from the file.

        :param path: the file.
        :param device: the device to put the networks on.
        :raises SedgeError: naming the path when it is missing, damaged, not a saved model of
            this class, or of the old pickle format (see :func:`sedge_pyro.legacy`).
        :raises OptionError: for a device that does not exist here.
        """
        return load_model(cls, path, cls._FORMAT, device)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, where: Any = "state") -> Any:
        """Rebuild a model from :meth:`state` (on the CPU).

        :param where: the file the state came from, for messages.
        :raises SedgeError: naming ``where`` when an entry is missing or malformed.
        """
        with rebuilding(where, cls.__name__):
            model = cls(**state["config"])
            model.net.load_state_dict(state["state"])
            model.history = dict(state["history"])
            model._fitted = bool(state["fitted"])
            model.seconds = float(state["seconds"])
        model.net.eval()
        return model
