"""Convert a model file of the old pickle format into today's safetensors format.

Before issue 20, ``save`` wrote ``torch.save`` pickles, and opening a pickle runs any code it
carries. :func:`convert` is the one path in sedge-pyro that unpickles, and it does so only
when the user passes ``trust=True`` for a file from a source they trust. The state is
rebuilt into its model (which checks it) and written with that model's ``save``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sedge_pyro.errors import SedgeError
from sedge_pyro.experiments import cvae, image_sedge
from sedge_pyro.inference.model import SEDGEModel
from sedge_pyro.models import latent, sedge
from sedge_pyro.models.files import read_legacy

__all__ = ["convert"]

#: the ``"format"`` each model class writes -> the class
_BY_FORMAT: dict[Any, Any] = {
    sedge.FORMAT_VERSION: SEDGEModel,
    latent._FORMAT: latent.LatentSEDGE,
    image_sedge._FORMAT: image_sedge.ImageSEDGE,
    cvae._FORMAT: cvae.ConditionalImageVAE,
}


def convert(
    old: str | os.PathLike[str],
    new: str | os.PathLike[str],
    *,
    trust: bool = False,
    overwrite: bool = False,
) -> Path:
    """Rewrite an old-format (``torch.save`` pickle) model file in the safe format.

    **Opening the old file runs any code it carries**; pass ``trust=True`` only for a file
    you made yourself or got from a source you trust. The new file holds data only and can be
    shared. Works for :class:`~sedge_pyro.SEDGEModel`,
    :class:`~sedge_pyro.models.LatentSEDGE`, :class:`~sedge_pyro.experiments.ImageSEDGE` and
    :class:`~sedge_pyro.experiments.ConditionalImageVAE` files.

    :param old: the old file.
    :param new: the file to write (``.safetensors`` by convention); never the old one.
    :param trust: the statement that ``old`` comes from a trusted source (required).
    :param overwrite: replace an existing ``new``.
    :returns: the new file's path.
    :raises SedgeError: without ``trust``; naming ``old`` when it is not an old-format model
        file; naming ``new`` when it exists (and ``overwrite`` is false) or is ``old``.
    """
    if Path(old).resolve() == Path(new).resolve():
        raise SedgeError(f"{str(new)!r} is the old file itself: expected a new file name")
    state = read_legacy(old, trust=trust)
    cls = _BY_FORMAT.get(state.get("format"))
    if cls is None:
        raise SedgeError(
            f"{str(old)!r} has format {state.get('format')!r}: expected a saved SEDGEModel, "
            "LatentSEDGE, ImageSEDGE or ConditionalImageVAE"
        )
    model = cls.from_state(state, where=old)
    return model.save(new, overwrite=overwrite)
