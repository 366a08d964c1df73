"""Checks of user options (sampler settings, model sizes, weights), shared by every layer: each
raises :class:`~sedge_pyro.OptionError` naming the option, its value and what was expected.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from sedge_pyro.errors import OptionError

__all__ = ["choice", "default_threads", "device", "flag", "fraction", "number", "threads", "whole"]


def whole(name: str, value: Any, low: int = 1, *, none_ok: bool = False) -> int | None:
    """A whole number ``>= low`` (or ``None`` when ``none_ok``)."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        extra = " or None" if none_ok else ""
        raise OptionError(f"{name}={value!r}: expected a whole number >= {low}{extra}")
    return int(value)


def number(
    name: str, value: Any, *, positive: bool = True, finite: bool = True, none_ok: bool = False
) -> float | None:
    """A number ``> 0`` (``positive``) or ``>= 0``; finite unless ``finite=False``."""
    if value is None and none_ok:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and not math.isnan(value) and (math.isfinite(value) or not finite)
    if not ok or (value <= 0 if positive else value < 0):
        what = "a finite number" if finite else "a number"
        what += " > 0" if positive else " >= 0"
        raise OptionError(f"{name}={value!r}: expected {what}{' or None' if none_ok else ''}")
    return float(value)


def fraction(name: str, value: Any, *, none_ok: bool = False) -> float | None:
    """A number strictly between 0 and 1 (or ``None`` when ``none_ok``)."""
    if value is None and none_ok:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0 < value < 1:
        extra = " or None" if none_ok else ""
        raise OptionError(f"{name}={value!r}: expected a number in (0, 1){extra}")
    return float(value)


def flag(name: str, value: Any) -> bool:
    """``True`` or ``False``."""
    if not isinstance(value, bool):
        raise OptionError(f"{name}={value!r}: expected True or False")
    return value


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """One of ``options``."""
    if value not in options:
        raise OptionError(f"{name}={value!r}: expected one of {', '.join(options)}")
    return str(value)


def device(value: Any, name: str = "device") -> torch.device:
    """A torch device that exists here: ``"cpu"``, ``"cuda"`` (when available), ``"cuda:1"``..."""
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        raise OptionError(
            f"{name}={value!r}: expected a torch device such as 'cpu' or 'cuda'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"{name}={value!r} but CUDA is not available: use {name}='cpu'")
    return dev


def default_threads() -> int:
    """The number of torch threads sedge-pyro uses when the user names none.

    Small models (a few features, MLPs of 64 units) spend their time in many tiny kernels, where
    extra threads mostly add synchronisation: one or two threads are fastest, and far faster
    than torch's default of one per core when other processes share the machine.
    """
    return max(1, min(2, os.cpu_count() or 1))


@contextlib.contextmanager
def threads(n: int | None = None, name: str = "threads") -> Iterator[int]:
    """Run torch's CPU kernels on ``n`` intra-op threads inside the block, then restore.

    :param n: threads (``None``: :func:`default_threads`).
    :param name: the option's name in messages.
    :raises OptionError: when ``n`` is not a whole number >= 1.
    """
    count = default_threads() if n is None else whole(name, n)
    assert count is not None
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)
