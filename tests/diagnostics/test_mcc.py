import math

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.diagnostics import MCCResult, mcc


def _truth(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["x1", "x2", "x3"])


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_permuted_sign_flipped_rescaled_copy_gives_one(method):
    truth = _truth()
    est = pd.DataFrame(
        {"a": -3.0 * truth.x3 + 1.0, "b": 0.5 * truth.x1, "c": -truth.x2 * 7.0 - 2.0}
    )
    r = mcc(est, truth, method=method)
    assert isinstance(r, MCCResult) and r.method == method
    assert r.mean == pytest.approx(1.0, abs=1e-12)
    assert r.matching == {"x1": "b", "x2": "c", "x3": "a"}
    assert r.positions == {"x1": 1, "x2": 2, "x3": 0}
    assert r.per_variable == pytest.approx({"x1": 1.0, "x2": 1.0, "x3": 1.0}, abs=1e-12)
    assert list(r.matrix.index) == ["a", "b", "c"]
    assert list(r.matrix.columns) == ["x1", "x2", "x3"]


def test_arrays_are_named_by_column_index():
    t = _truth().to_numpy()
    r = mcc(t[:, [2, 0, 1]], t)
    assert r.matching == {"0": "1", "1": "2", "2": "0"}
    assert r.positions == {"0": 1, "1": 2, "2": 0}
    assert r.mean == pytest.approx(1.0, abs=1e-12)


def test_noisy_copy_matches_the_closed_form():
    # est_j = x_j + s_j e_j with unit-variance x, e: corr = 1 / sqrt(1 + s_j^2)
    n = 20_000
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 3))
    s = np.array([0.5, 1.0, 2.0])
    est = (x + s * rng.normal(size=(n, 3)))[:, ::-1]
    r = mcc(est, x)
    expected = 1.0 / np.sqrt(1.0 + s**2)
    # sampling sd of a correlation is about (1 - rho^2) / sqrt(n) <= 0.007: 4 sd
    got = np.array([r.per_variable[k] for k in ("0", "1", "2")])
    np.testing.assert_allclose(got, expected, atol=0.03)
    assert r.matching == {"0": "2", "1": "1", "2": "0"}
    assert r.mean == pytest.approx(expected.mean(), abs=0.02)


def test_matrix_is_the_absolute_pearson_correlation():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    r = mcc(a, b)
    direct = np.abs(np.corrcoef(a.T, b.T)[:2, 2:])
    np.testing.assert_allclose(r.matrix.to_numpy(), direct, atol=1e-12)
    best = max(direct[0, 0] + direct[1, 1], direct[0, 1] + direct[1, 0]) / 2
    assert r.mean == pytest.approx(best, abs=1e-12)


def test_hungarian_beats_greedy():
    # population |corr| [[0.6, 0.5], [0.5, 0.05]] (rows: estimates): greedy takes the largest
    # entry e0-t0 and is left with e1-t1 (sum 0.65); the optimum is e0-t1 + e1-t0 (sum 1.0)
    n = 200_000
    rng = np.random.default_rng(3)
    t = rng.normal(size=(n, 2))
    u = rng.normal(size=(n, 2))
    est0 = 0.6 * t[:, 0] + 0.5 * t[:, 1] + math.sqrt(1 - 0.61) * u[:, 0]
    est1 = 0.5 * t[:, 0] + 0.05 * t[:, 1] + math.sqrt(1 - 0.2525) * u[:, 1]
    r = mcc(np.column_stack([est0, est1]), pd.DataFrame(t, columns=["t0", "t1"]))
    m = r.matrix.to_numpy()
    np.testing.assert_allclose(m, [[0.6, 0.5], [0.5, 0.05]], atol=0.01)
    assert r.matching == {"t0": "1", "t1": "0"}
    assert r.mean == pytest.approx((m[1, 0] + m[0, 1]) / 2)


def test_matching_is_the_best_of_all_permutations():
    import itertools

    rng = np.random.default_rng(7)
    for _ in range(20):
        t = rng.normal(size=(40, 3))
        e = t @ rng.normal(size=(3, 4)) + rng.normal(size=(40, 4))
        r = mcc(e, t)
        m = r.matrix.to_numpy()
        best = max(
            sum(m[p[j], j] for j in range(3)) / 3 for p in itertools.permutations(range(4), 3)
        )
        assert r.mean == pytest.approx(best, abs=1e-12)


def test_independent_estimates_give_a_small_mcc():
    rng = np.random.default_rng(4)
    r = mcc(rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3)))
    assert r.mean < 0.03


def test_spearman_is_invariant_to_monotone_transforms_pearson_is_not():
    truth = _truth(seed=5)
    est = pd.DataFrame({"e1": np.exp(3.0 * truth.x2), "e2": -(truth.x1**3), "e3": truth.x3})
    r = mcc(est, truth, method="spearman")
    assert r.mean == pytest.approx(1.0, abs=1e-12)
    assert r.matching == {"x1": "e2", "x2": "e1", "x3": "e3"}
    assert mcc(est, truth).mean < 0.95


def test_more_estimates_than_truths_each_truth_gets_a_distinct_one():
    truth = _truth(seed=6)
    rng = np.random.default_rng(6)
    est = np.column_stack(
        [
            rng.normal(size=len(truth)),
            truth.x2,
            truth.x1 + 0.1 * rng.normal(size=len(truth)),
            truth.x3,
            truth.x1,
        ]
    )
    r = mcc(est, truth)
    assert r.matching == {"x1": "4", "x2": "1", "x3": "3"}
    assert len(set(r.matching.values())) == 3
    assert r.matrix.shape == (5, 3)
    assert r.mean == pytest.approx(1.0, abs=1e-12)


def test_one_dimensional_inputs_and_objects_with_to_dataframe():
    t = np.linspace(0.0, 1.0, 11)

    class Draws:
        def to_dataframe(self):
            return pd.DataFrame({"d": 2.0 * t})

    r = mcc(Draws(), t)
    assert r.matching == {"0": "d"}
    assert math.isclose(r.mean, 1.0)


def test_reexported_at_the_root():
    assert sp.diagnostics.mcc is mcc


def test_different_row_counts_are_named():
    with pytest.raises(sp.DataError, match="estimated has 5 rows and truth 4"):
        mcc(np.ones((5, 1)), np.ones((4, 1)))


def test_nan_is_a_data_error_naming_the_column():
    est = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": [1.0, 0.0, 2.0]})
    with pytest.raises(sp.DataError, match="estimated column 'a' holds 1 NaN"):
        mcc(est, np.arange(3.0))
    with pytest.raises(sp.DataError, match="truth column '0'"):
        mcc(np.arange(3.0), [1.0, np.inf, 2.0])


def test_constant_columns_are_named():
    truth = pd.DataFrame({"x1": [1.0, 2.0, 3.0], "x2": [4.0, 4.0, 4.0]})
    with pytest.raises(sp.DataError, match="truth column 'x2' is constant"):
        mcc(np.arange(6.0).reshape(3, 2), truth)
    with pytest.raises(sp.DataError, match="estimated column '1' is constant"):
        mcc(np.column_stack([np.arange(3.0), np.full(3, 0.1)]), truth[["x1"]])
    with pytest.raises(sp.DataError, match="is constant"):
        mcc(np.arange(3.0), [[2.0], [2.0], [2.0]], method="spearman")


def test_other_errors():
    with pytest.raises(sp.DataError, match="estimated has 1 variables and truth 2"):
        mcc(np.arange(4.0), np.arange(8.0).reshape(4, 2))
    with pytest.raises(sp.DataError, match="1 rows"):
        mcc([[1.0]], [[2.0]])
    with pytest.raises(sp.OptionError, match="method='kendall'"):
        mcc(np.arange(3.0), np.arange(3.0), method="kendall")
    with pytest.raises(sp.DataError, match="shape"):
        mcc(np.ones((2, 2, 2)), np.ones((2, 1)))
    with pytest.raises(sp.DataError, match="duplicate column names"):
        mcc(pd.DataFrame([[1.0, 2.0], [2.0, 1.0]], columns=["a", "a"]), np.arange(2.0))
    with pytest.raises(sp.DataError, match="non-numeric"):
        mcc(pd.DataFrame({"a": ["u", "v"]}), np.arange(2.0))
