"""The synthetic generators and their closed-form ground truth (sedge_pyro.datasets)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.datasets import Mechanism, SyntheticData, paper_synthetic, synthetic


def _old_paper_synthetic(n, seed, z1_below=0.8, z2_above=1.0):
    """The generator as first released, frozen here as the reference for bit-identity."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0.0, 1.0, n)
    x2 = rng.uniform(0.75, 0.8, n)
    x3 = rng.uniform(0.0, 1.0, n)
    z1 = 0.8 * x1 + 0.6 * x2 + rng.uniform(0.0, 0.2, n)
    z2 = 0.6 * x3 + 0.8 * x2 + rng.uniform(0.0, 0.2, n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "z1": z1, "z2": z2})
    novel = (df["z1"] < z1_below) & (df["z2"] > z2_above)
    return df.loc[~novel].reset_index(drop=True), df.loc[novel].reset_index(drop=True)


def _monte_carlo(data, x, region, draws=20_000, seed=0):
    """Frequency of Z in the region over ``draws`` simulations per row of ``x``."""
    rng = np.random.default_rng(seed)
    rows = x.loc[x.index.repeat(draws)].reset_index(drop=True)
    z = data.simulate_specs(rows, rng)
    met = np.ones(len(rows), dtype=bool)
    for spec, value in region.items():
        z_i = z[spec].to_numpy()
        met &= value.contains(z_i) if isinstance(value, sp.Interval) else z_i == value
    return met.reshape(len(x), draws).mean(axis=1)


def _assert_within_4_se(freq, prob, draws):
    se = np.sqrt(np.maximum(prob * (1 - prob), 1e-12) / draws)
    assert np.all(np.abs(freq - prob) <= 4 * se + 1e-12), (freq, prob)


# ---------------------------------------------------------------------- paper_synthetic


@pytest.mark.parametrize(("n", "seed"), [(20_000, 0), (3000, 0), (2000, 1), (777, 5)])
def test_default_paper_synthetic_is_bit_identical_to_the_old_formula(n, seed):
    seen, oracle = _old_paper_synthetic(n, seed)
    data = paper_synthetic(n, seed)
    pd.testing.assert_frame_equal(data.seen, seen, check_exact=True)
    pd.testing.assert_frame_equal(data.oracle, oracle, check_exact=True)
    assert data.graph == sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"]})


def test_thresholds_are_passed_through_bit_identically():
    seen, oracle = _old_paper_synthetic(1000, 3, z1_below=0.9, z2_above=0.95)
    data = paper_synthetic(1000, 3, z1_below=0.9, z2_above=0.95)
    pd.testing.assert_frame_equal(data.oracle, oracle, check_exact=True)
    pd.testing.assert_frame_equal(data.seen, seen, check_exact=True)


def test_unpacks_as_three_and_keeps_the_ground_truth():
    data = paper_synthetic(500, seed=0)
    seen, oracle, graph = data
    assert graph is data.graph
    assert data.features_range == {"x1": (0.0, 1.0), "x2": (0.75, 0.8), "x3": (0.0, 1.0)}
    assert data.mechanisms["z2"] == Mechanism(("x2", "x3"), (0.8, 0.6))
    assert data.novel == {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)}


def test_oracle_and_seen_split_by_the_rule():
    data = paper_synthetic(20_000, seed=2, weights=(0.7, 0.5, 0.9, 0.5), noise=0.3)
    novel = lambda f: (f.z1 < 0.8) & (f.z2 > 1.0)  # noqa: E731
    assert novel(data.oracle).all() and not novel(data.seen).any()
    assert len(data.seen) + len(data.oracle) == 20_000 and len(data.oracle) > 100


def test_parameters_change_the_mechanism():
    data = paper_synthetic(
        2000, seed=0, weights=(1.0, 0.5, 0.2, 0.3), noise=0.1, x2_range=(0.0, 1.0), link="tanh"
    )
    x = data.seen[["x1", "x2", "x3"]]
    mean = data.spec_mean(x)
    np.testing.assert_allclose(mean.z1, np.tanh(1.0 * x.x1 + 0.5 * x.x2), rtol=1e-12)
    np.testing.assert_allclose(mean.z2, np.tanh(0.2 * x.x2 + 0.3 * x.x3), rtol=1e-12)
    both = pd.concat([data.seen, data.oracle])
    residual = both[["z1", "z2"]].to_numpy() - data.spec_mean(both).to_numpy()
    assert residual.min() >= 0 and residual.max() < 0.1
    assert both.x2.min() < 0.05 and both.x2.max() > 0.95


def test_extra_features_are_isolated_distractors():
    data = paper_synthetic(1000, seed=0, extra_features=2)
    assert list(data.seen.columns) == ["x1", "x2", "x3", "x4", "x5", "z1", "z2"]
    assert data.graph.features == ("x1", "x2", "x3", "x4", "x5")
    assert data.graph.children("x4") == () and data.graph.parents("z1") == ("x1", "x2")
    both = pd.concat([data.seen, data.oracle])
    assert both.x5.between(0, 1).all()


# ---------------------------------------------------------------------- synthetic


def _rich():
    """Linear, nonlinear and binary specs over four features, one of them isolated."""
    return synthetic(
        20_000,
        seed=1,
        features={"a": (0.0, 1.0), "b": (-1.0, 1.0), "c": (0.5, 2.0), "d": (0.0, 3.0)},
        specs={
            "lin": Mechanism(("a", "b"), (1.0, -0.5), bias=0.1, noise=0.4),
            "sq": Mechanism(("b", "c"), (0.7, 0.4), noise=0.3, link="square"),
            "sin": Mechanism(("a", "c"), (2.0, 1.0), noise=0.5, link="sin"),
            "bin": Mechanism(("c",), (1.0,), noise=0.6, link="tanh", threshold=1.0),
        },
        novel={"lin": sp.Interval(high=0.3), "sq": sp.Interval(low=0.4), "bin": 1},
    )


def test_synthetic_with_extra_features_and_specs():
    data = _rich()
    assert list(data.seen.columns) == ["a", "b", "c", "d", "lin", "sq", "sin", "bin"]
    assert data.graph.features == ("a", "b", "c", "d") and data.graph.children("d") == ()
    assert data.graph.specs == ("bin", "lin", "sin", "sq")
    assert data.oracle.bin.dtype == np.int64 and set(data.seen.bin) == {0, 1}
    rule = lambda f: (f.lin < 0.3) & (f.sq > 0.4) & (f.bin == 1)  # noqa: E731
    assert rule(data.oracle).all() and not rule(data.seen).any() and len(data.oracle) > 100
    assert data.in_support(data.oracle).all()


def test_synthetic_draw_order_is_features_then_specs():
    data = synthetic(
        100,
        seed=4,
        features={"u": (0.0, 2.0), "v": (1.0, 3.0)},
        specs={"z": Mechanism(("v", "u"), (1.0, 2.0), noise=0.5)},
        novel={"z": sp.Interval(low=1e9)},
    )
    rng = np.random.default_rng(4)
    u, v = rng.uniform(0.0, 2.0, 100), rng.uniform(1.0, 3.0, 100)
    z = 1.0 * v + 2.0 * u + rng.uniform(0.0, 0.5, 100)
    np.testing.assert_array_equal(data.seen.z, z)
    assert data.oracle.empty


# ---------------------------------------------------------------------- closed forms


@pytest.fixture(scope="module")
def rich():
    return _rich()


# rows chosen so that every region below has probabilities strictly between 0 and 1
FIXED = pd.DataFrame(
    {
        "a": [0.1, 0.2, 0.9, 0.3, 0.05, 0.6],
        "b": [0.0, 0.4, 0.6, 0.9, 0.2, 0.9],
        "c": [1.0, 1.2, 1.9, 1.45, 0.5, 0.7],
    }
)


@pytest.mark.parametrize(
    "region",
    [
        {"lin": sp.Interval(high=0.3)},  # linear
        {"lin": sp.Interval(0.0, 0.5)},  # linear, bounded both sides
        {"sq": sp.Interval(low=0.4)},  # square link
        {"sin": sp.Interval(-0.5, 0.7)},  # sin link
        {"bin": 1},  # binary, tanh link
        {"bin": 0},
        {"lin": sp.Interval(high=0.3), "sq": sp.Interval(low=0.4), "bin": 1},  # the Oracle's
    ],
)
def test_region_probability_matches_monte_carlo(rich, region):
    prob = rich.region_probability(FIXED, region)
    freq = _monte_carlo(rich, FIXED, region)
    _assert_within_4_se(freq, prob, 20_000)
    assert ((prob > 0) & (prob < 1)).sum() >= 2


def test_region_probability_closed_form_values(rich):
    # lin: m = a - 0.5 b + 0.1, w = 0.4; at a = 0.1, b = -0.8: m = 0.6, so z1 <= 0.3 is out
    x = pd.DataFrame({"a": [0.1, 0.1], "b": [-0.8, 0.0]})
    np.testing.assert_allclose(
        rich.region_probability(x, {"lin": sp.Interval(high=0.3)}), [0.0, 0.25]
    )
    # bin: m = tanh(c), w = 0.6, P(1) = clip((m + 0.6 - 1) / 0.6, 0, 1)
    c = pd.DataFrame({"c": [0.1, 1.0, 3.0]})
    expected = np.clip((np.tanh(c.c) - 0.4) / 0.6, 0, 1)
    np.testing.assert_allclose(rich.region_probability(c, {"bin": 1}), expected)
    np.testing.assert_allclose(rich.region_probability(c, {"bin": sp.Interval(0, 1)}), 1.0)


def test_default_region_is_the_oracle_region(rich):
    np.testing.assert_array_equal(
        rich.region_probability(FIXED), rich.region_probability(FIXED, rich.novel)
    )


def test_oracle_satisfaction_equals_monte_carlo_over_oracle_features():
    data = paper_synthetic(20_000, seed=0)
    value = data.oracle_satisfaction()
    rng = np.random.default_rng(3)
    hits = []
    for _ in range(20):
        z = data.simulate_specs(data.oracle, rng)
        hits.append(((z.z1 <= 0.8) & (z.z2 >= 1.0)).mean())
    freq, draws = float(np.mean(hits)), 20 * len(data.oracle)
    assert abs(freq - value) <= 4 * np.sqrt(value * (1 - value) / draws)
    assert 0.5 < value < 1.0
    # and through the package's oracle checker
    result = sp.spec_satisfaction(
        data.oracle[["x1", "x2", "x3"]], data.novel, simulate=data.simulate_specs, seed=5
    )
    frac = float(result.summary.loc["oracle", "all"])
    assert abs(frac - value) <= 4 * np.sqrt(value * (1 - value) / len(data.oracle))


def test_in_support(rich):
    data = paper_synthetic(20_000, seed=0)
    assert data.in_support(data.oracle).all()
    outside = pd.DataFrame(
        {
            "x1": [0.2, 1.2, 0.2, 0.2, 0.9],
            "x2": [0.77, 0.77, 0.7, 0.77, 0.77],
            "x3": [0.9, 0.9, 0.9, -0.1, 0.9],
        }
    )
    # row 0 is inside; rows 1-3 leave a range; row 4 cannot reach z1 <= 0.8
    # (m1 = 0.72 + 0.462 > 0.8)
    np.testing.assert_array_equal(data.in_support(outside), [True, False, False, False, False])
    assert data.region_probability(outside)[4] == 0.0
    assert rich.in_support(rich.oracle).all()


def test_in_support_of_a_point_target():
    data = paper_synthetic(1000, seed=0)
    x = pd.DataFrame({"x1": [0.5, 0.5, 0.5], "x2": [0.78] * 3, "x3": [0.5, 0.5, 0.5]})
    m1 = 0.8 * 0.5 + 0.6 * 0.78
    point = {"z1": m1 + 0.1}
    assert data.in_support(x, point).all()
    assert not data.in_support(x, {"z1": m1 + 0.25}).any()
    assert not data.in_support(x, {"z1": m1 - 0.01}).any()


def test_simulate_specs_keeps_the_index(rich):
    x = FIXED.set_axis(range(10, 16))
    z = rich.simulate_specs(x, np.random.default_rng(0))
    assert list(z.index) == list(range(10, 16))
    assert list(z.columns) == ["lin", "sq", "sin", "bin"]
    assert list(rich.spec_mean(x).index) == list(range(10, 16))


# ---------------------------------------------------------------------- errors


FEATURES = {"x1": (0.0, 1.0)}
SPEC = {"z1": Mechanism(("x1",), (1.0,))}
NOVEL = {"z1": sp.Interval(high=0.5)}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, sp.DataError, "n=0"),
        ({"n": 2.5}, sp.DataError, "n=2.5"),
        ({"features": {}}, sp.OptionError, "features="),
        ({"features": {"x1": (1.0, 0.0)}}, sp.OptionError, "features\\['x1'\\]"),
        ({"features": {"x1": 3}}, sp.OptionError, "features\\['x1'\\]"),
        ({"features": {"x1": (0.0, np.inf)}}, sp.OptionError, "features\\['x1'\\]"),
        ({"specs": {}}, sp.OptionError, "specs="),
        ({"specs": {"z1": ("x1",)}}, sp.OptionError, "specs\\['z1'\\] is tuple"),
        ({"specs": {"z1": Mechanism(("x9",), (1.0,))}}, sp.OptionError, "parent 'x9'"),
        ({"specs": {"x1": Mechanism(("x1",), (1.0,))}}, sp.OptionError, "'x1'.*also a feature"),
        ({"novel": {}}, sp.OptionError, "novel="),
        ({"novel": {"z9": sp.Interval(high=0.5)}}, sp.OptionError, "novel names 'z9'"),
        ({"novel": {"z1": "high"}}, sp.OptionError, "novel\\['z1'\\]"),
    ],
)
def test_synthetic_raises_typed_errors(kwargs, error, match):
    arguments = {"n": 100, "features": FEATURES, "specs": SPEC, "novel": NOVEL, **kwargs}
    n = arguments.pop("n")
    with pytest.raises(error, match=match):
        synthetic(n, **arguments)


def test_binary_novel_value_must_be_zero_or_one():
    spec = {"z1": Mechanism(("x1",), (1.0,), threshold=0.5)}
    with pytest.raises(sp.OptionError, match="'z1' is binary"):
        synthetic(10, features=FEATURES, specs=spec, novel={"z1": 2})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"parents": ()}, "parents"),
        ({"parents": ("x1", "x1"), "weights": (1.0, 1.0)}, "listed twice"),
        ({"weights": (1.0, 2.0)}, "weights"),
        ({"weights": (np.nan,)}, "weights"),
        ({"noise": 0.0}, "noise=0.0"),
        ({"link": "cube"}, "link='cube'"),
        ({"bias": "1"}, "bias"),
        ({"threshold": np.inf}, "threshold"),
    ],
)
def test_mechanism_raises_option_errors(kwargs, match):
    arguments = {"parents": ("x1",), "weights": (1.0,), **kwargs}
    with pytest.raises(sp.OptionError, match=match):
        Mechanism(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": (1.0, 2.0)}, "weights="),
        ({"extra_features": -1}, "extra_features=-1"),
        ({"x2_range": (0.8, 0.75)}, "features\\['x2'\\]"),
        ({"noise": -0.1}, "noise=-0.1"),
        ({"link": "exp2"}, "link='exp2'"),
        ({"z1_below": None}, "z1_below=None"),
    ],
)
def test_paper_synthetic_raises_option_errors(kwargs, match):
    with pytest.raises(sp.OptionError, match=match):
        paper_synthetic(100, **kwargs)


def test_methods_raise_typed_errors(rich):
    data = paper_synthetic(200, seed=0)
    with pytest.raises(sp.TargetError, match="region names 'z9'"):
        data.region_probability(data.oracle, {"z9": sp.Interval(high=1.0)})
    with pytest.raises(sp.TargetError, match="region\\['z1'\\].*point"):
        data.region_probability(data.oracle, {"z1": 0.5})
    with pytest.raises(sp.DataError, match="no column 'x2'"):
        data.region_probability(pd.DataFrame({"x1": [0.5]}))
    with pytest.raises(sp.DataError, match="no column 'x3'"):
        data.in_support(pd.DataFrame({"x1": [0.5], "x2": [0.77]}))
    bare = SyntheticData(data.seen, data.oracle, data.graph)
    with pytest.raises(sp.OptionError, match="no mechanisms"):
        bare.oracle_satisfaction()
    with pytest.raises(sp.TargetError, match="'bin' is binary"):
        rich.region_probability(FIXED, {"bin": 0.5})
