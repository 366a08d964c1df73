"""Fitting (the SVI loop, structure learning of Eq. 5) and sampling (``sample`` and its
methods, the compiled :class:`Target`, and :class:`Samples`).
"""

from sedge_pyro.inference.fit import History, fit_component
from sedge_pyro.inference.sample import METHODS, Draws, check_finite, sample
from sedge_pyro.inference.samples import Samples
from sedge_pyro.inference.structure import (
    DEFAULT_BETA,
    StructureResult,
    learn_parents,
    learn_structure,
)
from sedge_pyro.inference.target import LOSSES, Problem, SpecEvent, Target

__all__ = [
    "DEFAULT_BETA",
    "LOSSES",
    "METHODS",
    "Draws",
    "History",
    "Problem",
    "Samples",
    "SpecEvent",
    "Target",
    "check_finite",
    "sample",
    "StructureResult",
    "fit_component",
    "learn_parents",
    "learn_structure",
]
