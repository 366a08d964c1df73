"""The one training loop (``sedge_pyro.models.train``): minibatches, early stopping, checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sedge_pyro.errors import DataError
from sedge_pyro.models.train import adam_step, minibatches, train


@pytest.mark.parametrize(
    ("mode", "sizes"), [("drop_last", [2, 2, 2, 2]), ("epoch", [2, 2, 1, 2]), ("replace", [2] * 4)]
)
def test_minibatches_modes(mode, sizes):
    gen = torch.Generator().manual_seed(0)
    batches = [b for b, _ in zip(minibatches(5, 2, gen, mode=mode), range(4), strict=False)]
    assert [len(b) for b in batches] == sizes
    if mode == "epoch":  # one pass covers every row once
        assert sorted(torch.cat(batches[:3]).tolist()) == list(range(5))


def test_patience_stops_and_restores_the_best_state():
    module = nn.Linear(1, 1)
    values = iter([3.0, 1.0, 2.0, 2.5, 4.0, 0.5])

    def step(i: int) -> float:
        with torch.no_grad():
            module.bias.fill_(float(i))
        return 1.0

    h = train(
        step,
        6,
        evaluate=lambda: next(values),
        eval_every=1,
        patience=2,
        module=module,
        progress=False,
    )
    assert (h.steps, h.best_step, h.best_val, h.stopped_early) == (4, 2, 1.0, True)
    assert float(module.bias.detach()) == 2.0  # the parameters of step 2
    assert h.val_loss == [3.0, 1.0, 2.0, 2.5]


def test_without_evaluation_every_step_runs_and_the_last_is_kept():
    h = train(lambda i: float(i), 7, eval_every=3, progress=False)
    assert (h.steps, h.best_step, h.eval_steps) == (7, 7, [3, 6, 7])
    assert h.train_loss == [2.0, 5.0, 7.0] and h.val_loss == [] and math.isnan(h.best_val)


def test_a_diverging_loss_is_named_or_left_to_the_caller():
    with pytest.raises(
        DataError, match=r"^z1: the loss became nan at step 2; try a smaller lr=0.1"
    ):
        train(
            lambda i: 1.0 if i < 2 else math.nan,
            3,
            name="z1",
            lr=0.1,
            check="named",
            progress=False,
        )
    with pytest.raises(DataError, match=r"^the loss became inf at step 1"):
        train(lambda i: math.inf, 3, progress=False)
    assert train(lambda i: math.nan, 3, check=False, progress=False).steps == 3


def test_adam_step_minimises_a_closure():
    w = nn.Parameter(torch.tensor([3.0]))
    gen = torch.Generator().manual_seed(0)
    target = torch.zeros(8)
    step = adam_step(
        [w], lambda idx: ((w - target[idx]) ** 2).mean(), minibatches(8, 4, gen), lr=0.1
    )
    h = train(step, 200, progress=False)
    assert h.train_loss[-1] < 1e-2
