"""Procedural shape images with held-out attribute combinations (Sec. 5.2 at laptop scale):
:func:`shapes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.errors import DataError, OptionError
from sedge_pyro.options import whole

#: the attributes of :func:`shapes` and their values, in label-code order
SHAPE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle"),
    "colour": ("red", "green", "blue"),
    "size": ("small", "large"),
    "position": ("left", "right"),
}

#: the default held-out combinations: a Latin-square diagonal of shape x colour, so every
#: shape and every colour is still seen, each with the two other values of the other
SHAPES_HELD_OUT: tuple[dict[str, str], ...] = (
    {"shape": "circle", "colour": "blue"},
    {"shape": "square", "colour": "red"},
    {"shape": "triangle", "colour": "green"},
)

_RGB = {"red": (0.9, 0.15, 0.15), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.3, 0.95)}
_RADIUS = {"small": (4.0, 5.5), "large": (7.0, 9.0)}
_SQUARE_HALF = 0.9  # a square's half side, in units of the radius


@dataclass
class ShapesData:
    """A procedural image set split by held-out attribute combinations (see :func:`shapes`).

    :param images: the training images (S = 1), ``(N, 3, size, size)`` float32 in ``[0, 1]``.
    :param labels: their attributes, one row per image: a categorical column per attribute
        of :data:`SHAPE_ATTRIBUTES`, then the drawn geometry ``cx``, ``cy``, ``radius`` (pixels).
    :param held_images: images of the held-out combinations (S = 0): for evaluation and for
        the judge classifier only, never for training a generator.
    :param held_labels: their attributes.
    :param held_out: the held-out combinations (partial assignments of attribute values).
    """

    images: np.ndarray
    labels: pd.DataFrame
    held_images: np.ndarray
    held_labels: pd.DataFrame
    held_out: tuple[dict[str, str], ...]

    def codes(self, labels: pd.DataFrame | None = None) -> pd.DataFrame:
        """Integer codes of the attributes (the order of :data:`SHAPE_ATTRIBUTES`).

        :param labels: :attr:`labels` (default) or :attr:`held_labels`.
        """
        df = self.labels if labels is None else labels
        return pd.DataFrame({a: df[a].cat.codes.astype(np.int64) for a in SHAPE_ATTRIBUTES})

    def is_held_out(self, labels: pd.DataFrame) -> np.ndarray:
        """Which rows of ``labels`` carry one of the held-out combinations."""
        return _matches(labels, self.held_out)


def _matches(labels: pd.DataFrame, combos: tuple[dict[str, str], ...]) -> np.ndarray:
    out = np.zeros(len(labels), dtype=bool)
    for combo in combos:
        hit = np.ones(len(labels), dtype=bool)
        for attr, value in combo.items():
            hit &= (labels[attr] == value).to_numpy()
        out |= hit
    return out


def _check_held_out(held_out: Any) -> tuple[dict[str, str], ...]:
    try:
        combos = tuple(dict(c) for c in held_out)
    except (TypeError, ValueError):
        raise OptionError(
            f"held_out={held_out!r}: expected a list of dicts such as "
            "{'shape': 'circle', 'colour': 'blue'}"
        ) from None
    for combo in combos:
        if len(combo) < 2:
            raise OptionError(
                f"held_out combination {combo!r}: expected at least two attributes (a single "
                "value held out would never be seen alone, against Assumption 1)"
            )
        for attr, value in combo.items():
            if attr not in SHAPE_ATTRIBUTES:
                raise OptionError(
                    f"held_out combination {combo!r}: unknown attribute {attr!r}; expected one "
                    f"of {list(SHAPE_ATTRIBUTES)}"
                )
            if value not in SHAPE_ATTRIBUTES[attr]:
                raise OptionError(
                    f"held_out combination {combo!r}: {attr}={value!r} is not one of "
                    f"{list(SHAPE_ATTRIBUTES[attr])}"
                )
    return combos


def _render(labels: pd.DataFrame, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased shapes on a dark noisy background, ``(N, 3, size, size)`` float32."""
    n = len(labels)
    grid = np.arange(size, dtype=np.float32) + 0.5
    u, v = grid[None, None, :], grid[None, :, None]  # columns (x), rows (y)
    cx = labels["cx"].to_numpy(np.float32)[:, None, None]
    cy = labels["cy"].to_numpy(np.float32)[:, None, None]
    r = labels["radius"].to_numpy(np.float32)[:, None, None]
    shape = labels["shape"].to_numpy()[:, None, None]
    # signed distance to each shape's boundary (negative inside), in pixels
    circle = np.sqrt((u - cx) ** 2 + (v - cy) ** 2) - r
    square = np.maximum(np.abs(u - cx), np.abs(v - cy)) - _SQUARE_HALF * r
    # an upward equilateral triangle inscribed in the circle of radius r: three half-planes
    tri = np.full_like(circle, -np.inf)
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        nx, ny = -np.cos(angle), np.sin(angle)  # outward normal, image y axis points down
        tri = np.maximum(tri, (u - cx) * nx + (v - cy) * ny - r / 2)
    dist = np.where(shape == "circle", circle, np.where(shape == "square", square, tri))
    cover = np.clip(0.5 - dist, 0.0, 1.0)[:, None]  # (N, 1, H, W)
    rgb = np.array([_RGB[c] for c in labels["colour"]], dtype=np.float32)
    rgb = np.clip(rgb + rng.uniform(-0.06, 0.06, rgb.shape).astype(np.float32), 0, 1)
    background = 0.1 + rng.normal(0.0, 0.02, (n, 3, size, size)).astype(np.float32)
    image = background * (1 - cover) + rgb[:, :, None, None] * cover
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def image_array(images: Any, size: int, name: str = "images") -> np.ndarray:
    """``images`` as a float32 array ``(N, 3, size, size)``, N >= 1, finite.

    :raises DataError: naming ``name`` with the shape found, or for NaN / infinite pixels.
    """
    a = np.asarray(images, dtype=np.float32)
    if a.ndim != 4 or a.shape[1:] != (3, size, size) or len(a) == 0:
        raise DataError(f"{name} have shape {a.shape}: expected (N, 3, {size}, {size}), N >= 1")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} hold NaN or infinite values: expected finite pixels")
    return a


def attribute_codes(labels: Any, attributes: Mapping[str, Any]) -> np.ndarray:
    """Integer codes ``(N, n_attributes)`` of the attribute columns of ``labels``, each value
    coded by its position in ``attributes[name]``.

    :raises DataError: naming a missing column or an unknown value.

    >>> attribute_codes(pd.DataFrame({"colour": ["blue", "red"]}), {"colour": ["red", "blue"]})
    array([[1],
           [0]])
    """
    if not isinstance(labels, pd.DataFrame):
        raise DataError(f"labels is a {type(labels).__name__}: expected a DataFrame")
    cols = []
    for attr, values in attributes.items():
        if attr not in labels.columns:
            raise DataError(f"labels have no column {attr!r}: expected {list(attributes)}")
        col = labels[attr].astype(str)
        values = [str(v) for v in values]
        bad = sorted(set(col) - set(values))
        if bad:
            raise DataError(f"labels column {attr!r} holds {bad}: expected {values}")
        cols.append(col.map({v: i for i, v in enumerate(values)}).to_numpy(np.int64))
    return np.stack(cols, 1)


def shapes(
    n: int = 6000,
    seed: int = 0,
    *,
    size: int = 32,
    held_out: Any = SHAPES_HELD_OUT,
) -> ShapesData:
    r"""A procedural image set for extrapolated image generation (Sec. 5.2 at laptop scale).

    Each image shows one shape on a dark, slightly noisy background. Its attributes (the
    *text concepts*, i.e. the specifications) are drawn independently and uniformly:
    ``shape`` (circle, square, triangle), ``colour`` (red, green, blue, each with a small
    per-image jitter), ``size`` (small: radius 4-5.5 px, large: 7-9 px at 32 px) and
    ``position`` (left or right half; the vertical position is uniform). Images whose
    attributes match a ``held_out`` combination form the S = 0 split and never appear in
    :attr:`ShapesData.images`; each single value still does (Assumption 1), which is checked.

    The default holds out circle+blue, square+red and triangle+green: a Latin-square diagonal,
    so every shape is seen in two colours and every colour on two shapes. Nothing is
    downloaded; images are rendered with numpy (anti-aliased edges), deterministically for a
    seed.

    :param n: images drawn before the split (about 1/3 are held out with the default).
    :param seed: seed of the attributes, geometry, colour jitter and background noise.
    :param size: image side in pixels (geometry scales with it), at least 16.
    :param held_out: combinations held out, each a dict of at least two attributes.
    :returns: :class:`ShapesData`.
    :raises DataError: when ``n`` is not a positive integer.
    :raises OptionError: for a bad ``size`` or ``held_out`` (naming the combination), or
        when the held-out combinations remove every image of some value.

    >>> data = shapes(300, seed=0)
    >>> data.images.shape[1:], data.images.dtype.name
    ((3, 32, 32), 'float32')
    >>> bool(data.is_held_out(data.labels).any()), bool(data.is_held_out(data.held_labels).all())
    (False, True)
    """
    whole("n", n, error=DataError, expected="a positive integer number of images")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 16:
        raise OptionError(f"size={size!r}: expected an integer image side >= 16 pixels")
    combos = _check_held_out(held_out)
    # every value must stay seen alone: some full combination with it is not held out
    full = pd.MultiIndex.from_product(list(SHAPE_ATTRIBUTES.values()), names=list(SHAPE_ATTRIBUTES))
    grid = full.to_frame(index=False)
    kept = grid[~_matches(grid, combos)]
    for attr, values in SHAPE_ATTRIBUTES.items():
        for value in values:
            if not (kept[attr] == value).any():
                raise OptionError(
                    f"held_out={list(combos)!r} removes every image with {attr}={value!r}: "
                    "each single value must stay seen (Assumption 1)"
                )
    rng = np.random.default_rng(seed)
    n = int(n)
    scale = size / 32.0
    labels = pd.DataFrame(
        {attr: rng.integers(0, len(values), n) for attr, values in SHAPE_ATTRIBUTES.items()}
    )
    for attr, values in SHAPE_ATTRIBUTES.items():
        labels[attr] = pd.Categorical.from_codes(labels[attr].to_numpy(), categories=values)
    left = (labels["position"] == "left").to_numpy()
    large = (labels["size"] == "large").to_numpy()
    labels["cx"] = scale * np.where(left, rng.uniform(8.0, 13.0, n), rng.uniform(19.0, 24.0, n))
    labels["cy"] = scale * rng.uniform(10.0, 22.0, n)
    labels["radius"] = scale * np.where(
        large, rng.uniform(*_RADIUS["large"], n), rng.uniform(*_RADIUS["small"], n)
    )
    images = _render(labels, int(size), rng)
    held = _matches(labels, combos)
    return ShapesData(
        images=images[~held],
        labels=labels[~held].reset_index(drop=True),
        held_images=images[held],
        held_labels=labels[held].reset_index(drop=True),
        held_out=combos,
    )
