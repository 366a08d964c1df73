"""sedge-pyro: structural extrapolated data generation on Pyro.

>>> import sedge_pyro as sp
>>> g = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})
>>> sp.identify(g, target={"z1": 1, "z2": 1}).status
<Status.CONSERVATIVE: 'conservative'>
"""

from sedge_pyro import examples
from sedge_pyro.errors import DataError, GraphError, NotIdentifiable, SedgeError, TargetError
from sedge_pyro.expr import Factor, Factorization, Interval, Term, Var
from sedge_pyro.graph import SpecGraph
from sedge_pyro.identify import Assumption, Check, Component, Identification, Status, identify

__version__ = "0.1.0"

__all__ = [
    "Assumption",
    "Check",
    "Component",
    "DataError",
    "Factor",
    "Factorization",
    "GraphError",
    "Identification",
    "Interval",
    "NotIdentifiable",
    "SedgeError",
    "SpecGraph",
    "Status",
    "TargetError",
    "Term",
    "Var",
    "__version__",
    "examples",
    "identify",
]
