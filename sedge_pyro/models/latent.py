r"""Latent features and specifications learned from observations (Sec. 4.1, Eqs. (5)-(7)).

When :math:`X` and :math:`Z` are not given (images, text, App. B.1's mixtures), SEDGE learns
them from their observations :math:`Y_X` and :math:`Y_Z` with two variational autoencoders
tied together by the masked specification likelihood of Eq. (5):

.. math::

    L_{ng} = L_r + \alpha L_m + \beta L_s .

We write this objective as one Pyro program and its guide and minimise the negative
``Trace_ELBO`` per row. Model (per row, in a subsampled ``pyro.plate``), with the default
``z_prior="standard"``, which is Eq. (7) as written:

* ``X ~ prod_j p_j(x_j)``, each :math:`p_j` a learned Gaussian mixture
  (``prior_components``; ``1`` gives ``N(0, I)``), and ``Y_X ~ N(dec_X(X), sigma_X)``;
* ``Z ~ N(0, I)`` and ``Y_Z ~ N(dec_Z(Z), sigma_Z)``;
* an observed site ``Z|X`` scoring that ``Z`` under Eq. (5)'s masked likelihood
  :math:`\prod_i \mathcal N(z_i; h^\mu_i(x \odot M_i), h^\sigma_i(x \odot M_i))`, its
  log-density scaled by :math:`\alpha` with ``poutine.scale``;
* ``pyro.factor("L_s", -beta * n * sum_i ||M_i||_1)`` (``n`` rows, so per row it is
  :math:`\beta L_s`).

Guide: amortised Gaussians :math:`q(x \mid y_X)` (diagonal) and :math:`q(z \mid y_Z)` (full
covariance; ``full_cov``). The negative ELBO per row is then, term by term (expectations
under the guide):

* :math:`-E \log p(y_X \mid x) + KL(q(x \mid y_X) \Vert p(x))` = :math:`L_{VAE}(Y_X)` and
  :math:`-E \log p(y_Z \mid z) + KL(q(z \mid y_Z) \Vert N(0, I))` = :math:`L_{VAE}(Y_Z)`
  (Eq. (6)); together :math:`L_r` (Eq. (7));
* :math:`-\alpha E \sum_i \log p(z_i \mid x \odot M_i)` = :math:`\alpha L_m` (Eq. (5),
  :math:`X, Z` drawn from the encoders, one draw per row);
* :math:`\beta \sum_i \lVert M_i \rVert_1` = :math:`\beta L_s`.

``z_prior="conditional"`` makes Eq. (5)'s likelihood the prior of ``Z`` instead (one
generative model, no separate ``Z|X`` site): :math:`L_{VAE}(Y_Z)` then loses the
cross-entropy of :math:`N(0, I)`. On App. B.1's data it identified the specs less well
(MCC 0.71 / 0.77 against 0.99 / 0.93 with diagonal posteriors).

With a known graph (``graph=``) the masks are fixed to its parent sets: Eq. (4)'s
:math:`L_g` in place of :math:`L_m + \beta L_s`.

After SVI, :meth:`LatentSEDGE.fit` re-aligns the latents (``align=True``): the selection
correlates the Seen specs, which :math:`N(0, I)` then whitens, and makes the Seen features
dependent, which biases the factorised prior's ICA. Both are linear reparametrisations,
undone by an ICA of residuals (:mod:`sedge_pyro.models.align`); a candidate basis is kept
only when Eq. (5)'s penalised fit prefers it, and Eq. (5)'s heads and masks are refitted in
the bases kept. ``encode``, ``decode``, ``masks`` and ``learned_graph`` are in those bases.

Each block of inputs is centred per column and divided by one overall scale before
fitting; :meth:`LatentSEDGE.decode` undoes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from tqdm.auto import tqdm

from sedge_pyro.errors import DataError, OptionError, SedgeError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.models.latent_align import choose_bases
from sedge_pyro.models.latent_file import _FORMAT as _FORMAT  # read by sedge_pyro.legacy
from sedge_pyro.models.latent_file import _LatentFile
from sedge_pyro.models.latent_nets import _check_graph, _matrix, _names, _Networks, _pair
from sedge_pyro.models.train import svi, train
from sedge_pyro.options import choice, fraction, number, whole
from sedge_pyro.options import device as check_device
from sedge_pyro.options import seed as check_seed
from sedge_pyro.options import threads as torch_threads

__all__ = ["LatentSEDGE"]


class LatentSEDGE(_LatentFile):
    r"""Learn features :math:`X` and specifications :math:`Z` from :math:`Y_X, Y_Z` (Eq. (7)).

    Minimises :math:`L_{ng} = L_r + \alpha L_m + \beta L_s` (Sec. 4.1) as the negative
    ``Trace_ELBO`` of a Pyro model and guide; see the module docstring for the term-by-term
    mapping to Eqs. (5)-(7).

    :param n_features: :math:`d`, the number of latent features.
    :param n_specs: :math:`n`, the number of latent specifications.
    :param obs_x_dim: the number of columns of :math:`Y_X`.
    :param obs_z_dim: the number of columns of :math:`Y_Z`.
    :param hidden: hidden layer sizes of every encoder and likelihood MLP (and of the
        decoders unless ``decoder_hidden`` is given).
    :param decoder_hidden: hidden layer sizes of the two decoders; ``()`` makes them linear,
        right for linearly mixed observations such as App. B.1's (default: ``hidden``).
    :param prior_components: Gaussian components of each feature's prior: :math:`X` has the
        factorised prior :math:`\prod_j p_j(x_j)` with each :math:`p_j` a learned mixture.
        ``1`` is the usual :math:`N(0, I)`, which is invariant to rotations of :math:`X` and
        so leaves the features identified only up to one; a factorised non-Gaussian prior
        removes that freedom as in linear ICA (Comon 1994).
    :param full_cov: which encoders get a full-covariance Gaussian posterior (``"x"``,
        ``"z"``): a diagonal one pulls the latents towards the principal axes of the
        observations (see :class:`_Encoder`). Default ``("z",)``: measured on App. B.1's data,
        full for :math:`Z` gave the best specs (MCC 0.96 / 1.00 against 0.99 / 0.93
        diagonal) and diagonal for :math:`X` kept the small-variance shared feature.
    :param alpha: :math:`\alpha`, the weight of the likelihood term :math:`L_m` (Eq. (5)).
    :param beta: :math:`\beta`, the weight of the L1 mask penalty :math:`L_s`.
    :param feature_names: names of :math:`X` (default ``x1 .. xd``).
    :param spec_names: names of :math:`Z` (default ``z1 .. zn``).
    :param mask_init: the initial mask probability of every (spec, feature) pair.
    :param temperature: the masks' gate temperature (see
        :class:`~sedge_pyro.models.masks.SigmoidMask`); ``None`` is Eq. (5) verbatim,
        :math:`x \odot M_i`, whose small weights the MLP can undo by scaling up.
    :param graph: a :class:`~sedge_pyro.graph.SpecGraph` whose features and specs are the
        latents, when the parent sets are known: the masks are then fixed to them (Eq. (4))
        and the names come from the graph. ``None`` (default): masks learned (Eq. (5)).
    :param z_prior: ``"standard"`` (default): ``Z ~ N(0, I)`` plus Eq. (5) as a separate
        scaled term (Eq. (7) as written); ``"conditional"``: Eq. (5)'s likelihood is the prior
        of ``Z``. See the module docstring.
    :raises OptionError: for a non-positive size, a negative weight or bad names.

    References: Sec. 4.1 (Eqs. (5)-(7)) and App. B.1 of the SEDGE paper.

    >>> from sedge_pyro.datasets import paper_latent
    >>> data = paper_latent(600, seed=0, obs_x_dim=5, obs_z_dim=4)
    >>> m = LatentSEDGE(3, 2, 5, 4, hidden=(16,)).fit(
    ...     data.observations_x(data.seen), data.observations_z(data.seen),
    ...     steps=20, progress=False, align=False)
    >>> m.encode(y_z=data.observations_z(data.seen)).columns.tolist()
    ['z1', 'z2']
    >>> m.masks().shape
    (2, 3)
    """

    def __init__(
        self,
        n_features: int = 3,
        n_specs: int = 2,
        obs_x_dim: int = 20,
        obs_z_dim: int = 20,
        *,
        hidden: Sequence[int] = (64,),
        decoder_hidden: Sequence[int] | None = None,
        prior_components: int = 8,
        full_cov: Sequence[str] = ("z",),
        alpha: float = 1.0,
        beta: float = 5e-3,
        feature_names: Sequence[str] | None = None,
        spec_names: Sequence[str] | None = None,
        mask_init: float = 0.9,
        temperature: float | None = 0.5,
        z_prior: str = "standard",
        graph: SpecGraph | None = None,
    ) -> None:
        self.z_prior = choice("z_prior", z_prior, ("standard", "conditional"))
        self.n_features = whole("n_features", n_features)
        self.n_specs = whole("n_specs", n_specs)
        self.obs_x_dim = whole("obs_x_dim", obs_x_dim)
        self.obs_z_dim = whole("obs_z_dim", obs_z_dim)
        alpha = number("alpha", alpha, positive=False)
        beta = number("beta", beta, positive=False)
        self.hidden = tuple(whole("hidden", h) for h in hidden)
        self.decoder_hidden = (
            self.hidden
            if decoder_hidden is None
            else tuple(whole("decoder_hidden", h) for h in decoder_hidden)
        )
        self.prior_components = whole("prior_components", prior_components)
        full = (full_cov,) if isinstance(full_cov, str) else tuple(full_cov)
        if any(f not in ("x", "z") for f in full):
            raise OptionError(f"full_cov={full_cov!r}: expected a subset of ('x', 'z')")
        self.full_cov = tuple(sorted(set(full)))
        self.mask_init = fraction("mask_init", mask_init)
        self.temperature = number("temperature", temperature, none_ok=True)
        self.alpha, self.beta = alpha, beta
        self.graph = graph
        if graph is not None:
            _check_graph(graph, self.n_features, self.n_specs)
            feature_names, spec_names = graph.features, graph.specs
        self.feature_names = _names(feature_names, self.n_features, "x", "feature_names")
        self.spec_names = _names(spec_names, self.n_specs, "z", "spec_names")
        parents = (
            None
            if graph is None
            else [[f in graph.parents(s) for f in self.feature_names] for s in self.spec_names]
        )
        if set(self.feature_names) & set(self.spec_names):
            shared = sorted(set(self.feature_names) & set(self.spec_names))
            raise OptionError(f"feature_names and spec_names share {shared}: expected distinct")
        self.net = _Networks(
            self.n_features,
            self.n_specs,
            self.obs_x_dim,
            self.obs_z_dim,
            self.hidden,
            self.decoder_hidden,
            self.mask_init,
            self.temperature,
            self.prior_components,
            self.full_cov,
            parents,
        )
        self.history: dict[str, list[float]] = {"loss": []}
        #: what :meth:`fit` chose when aligning: ``{"chosen": ..., "scores": {...}}``
        self.alignment: dict[str, Any] | None = None
        self.seconds = 0.0
        self._fitted = False
        self.device = torch.device("cpu")
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- the Pyro program ---------------------------------------------------------------

    def model(self, y_x: torch.Tensor, y_z: torch.Tensor, batch_size: int) -> None:
        """The generative side of :math:`L_{ng}`: priors, decoders, Eq. (5), :math:`L_s`."""
        net = self.net
        pyro.module("latent_sedge", net)
        n_rows, d, n = y_x.shape[0], self.n_features, self.n_specs
        with pyro.plate("rows", n_rows, subsample_size=batch_size) as idx:
            x = pyro.sample("X", net.x_prior().expand([len(idx), d]).to_event(1))
            pyro.sample("Y_X", dist.Normal(net.dec_x(x), net.sigma_x()).to_event(1), obs=y_x[idx])
            z_x = net.z_dist(x @ net.align_x.T).to_event(1)
            if self.z_prior == "standard":
                z = pyro.sample("Z", dist.Normal(0.0, 1.0).expand([len(idx), n]).to_event(1))
                with poutine.scale(scale=self.alpha):  # alpha * L_m, Eq. (5)
                    pyro.sample("Z|X", z_x, obs=z @ net.align_z.T)
            else:
                with poutine.scale(scale=self.alpha):  # alpha * L_m, Eq. (5), as Z's prior
                    z = pyro.sample("Z", z_x)
            pyro.sample("Y_Z", dist.Normal(net.dec_z(z), net.sigma_z()).to_event(1), obs=y_z[idx])
        # beta * L_s per row: the ELBO sums over n_rows rows
        pyro.factor("L_s", -self.beta * n_rows * net.l1())

    def guide(self, y_x: torch.Tensor, y_z: torch.Tensor, batch_size: int) -> None:
        r"""The encoders :math:`q(x \mid y_X)\, q(z \mid y_Z)` (Eq. (6))."""
        net = self.net
        pyro.module("latent_sedge", net)
        with pyro.plate("rows", y_x.shape[0], subsample_size=batch_size) as idx:
            loc, tril = net.enc_x(y_x[idx])
            pyro.sample("X", dist.MultivariateNormal(loc, scale_tril=tril))
            loc, tril = net.enc_z(y_z[idx])
            pyro.sample("Z", dist.MultivariateNormal(loc, scale_tril=tril))

    # -- fitting ------------------------------------------------------------------------

    def fit(
        self,
        y_x: Any,
        y_z: Any,
        *,
        steps: int = 2000,
        batch_size: int = 256,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = True,
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 500,
        align: bool = True,
        threads: int | None = None,
    ) -> LatentSEDGE:
        """Fit by SVI on minibatches; appends the per-row loss of every step to ``history``.

        :param y_x: observations of the features, rows x ``obs_x_dim`` (array or DataFrame).
        :param y_z: observations of the specifications, rows x ``obs_z_dim``, rows aligned
            with ``y_x``.
        :param steps: SVI steps.
        :param batch_size: rows per step (capped at the number of rows).
        :param lr: Adam's learning rate.
        :param seed: seeds Pyro (initialisation, minibatches, gates).
        :param progress: show a tqdm progress bar.
        :param device: ``"cpu"`` or ``"cuda"``; the networks and the data move there, and
            ``encode``/``decode`` follow.
        :param checkpoint: a file to :meth:`save` the model to every ``checkpoint_every`` steps
            and at the end (atomically; an existing file is replaced, so point it at a new
            name); resume with :meth:`load` then ``fit`` again, which continues from the
            saved weights (with a fresh optimiser).
        :param checkpoint_every: steps between checkpoints.
        :param align: after SVI, re-align the latents' bases as :meth:`align` does (the
            residual ICAs of :mod:`sedge_pyro.models.align`, each kept only where Eq. (5)'s
            penalised fit prefers it; skipped below 10 rows); ``False`` keeps the VAE's
            bases and masks.
        :param threads: torch's CPU threads while fitting, restored afterwards (``None``:
            :func:`~sedge_pyro.options.default_threads`).
        :returns: ``self``.
        :raises DataError: for mismatched rows, wrong widths, non-finite values, fewer than
            two rows, or a diverging loss.
        :raises OptionError: for a non-positive ``steps``, ``batch_size`` or ``lr``.
        """
        a_x, a_z = _pair(y_x, y_z, (self.obs_x_dim, self.obs_z_dim), least=2)
        steps = whole("steps", steps)
        batch_size = whole("batch_size", batch_size)
        checkpoint_every = whole("checkpoint_every", checkpoint_every)
        lr = number("lr", lr)
        seed = check_seed(seed)
        with torch_threads(threads):
            t_x, t_z = self._fit_stats(a_x, a_z, check_device(device))
            n_rows = len(t_x)
            batch = min(batch_size, n_rows)
            start = time.perf_counter()

            def record(step: int, loss: float) -> None:
                self.history["loss"].append(loss)
                if checkpoint is not None and step % checkpoint_every == 0:
                    self.seconds = time.perf_counter() - start
                    self.save(checkpoint, overwrite=True)

            self.net.train()
            with svi(self.model, self.guide, lr=lr, seed=seed) as run:
                train(
                    lambda _: run.step(t_x, t_z, batch) / n_rows,
                    steps,
                    desc="fit LatentSEDGE",
                    lr=lr,
                    on_step=record,
                    progress=progress,
                )
            self.net.eval()
            self._fitted = True
            if align and n_rows >= 10:
                self._seeded_align(t_x, t_z, seed=seed, progress=progress)
            self.seconds = time.perf_counter() - start
            if checkpoint is not None:
                self.save(checkpoint, overwrite=True)
        return self

    # -- aligning -----------------------------------------------------------------------

    def align(self, y_x: Any, y_z: Any, *, seed: int = 0, progress: bool = True) -> dict[str, Any]:
        """Re-align the latents' bases on these rows (what ``fit(align=True)`` does last).

        For a model fitted with ``align=False``, or to redo the choice on other rows. See
        :mod:`sedge_pyro.models.align` and the module docstring.

        :param y_x: observations of the features (the training rows, typically).
        :param y_z: observations of the specifications, rows aligned with ``y_x``.
        :param seed: seeds the regressions, the ICA start and the heads.
        :param progress: print the choice and the scores.
        :returns: :attr:`alignment`: ``{"chosen": "x:... z:...", "scores": {...}}``.
        :raises SedgeError: when the model is not fitted.
        :raises DataError: for wrong widths, mismatched rows or non-finite values.
        """
        self._check_fitted()
        a_x, a_z = _pair(y_x, y_z, (self.obs_x_dim, self.obs_z_dim), least=10)
        seed = check_seed(seed)
        t_x = self._standardise(torch.as_tensor(a_x, dtype=torch.float32, device=self.device), "x")
        t_z = self._standardise(torch.as_tensor(a_z, dtype=torch.float32, device=self.device), "z")
        return self._seeded_align(t_x, t_z, seed=seed, progress=progress)

    def _align(
        self, t_x: torch.Tensor, t_z: torch.Tensor, *, seed: int, progress: bool
    ) -> dict[str, Any]:
        """Choose the latents' bases and refit Eq. (5)'s heads in them (App. B.1, with
        :func:`~sedge_pyro.models.latent_align.choose_bases`); its heads, masks and bases are
        kept.
        """
        net = self.net
        label, heads, a_x, a_z, scores = choose_bases(
            net,
            t_x,
            t_z,
            n_specs=self.n_specs,
            z_prior=self.z_prior,
            alpha=self.alpha,
            beta=self.beta,
            device=self.device,
            seed=seed,
        )
        net.likelihoods = heads
        net.align_x.copy_(torch.as_tensor(a_x, dtype=torch.float32))
        net.align_z.copy_(torch.as_tensor(a_z, dtype=torch.float32))
        net.eval()
        self.alignment = {"chosen": label, "scores": scores}
        if progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
            tqdm.write(f"LatentSEDGE: kept bases {label} (held-out Eq. (5) per row: {shown})")
        return self.alignment

    def _seeded_align(
        self, t_x: torch.Tensor, t_z: torch.Tensor, *, seed: int, progress: bool
    ) -> dict[str, Any]:
        """:meth:`_align` on its own RNG stream: seeded, and the caller's torch state kept."""
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            return self._align(t_x, t_z, seed=seed, progress=progress)

    # -- using the fit ------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise SedgeError("the model is not fitted: call model.fit(y_x, y_z) first")

    def encode(self, y_x: Any = None, y_z: Any = None) -> pd.DataFrame:
        r"""Posterior means :math:`E_q[X \mid y_X]` and/or :math:`E_q[Z \mid y_Z]`.

        :param y_x: observations of the features, or ``None``.
        :param y_z: observations of the specifications, or ``None``; rows aligned with
            ``y_x`` when both are given.
        :returns: a DataFrame with the feature names (when ``y_x``) then the spec names.
        :raises DataError: for wrong widths, mismatched rows or non-finite values.
        :raises OptionError: when both are ``None``.
        """
        self._check_fitted()
        if y_x is None and y_z is None:
            raise OptionError("encode(): expected y_x, y_z or both")
        parts: list[pd.DataFrame] = []
        with torch.no_grad():
            for obs, key, dim, enc, names, basis in (
                (y_x, "x", self.obs_x_dim, self.net.enc_x, self.feature_names, self.net.align_x),
                (y_z, "z", self.obs_z_dim, self.net.enc_z, self.spec_names, self.net.align_z),
            ):
                if obs is None:
                    continue
                t = torch.as_tensor(
                    _matrix(obs, dim, f"y_{key}"), dtype=torch.float32, device=self.device
                )
                loc = enc(self._standardise(t, key))[0] @ basis.T
                parts.append(pd.DataFrame(loc.cpu().numpy().astype(np.float64), columns=names))
        if len(parts) == 2 and len(parts[0]) != len(parts[1]):
            raise DataError(
                f"y_x has {len(parts[0])} rows and y_z {len(parts[1])}: expected the same rows"
            )
        return pd.concat(parts, axis=1)

    def decode(self, x: Any = None, z: Any = None) -> np.ndarray:
        """Decoder means in observation units: :math:`Y_X` from ``x`` and/or :math:`Y_Z` from ``z``.

        :param x: latent features, rows x ``n_features`` (a DataFrame is read by feature
            names), or ``None``.
        :param z: latent specifications, rows x ``n_specs`` (by spec names), or ``None``.
        :returns: shape ``(rows, obs_x_dim)``, ``(rows, obs_z_dim)``, or both side by side
            (``Y_X`` columns first) when both are given.
        :raises DataError: for wrong widths, mismatched rows or non-finite values.
        :raises OptionError: when both are ``None``.
        """
        self._check_fitted()
        if x is None and z is None:
            raise OptionError("decode(): expected x, z or both")
        out: list[np.ndarray] = []
        with torch.no_grad():
            for lat, key, dim, dec, names, basis in (
                (x, "x", self.n_features, self.net.dec_x, self.feature_names, self.net.align_x),
                (z, "z", self.n_specs, self.net.dec_z, self.spec_names, self.net.align_z),
            ):
                if lat is None:
                    continue
                t = torch.as_tensor(
                    _matrix(lat, dim, key, names), dtype=torch.float32, device=self.device
                )
                mean, std = self._stats[key]
                raw = torch.linalg.solve(basis, t.T).T  # back to the VAE's basis
                out.append((dec(raw) * std + mean).cpu().numpy().astype(np.float64))
        if len(out) == 2 and len(out[0]) != len(out[1]):
            raise DataError(f"x has {len(out[0])} rows and z {len(out[1])}: expected the same rows")
        return np.concatenate(out, axis=1)

    def masks(self) -> pd.DataFrame:
        r"""Mask probabilities :math:`M_{ij} = \sigma(w_{ij})`: specs (rows) x features."""
        with torch.no_grad():
            w = torch.stack([lik.mask.weights for lik in self.net.likelihoods])
        return pd.DataFrame(
            w.cpu().numpy().astype(np.float64), index=self.spec_names, columns=self.feature_names
        )

    def learned_graph(self, threshold: float = 0.5) -> SpecGraph:
        """The graph with an edge ``feature -> spec`` wherever the mask probability > ``threshold``.

        Every feature is kept as a node, with or without a child. With a known ``graph`` the
        masks are fixed to it, and this gives back its parent sets.

        :param threshold: the cut-off in ``(0, 1)``.
        :returns: a :class:`~sedge_pyro.graph.SpecGraph` (``SpecGraph.from_parents``).
        :raises OptionError: when ``threshold`` is not in ``(0, 1)``.
        """
        threshold = fraction("threshold", threshold)
        m = self.masks()
        parents = {s: [f for f in self.feature_names if m.loc[s, f] > threshold] for s in m.index}
        return SpecGraph.from_parents(parents, features=self.feature_names)
