r"""Composable diffusion: a conditional DDPM per specification, composed as a product of experts.

The peer baseline to SEDGE's guided samplers (Liu, Li, Du, Torralba and Tenenbaum 2022). One
noise network :math:`\epsilon_\theta(x_t, t, c)` is trained on the **seen** rows with every
specification's value as a condition, each specification dropped (replaced by a "null"
code) independently with probability ``drop`` (classifier-free guidance, Ho and Salimans
2021), so the same network also predicts the noise given any subset of the specifications,
the empty one included. For a target :math:`\{z_1, \dots, z_k\}` its reverse chain follows the
composed noise of Liu et al.'s conjunction (their Eq. (12)):

.. math:: \hat\epsilon = \epsilon_\theta(x_t, t, \varnothing) + w \sum_{i=1}^k
    \big(\epsilon_\theta(x_t, t, z_i) - \epsilon_\theta(x_t, t, \varnothing)\big),

the score of :math:`p(x) \prod_i [p(x \mid z_i) / p(x)]^w`: at :math:`w = 1` the product of
experts :math:`p(x) \prod_i p(z_i \mid x) / p(z_i)`. Each expert :math:`p(x \mid z_i)` is
learned from rows that *do* carry :math:`z_i`, so a combination no row carries is composed
from experts that each saw one part of it; unlike SEDGE, nothing checks that the parts
combine (no graph, no identification).

It diffuses in the standardised logit of each feature's position in the rows' range, as
:class:`~sedge_pyro.models.DiffusionPrior` does with ``box=True``, so its draws stay in the
seen box.

References:
* Liu, Li, Du, Torralba and Tenenbaum, Compositional Visual Generation with Composable
  Diffusion Models, ECCV 2022.
* Ho and Salimans, Classifier-Free Diffusion Guidance, NeurIPS 2021 Workshop.
* Ho, Jain and Abbeel, Denoising Diffusion Probabilistic Models, NeurIPS 2020.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyro
import torch

from sedge_pyro.errors import DataError, OptionError, TargetError
from sedge_pyro.models.nets import mlp
from sedge_pyro.models.priors import DiffusionPrior
from sedge_pyro.models.train import svi, train
from sedge_pyro.options import number, whole
from sedge_pyro.options import seed as check_seed

__all__ = ["ComposedDiffusion"]


class ComposedDiffusion(DiffusionPrior):
    r"""A conditional DDPM over features given categorical specifications, with classifier-free
    guidance, composed across specifications (see the module).

    :param dim: number of features.
    :param levels: specification -> its values, in code order.
    :param drop: probability that a specification's condition is dropped in training.
    :param T: diffusion steps; the other arguments as :class:`~sedge_pyro.models.
        DiffusionPrior`'s.

    >>> levels = {"shape": ["circle", "square"], "colour": ["red", "blue"]}
    >>> cd = ComposedDiffusion(3, levels, T=10, hidden=(8,))
    >>> x = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)))
    >>> labels = pd.DataFrame({"shape": ["circle", "square"] * 20, "colour": ["red"] * 40})
    >>> cd = cd.fit(x, labels, steps=5, progress=False)
    >>> cd.sample({"shape": "circle", "colour": "blue"}, 4).shape
    (4, 3)
    """

    def __init__(
        self,
        dim: int,
        levels: Mapping[str, Sequence[str]],
        *,
        drop: float = 0.2,
        T: int = 200,
        hidden: Sequence[int] = (128, 128),
        time_embedding_dim: int = 32,
        ema_decay: float = 0.999,
    ) -> None:
        super().__init__(
            dim, T=T, hidden=hidden, time_embedding_dim=time_embedding_dim, ema_decay=ema_decay
        )
        if not isinstance(levels, Mapping) or not levels:
            raise OptionError(f"levels={levels!r}: expected a mapping spec -> its values")
        self.levels = {str(k): [str(v) for v in vs] for k, vs in levels.items()}
        for spec, values in self.levels.items():
            if len(values) < 2 or len(set(values)) != len(values):
                raise OptionError(
                    f"levels[{spec!r}]={values!r}: expected 2 or more distinct values"
                )
        if not 0.0 < float(drop) < 1.0:
            raise OptionError(f"drop={drop!r}: expected a probability in (0, 1)")
        self.drop = float(drop)
        # one block per spec: its one-hot code and a null flag
        self.cond_dim = sum(len(v) + 1 for v in self.levels.values())
        self.net = mlp(self.dim + self.time_embedding_dim + self.cond_dim, self.dim, self.hidden)
        self.ema = type(self.ema)(self.net)
        self._cond: torch.Tensor | None = None
        self.columns: list[str] = []
        self.history: dict[str, list[float]] = {"loss": []}
        self.seconds = 0.0

    # -- conditions ---------------------------------------------------------------------

    def condition(self, values: Mapping[str, Any], n: int) -> torch.Tensor:
        """The condition tensor ``(n, cond_dim)`` for ``values``: spec -> one value or ``n``
        values; a spec left out (or ``None``) is the null condition.

        :raises TargetError: naming an unknown spec or value.
        """
        blocks = []
        for spec, levels in self.levels.items():
            block = torch.zeros(n, len(levels) + 1)
            value = values.get(spec)
            if value is None:
                block[:, -1] = 1.0
            else:
                vals = [str(value)] * n if np.isscalar(value) else [str(v) for v in value]
                if len(vals) != n:
                    raise TargetError(f"{spec} has {len(vals)} values: expected one or {n}")
                for v in set(vals):
                    if v not in levels:
                        raise TargetError(f"{spec}={v!r}: expected one of {levels}")
                codes = torch.tensor([levels.index(v) for v in vals])
                block[torch.arange(n), codes] = 1.0
            blocks.append(block)
        for spec in values:
            if spec not in self.levels:
                raise TargetError(f"spec {spec!r}: expected one of {list(self.levels)}")
        return torch.cat(blocks, -1).to(self.betas.device)

    def eps(
        self, x_t: torch.Tensor, t: int | torch.Tensor, *, ema: bool | None = None
    ) -> torch.Tensor:
        """The noise prediction under the condition set by :meth:`_conditioned` (null when
        none is set).
        """
        t = self._t(t, x_t)
        cond = self._cond
        if cond is None:
            cond = self.condition({}, x_t.shape[0])
        h = torch.cat([x_t, self.time_embedding(t).to(x_t.dtype), cond.to(x_t)], dim=-1)
        if self.uses_ema if ema is None else ema:
            return torch.func.functional_call(self.net, self.ema.weights(), (h,))
        return self.net(h)

    # -- fitting ------------------------------------------------------------------------

    def _model(self, x: torch.Tensor, c: torch.Tensor, batch: int) -> None:
        pyro.module("composed", self)
        with pyro.plate("rows", x.shape[0], subsample_size=batch) as idx:
            cond = c[idx]
            # drop each spec's condition independently: its block becomes the null code
            start = 0
            for levels in self.levels.values():
                k = len(levels) + 1
                gone = torch.rand(len(idx), device=x.device) < self.drop
                null = torch.zeros(k, device=x.device)
                null[-1] = 1.0
                cond[gone, start : start + k] = null
                start += k
            if self.ema_decay > 0:
                self.ema.update(self.net, self.ema_decay)
            self._cond = cond
            try:
                loss = self.loss(x[idx])
            finally:
                self._cond = None
            pyro.factor("ddpm", -loss * self.dim)

    @staticmethod
    def _guide(x: torch.Tensor, c: torch.Tensor, batch: int) -> None:
        pass

    def fit(
        self,
        x: Any,
        labels: pd.DataFrame,
        *,
        steps: int = 10_000,
        batch_size: int = 256,
        lr: float = 2e-3,
        seed: int = 0,
        progress: bool = True,
    ) -> ComposedDiffusion:
        """Fit by SVI (an empty guide: the DDPM loss as a :func:`pyro.factor`) on the seen
        rows ``x`` (features) and their ``labels`` (a column per spec of ``levels``).

        :returns: ``self``.
        :raises DataError: for mismatched rows, a missing label column, or a diverging loss.
        """
        steps, batch_size = whole("steps", steps), whole("batch_size", batch_size)
        lr, seed = number("lr", lr), check_seed(seed)
        frame = pd.DataFrame(x)
        if frame.shape[1] != self.dim:
            raise DataError(f"x has {frame.shape[1]} columns: expected {self.dim} features")
        if len(frame) != len(labels):
            raise DataError(f"x has {len(frame)} rows and labels {len(labels)}: expected equal")
        missing = [s for s in self.levels if s not in labels.columns]
        if missing:
            raise DataError(f"labels has no column {missing[0]!r}: expected {list(self.levels)}")
        self.columns = [str(c) for c in frame.columns]
        xt = torch.tensor(frame.to_numpy(np.float32), device=self.betas.device)
        c = self.condition({s: labels[s].astype(str).tolist() for s in self.levels}, len(xt))
        self.setup(xt)
        batch = min(batch_size, len(xt))
        with svi(self._model, self._guide, lr=lr, seed=seed) as fit:
            history = train(
                lambda _: fit.step(xt, c, batch) / (len(xt) * self.dim),
                steps,
                name="ComposedDiffusion",
                lr=lr,
                on_step=lambda _, loss: self.history["loss"].append(loss),
                progress=progress,
            )
        self.seconds += history.seconds
        return self

    # -- sampling -----------------------------------------------------------------------

    def sample(  # type: ignore[override]
        self,
        target: Mapping[str, str],
        n: int,
        *,
        guidance: float = 1.0,
        seed: int = 0,
    ) -> np.ndarray:
        r"""``n`` draws ``(n, dim)`` in feature units for ``target`` (spec -> value) by the
        full reverse chain with the composed noise :math:`\hat\epsilon` (``guidance`` =
        :math:`w`; see the module).

        :raises TargetError: for an unknown spec or value.
        """
        n = int(whole("n", n))
        w = float(number("guidance", guidance, positive=False))
        g = torch.Generator(device=self.betas.device).manual_seed(check_seed(seed))
        null = self.condition({}, n)
        experts = [self.condition({s: v}, n) for s, v in target.items()]
        if not experts:
            raise TargetError("target is empty: expected spec -> value pairs")

        def composed(x: torch.Tensor, t: int) -> torch.Tensor:
            try:
                self._cond = null
                base = self.eps(x, t)
                out = base.clone()
                for cond in experts:
                    self._cond = cond
                    out += w * (self.eps(x, t) - base)
            finally:
                self._cond = None
            return out

        with torch.no_grad():
            x = torch.randn((n, self.dim), generator=g, device=g.device).to(self.betas.device)
            for t in range(self.T, 0, -1):
                mean = self.posterior_mean(x, t, composed(x, t))
                x = self.step(x, t, generator=g, mean=mean)
            return self.from_internal(x).cpu().numpy()
