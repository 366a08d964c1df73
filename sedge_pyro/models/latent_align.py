r"""Choosing the latents' bases of a fitted :class:`~sedge_pyro.models.latent.LatentSEDGE`
(App. B.1), and fitting Eq. (5)'s heads on given latents.

After SVI the selection correlates the Seen specs, which :math:`N(0, I)` then whitens, and
makes the Seen features dependent, which biases the factorised prior's ICA. Both are linear
reparametrisations: :func:`candidates` proposes, for each block, the current basis and the ICA
of its residuals (:mod:`sedge_pyro.models.align`), and :func:`choose_bases` keeps the
combination Eq. (5)'s penalised fit prefers on held-out rows, with heads refitted by
:func:`fit_heads` through the one training loop (:func:`sedge_pyro.models.train.train`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from sedge_pyro.models.align import fast_ica, match_basis, residuals
from sedge_pyro.models.train import adam_step, minibatches, train

__all__ = ["candidates", "choose_bases", "fit_heads"]

Basis = tuple[str, np.ndarray]


def candidates(
    net: Any, t_x: torch.Tensor, t_z: torch.Tensor, *, z_prior: str, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, list[Basis]]]:
    """The encoded rows (at most 10,000, in the VAE's bases) and each block's candidate bases:
    ``"vae"`` (the current one) and ``"ica"`` (the specs' only with ``z_prior="standard"``,
    whose :math:`N(0, I)` is what mixes them), degenerate ones dropped.

    :returns: ``(x_raw, z_raw, {"x": [(name, basis), ...], "z": [...]})``.
    """
    gen = np.random.default_rng(seed)
    rows = gen.permutation(len(t_x))[: min(len(t_x), 10_000)]
    with torch.no_grad():
        x_raw = net.enc_x(t_x[rows])[0].double().cpu().numpy()
        z_raw = net.enc_z(t_z[rows])[0].double().cpu().numpy()
    current = {
        "x": net.align_x.double().cpu().numpy(),
        "z": net.align_z.double().cpu().numpy(),
    }
    options: dict[str, list[Basis]] = {k: [("vae", current[k])] for k in current}
    x_cur, z_cur = x_raw @ current["x"].T, z_raw @ current["z"].T
    ica_x = fast_ica(residuals(z_cur, x_cur, seed=seed), seed=seed) @ current["x"]
    options["x"].append(("ica", ica_x))
    if z_prior == "standard":
        ica_z = fast_ica(residuals(x_cur, z_cur, seed=seed), seed=seed) @ current["z"]
        options["z"].append(("ica", ica_z))
    # keep names and units: each new component takes the slot of the current one it
    # follows most closely
    for key, cur in (("x", x_cur), ("z", z_cur)):
        base = current[key]
        options[key] = [
            (name, b if name == "vae" else match_basis(b @ np.linalg.inv(base), cur) @ base)
            for name, b in options[key]
        ]
        # a degenerate block (constant residuals) gives no usable candidate
        options[key] = [
            (name, b)
            for name, b in options[key]
            if np.all(np.isfinite(b)) and abs(np.linalg.det(b)) > 1e-12
        ]
    return x_raw, z_raw, options


def choose_bases(
    net: Any,
    t_x: torch.Tensor,
    t_z: torch.Tensor,
    *,
    n_specs: int,
    z_prior: str,
    alpha: float,
    beta: float,
    device: torch.device,
    seed: int,
) -> tuple[str, nn.ModuleList, np.ndarray, np.ndarray, dict[str, float]]:
    r"""Score every combination of :func:`candidates`: fresh Eq. (5) heads fitted on 80% of
    the encoded rows, the lowest held-out :math:`\alpha L_m + \beta L_s` per row wins
    (:math:`L_m` with the Jacobian of the spec basis, so it scores the same encoded specs in
    every basis).

    :returns: ``(label, heads, A_x, A_z, scores)`` of the winner, ``scores`` by label.
    """
    x_raw, z_raw, options = candidates(net, t_x, t_z, z_prior=z_prior, seed=seed)
    split = int(0.8 * len(x_raw))
    scores: dict[str, float] = {}
    best: tuple[float, str, Any, np.ndarray, np.ndarray] | None = None
    for (nx, a_x), (nz, a_z) in ((px, pz) for px in options["x"] for pz in options["z"]):
        label = f"x:{nx} z:{nz}"
        heads = net.new_likelihoods(n_specs).to(device)
        x_t = torch.as_tensor(x_raw @ a_x.T, dtype=torch.float32, device=device)
        z_t = torch.as_tensor(z_raw @ a_z.T, dtype=torch.float32, device=device)
        # enough steps for the masks to settle; fewer on small data, where little rests on it
        steps = min(2000, max(200, 10 * split))
        fit_heads(heads, x_t[:split], z_t[:split], alpha=alpha, beta=beta, seed=seed, steps=steps)
        with torch.no_grad():
            nll = -sum(
                h.condition(x_t[split:]).log_prob(z_t[split:, i]).mean()
                for i, h in enumerate(heads)
            )
            l1 = sum(h.mask.l1() for h in heads)
        _, logdet = np.linalg.slogdet(a_z)
        score = alpha * (float(nll) - float(logdet)) + beta * float(l1)
        score = score if math.isfinite(score) else math.inf
        scores[label] = score
        if best is None or score < best[0]:
            best = (score, label, heads, a_x, a_z)
    assert best is not None
    _, label, heads, a_x, a_z = best
    return label, heads, a_x, a_z, scores


def fit_heads(
    heads: nn.ModuleList,
    x: torch.Tensor,
    z: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    seed: int,
    steps: int = 2000,
    batch_size: int = 512,
) -> None:
    r"""Fit Eq. (5)'s heads on given latents: :math:`\alpha L_m + \beta L_s` per row, Adam at
    lr 1e-2 on minibatches drawn with replacement (a non-finite loss is left to the score).
    """
    heads.train()

    def loss(idx: torch.Tensor) -> torch.Tensor:
        nll = -sum(h.condition(x[idx]).log_prob(z[idx, i]).mean() for i, h in enumerate(heads))
        l1 = sum(h.mask.l1() for h in heads)
        return alpha * nll + beta * l1  # type: ignore[return-value]

    gen = torch.Generator(device="cpu").manual_seed(seed)
    batches = minibatches(len(x), min(batch_size, len(x)), gen, mode="replace", device=x.device)
    step = adam_step(heads.parameters(), loss, batches, lr=1e-2)
    train(step, steps, name="heads", check=False, progress=False)
    heads.eval()
