"""Writing a user's file so that nothing they saved is lost: a temporary file of a unique name
beside the target, flushed to disk, then published under the target's name.

An interrupted write leaves an earlier file intact, two writers never mix their bytes, a
user's own file of any name is never touched, and without ``overwrite`` a file at the target,
also one that appears while writing, is never replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from sedge_pyro.errors import SedgeError

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """A fresh temporary path to write, published as ``path`` when the block ends cleanly.

    :param path: the file the user asked for.
    :param overwrite: replace an existing file.
    :returns: (yields) the temporary path; write it inside the block.
    :raises SedgeError: naming ``path`` when it is a directory, when it exists and
        ``overwrite`` is false, or when its folder cannot be written.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "draws.csv"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("x1,x2")
    >>> target.read_text()
    'x1,x2'
    """
    p = Path(path)
    if p.is_dir():
        raise SedgeError(f"{str(p)!r} is a directory: expected a file name")
    if os.path.lexists(p) and not overwrite:
        raise SedgeError(f"{str(p)!r} exists; pass overwrite=True to replace it")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp_beside(p)
    except OSError as err:
        raise SedgeError(f"{str(p)!r} cannot be written: {err}") from None
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the bytes are on disk before the name points at them
        finally:
            os.close(fd)
        _publish(tmp, p, overwrite)
    except OSError as err:
        raise SedgeError(f"{str(p)!r} cannot be written: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _new_temp_beside(p: Path) -> Path:
    """An empty file next to ``p`` whose name no other writer holds.

    ``O_EXCL`` makes the name ours; unlike ``tempfile.mkstemp`` (mode 0600) the file gets the
    mode the umask gives a new file, which the published file keeps.
    """
    for _ in range(100):
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {str(p)!r}")


def _publish(tmp: Path, p: Path, overwrite: bool) -> None:
    """Give the written file ``tmp`` its name ``p``; without ``overwrite`` never replace a
    file there, even one that appeared while ``tmp`` was written.
    """
    if overwrite:
        os.replace(tmp, p)
        return
    try:
        os.link(tmp, p)  # fails when p exists: the check and the publish are one step
    except FileExistsError:
        raise SedgeError(f"{str(p)!r} exists; pass overwrite=True to replace it") from None
    except OSError:
        # no hard links on this file system (FAT, some network mounts): check, then rename
        if os.path.lexists(p):
            raise SedgeError(f"{str(p)!r} exists; pass overwrite=True to replace it") from None
        os.replace(tmp, p)
