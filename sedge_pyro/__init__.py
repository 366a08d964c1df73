"""sedge-pyro: structural extrapolated data generation on Pyro.

>>> import sedge_pyro as sp
>>> g = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
>>> sp.identify(g, target={"z1": 1, "z2": 1}).status
<Status.CONSERVATIVE: 'conservative'>
"""

from sedge_pyro import datasets, diagnostics, examples, table
from sedge_pyro.diagnostics import (
    SpecSatisfaction,
    mmd,
    mmd_floor,
    pair_plot,
    spec_satisfaction,
)
from sedge_pyro.errors import (
    AssumptionFailed,
    DataError,
    GraphError,
    NotIdentifiable,
    OptionError,
    SamplingError,
    SedgeError,
    TargetError,
)
from sedge_pyro.expr import Factor, Factorization, Interval, Term, Var
from sedge_pyro.graph import SpecGraph
from sedge_pyro.identify import Assumption, Check, Component, Identification, Status, identify
from sedge_pyro.table import Table
from sedge_pyro.version import __version__

# The torch/Pyro layers load on first use, so graph work (and `sedge identify`) stays light.
_LAZY = {
    "models": ("sedge_pyro.models", None),
    "inference": ("sedge_pyro.inference", None),
    "options": ("sedge_pyro.options", None),
    "experiments": ("sedge_pyro.experiments", None),
    "convert": ("sedge_pyro.legacy", "convert"),
    "Backtest": ("sedge_pyro.inference.backtest", "Backtest"),
    "backtest": ("sedge_pyro.inference.model", "backtest"),
    "SEDGEModel": ("sedge_pyro.inference.model", "SEDGEModel"),
    "LatentSEDGE": ("sedge_pyro.models", "LatentSEDGE"),
    "Samples": ("sedge_pyro.inference", "Samples"),
    "learn_parents": ("sedge_pyro.inference", "learn_parents"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sedge_pyro' has no attribute {name!r}")


__all__ = [
    "Assumption",
    "AssumptionFailed",
    "Backtest",
    "Check",
    "Component",
    "DataError",
    "Factor",
    "Factorization",
    "GraphError",
    "Identification",
    "Interval",
    "LatentSEDGE",
    "NotIdentifiable",
    "OptionError",
    "SEDGEModel",
    "SamplingError",
    "Samples",
    "SedgeError",
    "SpecGraph",
    "SpecSatisfaction",
    "Status",
    "Table",
    "TargetError",
    "Term",
    "Var",
    "__version__",
    "backtest",
    "convert",
    "datasets",
    "diagnostics",
    "experiments",
    "examples",
    "identify",
    "inference",
    "learn_parents",
    "mmd",
    "mmd_floor",
    "models",
    "options",
    "pair_plot",
    "spec_satisfaction",
    "table",
]
