"""The networks of :class:`~sedge_pyro.models.latent.LatentSEDGE` and its input checks.

The amortised Gaussian encoders, the fixed masks of a known graph, and :class:`_Networks`,
every parameter of the model (encoders, decoders, the factorised prior of :math:`X`,
Eq. (5)'s masked heads, the latents' bases) registered with Pyro as one module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.models.likelihoods import GaussianMLP
from sedge_pyro.models.masks import SigmoidMask
from sedge_pyro.models.nets import mlp

_MIN_SCALE = 1e-3


class _Encoder(nn.Module):
    r"""Amortised Gaussian :math:`q(b \mid a)`: an MLP to a mean and a Cholesky factor (positive
    diagonal; ``full=False`` keeps only the diagonal).

    A diagonal posterior would favour latents whose decoder columns are orthogonal (the
    mismatch :math:`\tfrac12 \log(\prod_j \Sigma_{jj} / \det \Sigma)` of the ELBO), i.e.
    the principal axes of the observations rather than the variables of the model.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int], full: bool) -> None:
        super().__init__()
        self.out_dim = out_dim
        tril = torch.tril_indices(out_dim, out_dim, offset=-1)
        self.register_buffer("tril", tril if full else tril[:, :0])
        self.net = mlp(in_dim, 2 * out_dim + self.tril.shape[1], hidden)

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.out_dim
        out = self.net(a)
        loc, diag, off = out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]
        lower = out.new_zeros(*out.shape[:-1], d, d)
        lower[..., self.tril[0], self.tril[1]] = off
        return loc, lower + torch.diag_embed(F.softplus(diag) + _MIN_SCALE)


class _FixedMask(SigmoidMask):
    """A mask that is not learned: the known parents of a spec (Eq. (4) instead of Eq. (5))."""

    def __init__(self, parents: Sequence[bool]) -> None:
        super().__init__(len(parents))
        del self.logits
        self.register_buffer(
            "logits", torch.tensor([30.0 if p else -30.0 for p in parents], dtype=torch.float32)
        )


class _Networks(nn.Module):
    """Every parameter of :class:`LatentSEDGE`, registered with Pyro as one module."""

    def __init__(
        self,
        d: int,
        n: int,
        k: int,
        m: int,
        hidden: Sequence[int],
        decoder_hidden: Sequence[int],
        mask_init: float,
        temperature: float | None,
        components: int,
        full_cov: tuple[str, ...],
        parents: list[list[bool]] | None,
    ) -> None:
        super().__init__()
        self._head_config = (d, tuple(hidden), mask_init, temperature, parents)
        self.enc_x = _Encoder(k, d, hidden, full="x" in full_cov)
        self.enc_z = _Encoder(m, n, hidden, full="z" in full_cov)
        self.dec_x = mlp(d, k, decoder_hidden)
        self.dec_z = mlp(n, m, decoder_hidden)
        # a factorised prior for X: one Gaussian mixture per feature (components=1: N(0, I))
        self.components = int(components)
        grid = torch.linspace(-1.5, 1.5, self.components) if components > 1 else torch.zeros(1)
        self.prior_logits = nn.Parameter(torch.zeros(d, self.components))
        self.prior_locs = nn.Parameter(grid.repeat(d, 1))
        self.prior_raw_scales = nn.Parameter(torch.full((d, self.components), -0.5))
        self.likelihoods = self.new_likelihoods(n)
        self.raw_sigma_x = nn.Parameter(torch.zeros(k))
        self.raw_sigma_z = nn.Parameter(torch.zeros(m))
        # the latents' bases (models.align): x' = x A_x^T, z' = z A_z^T; identity until fit
        # aligns them. Eq. (5) and everything the user sees are in the aligned bases.
        self.register_buffer("align_x", torch.eye(d))
        self.register_buffer("align_z", torch.eye(n))

    def new_likelihoods(self, n: int) -> nn.ModuleList:
        """Fresh Eq. (5) heads: one masked Gaussian likelihood per specification."""
        d, hidden, mask_init, temperature, parents = self._head_config
        return nn.ModuleList(
            GaussianMLP(
                d,
                hidden=hidden,
                mask=SigmoidMask(d, init=mask_init, temperature=temperature)
                if parents is None
                else _FixedMask(parents[i]),
            )
            for i in range(n)
        )

    def x_prior(self) -> dist.Distribution:
        """The factorised prior of X, batch shape ``(d,)``."""
        if self.components == 1:
            return dist.Normal(torch.zeros_like(self.prior_locs[:, 0]), 1.0)
        return dist.MixtureSameFamily(
            dist.Categorical(logits=self.prior_logits),
            dist.Normal(self.prior_locs, F.softplus(self.prior_raw_scales) + _MIN_SCALE),
        )

    def sigma_x(self) -> torch.Tensor:
        return F.softplus(self.raw_sigma_x) + _MIN_SCALE

    def sigma_z(self) -> torch.Tensor:
        return F.softplus(self.raw_sigma_z) + _MIN_SCALE

    def z_given_x(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Stacked :math:`h^\mu_i(x \odot M_i), h^\sigma_i(x \odot M_i)`, shape ``(b, n)``."""
        pairs = [lik.loc_scale(x) for lik in self.likelihoods]
        return torch.stack([p[0] for p in pairs], -1), torch.stack([p[1] for p in pairs], -1)

    def z_dist(self, x: torch.Tensor) -> dist.Normal:
        r""":math:`\prod_i p(z_i \mid x \odot M_i)` (Eq. (5)), batch shape ``(b, n)``."""
        loc, scale = self.z_given_x(x)
        return dist.Normal(loc, scale)

    def l1(self) -> torch.Tensor:
        r""":math:`L_s = \sum_i \lVert M_i \rVert_1`."""
        return sum((lik.mask.l1() for lik in self.likelihoods), self.raw_sigma_x.new_zeros(()))


def _names(names: Sequence[str] | None, count: int, prefix: str, arg: str) -> list[str]:
    if names is None:
        return [f"{prefix}{j + 1}" for j in range(count)]
    out = [str(s) for s in names]
    if len(out) != count or len(set(out)) != count:
        raise OptionError(f"{arg}={out!r}: expected {count} distinct names")
    return out


def _matrix(values: Any, dim: int, arg: str, columns: list[str] | None = None) -> np.ndarray:
    """A finite float matrix of ``dim`` columns (a DataFrame may be selected by ``columns``)."""
    if isinstance(values, pd.DataFrame):
        if columns is not None and all(c in values.columns for c in columns):
            values = values[columns]
        values = values.to_numpy()
    try:
        a = np.array(values, dtype=np.float64)  # a copy: pandas may hand out read-only views
    except (TypeError, ValueError) as exc:
        raise DataError(f"{arg}: expected a numeric matrix ({exc})") from exc
    if a.ndim != 2 or a.shape[1] != dim:
        raise DataError(f"{arg} has shape {a.shape}: expected (rows, {dim})")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{arg} holds NaN or infinite values: expected finite numbers")
    return a


def _pair(
    y_x: Any, y_z: Any, dims: tuple[int, int], *, least: int
) -> tuple[np.ndarray, np.ndarray]:
    """``y_x`` and ``y_z`` as checked matrices of ``dims`` columns with the same rows, at
    least ``least``.
    """
    a_x = _matrix(y_x, dims[0], "y_x")
    a_z = _matrix(y_z, dims[1], "y_z")
    if len(a_x) != len(a_z):
        raise DataError(f"y_x has {len(a_x)} rows and y_z {len(a_z)}: expected the same rows")
    if len(a_x) < least:
        raise DataError(f"y_x has {len(a_x)} rows: expected at least {least}")
    return a_x, a_z


def _check_graph(graph: Any, n_features: int, n_specs: int) -> None:
    """A known graph must be a SpecGraph with ``n_features`` features and ``n_specs`` specs."""
    if not isinstance(graph, SpecGraph):
        raise OptionError(f"graph={graph!r}: expected a SpecGraph or None")
    if (len(graph.features), len(graph.specs)) != (n_features, n_specs):
        raise OptionError(
            f"graph has {len(graph.features)} features and {len(graph.specs)} specs: "
            f"expected n_features={n_features} and n_specs={n_specs}"
        )


def _centre_scale(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A block's standardisation: the column means and one overall scale (a per-column scale
    would distort the geometry of the mixing, and images have constant pixels).
    """
    return t.mean(0), (t - t.mean(0)).pow(2).mean().sqrt().clamp_min(1e-8)
