"""Fitting one component by SVI: minibatches, held-out early stopping, a history.

Every component of the model is fit by the same loop: Pyro's ``SVI`` with ``Trace_ELBO`` on
the component's own Pyro program and an empty guide (no latent variables, so the ELBO is the
log-likelihood and SVI is maximum likelihood; Eq. (4)). Each fit runs in its own parameter-store
scope, so a user's ``pyro.get_param_store()`` is left alone, and the best parameters on the
held-out rows are restored at the end. The loop itself is :func:`sedge_pyro.models.train.train`,
the one every fit of the package goes through; this module adds the held-out split and the
step budget of a component's fit. :class:`History` is re-exported from there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sedge_pyro.errors import DataError
from sedge_pyro.inference.distributed import World, all_sum, world
from sedge_pyro.models.train import History, elbo_steps, minibatches, train
from sedge_pyro.options import whole

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_EPOCHS",
    "MAX_STEPS",
    "MIN_STEPS",
    "History",
    "Stream",
    "fit_component",
    "schedule",
    "split",
]

#: Rows per step when the caller names none (fewer when the training split is smaller).
DEFAULT_BATCH = 256
#: Passes over the training rows when neither ``steps`` nor ``epochs`` is given ...
DEFAULT_EPOCHS = 100
#: ... but never fewer steps than this: Adam at lr 1e-3 needs a few thousand updates whatever
#: the rows (tables of 2,000 rows still improved up to step 1,700), and small tables stop
#: early on the held-out rows anyway (200 rows: at step 550-650) ...
MIN_STEPS = 2000
#: ... nor more than this, which bounds the time of a large table's fit when its held-out loss
#: keeps improving (with ``patience`` it usually stops long before).
MAX_STEPS = 10_000


def _empty_guide(*args: Any, **kwargs: Any) -> None:
    """No latent variables: the ELBO is the log-likelihood."""


def schedule(
    n_train: int,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
) -> tuple[int, int]:
    """The batch size and step budget of a fit on ``n_train`` training rows.

    ``batch_size`` defaults to :data:`DEFAULT_BATCH` and is capped at ``n_train`` (a table
    smaller than a batch is fitted full-batch). ``epochs`` wins over ``steps``; with neither,
    the budget is :data:`DEFAULT_EPOCHS` passes over the rows, at least :data:`MIN_STEPS`
    and at most :data:`MAX_STEPS` steps, so it grows with the rows up to the cap.

    :param n_train: training rows (after the held-out split).
    :param steps: an explicit step budget.
    :param epochs: an explicit budget in passes over the training rows.
    :param batch_size: an explicit batch size (``None``: the default).
    :returns: ``(batch, total_steps)``.
    :raises OptionError: for a ``steps``, ``epochs`` or ``batch_size`` that is not a whole
        number >= 1.

    >>> schedule(180)
    (180, 2000)
    >>> schedule(15_000)
    (256, 5900)
    >>> schedule(15_000, steps=300)
    (256, 300)
    """
    steps = whole("steps", steps, none_ok=True)
    epochs = whole("epochs", epochs, none_ok=True)
    size = whole("batch_size", batch_size, none_ok=True)
    batch = max(1, min(DEFAULT_BATCH if size is None else size, int(n_train)))
    per_epoch = math.ceil(int(n_train) / batch)
    if epochs is not None:
        return batch, epochs * per_epoch
    if steps is not None:
        return batch, steps
    return batch, min(MAX_STEPS, max(MIN_STEPS, DEFAULT_EPOCHS * per_epoch))


def split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out and training row indices of :func:`fit_component` for ``n`` rows, so
    that a component fit in closed form (a Gaussian prior) can be scored on the same
    held-out rows. Tables under 10 rows hold none out.

    :returns: ``(val_idx, train_idx)`` on the CPU.

    >>> val, train = split(20, 0.1, seed=0)
    >>> len(val), len(train)
    (2, 18)
    """
    return _split(n, val_fraction, torch.Generator().manual_seed(seed))


def _split(
    n: int, val_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`split` with a given generator, which it advances."""
    order = torch.randperm(n, generator=generator)
    n_val = int(round(n * val_fraction)) if n >= 10 else 0
    return order[:n_val], order[n_val:]


@dataclass
class Stream:
    """Rows a fit reads in mini-batches instead of holding them (a file, read by
    :class:`~sedge_pyro.models.stream.StreamedRows`).

    :param train_rows: the training rows of all processes (the plate's scale, the budget).
    :param held_out: this process's held-out rows, one tensor per program argument.
    :param batches: ``batches(batch, generator)``: endless mini-batches of this process's
        training rows, each a tuple of tensors like ``held_out``.
    """

    train_rows: int
    held_out: tuple[torch.Tensor, ...]
    batches: Callable[[int, torch.Generator], Iterator[tuple[torch.Tensor, ...]]]


def _in_memory(
    tensors: Sequence[torch.Tensor],
    val_fraction: float,
    generator: torch.Generator,
    where: World,
    name: str,
) -> Stream:
    """Rows in memory as a :class:`Stream`: the held-out split of :func:`split`, and with
    several processes each its ``rank``-th share (every ``size``-th row) of both parts.
    """
    n = int(tensors[0].shape[0])
    if n == 0:
        raise DataError(f"{name}: no rows to fit on")
    for t in tensors:
        if int(t.shape[0]) != n:
            raise DataError(f"{name}: tensors have {n} and {int(t.shape[0])} rows: expected equal")
    device = tensors[0].device
    val_idx, train_idx = (i.to(device) for i in _split(n, val_fraction, generator))
    n_train = len(train_idx)
    if where.distributed:
        val_idx, train_idx = val_idx[where.rank :: where.size], train_idx[where.rank :: where.size]
        if not len(train_idx):
            raise DataError(
                f"{name}: {n_train} training row(s) for {where.size} processes: expected more "
                "rows than processes"
            )
    train_rows = [t[train_idx] for t in tensors]

    def batches(batch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        for idx in minibatches(len(train_idx), batch, gen, device=device):
            yield tuple(t[idx] for t in train_rows)

    return Stream(n_train, tuple(t[val_idx] for t in tensors), batches)


def fit_component(
    module: nn.Module,
    model: Callable[..., None],
    data: Sequence[torch.Tensor] | Stream,
    *,
    name: str = "component",
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    eval_every: int = 50,
    patience: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Fit ``module`` by maximum likelihood on the Pyro program ``model(*batch, n_total=n)``.

    The loss is Pyro's ``Trace_ELBO`` of the program with an empty guide (no latent
    variables: the negative log-likelihood, Eq. (4)) as a torch module
    (:func:`~sedge_pyro.models.train.elbo_steps`), stepped by Adam. Started by
    ``torchrun`` (see :mod:`sedge_pyro.inference.distributed`), every process fits on its share
    of the rows, the module is wrapped in ``DistributedDataParallel`` (gradients averaged),
    and the training and held-out losses, hence early stopping, are the same in every
    process.

    :param module: the ``nn.Module`` whose parameters ``model`` registers with
        :func:`pyro.module`; its best parameters on the held-out rows are restored.
    :param model: a Pyro program taking minibatch tensors and ``n_total`` (the number of
        training rows, for the plate's scale).
    :param data: the rows: tensors with rows along dimension 0 (same number of rows), or a
        :class:`Stream` (then ``val_fraction`` is the stream's own).
    :param name: label for the progress bar and the history.
    :param steps: optimisation steps (default: :func:`schedule`'s budget, which grows with
        the rows from :data:`MIN_STEPS` to :data:`MAX_STEPS`).
    :param epochs: passes over the training rows (overrides ``steps``).
    :param batch_size: rows per step and process (default :data:`DEFAULT_BATCH`; capped at
        the training rows of a process, so a small table is fitted full-batch). With ``P``
        processes a step sees ``P`` batches and a pass over the rows takes ``1/P`` the steps.
    :param lr: Adam's learning rate.
    :param val_fraction: share of rows held out for early stopping (0 for none).
    :param eval_every: steps between evaluations.
    :param patience: evaluations without held-out improvement before stopping.
    :param seed: seeds the split, the minibatches and Pyro.
    :param progress: show a tqdm progress bar (in rank 0 only).
    :returns: the :class:`History`.
    :raises DataError: when there are no rows or the tensors disagree in length.
    :raises OptionError: for a ``steps``, ``epochs`` or ``batch_size`` below 1.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction!r}: expected a number in [0, 1)")
    generator = torch.Generator().manual_seed(seed)
    where = world()
    if not isinstance(data, Stream):
        data = _in_memory(data, val_fraction, generator, where, name)
    n_train = int(data.train_rows)
    if n_train == 0:
        raise DataError(f"{name}: no training rows to fit on")
    val = data.held_out
    n_val = int(all_sum([float(len(val[0]) if val else 0)], where)[0])
    batch, total = schedule(
        math.ceil(n_train / where.size), steps=steps, epochs=epochs, batch_size=batch_size
    )
    batches = data.batches(batch, generator)
    first = next(batches)
    device = first[0].device
    start = time.perf_counter()
    wrap = None
    if where.distributed:
        ids = [device.index] if device.type == "cuda" else None
        wrap = partial(DistributedDataParallel, device_ids=ids)
    with elbo_steps(
        module, model, _empty_guide, first, lr=lr, seed=seed, wrap=wrap, n_total=n_train
    ) as run:
        if where.distributed:  # the same start everywhere, other noise in each process
            torch.manual_seed(seed + 1 + where.rank)
        pending = [first]

        def step(_: int) -> float:
            rows = pending.pop() if pending else next(batches)
            loss = run.step(*rows, n_total=n_train)
            if where.distributed:
                dist.all_reduce(loss, op=dist.ReduceOp.SUM)
                loss = loss / where.size
            return float(loss) / n_train

        def evaluate() -> float:
            local = run.evaluate(*val, n_total=len(val[0])) if len(val[0]) else 0.0
            return all_sum([local], where)[0] / n_val

        history = train(
            step,
            total,
            name=name,
            lr=lr,
            evaluate=evaluate if n_val else None,
            eval_every=eval_every,
            patience=patience,
            module=module,
            check="named",
            progress=progress and where.main,
            leave=False,
        )
    history.batch_size = batch
    history.seconds = time.perf_counter() - start
    return history
