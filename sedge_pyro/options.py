"""Checks of user options (sampler settings, model sizes, weights), shared by every layer: each
raises :class:`~sedge_pyro.OptionError` naming the option, its value and what was expected.

torch is imported inside the functions that need it (:func:`device`, the thread counts), so the
foundation (graph, datasets, diagnostics) can use these checks without loading torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sedge_pyro.errors import OptionError

if TYPE_CHECKING:
    import torch

__all__ = [
    "choice",
    "default_threads",
    "device",
    "flag",
    "fraction",
    "number",
    "seed",
    "set_threads",
    "threads",
    "whole",
]


def whole(
    name: str,
    value: Any,
    low: int = 1,
    *,
    none_ok: bool = False,
    error: type[Exception] = OptionError,
    expected: str | None = None,
    sep: str = "=",
) -> int | None:
    """A whole number ``>= low`` (or ``None`` when ``none_ok``).

    :param name: the option's name in the message.
    :param value: the value to check; ``bool`` is refused, numpy integers are accepted.
    :param low: the smallest value allowed.
    :param none_ok: accept ``None`` (and return it).
    :param error: the exception raised (:class:`~sedge_pyro.DataError` for a data size).
    :param expected: what the message says was expected (default ``"a whole number >= low"``).
    :param sep: between the name and the value in the message (``" "`` for a command-line flag).
    :returns: ``int(value)``, or ``None``.
    :raises OptionError: (or ``error``) naming ``name``, ``value`` and what was expected.

    >>> whole("steps", 3)
    3
    >>> whole("n", 0, expected="a positive integer number of rows")
    Traceback (most recent call last):
    ...
    sedge_pyro.errors.OptionError: n=0: expected a positive integer number of rows
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        extra = " or None" if none_ok else ""
        what = f"a whole number >= {low}{extra}" if expected is None else expected
        raise error(f"{name}{sep}{value!r}: expected {what}")
    return int(value)


#: seeds fit torch's 64-bit generators: 0 <= seed < 2**63
SEED_LIMIT = 2**63


def seed(value: Any, name: str = "seed") -> int:
    """A seed: a whole number from 0 to ``2**63 - 1`` (what torch's generators take)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 0 <= value < SEED_LIMIT
    ):
        raise OptionError(f"{name}={value!r}: expected a whole number from 0 to 2**63 - 1")
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
    import torch

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

    One thread below 8 cores, then a quarter of the cores, at most 4 (2 at 8 cores, 4 from 16).
    Tabular models (a few features, MLPs of 64 units, batches of 256) spend their time in many
    tiny kernels: their tensors, about 16,000 numbers, are under torch's grain size for
    splitting an element-wise kernel (32,768), so extra threads mostly add synchronisation,
    and threads that wait for a core another process holds cost far more. On a 2-core machine
    a fit ran as fast on 2 threads as on 1 when the machine was quiet, 3.5x slower beside one
    busy process and 8-16x slower when several shared it (``docs/benchmarks.md``, "Threads").
    Larger work (convolutions of the image models, thousands of draws) can use a few threads
    where many cores are free; the cap keeps most of a big machine for its other users.
    ``threads=`` on every fit and sample overrides this.

    :returns: the count, at least 1; cores are those this process may run on.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 4))


#: the count of the innermost explicit ``threads(n)`` block, kept by ``threads(None)`` inside it
_EXPLICIT: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "sedge_pyro_threads", default=None
)


def set_threads(n: int | None) -> None:
    """Use ``n`` torch threads for every later fit and sampler of this thread of control (a
    script, a notebook); ``None`` goes back to :func:`default_threads`.

    The ``threads=`` argument of a call, and an explicit :func:`threads` block, still win.

    :raises OptionError: when ``n`` is not a whole number >= 1 or ``None``.
    """
    import torch

    count = whole("threads", n, none_ok=True)
    _EXPLICIT.set(count)
    torch.set_num_threads(default_threads() if count is None else count)


@contextlib.contextmanager
def threads(n: int | None = None, name: str = "threads") -> Iterator[int]:
    """Run torch's CPU kernels on ``n`` intra-op threads inside the block, then restore.

    ``n=None`` inside an explicit ``threads(k)`` block keeps ``k`` (so ``sedge fit --threads
    4`` and ``with threads(4): model.fit(...)`` reach every fit and sampler within), after
    :func:`set_threads` keeps its count, and elsewhere means :func:`default_threads`.

    :param n: threads (``None``: the enclosing explicit count, else the default).
    :param name: the option's name in messages.
    :raises OptionError: when ``n`` is not a whole number >= 1.

    >>> import torch
    >>> with threads(3):
    ...     with threads():
    ...         torch.get_num_threads()
    3
    """
    import torch

    token = None
    if n is None:
        count = _EXPLICIT.get() or default_threads()
    else:
        count = int(whole(name, n) or 1)
        token = _EXPLICIT.set(count)
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)
        if token is not None:
            _EXPLICIT.reset(token)
