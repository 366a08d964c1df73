import math

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.diagnostics import mmd

FRAME_X, FRAME_Y = pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"y": [1.0, 2.0]})


def test_mmd_known_value_of_two_points():
    value = mmd([[0.0]], [[1.0]], bandwidth=1.0, unbiased=False)
    assert math.isclose(value.mmd2, 2 - 2 * math.exp(-0.5), rel_tol=1e-12)
    assert math.isclose(value, math.sqrt(2 - 2 * math.exp(-0.5)), rel_tol=1e-12)


def test_unbiased_mmd_matches_a_direct_u_statistic():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 2)), rng.normal(1.0, 1.0, size=(5, 2))

    def k(u, v):
        return math.exp(-np.sum((u - v) ** 2) / 2)

    xx = sum(k(a[i], a[j]) for i in range(6) for j in range(6) if i != j) / 30
    yy = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(u, v) for u in a for v in b) / 30
    assert math.isclose(mmd(a, b, bandwidth=1.0).mmd2, xx + yy - 2 * xy, rel_tol=1e-10)


def test_permutation_test_separates_same_and_shifted():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
    shifted = rng.normal(0.4, 1.0, size=(300, 3))
    same = mmd(a, b, permutations=200, seed=0)
    diff = mmd(a, shifted, permutations=200, seed=0)
    assert same.p_value > 0.01
    assert diff.p_value < 0.01 and diff > same


def test_p_values_are_roughly_uniform_under_the_null():
    rng = np.random.default_rng(2)
    ps = [
        mmd(rng.normal(size=(40, 2)), rng.normal(size=(40, 2)), permutations=50, seed=s).p_value
        for s in range(40)
    ]
    assert 0.3 < float(np.mean(ps)) < 0.7


def test_frames_align_by_column_and_standardize():
    rng = np.random.default_rng(3)
    a = pd.DataFrame({"x1": rng.normal(size=50), "x2": 1000 * rng.normal(size=50)})
    b = a[["x2", "x1"]].copy()
    assert mmd(a, b, unbiased=False) == 0.0
    raw = mmd(a, a.assign(x1=a.x1 + 1.0), bandwidth=1.0, unbiased=False)
    scaled = mmd(a, a.assign(x1=a.x1 + 1.0), bandwidth=1.0, unbiased=False, standardize=True)
    assert scaled.bandwidth == raw.bandwidth == 1.0 and scaled != raw


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "fragment"),
    [
        (([[0.0, 1.0]], [[0.0]]), {"unbiased": False}, sp.DataError, "features"),
        (([[0.0]], [[1.0]]), {}, sp.DataError, "two or more"),
        (([[np.nan], [1.0]], [[0.0], [1.0]]), {}, sp.DataError, "NaN"),
        (
            (pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"y": [1.0, 2.0]})),
            {},
            sp.DataError,
            "'x'",
        ),
        (([[0.0], [1.0]], [[0.0], [1.0]]), {"bandwidth": "scott"}, sp.OptionError, "scott"),
        (([[0.0], [1.0]], [[0.0], [1.0]]), {"bandwidth": -1.0}, sp.OptionError, "-1"),
        (([[0.0], [1.0]], [[0.0], [1.0]]), {"permutations": -3}, sp.OptionError, "-3"),
    ],
)
def test_errors_name_the_problem(args, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        mmd(*args, **kwargs)
