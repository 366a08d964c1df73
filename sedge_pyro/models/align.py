r"""Re-aligning learned latents with the independences the graph implies (App. B.1).

A variational autoencoder pins its latents only as far as its objective does, and on Seen
rows two parts of :math:`L_{ng}` (Eq. (7)) pull linear-decoder latents off the true axes:

* Eq. (7)'s :math:`N(0, I)` prior on :math:`Z` asks for uncorrelated specs, but the selection
  makes the Seen specs correlated (App. B.1's data: 0.23), so one spec comes out as the other
  whitened against it (MCC :math:`\sqrt{1 - 0.23^2} = 0.97`);
* the factorised prior on :math:`X` is an ICA of the Seen features, which the selection also
  makes dependent (0.22 between App. B.1's ``x1`` and ``x3``).

Both are linear reparametrisations of the latents, and both are undone by an ICA of
*residuals*, where the selection does not reach:

* specifications: :math:`r_Z = \hat z - E[\hat z \mid \hat x]`. The specs are independent
  given the features (the condition App. B.1 takes from Xie et al. 2025), so with non-Gaussian
  noise these residuals are independent exactly on the true axes;
* features: :math:`r_X = \hat x - E[\hat x \mid \hat z]`. The selection acts on :math:`Z`
  only, so :math:`p(x \mid z)` is the same on Seen rows as in the population; where the
  features' conditionals given :math:`Z` factorise (private features, or a shared one of
  small effect, as in App. B.1) the residuals are independent on the true axes. A shared
  feature of large effect is explained away by the others given its spec and breaks this.

The conditional means are small MLPs fitted by least squares (``torch``); the ICA is the
symmetric fixed-point algorithm with the log-cosh contrast (Hyvaerinen 1999). Neither the
stack nor scipy ships an ICA. :class:`~sedge_pyro.models.latent.LatentSEDGE` proposes these
bases as candidates and keeps one only where Eq. (5)'s own penalised fit prefers it.

References: App. B.1 of the SEDGE paper; Hyvaerinen, "Fast and robust fixed-point
algorithms for independent component analysis", IEEE TNN 1999.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
import torch

from sedge_pyro.models.nets import mlp
from sedge_pyro.models.train import adam_step, train

__all__ = ["fast_ica", "match_basis", "residuals"]


def residuals(
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    hidden: Sequence[int] = (64, 64),
    steps: int = 500,
    lr: float = 1e-2,
    seed: int = 0,
    max_rows: int = 4000,
) -> np.ndarray:
    r""":math:`t - \hat E[t \mid u]`, the conditional mean an MLP fitted by least squares.

    :param inputs: :math:`u`, shape ``(rows, p)``.
    :param targets: :math:`t`, shape ``(rows, q)``.
    :param hidden: the MLP's hidden layer sizes.
    :param steps: full-batch Adam steps.
    :param lr: Adam's learning rate.
    :param seed: seeds the MLP's initialisation (a private generator state) and the rows.
    :param max_rows: the MLP is fitted on at most this many rows (a random subset), then
        evaluated on all.
    :returns: the residuals, shape ``(rows, q)``.

    >>> rng = np.random.default_rng(0)
    >>> u = rng.uniform(-1, 1, (500, 1))
    >>> r = residuals(u, u**2 + 0.01 * rng.normal(size=(500, 1)), steps=300, seed=0)
    >>> bool(r.std() < 0.05)
    True
    """
    u = np.asarray(inputs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    u_mean, u_sd = u.mean(0), u.std(0) + 1e-12
    t_mean, t_sd = t.mean(0), t.std(0) + 1e-12
    a = torch.as_tensor((u - u_mean) / u_sd, dtype=torch.float32)
    b = torch.as_tensor((t - t_mean) / t_sd, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = mlp(a.shape[1], b.shape[1], hidden)
    fit_rows = np.random.default_rng(seed).permutation(len(a))[:max_rows]
    a_fit, b_fit = a[fit_rows], b[fit_rows]
    step = adam_step(
        net.parameters(), lambda _: (net(a_fit) - b_fit).pow(2).mean(), repeat(None), lr=lr
    )
    train(step, steps, name="residual regression", lr=lr, check="named", progress=False)
    with torch.no_grad():
        fitted = net(a).double().numpy() * t_sd + t_mean
    return t - fitted


def fast_ica(
    r: np.ndarray, *, seed: int = 0, max_iter: int = 500, tol: float = 1e-10
) -> np.ndarray:
    r"""Unmixing matrix :math:`W` of symmetric FastICA (log-cosh contrast).

    The rows of :math:`(r - \bar r) W^\top` are as independent as the contrast can make them,
    each with unit variance.

    :param r: the data, shape ``(rows, k)``, ``k >= 1``.
    :param seed: seeds the random orthogonal start.
    :param max_iter: fixed-point iterations at most.
    :param tol: convergence tolerance on :math:`|\mathrm{diag}(W_{new} W^\top)| \to 1`.
    :returns: ``W``, shape ``(k, k)``.

    >>> rng = np.random.default_rng(0)
    >>> s = rng.uniform(-1, 1, (4000, 2))
    >>> mix = np.array([[1.0, 0.6], [0.3, 1.0]])
    >>> w = fast_ica(s @ mix.T, seed=0)
    >>> p = np.abs(w @ mix)
    >>> bool(np.all(p.max(1) / p.sum(1) > 0.98))
    True
    """
    x = np.asarray(r, dtype=np.float64)
    x = x - x.mean(0)
    k = x.shape[1]
    vals, vecs = np.linalg.eigh(np.cov(x, rowvar=False).reshape(k, k))
    whiten = vecs @ np.diag(1.0 / np.sqrt(np.maximum(vals, 1e-12))) @ vecs.T
    s = x @ whiten.T
    w = np.linalg.qr(np.random.default_rng(seed).normal(size=(k, k)))[0]
    for _ in range(max_iter):
        g = np.tanh(s @ w.T)
        new = (g.T @ s) / len(s) - np.diag((1.0 - g**2).mean(0)) @ w
        u, _, vt = np.linalg.svd(new)
        new = u @ vt  # symmetric decorrelation
        done = np.max(np.abs(np.abs(np.diag(new @ w.T)) - 1.0)) < tol
        w = new
        if done:
            break
    return w @ whiten


def match_basis(basis: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """Reorder, flip and scale the rows of ``basis`` to follow the current latents.

    New component ``j`` (``latents @ basis.T``) is put in the slot of the current latent it
    correlates with most (Hungarian assignment), with a positive correlation and that
    latent's standard deviation, so names and units stay where the user saw them.

    :param basis: ``(k, k)``, new latents are ``latents @ basis.T``.
    :param latents: the current latents, ``(rows, k)``.
    :returns: the adjusted basis, ``(k, k)``; all NaN when a new component is constant.

    >>> cur = np.random.default_rng(0).normal(size=(200, 2)) * [1.0, 3.0]
    >>> (match_basis(np.array([[0.0, 2.0], [-3.0, 0.0]]), cur).round(6) + 0.0).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    from scipy.optimize import linear_sum_assignment

    cur = np.asarray(latents, dtype=np.float64)
    new = cur @ basis.T
    k = cur.shape[1]
    sd_new = new.std(0)
    if not np.all(np.isfinite(sd_new) & (sd_new > 0)):
        return np.full_like(basis, np.nan)  # a degenerate candidate: the caller drops it
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(new, cur, rowvar=False)[:k, k:])
    rows, cols = linear_sum_assignment(-np.abs(corr))
    out = np.zeros_like(basis)
    for j, slot in zip(rows, cols, strict=True):
        sign = 1.0 if corr[j, slot] >= 0 else -1.0
        out[slot] = basis[j] * sign * cur[:, slot].std() / sd_new[j]
    return out
