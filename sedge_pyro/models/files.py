"""Model files that hold data, never code: safetensors tensors and a JSON header.

A fitted model's state (its configuration, column statistics, history, training rows and the
weights of every component) is a tree of dicts, lists, numbers, strings, numpy arrays and
tensors. :func:`write_state` splits it into the tensors, stored by ``safetensors`` (the
format the field shares models in, read without unpickling), and the rest, stored as JSON in
the same file's header metadata. :func:`read_state` puts the tree back. Opening a file never
runs code from it: a hostile or damaged file is a :class:`~sedge_pyro.SedgeError` naming the
path.

Files written by sedge-pyro before this format were ``torch.save`` pickles, which can run
arbitrary code when opened. They are refused; :func:`read_legacy` opens one only when the
user says they trust it (``sedge convert OLD NEW --trust``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from sedge_pyro.atomic import atomic_path
from sedge_pyro.errors import SedgeError
from sedge_pyro.options import device as check_device
from sedge_pyro.version import __version__

__all__ = [
    "LegacyFormatError",
    "is_legacy",
    "load_model",
    "read_legacy",
    "read_state",
    "rebuilding",
    "write_state",
]

#: the header key naming this container and its version
CONTAINER = "sedge-pyro/safetensors-1"
_KEY_CONTAINER = "sedge_pyro.container"
_KEY_STATE = "sedge_pyro.state"
_KEY_VERSION = "sedge_pyro.version"
# one-key dicts with these keys stand for a tensor, a numeric array or another array
_TENSOR, _ARRAY, _OBJECTS = "__tensor__", "__ndarray__", "__objects__"
_MARKERS = (_TENSOR, _ARRAY, _OBJECTS)


class LegacyFormatError(SedgeError):
    """A model file in the old pickle format, which is not opened (it could run code)."""


# --------------------------------------------------------------------------- packing


def _pack(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON-ready data, its tensors and numeric arrays moved to ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: path}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf" and obj.dtype.itemsize <= 8 and obj.dtype != np.uint16:
            tensors[path] = torch.from_numpy(np.ascontiguousarray(obj).copy())
            return {_ARRAY: path}
        return {_OBJECTS: [_scalar(v) for v in obj.ravel().tolist()], "shape": list(obj.shape)}
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"state key {key!r} at {path!r} is not a string")
            # a user's name that looks like a marker gets one more "__" (undone on reading)
            stored = f"__{key}" if key.startswith("__") else key
            out[stored] = _pack(value, f"{path}/{key}", tensors)
        return out
    if isinstance(obj, list | tuple):
        return [_pack(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    return _scalar(obj)


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in a model file")


def _unpack(obj: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, dict):
        if len(obj) in (1, 2) and next(iter(obj)) in _MARKERS:
            return _unmark(obj, tensors, where)
        return {
            (key[2:] if key.startswith("__") else key): _unpack(value, tensors, where)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [_unpack(v, tensors, where) for v in obj]
    return obj


def _unmark(obj: dict[str, Any], tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    marker = next(iter(obj))
    if marker == _OBJECTS:
        values, shape = obj[_OBJECTS], obj.get("shape")
        if not isinstance(values, list) or not isinstance(shape, list):
            raise SedgeError(f"{where}: a stored array is malformed")
        out = np.empty(len(values), dtype=object)
        out[:] = values
        try:
            return out.reshape(shape)
        except (ValueError, TypeError):
            raise SedgeError(
                f"{where}: a stored array has {len(values)} values for {shape}"
            ) from None
    key = obj[marker]
    if not isinstance(key, str) or key not in tensors:
        raise SedgeError(f"{where}: the header names a tensor {key!r} the file does not hold")
    return tensors[key] if marker == _TENSOR else tensors[key].numpy()


# --------------------------------------------------------------------------- writing


def write_state(
    state: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``state`` to ``path`` as safetensors with the rest of the tree in its header.

    The bytes go to a temporary file of a unique name in the same folder, which is renamed
    to ``path`` once complete: an interrupted save leaves an earlier file intact, and two
    saves at once never mix their bytes. With ``overwrite=False`` a file at ``path``, also
    one that appears while writing, is never replaced.

    :param state: a tree of dicts (string keys), lists, tuples, numbers, strings, ``None``,
        numpy arrays and tensors; it must carry a ``"format"`` entry.
    :param path: the file.
    :param overwrite: replace an existing file.
    :returns: the path.
    :raises SedgeError: when the file exists and ``overwrite`` is false, naming it.
    """
    tensors: dict[str, torch.Tensor] = {}
    tree = _pack(state, "", tensors)
    metadata = {
        _KEY_CONTAINER: CONTAINER,
        _KEY_STATE: json.dumps(tree, allow_nan=True),
        _KEY_VERSION: __version__,
    }
    payload = safetensors.torch.save(tensors, metadata=metadata)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


# --------------------------------------------------------------------------- reading


def _check_file(p: Path, kind: str) -> None:
    if p.is_dir():
        raise SedgeError(f"{str(p)!r} is a directory: expected a saved {kind}")
    if not p.exists():
        raise SedgeError(f"{str(p)!r} does not exist: expected a saved {kind}")


def is_legacy(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts like a ``torch.save`` zip or a pickle (the old format) rather
    than a safetensors file (an 8-byte header length, then the JSON header).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return False
    return head.startswith(b"PK\x03\x04") or (
        len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    )


def read_state(
    path: str | os.PathLike[str], fmt: Any, kind: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a file written by :func:`write_state` whose state carries ``"format": fmt``.

    Nothing in the file is executed: the tensors are parsed by safetensors, the rest by
    :func:`json.loads`. The tensors come back on the CPU.

    :param path: the file.
    :param fmt: the ``"format"`` value the state must carry.
    :param kind: the class name, for messages (``"a saved <kind>"``).
    :returns: the state and the file's header metadata.
    :raises LegacyFormatError: for a file in the old pickle format, saying how to convert it.
    :raises SedgeError: naming the path for a missing, unreadable, damaged or foreign file.
    """
    p = Path(path)
    _check_file(p, kind)
    if is_legacy(p):
        raise LegacyFormatError(
            f"{str(p)!r} is a saved {kind} in the old pickle format, which can run code when "
            "opened, so sedge-pyro does not open it. If you trust where the file came from, "
            f"convert it once: `sedge convert {str(p)} NEW.safetensors --trust` (or "
            "sp.convert(path, new_path, trust=True))"
        )
    try:
        with safetensors.safe_open(str(p), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as err:  # noqa: BLE001 - whatever the parser says, the file is unusable
        raise SedgeError(
            f"{str(p)!r} is not a saved {kind}: not a readable safetensors file "
            f"({type(err).__name__}: {str(err)[:200]})"
        ) from None
    if metadata.get(_KEY_CONTAINER) != CONTAINER or _KEY_STATE not in metadata:
        raise SedgeError(
            f"{str(p)!r} is not a saved {kind}: a safetensors file without sedge-pyro's header"
        )
    try:
        tree = json.loads(metadata[_KEY_STATE])
    except (ValueError, RecursionError):
        raise SedgeError(f"{str(p)!r} is not a saved {kind}: its header is not JSON") from None
    state = _unpack(tree, tensors, repr(str(p)))
    if not isinstance(state, dict) or state.get("format") != fmt:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise SedgeError(f"{str(p)!r} is not a saved {kind} of format {fmt!r} (it says {got!r})")
    return state, metadata


def load_model(cls: Any, path: str | os.PathLike[str], fmt: Any, device: Any) -> Any:
    """``cls.from_state`` of the file's state (format ``fmt``), moved to ``device``.

    :raises OptionError: for a device that does not exist here (checked before reading).
    :raises SedgeError: as :func:`read_state`, and naming the path for a damaged state.
    """
    dev = check_device(device)
    state, _ = read_state(path, fmt, cls.__name__)
    return cls.from_state(state, where=path).to(dev)


def read_legacy(path: str | os.PathLike[str], *, trust: bool = False) -> dict[str, Any]:
    """Open a model file of the old ``torch.save`` format. **This unpickles the file, which
    runs any code it carries**: the one place sedge-pyro does so, and only with ``trust=True``.

    :param path: the old file.
    :param trust: the user's statement that the file comes from a source they trust.
    :returns: the saved state.
    :raises SedgeError: without ``trust``, or naming the path when the file is not a saved
        state of the old format.
    """
    p = Path(path)
    _check_file(p, "model file of the old format")
    if not trust:
        raise SedgeError(
            f"{str(p)!r}: opening an old-format model file runs any code inside it; pass "
            "trust=True (--trust) only for a file from a source you trust"
        )
    if not is_legacy(p):
        raise SedgeError(f"{str(p)!r} is not a model file of the old (torch.save) format")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise SedgeError(f"{str(p)!r} is not a readable old-format model file: {err}") from None
    if not isinstance(state, dict) or "format" not in state:
        raise SedgeError(f"{str(p)!r} holds no saved sedge-pyro model")
    return state


@contextlib.contextmanager
def rebuilding(path: str | os.PathLike[str], kind: str) -> Iterator[None]:
    """Turn any failure while rebuilding a model from a file's state into a
    :class:`~sedge_pyro.SedgeError` naming the file (a missing key, an unknown class, a bad
    configuration, weights of the wrong shape).
    """
    try:
        yield
    except SedgeError as err:
        if str(path) in str(err):
            raise
        raise SedgeError(f"{str(path)!r} is a damaged saved {kind}: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as err:
        what = f"missing entry {err}" if isinstance(err, KeyError) else f"{err}"
        raise SedgeError(f"{str(path)!r} is a damaged saved {kind}: {what[:300]}") from None
