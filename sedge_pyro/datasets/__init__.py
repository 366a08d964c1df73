"""The paper's synthetic data generators, with the true mechanism kept for closed-form checks.

:func:`synthetic` simulates any feature -> specification model with uniform features and
uniform additive noise, ``Z_i = link(w_i^T V_i) + b_i + e_i``, ``e_i ~ U(0, w)`` (or a binary
``Z_i = 1[m_i(x) + e_i > threshold]``), and splits the rows by a novel region: rows whose
specifications all fall in it are the Oracle (S = 0), the rest are Seen (S = 1). The returned
:class:`SyntheticData` knows the true mechanism, so the probability that a generated ``x``
carries the novel combination is exact (:meth:`SyntheticData.region_probability`), not
estimated.

:func:`paper_synthetic` is Sec. 5.1 / App. D.1 (with the paper's typo fixed: the shared feature
is X2): ``X1, X3 ~ U(0, 1)``, ``X2 ~ U(0.75, 0.8)``, ``Z1 = 0.8 X1 + 0.6 X2 + e1``,
``Z2 = 0.6 X3 + 0.8 X2 + e2``, ``e1, e2 ~ U(0, 0.2)``; rows with ``Z1 < 0.8`` and ``Z2 > 1.0``
are the Oracle (S = 0), the rest are Seen (S = 1).

:func:`paper_latent` is App. B.1's latent setting: :func:`paper_synthetic`'s X and Z observed
only through random linear mixtures ``Y_X = X A_X``, ``Y_Z = Z A_Z``.

:func:`linear_gaussian` is a linear-Gaussian model with a closed-form posterior (the known
answer of the samplers' tests), and :func:`shapes` renders procedural shape images with
held-out attribute combinations (Sec. 5.2 at laptop scale).

One generator per module: :mod:`.tabular` (with :mod:`.mechanism`), :mod:`.gaussian`,
:mod:`.latent`, :mod:`.shape_images`.
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
