r"""Learning each specification's parents with sparse masks (Eq. (5)).

When the parent sets :math:`V_i` are unknown, each specification :math:`Z_i` gets a
likelihood over *all* features seen through a learnable mask, :math:`p(Z_i \mid x \odot M_i)`
with :math:`M_i = \sigma(w_i)` (App. D.2), fit by minimising

.. math:: L_{g'} = L_m + \beta L_s, \qquad L_s = \lVert M_i \rVert_1

(Eq. (5)). The features whose mask weight ends above a threshold are the parents, and the
result is a :class:`~sedge_pyro.graph.SpecGraph` for :func:`sedge_pyro.identify` and the model
builder. Every fit is :func:`~sedge_pyro.inference.fit.fit_component` on the Pyro program of
:class:`_MaskedLikelihood`.

**Scaling of beta.** :math:`L_m` is the negative log-likelihood *per row* (nats, on
standardised columns); the penalty enters the Pyro program as ``pyro.factor(f"{spec}_l1",
-beta * n_total * mask.l1())`` next to the likelihood's plate scaled to ``n_total`` rows, so
the loss per row is :math:`L_m + \beta \lVert M_i \rVert_1`. A feature is kept when it improves
the average log-likelihood by more than about ``beta`` nats per row; ``beta`` does not depend
on the number of rows or the minibatch size.

**Standardised features** (App. C's normalisation): a mask multiplies a feature, so its effect
would otherwise depend on the units (in :func:`~sedge_pyro.datasets.paper_synthetic`,
:math:`X_2 \sim U(0.75, 0.8)` would be invisible).

**Two refinements of Eq. (5), both on by default and both switchable off:**

* *Gates* (``temperature=0.5``): while fitting, each row multiplies its features by random
  relaxed-Bernoulli gates open with probability :math:`M_{ij}`
  (:class:`~sedge_pyro.models.masks.SigmoidMask`), so :math:`\lVert M_i \rVert_1` is the
  expected number of features used. With the deterministic :math:`x \odot M_i` the network can
  undo a small weight by scaling its first layer up, the penalised optimum is degenerate and
  the final weights depend on when training stops; with gates a feature's weight goes to 1 when
  it is worth more than ``beta`` and to 0 otherwise. ``temperature=None`` is Eq. (5) verbatim.
* *Conditioning on the other specifications* (``condition_on_specs=True``): the likelihood of
  :math:`Z_i` also sees :math:`z_{-i}` (unmasked, unpenalised). Training rows are selected
  (:math:`S = 1`) and :math:`S` is a child of the specifications, so in them :math:`Z_1`
  depends on :math:`Z_2`'s parents through :math:`X_3 \to Z_2 \to S \leftarrow Z_1`; giving
  the fit :math:`z_{-i}` blocks every such path (no spec -> spec edges and a selection with
  only spec parents, Sec. 3.1), so a feature is informative about :math:`Z_i` given all
  features and :math:`z_{-i}` exactly when it is a parent. On the training rows of
  ``paper_synthetic`` these selection-induced edges (:math:`X_3 \to Z_1`,
  :math:`X_1 \to Z_2`, about 0.005 nats per row) are as strong as the weak true edge
  :math:`X_2 \to Z_1` (about 0.01), and no ``beta`` separates them without this.

References: Sec. 3.1, Sec. 4.1, Eq. (5) and App. D.2 ("Causal Mask") of the SEDGE paper;
Maddison et al., The Concrete Distribution (2017).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyro
import torch
from torch import nn

from sedge_pyro.errors import DataError, GraphError
from sedge_pyro.graph import SpecGraph
from sedge_pyro.inference.fit import History, fit_component
from sedge_pyro.models.base import ConditionalDensity
from sedge_pyro.models.likelihoods import BernoulliMLP, CategoricalMLP, GaussianMLP
from sedge_pyro.models.masks import SigmoidMask
from sedge_pyro.options import threads as torch_threads

__all__ = ["DEFAULT_BETA", "StructureResult", "learn_parents", "learn_structure"]

#: Default L1 strength, in nats per row per unit of mask weight (see :func:`learn_structure`).
DEFAULT_BETA = 0.004
_LIKELIHOODS = ("auto", "gaussian", "bernoulli", "categorical")


@dataclass(frozen=True)
class StructureResult:
    """What :func:`learn_structure` found.

    :param graph: the learned graph (all features, each spec with its kept parents).
    :param weights: the final mask weights, one row per spec, one column per feature.
    :param parents: each spec's kept parents, in feature order.
    :param forced: the specs whose mask kept no feature above the threshold and that were
        given their single strongest feature instead.
    :param likelihoods: the likelihood used for each spec.
    :param beta: the L1 strength used.
    :param threshold: the mask weight a parent had to exceed.
    :param histories: each spec's fitting :class:`~sedge_pyro.inference.fit.History`.
    """

    graph: SpecGraph
    weights: pd.DataFrame
    parents: dict[str, tuple[str, ...]]
    forced: tuple[str, ...]
    likelihoods: dict[str, str]
    beta: float
    threshold: float
    histories: dict[str, History] = field(repr=False)


def _check_names(features: Sequence[str], specs: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(features, str) or isinstance(specs, str):
        raise DataError("features and specs: expected sequences of column names, not a string")
    features, specs = list(features), list(specs)
    if not features:
        raise DataError("features: expected at least one feature column")
    if not specs:
        raise DataError("specs: expected at least one specification column")
    for role, names in (("features", features), ("specs", specs)):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise DataError(f"{role}: column {name!r} is listed twice")
            seen.add(name)
    for name in specs:
        if name in features:
            raise GraphError(
                f"column {name!r} is listed both as a specification and as a feature: a "
                "variable is one or the other (Sec. 3.1)"
            )
    return features, specs


def _numeric(data: pd.DataFrame, name: str, role: str) -> np.ndarray:
    """The column as float64, checked: present, numeric, finite and not constant."""
    if name not in data.columns:
        raise DataError(f"{role} column {name!r} is missing from the data frame")
    col = data[name]
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
        raise DataError(f"{role} column {name!r} has dtype {col.dtype}: expected numbers")
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"{role} column {name!r} holds {int(bad.sum())} NaN or infinite value(s): expected "
            "finite numbers"
        )
    if values.size and np.ptp(values) == 0:
        raise DataError(f"{role} column {name!r} is constant: it carries no information")
    return values


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def _spec_target(data: pd.DataFrame, spec: str, choice: str) -> tuple[str, np.ndarray, int]:
    """The resolved likelihood, the target column (standardised or codes), and its classes."""
    if spec not in data.columns:
        raise DataError(f"specification column {spec!r} is missing from the data frame")
    col = data[spec]
    numeric = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
    if col.isna().any():
        raise DataError(f"specification column {spec!r} holds NaN values: expected none")
    if choice == "categorical" or (choice == "auto" and not numeric):
        labels, uniques = pd.factorize(col, sort=True)
        if len(uniques) < 2:
            raise DataError(f"specification column {spec!r} is constant: nothing to predict")
        return "categorical", labels.astype(np.float64), len(uniques)
    values = _numeric(data, spec, "specification")
    binary = bool(np.isin(values, (0.0, 1.0)).all())
    if choice == "bernoulli" and not binary:
        raise DataError(
            f"specification column {spec!r}: likelihood 'bernoulli' needs values in {{0, 1}}"
        )
    if choice == "bernoulli" or (choice == "auto" and binary):
        return "bernoulli", values, 2
    return "gaussian", _standardise(values), 0


def _density(kind: str, context_dim: int, k: int, hidden: Sequence[int]) -> ConditionalDensity:
    if kind == "gaussian":
        return GaussianMLP(context_dim, hidden=hidden)
    if kind == "bernoulli":
        return BernoulliMLP(context_dim, hidden=hidden)
    return CategoricalMLP(context_dim, k, hidden=hidden)


def _encode(kind: str, target: np.ndarray, k: int) -> np.ndarray:
    """A spec as context columns for the other specs' fits: one-hot or standardised."""
    if kind == "categorical":
        return np.eye(k)[target.astype(np.int64)]
    if kind == "bernoulli":
        return _standardise(target)[:, None]
    return target[:, None]  # already standardised


class _MaskedLikelihood(nn.Module):
    r""":math:`p(Z_i \mid x \odot M_i, z_{-i})` with Eq. (5)'s :math:`L_m + \beta L_s` as program.

    A mask over the features, the other specs as they are, and one likelihood.
    """

    def __init__(self, mask: SigmoidMask, density: ConditionalDensity) -> None:
        super().__init__()
        self.mask = mask
        self.density = density

    def model(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        other: torch.Tensor,
        *,
        name: str,
        beta: float,
        n_total: int | None = None,
    ) -> None:
        pyro.module(f"{name}_mask", self.mask)
        context = torch.cat([self.mask(x), other], dim=-1)
        self.density.model(y, context, name=name, n_total=n_total)
        n = int(y.shape[0]) if n_total is None else int(n_total)
        # beta per row: the plate scales the likelihood to n rows, so the penalty is too
        pyro.factor(f"{name}_l1", -beta * n * self.mask.l1())


def learn_structure(
    data: pd.DataFrame,
    features: Sequence[str],
    specs: Sequence[str],
    *,
    beta: float = DEFAULT_BETA,
    threshold: float = 0.5,
    steps: int = 1500,
    lr: float = 1e-2,
    batch_size: int = 512,
    hidden: Sequence[int] = (16, 16),
    init: float = 0.9,
    temperature: float | None = 0.5,
    condition_on_specs: bool = True,
    val_fraction: float = 0.0,
    seed: int = 0,
    likelihood: str | Mapping[str, str] = "auto",
    progress: bool = True,
    threads: int | None = None,
) -> StructureResult:
    r"""Learn each specification's feature parents with L1-penalised sigmoid masks (Eq. (5)).

    Long because its docstring documents seventeen parameters; the body is three named steps
    (:func:`_check_options`, :func:`_fit_mask` per spec, the parents kept).

    For each spec :math:`Z_i`, fit a likelihood over all features seen through a mask,
    :math:`p(Z_i \mid x \odot M_i)`, minimising :math:`L_m + \beta \lVert M_i \rVert_1` per
    row with :func:`~sedge_pyro.inference.fit.fit_component`; keep the features with
    :math:`M_{ij} >` ``threshold``. A spec that keeps none gets its single strongest feature
    (every spec must have a parent to be generated from features; listed in ``forced``).

    :param data: the training rows, one column per feature and per spec.
    :param features: the feature columns :math:`X` (numbers; standardised here).
    :param specs: the specification columns :math:`Z`.
    :param beta: L1 strength in nats per row per unit of mask weight (the module docstring
        explains the scaling). The default, :data:`DEFAULT_BETA` = 0.004, is the middle (on a
        log scale) of the range that recovers the true graph of
        :func:`~sedge_pyro.datasets.paper_synthetic` from its training rows: with 20,000
        rows it gets every edge right for seeds 0-8, keeping the weakest true edge,
        :math:`X_2 \to Z_1` (worth about 0.01 nats per row), up to ``beta`` of about 0.007,
        while a false edge :math:`X_1 \to Z_2` appears for some seeds at 0.002. Raise it to
        prune harder or with fewer rows (a flexible network's in-sample gain from a useless
        feature grows like 1/rows: below about 5,000 rows 0.004 can keep false edges); lower
        it for weak effects.
    :param threshold: the mask weight a feature must exceed to be a parent.
    :param steps: SVI steps per spec.
    :param lr: Adam's learning rate.
    :param batch_size: rows per step.
    :param hidden: hidden layer sizes of each likelihood's MLP.
    :param init: the initial mask weight of every feature.
    :param temperature: the gates' relaxation temperature; ``None``: the deterministic
        :math:`x \odot M_i` of Eq. (5) (see the module docstring).
    :param condition_on_specs: let the fit of :math:`Z_i` see the other specs, which blocks
        the dependences the selection creates among the training rows (module docstring).
    :param val_fraction: rows held out for early stopping on the penalised loss; the default 0
        trains every step, since stopping early leaves weights half-way.
    :param seed: seeds the networks, the split and the minibatches (spec ``i`` uses
        ``seed + i``).
    :param likelihood: ``"auto"`` (Bernoulli for 0/1 columns, categorical for labels, Gaussian
        otherwise), ``"gaussian"``, ``"bernoulli"``, ``"categorical"``, or a dict per spec.
    :param progress: show progress bars.
    :param threads: torch's CPU threads while fitting, restored afterwards (``None``:
        :func:`~sedge_pyro.options.default_threads`).
    :returns: a :class:`StructureResult`.
    :raises DataError: when a column is missing, non-numeric, holds NaN or infinite values, or
        is constant (the message names it), or an argument is out of range.
    :raises GraphError: when a column is listed both as a spec and as a feature.
    :raises OptionError: for a ``threads`` that is not a whole number >= 1.

    References: Sec. 4.1, Eq. (5) and App. D.2 ("Causal Mask") of the SEDGE paper.

    >>> from sedge_pyro.datasets import paper_synthetic
    >>> seen, _, _ = paper_synthetic(2000, seed=0)
    >>> res = learn_structure(seen, ["x1", "x2", "x3"], ["z1", "z2"], steps=50,
    ...                       progress=False)
    >>> list(res.weights.columns)
    ['x1', 'x2', 'x3']
    """
    features, specs, choices = _check_options(data, features, specs, beta, threshold, likelihood)
    x_np = np.stack([_standardise(_numeric(data, f, "feature")) for f in features], axis=1)
    x = torch.as_tensor(x_np, dtype=torch.get_default_dtype())

    weights: dict[str, np.ndarray] = {}
    parents: dict[str, tuple[str, ...]] = {}
    kinds: dict[str, str] = {}
    histories: dict[str, History] = {}
    forced: list[str] = []
    targets = {spec: _spec_target(data, spec, choices[spec]) for spec in specs}
    encoded = {spec: _encode(*targets[spec]) for spec in specs}
    fit = {
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "progress": progress,
    }
    net = {"init": init, "temperature": temperature, "hidden": hidden, "beta": float(beta)}
    with torch_threads(threads):
        for i, spec in enumerate(specs):
            kinds[spec] = targets[spec][0]
            others = [encoded[s] for s in specs if s != spec] if condition_on_specs else []
            w, histories[spec] = _fit_mask(x, targets[spec], others, spec, seed + i, net, fit)
            weights[spec] = w
            keep = [j for j in range(len(features)) if w[j] > threshold]
            if not keep:
                keep = [int(np.argmax(w))]
                forced.append(spec)
            parents[spec] = tuple(features[j] for j in keep)

    graph = SpecGraph.from_parents(parents, features=features)
    table = pd.DataFrame.from_dict(weights, orient="index", columns=features)
    return StructureResult(
        graph=graph,
        weights=table,
        parents=parents,
        forced=tuple(forced),
        likelihoods=kinds,
        beta=float(beta),
        threshold=float(threshold),
        histories=histories,
    )


def _check_options(
    data: Any,
    features: Sequence[str],
    specs: Sequence[str],
    beta: float,
    threshold: float,
    likelihood: str | Mapping[str, str],
) -> tuple[list[str], list[str], dict[str, str]]:
    """:func:`learn_structure`'s arguments checked: the features, the specs, and each spec's
    likelihood choice.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data: expected a pandas DataFrame, got {type(data).__name__}")
    features, specs = _check_names(features, specs)
    if not beta >= 0:
        raise DataError(f"beta={beta!r}: expected a number >= 0")
    if not 0.0 < threshold < 1.0:
        raise DataError(f"threshold={threshold!r}: expected a mask weight in (0, 1)")
    if isinstance(likelihood, str):
        choices = dict.fromkeys(specs, likelihood)
    else:
        unknown = [s for s in likelihood if s not in specs]
        if unknown:
            raise DataError(f"likelihood names {unknown[0]!r}, which is not one of the specs")
        choices = {s: likelihood.get(s, "auto") for s in specs}
    for spec, choice in choices.items():
        if choice not in _LIKELIHOODS:
            raise DataError(
                f"likelihood {choice!r} for {spec!r}: expected one of {', '.join(_LIKELIHOODS)}"
            )
    if len(data) < 2:
        raise DataError(f"data has {len(data)} row(s): expected at least 2")
    return features, specs, choices


def _fit_mask(
    x: torch.Tensor,
    target: tuple[str, np.ndarray, int],
    others: list[np.ndarray],
    spec: str,
    seed: int,
    net: Mapping[str, Any],
    fit: Mapping[str, Any],
) -> tuple[np.ndarray, History]:
    """One spec's masked likelihood (Eq. (5)) fit with seed ``seed``: its mask weights and
    the fit's history. ``target`` is the spec's ``(kind, values, classes)``, ``others`` the
    other specs' encoded columns it is conditioned on.
    """
    kind, values, k = target
    d = x.shape[1]
    y = torch.as_tensor(values, dtype=x.dtype).unsqueeze(-1)
    other = torch.as_tensor(
        np.concatenate(others, axis=1) if others else np.zeros((len(x), 0)),
        dtype=x.dtype,
    )
    torch.manual_seed(seed)
    module = _MaskedLikelihood(
        SigmoidMask(d, init=net["init"], temperature=net["temperature"]),
        _density(kind, d + other.shape[1], k, net["hidden"]),
    )
    beta = net["beta"]

    def fn(*t: torch.Tensor, n_total: int | None = None, _m=module, _s=spec) -> None:
        _m.model(*t, name=_s, beta=beta, n_total=n_total)

    history = fit_component(module, fn, (y, x, other), name=f"mask {spec}", seed=seed, **fit)
    return module.mask.weights.detach().cpu().numpy().astype(np.float64), history


def learn_parents(
    data: pd.DataFrame,
    features: Sequence[str],
    specs: Sequence[str],
    *,
    beta: float = DEFAULT_BETA,
    threshold: float = 0.5,
    steps: int = 1500,
    lr: float = 1e-2,
    seed: int = 0,
    likelihood: str | Mapping[str, str] = "auto",
    progress: bool = True,
    threads: int | None = None,
    **options: Any,
) -> SpecGraph:
    r"""The :class:`~sedge_pyro.graph.SpecGraph` of parents learned by sparse masks (Eq. (5)).

    :func:`learn_structure` without the diagnostics: same arguments (``options`` passes
    ``batch_size``, ``hidden``, ``init``, ``temperature``, ``condition_on_specs`` and
    ``val_fraction`` through), returns only the graph. With the defaults a spec whose mask
    keeps no feature gets its single strongest one (see :attr:`StructureResult.forced`).

    :param threads: torch's CPU threads while fitting, restored afterwards (``None``:
        :func:`~sedge_pyro.options.default_threads`).
    :returns: a graph over all ``features`` and ``specs``.
    :raises DataError: see :func:`learn_structure`.
    :raises GraphError: see :func:`learn_structure`.

    References: Sec. 4.1, Eq. (5) of the SEDGE paper.

    >>> from sedge_pyro.datasets import paper_synthetic
    >>> seen, _, _ = paper_synthetic(2000, seed=0)
    >>> g = learn_parents(seen, ["x1", "x2", "x3"], ["z1", "z2"], steps=50, progress=False)
    >>> g.specs
    ('z1', 'z2')
    """
    return learn_structure(
        data,
        features,
        specs,
        beta=beta,
        threshold=threshold,
        steps=steps,
        lr=lr,
        seed=seed,
        likelihood=likelihood,
        progress=progress,
        threads=threads,
        **options,
    ).graph
