"""The values of ``sedge`` arguments, parsed from their text: targets (``z1=1 z2>1.0``),
sampler options (``--option steps=500``), per-node choices and layer sizes. Each bad value
raises a :class:`~sedge_pyro.SedgeError` naming the argument.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sedge_pyro.errors import OptionError, TargetError
from sedge_pyro.expr import Interval

_TARGET = re.compile(r"^(?P<name>[^=<>]+?)\s*(?P<op><=|>=|=|<|>)\s*(?P<value>.+)$")


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _number(text: str, token: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TargetError(f"target {token!r}: {text!r} is not a number") from None


def parse_target(tokens: Sequence[str]) -> dict[str, Any]:
    """Parse command-line target tokens into a target mapping.

    ``z1=1`` is a point (numbers become int or float, anything else a category);
    ``z1<0.8`` / ``z1<=0.8`` is ``Interval(high=0.8)``, ``z2>1`` / ``z2>=1`` is
    ``Interval(low=1)``, and ``z1=0.2..0.8`` is ``Interval(0.2, 0.8)`` (bounds included).

    :param tokens: the tokens.
    :returns: spec name -> value or :class:`Interval`.
    :raises TargetError: naming the token that does not parse or a spec given twice.

    >>> parse_target(["z1=1", "z2>1.0"])
    {'z1': 1, 'z2': Interval(low=1.0, high=None)}
    """
    target: dict[str, Any] = {}
    for token in tokens:
        match = _TARGET.match(token.strip())
        if not match:
            raise TargetError(
                f"target {token!r}: expected NAME=VALUE, NAME<VALUE, NAME>VALUE or NAME=LOW..HIGH"
            )
        name, op, value = match.group("name").strip(), match.group("op"), match.group("value")
        if value.lstrip()[:1] in ("=", "<", ">"):
            raise TargetError(
                f"target {token!r}: two comparison signs; expected NAME=VALUE, NAME<VALUE, "
                "NAME<=VALUE, NAME>VALUE, NAME>=VALUE or NAME=LOW..HIGH"
            )
        if name in target:
            raise TargetError(f"target names {name!r} twice: expected each specification once")
        if op in ("<", "<="):
            target[name] = Interval(high=_number(value, token))
        elif op in (">", ">="):
            target[name] = Interval(low=_number(value, token))
        elif ".." in value:
            low, high = value.split("..", 1)
            target[name] = Interval(_number(low, token), _number(high, token))
        else:
            target[name] = _scalar(value.strip())
    return target


def parse_options(tokens: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` tokens (``--option``) into a sampler's keyword arguments.

    Values are read as JSON where they parse (``500``, ``1e-3``, ``true``, ``null``,
    ``[64, 64]``) and kept as text otherwise (``loss=nll``).

    :param tokens: the tokens (``None``: none).
    :returns: option name -> value.
    :raises OptionError: naming a token without ``=`` or an option given twice.

    >>> parse_options(["steps=500", "step_size=1e-3", "loss=nll", "adjust=true"])
    {'steps': 500, 'step_size': 0.001, 'loss': 'nll', 'adjust': True}
    """
    options: dict[str, Any] = {}
    for token in tokens or ():
        key, sep, text = token.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(f"option {token!r}: expected KEY=VALUE, e.g. --option steps=500")
        if key in options:
            raise OptionError(f"option {key!r} is given twice: expected each option once")
        try:
            options[key] = json.loads(text)
        except ValueError:
            options[key] = text.strip()
    return options


def _choice(text: str | None, name: str) -> str | dict[str, str] | None:
    """``gaussian`` as is; ``z1=gaussian,z2=flow`` as a dict node -> choice."""
    if text is None or "=" not in text:
        return text
    out: dict[str, str] = {}
    for item in text.split(","):
        node, sep, value = item.partition("=")
        if not sep or not node.strip() or not value.strip():
            raise OptionError(
                f"--{name} {text!r}: expected one choice or NODE=CHOICE pairs separated by "
                "commas, e.g. z1=gaussian,z2=flow"
            )
        out[node.strip()] = value.strip()
    return out


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise OptionError(f"--hidden {text!r}: expected layer sizes like 64,64") from None
    if any(h < 1 for h in sizes):
        raise OptionError(f"--hidden {text!r}: expected positive layer sizes like 64,64")
    return sizes
