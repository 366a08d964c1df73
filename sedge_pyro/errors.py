"""The one error hierarchy of sedge-pyro.

Every error a user can cause is a :class:`SedgeError`; its message names the culprit (node,
edge, column, argument) and says what was expected. Each subclass is also a
:class:`ValueError`, so ``except ValueError`` keeps working for code that does not know us.
"""

from __future__ import annotations

__all__ = [
    "AssumptionFailed",
    "DataError",
    "GraphError",
    "NotIdentifiable",
    "OptionError",
    "SamplingError",
    "SedgeError",
    "TargetError",
]


class SedgeError(Exception):
    """Base class of every error raised by sedge-pyro for bad input."""


class GraphError(SedgeError, ValueError):
    """A graph violates the structural assumptions of SEDGE (paper Sec. 3.1)."""


class TargetError(SedgeError, ValueError):
    """A target names an unknown specification or holds a value of the wrong kind."""


class DataError(SedgeError, ValueError):
    """A data frame lacks a column, holds NaNs, or otherwise cannot be used."""


class OptionError(SedgeError, ValueError):
    """An argument or option (a structure, a prior kind, a layer size) has a bad value."""


class NotIdentifiable(SedgeError):
    """The requested distribution cannot be constructed from the training data."""


class AssumptionFailed(SedgeError, ValueError):
    """An assumption the identification rests on fails on the training rows (``strict=True``).

    The message names each failed assumption (``overlap``, ``independence``, ...) and what was
    measured.
    """


class SamplingError(SedgeError, RuntimeError):
    """A sampler diverged (a NaN or infinite draw); the message names the method and step."""
