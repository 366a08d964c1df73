"""Data generators with their true mechanisms kept, for closed-form checks; one per module.

- :mod:`.tabular` (with :mod:`.mechanism`): :func:`synthetic`, any feature -> specification
  model with uniform features and noise, split by a novel region into Seen (S = 1) and Oracle
  (S = 0) rows, and :func:`paper_synthetic`, the paper's Sec. 5.1 / App. D.1 task.
- :mod:`.gaussian`: :func:`linear_gaussian`, a linear-Gaussian model with a closed-form
  posterior (the known answer of the samplers' tests).
- :mod:`.latent`: :func:`paper_latent`, App. B.1's latent setting (X and Z seen only through
  linear mixtures).
- :mod:`.shape_images`: :func:`shapes`, procedural shape images with held-out attribute
  combinations (Sec. 5.2 at laptop scale).
"""

from sedge_pyro.datasets.gaussian import LinearGaussian, linear_gaussian
from sedge_pyro.datasets.latent import LatentData, paper_latent
from sedge_pyro.datasets.mechanism import LINKS, Mechanism
from sedge_pyro.datasets.shape_images import (
    SHAPE_ATTRIBUTES,
    SHAPES_HELD_OUT,
    ShapesData,
    attribute_codes,
    image_array,
    shapes,
)
from sedge_pyro.datasets.tabular import SyntheticData, paper_synthetic, synthetic

__all__ = [
    "LINKS",
    "SHAPES_HELD_OUT",
    "SHAPE_ATTRIBUTES",
    "LatentData",
    "LinearGaussian",
    "Mechanism",
    "ShapesData",
    "SyntheticData",
    "attribute_codes",
    "image_array",
    "linear_gaussian",
    "paper_latent",
    "paper_synthetic",
    "shapes",
    "synthetic",
]
