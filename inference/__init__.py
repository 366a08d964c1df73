"""Fitting: the SVI loop every component uses, and structure learning (Eq. 5)."""

from sedge_pyro.inference.fit import History, fit_component
from sedge_pyro.inference.structure import (
    DEFAULT_BETA,
    StructureResult,
    learn_parents,
    learn_structure,
)

__all__ = [
    "DEFAULT_BETA",
    "History",
    "StructureResult",
    "fit_component",
    "learn_parents",
    "learn_structure",
]
