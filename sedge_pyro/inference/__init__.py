"""Fitting (the SVI loop, structure learning of Eq. 5) and sampling (``sample`` and its
methods, the compiled :class:`Target`, and :class:`Samples`).
"""

from sedge_pyro.inference.draws import Draws, check_finite
from sedge_pyro.inference.fit import History, fit_component, schedule
from sedge_pyro.inference.model import SEDGEModel
from sedge_pyro.inference.sample import METHODS, sample
from sedge_pyro.inference.samples import Comparison, Samples
from sedge_pyro.inference.structure import (
    DEFAULT_BETA,
    StructureResult,
    learn_parents,
    learn_structure,
)
from sedge_pyro.inference.target import LOSSES, Problem, SpecEvent, Target
from sedge_pyro.inference.verdict import Verdict

__all__ = [
    "SEDGEModel",
    "DEFAULT_BETA",
    "LOSSES",
    "METHODS",
    "Comparison",
    "Draws",
    "History",
    "Problem",
    "Samples",
    "SpecEvent",
    "StructureResult",
    "Target",
    "Verdict",
    "check_finite",
    "fit_component",
    "learn_parents",
    "learn_structure",
    "sample",
    "schedule",
]
