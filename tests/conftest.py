"""Seed every test and keep Pyro's global state clean (after pyro's tests/conftest.py)."""

from __future__ import annotations

import random

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

try:  # small models are several times faster on one thread on 2-core machines (STACK-NOTES)
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency
    pass


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed python, numpy, torch and pyro; clear Pyro's param store around each test."""
    random.seed(0)
    np.random.seed(0)
    try:
        import pyro
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        yield
        return
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()
