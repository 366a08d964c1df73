"""The one training loop: every fit of the package (components, latent VAEs, image models,
the judge) takes its steps here.

A fit is a ``step(i) -> float`` (the loss of step ``i``, per row) run ``total`` times by
:func:`train`, which checks the loss is finite, shows a tqdm bar, keeps a :class:`History`,
and, given an ``evaluate`` closure, stops early on the held-out loss and restores the best
parameters. The step is built from one of two pieces: :func:`svi` (Pyro's
``SVI(model, guide, Adam, Trace_ELBO)`` in its own seeded parameter-store scope, as the
style of the package asks) or :func:`adam_step` (a loss closure over minibatch row indices
with ``torch.optim.Adam``, for objectives that are not an ELBO). :func:`minibatches` draws
the row indices from a seeded generator.

It lives in :mod:`sedge_pyro.models` because the latent VAEs fit here too, and ``models`` may
not import ``inference``; :func:`sedge_pyro.inference.fit.fit_component` (SVI on a component's
own Pyro program, with a held-out split and a step budget) is built on it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pyro
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn
from tqdm.auto import tqdm

from sedge_pyro.errors import DataError

__all__ = ["ElboSteps", "History", "adam_step", "elbo_steps", "minibatches", "svi", "train"]


@dataclass
class History:
    """What happened while fitting one component.

    :param name: the component's name (a spec, ``"prior"``, ...).
    :param steps: SVI steps taken.
    :param train_loss: training loss per evaluation, per row (negative log-likelihood in
        normalised units, or the component's own objective, e.g. DDPM's noise MSE).
    :param val_loss: held-out loss per evaluation, per row (empty without held-out rows).
    :param eval_steps: the step of each evaluation.
    :param best_step: the step whose parameters were kept.
    :param best_val: the held-out loss there (``nan`` without held-out rows).
    :param seconds: wall-clock time of the fit.
    :param stopped_early: whether patience ran out before the last step.
    :param max_steps: the step budget (from ``steps``, ``epochs`` or
        :func:`~sedge_pyro.inference.fit.schedule`).
    :param batch_size: rows per step actually used (capped at the training rows).
    """

    name: str
    steps: int = 0
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    best_step: int = 0
    best_val: float = math.nan
    seconds: float = 0.0
    stopped_early: bool = False
    max_steps: int = 0
    batch_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


@contextmanager
def svi(
    model: Callable[..., Any], guide: Callable[..., Any], *, lr: float, seed: int
) -> Iterator[SVI]:
    """Pyro's ``SVI`` with ``Adam(lr)`` and ``Trace_ELBO``, after ``pyro.set_rng_seed(seed)``,
    in its own parameter-store scope, so a user's ``pyro.get_param_store()`` is left alone.

    >>> with svi(lambda: None, lambda: None, lr=1e-3, seed=0) as s:
    ...     type(s).__name__
    'SVI'
    """
    pyro.set_rng_seed(seed)
    with pyro.get_param_store().scope():
        yield SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())


class _Program(nn.Module):
    """A Pyro program over ``module``'s parameters as a module, so that the ELBO module of
    :func:`elbo_steps` (and a ``DistributedDataParallel`` around it) holds those parameters.
    """

    def __init__(self, module: nn.Module, program: Callable[..., Any]) -> None:
        super().__init__()
        self.component = module
        self.program = program

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.program(*args, **kwargs)


class ElboSteps:
    """Steps of :func:`elbo_steps`: the ELBO module, its optimizer, and the loss it returns."""

    def __init__(self, loss: nn.Module, wrapped: nn.Module, lr: float) -> None:
        self.loss, self.wrapped = loss, wrapped
        self.optim = torch.optim.Adam([p for p in loss.parameters() if p.requires_grad], lr=lr)

    def step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """One Adam update on the loss of a minibatch; returns the loss (detached)."""
        self.optim.zero_grad()
        value = self.wrapped(*args, **kwargs)
        value.backward()
        self.optim.step()
        return value.detach()

    def evaluate(self, *args: Any, **kwargs: Any) -> float:
        """The loss without gradients or an update (on the unwrapped module)."""
        with torch.no_grad():
            return float(self.loss(*args, **kwargs))


@contextmanager
def elbo_steps(
    module: nn.Module,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    first: tuple[Any, ...],
    *,
    lr: float,
    seed: int,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    **kwargs: Any,
) -> Iterator[ElboSteps]:
    """Pyro's ELBO as a torch module, ``Trace_ELBO()(model, guide)``, stepped by
    ``torch.optim.Adam(lr)``: the route Pyro documents for ``DistributedDataParallel``
    (pyro.infer.elbo.ELBO; classic ``SVI`` around a wrapped module leaves guide parameters
    out of sync).

    After ``pyro.set_rng_seed(seed)``, in its own parameter-store scope: the module is called
    once on ``first`` (and ``kwargs``) so that :func:`pyro.module` puts ``module``'s
    parameters in place, then ``wrap`` (e.g. ``DistributedDataParallel``) wraps it.

    :param module: the ``nn.Module`` whose parameters ``model`` registers.
    :param wrap: wraps the initialised ELBO module; its forward is what :meth:`ElboSteps.step`
        calls.

    >>> import pyro, pyro.distributions as dist
    >>> lin = nn.Linear(1, 1)
    >>> def model(x, y):
    ...     pyro.module("lin", lin)
    ...     with pyro.plate("rows", len(x)):
    ...         pyro.sample("y", dist.Normal(lin(x).squeeze(-1), 1.0), obs=y)
    >>> x = torch.linspace(-1, 1, 50)[:, None]; y = 2 * x.squeeze(-1)
    >>> with elbo_steps(lin, model, lambda x, y: None, (x, y), lr=0.1, seed=0) as run:
    ...     for _ in range(300):
    ...         _ = run.step(x, y)
    >>> round(float(lin.weight.detach()), 1)
    2.0
    """
    pyro.set_rng_seed(seed)
    with pyro.get_param_store().scope():
        loss = Trace_ELBO()(_Program(module, model), guide)
        loss(*first, **kwargs)
        yield ElboSteps(loss, loss if wrap is None else wrap(loss), lr)


def minibatches(
    n: int,
    batch: int,
    generator: torch.Generator,
    *,
    mode: str = "drop_last",
    device: torch.device | str = "cpu",
) -> Iterator[torch.Tensor]:
    """Row indices of ``batch`` rows out of ``n``, endlessly, drawn with ``generator``.

    :param mode: ``"drop_last"``: slices of a permutation, a fresh one whenever the next slice
        would not fit (every batch full); ``"epoch"``: slices of a permutation per pass over
        the rows, the last one short; ``"replace"``: ``batch`` rows drawn with replacement.

    >>> g = torch.Generator().manual_seed(0)
    >>> [len(i) for i, _ in zip(minibatches(5, 2, g, mode="epoch"), range(4))]
    [2, 2, 1, 2]
    """
    if mode == "replace":
        while True:
            yield torch.randint(n, (batch,), generator=generator).to(device)
    full = mode == "drop_last"
    perm, cursor = torch.randperm(n, generator=generator).to(device), 0
    while True:
        if (cursor + batch > n) if full else (cursor >= n):
            perm, cursor = torch.randperm(n, generator=generator).to(device), 0
        yield perm[cursor : cursor + batch]
        cursor += batch


def adam_step(
    params: Iterable[nn.Parameter],
    loss: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[torch.Tensor],
    *,
    lr: float,
) -> Callable[[int], float]:
    """A step for :func:`train`: ``loss`` of the next minibatch's row indices, one
    ``torch.optim.Adam(lr)`` update, the loss as a float.
    """
    opt = torch.optim.Adam(params, lr=lr)

    def step(_: int) -> float:
        opt.zero_grad()
        value = loss(next(batches))
        value.backward()
        opt.step()
        return float(value.detach())

    return step


class _Best:
    """Early stopping on the held-out loss, and the best parameters seen."""

    def __init__(self, module: nn.Module | None, patience: int | None) -> None:
        self.module, self.patience = module, patience
        self.state = None if module is None else copy.deepcopy(module.state_dict())
        self.value, self.bad = math.inf, 0

    def update(self, history: History, step: int, value: float) -> bool:
        """Record ``value`` at ``step``; ``True`` when patience has run out."""
        if value < self.value:
            self.value, self.bad = value, 0
            if self.module is not None:
                self.state = copy.deepcopy(self.module.state_dict())
            history.best_step, history.best_val = step, value
            return False
        self.bad += 1
        return self.patience is not None and self.bad >= self.patience

    def restore(self) -> None:
        if self.module is not None and self.state is not None:
            self.module.load_state_dict(self.state)


def train(
    step: Callable[[int], float],
    total: int,
    *,
    name: str = "component",
    desc: str | None = None,
    lr: float | None = None,
    evaluate: Callable[[], float] | None = None,
    eval_every: int = 50,
    patience: int | None = None,
    module: nn.Module | None = None,
    on_step: Callable[[int, float], None] | None = None,
    check: bool | str = True,
    progress: bool = True,
    leave: bool = True,
    fmt: str = ".4f",
) -> History:
    """Run ``step(1) .. step(total)`` and keep a :class:`History`.

    Every ``eval_every`` steps (and at the last) the mean training loss since the previous
    evaluation is recorded; with ``evaluate`` (the held-out loss, run under
    ``torch.no_grad``) the best value and step are kept, ``module``'s parameters there are
    restored at the end, and the fit stops after ``patience`` evaluations without
    improvement (``None``: never).

    :param step: the loss of step ``i`` per row, after its update.
    :param total: the step budget.
    :param name: the history's name; ``desc`` (default ``"fit {name}"``) labels the bar.
    :param lr: the learning rate, for the message of a diverging loss.
    :param on_step: called with ``(step, loss)`` after every step (a history, checkpoints).
    :param check: raise on a non-finite loss (``"named"``: the message starts with ``name``);
        ``False`` lets the caller handle it.
    :param progress: show the bar; ``leave`` keeps it afterwards; ``fmt`` formats its loss.
    :returns: the :class:`History` (``seconds`` is the loop's time).
    :raises DataError: for a non-finite loss when ``check``.
    """
    history = History(name=name, max_steps=total)
    best = _Best(module, patience) if evaluate is not None else None
    start = time.perf_counter()
    running, count = 0.0, 0
    bar = tqdm(total=total, desc=desc or f"fit {name}", disable=not progress, leave=leave)
    for i in range(1, total + 1):
        loss = step(i)
        if check and not math.isfinite(loss):
            where = f"{name}: " if check == "named" else ""
            raise DataError(f"{where}the loss became {loss} at step {i}; try a smaller lr={lr}")
        if on_step is not None:
            on_step(i, loss)
        running, count = running + loss, count + 1
        bar.update(1)
        history.steps = i
        if i % eval_every == 0 or i == total:
            history.train_loss.append(running / count)
            history.eval_steps.append(i)
            running, count = 0.0, 0
            shown = {"loss": f"{history.train_loss[-1]:{fmt}}"}
            if best is not None and evaluate is not None:
                with torch.no_grad():
                    value = evaluate()
                history.val_loss.append(value)
                shown["val"] = f"{value:{fmt}}"
                if best.update(history, i, value):
                    history.stopped_early = i < total
                    bar.set_postfix(**shown)
                    break
            bar.set_postfix(**shown)
    bar.close()
    if best is not None:
        best.restore()
    else:
        history.best_step = history.steps
    history.seconds = time.perf_counter() - start
    return history
