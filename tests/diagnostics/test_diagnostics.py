import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from known_models import exact_linear_gaussian

import sedge_pyro as sp
from sedge_pyro.diagnostics import SpecSatisfaction, mmd, pair_plot, spec_satisfaction

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


def _naive_p_value(a, b, permutations, seed, unbiased=True):
    """The permutation test as a plain loop over index sets (the reference)."""
    pooled = np.vstack([a, b])
    n = len(a)

    def stat(x, y):
        return mmd(x, y, bandwidth=1.0, unbiased=unbiased).mmd2

    observed = stat(a, b)
    labels = np.arange(len(pooled)) < n
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        perm = rng.permutation(labels)
        hits += stat(pooled[perm], pooled[~perm]) >= observed - 1e-12
    return (hits + 1) / (permutations + 1)


@pytest.mark.parametrize("unbiased", [True, False])
def test_batched_permutations_equal_the_plain_loop(unbiased):
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(25, 2)), rng.normal(0.3, 1.0, size=(18, 2))
    fast = mmd(a, b, bandwidth=1.0, unbiased=unbiased, permutations=300, seed=3)
    assert fast.p_value == _naive_p_value(a, b, 300, 3, unbiased)


def test_permutation_chunks_do_not_change_the_p_value(monkeypatch):
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(30, 2)), rng.normal(0.2, 1.0, size=(30, 2))
    whole = mmd(a, b, permutations=97, seed=1)
    monkeypatch.setattr(sp.diagnostics, "_CHUNK_ENTRIES", 60 * 7)  # chunks of 7 permutations
    assert mmd(a, b, permutations=97, seed=1).p_value == whole.p_value


def test_identical_samples_have_p_value_one():
    a = np.ones((10, 2))
    assert mmd(a, a.copy(), permutations=20).p_value == 1.0


def test_diagnostics_imports_no_torch_layer():
    code = (
        "import sys, sedge_pyro.diagnostics; "
        "bad = [m for m in ('sedge_pyro.models', 'sedge_pyro.inference', 'torch') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------- spec satisfaction

INTERVALS = {"z1": sp.Interval(low=1.5), "z2": sp.Interval(high=0.0)}


@pytest.fixture(scope="module")
def exact():
    return exact_linear_gaussian(20_000, seed=0)


def _oracle(data):
    """The true mechanism Z_i = w_i . V_i + b_i + s_i eps_i of the linear-Gaussian data."""

    def simulate(x, rng):
        return pd.DataFrame(
            {
                z: x[list(parents)].to_numpy() @ w + b + s * rng.normal(size=len(x))
                for z, (parents, w, b, s) in data.specs.items()
            }
        )

    return simulate


def test_likelihood_and_oracle_agree_for_the_true_model(exact):
    # the model's likelihoods are the true mechanism, so the expected share of draws meeting
    # the target (likelihood) and the simulated share (oracle) estimate the same number
    model, data = exact
    s = model.sample(INTERVALS, n=1000, method="plan", chains=2, seed=0)
    res = spec_satisfaction(s, likelihood=model, simulate=_oracle(data), seed=1)
    assert isinstance(res, SpecSatisfaction) and res.target == s.target
    assert list(res.likelihood.columns) == ["z1", "z2", "all"] == list(res.oracle.columns)
    assert len(res.likelihood) == len(s) == len(res.oracle)
    assert np.allclose(res.likelihood["all"], res.likelihood["z1"] * res.likelihood["z2"])
    assert all(pd.api.types.is_bool_dtype(d) for d in res.oracle.dtypes)
    summary = res.summary
    assert list(summary.index) == ["likelihood", "oracle"]
    for col in ("z1", "z2", "all"):
        p = summary.loc["likelihood", col]
        se = math.sqrt(p * (1 - p) / len(s))
        assert abs(summary.loc["oracle", col] - p) < 4 * se + 1e-9, col
    # known answer: for x ~ p(x | A), E[P(A | x)] = E[P(A | X)^2] / P(A), here over the
    # population rows (the data has no selection)
    p = spec_satisfaction(data.seen[["x1", "x2", "x3"]], INTERVALS, likelihood=model)
    p = p.likelihood["all"]
    expected = float((p**2).mean() / p.mean())
    se = res.likelihood["all"].std() * math.sqrt(1 / len(s) + 1 / s.info["ess"])
    assert abs(summary.loc["likelihood", "all"] - expected) < 4 * se
    assert expected > 4 * p.mean()  # the draws meet the target far more often than the rows


def test_point_target_uses_tolerance(exact):
    model, data = exact
    target = {"z1": 1.0, "z2": -1.0}
    s = model.sample(target, n=800, method="plan", seed=0)
    with pytest.raises(sp.OptionError, match="'z1'.*tolerance|tolerance.*'z1'"):
        spec_satisfaction(s, simulate=_oracle(data))
    tight = spec_satisfaction(s, likelihood=model, simulate=_oracle(data), tolerance=0.05)
    loose = spec_satisfaction(s, likelihood=model, simulate=_oracle(data), tolerance=0.5)
    for res in (tight, loose):
        p = res.summary.loc["likelihood", "all"]
        assert abs(res.summary.loc["oracle", "all"] - p) < 4 * math.sqrt(p * (1 - p) / len(s))
    assert loose.summary.loc["oracle", "all"] > tight.summary.loc["oracle", "all"]
    per_spec = spec_satisfaction(s, simulate=_oracle(data), tolerance={"z1": 0.5, "z2": 0.5})
    assert per_spec.oracle.equals(loose.oracle)


def test_callable_likelihood_and_discrete_oracle():
    draws = pd.DataFrame({"x1": [0.0, 1.0, 2.0, 3.0]})

    def probabilities(x):
        return {"z1": x["x1"].to_numpy() / 4, "colour": np.full(len(x), 0.5)}

    def simulate(x, rng):
        return pd.DataFrame({"z1": x["x1"] + 0.5, "colour": ["red", "blue", "red", "red"]})

    target = {"z1": sp.Interval(low=1.0, high=3.0), "colour": "red"}
    res = spec_satisfaction(draws, target, likelihood=probabilities, simulate=simulate)
    assert res.likelihood["all"].tolist() == [0.0, 0.125, 0.25, 0.375]
    assert res.oracle["z1"].tolist() == [False, True, True, False]
    assert res.oracle["all"].tolist() == [False, False, True, False]
    assert res.summary.loc["oracle"].tolist() == [0.5, 0.75, 0.25]
    assert "oracle" in repr(res)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({}, sp.OptionError, "likelihood=.*simulate="),
        ({"likelihood": 3}, sp.OptionError, "likelihood is int"),
        ({"simulate": "oracle"}, sp.OptionError, "simulate is str"),
        ({"likelihood": lambda x: {"z9": np.ones(len(x))}}, sp.DataError, "'z1'"),
        ({"likelihood": lambda x: {"z1": np.ones(1)}}, sp.DataError, "1 rows"),
        ({"likelihood": lambda x: {"z1": np.full(len(x), 2.0)}}, sp.DataError, r"\[0, 1\]"),
        ({"simulate": lambda x, rng: pd.DataFrame({"z2": x["x1"]})}, sp.DataError, "'z1'"),
        (
            {"simulate": lambda x, rng: pd.DataFrame({"z1": x["x1"] + 0.5}), "tolerance": -1},
            sp.OptionError,
            "-1",
        ),
        ({"target": {}, "simulate": lambda x, rng: x}, sp.TargetError, "target"),
    ],
)
def test_spec_satisfaction_errors_name_the_argument(kwargs, error, fragment):
    draws = pd.DataFrame({"x1": [0.0, 1.5]})
    kwargs = {"target": {"z1": 1.0}, **kwargs}
    with pytest.raises(error, match=fragment):
        spec_satisfaction(draws, **kwargs)


def test_spec_satisfaction_rejects_an_array():
    with pytest.raises(sp.DataError, match="samples is ndarray"):
        spec_satisfaction(np.zeros((2, 1)), {"z1": 1.0}, simulate=lambda x, rng: x)


# ---------------------------------------------------------------------- pair plots


def test_pair_plot_fig3_style(exact, tmp_path):
    model, data = exact
    s = model.sample(INTERVALS, n=300, method="plan", seed=0)
    pop = sp.datasets.linear_gaussian(50_000, seed=7).seen
    oracle = pop[(pop.z1 >= 1.5) & (pop.z2 <= 0.0)]
    fig = pair_plot(data.seen, s, oracle, pairs=[("x1", "x3"), ("x2", "x3")], max_points=500)
    assert [(a.get_xlabel(), a.get_ylabel()) for a in fig.axes] == [("x1", "x3"), ("x2", "x3")]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["seen", "oracle", "generated"]
    sizes = [len(c.get_offsets()) for c in fig.axes[0].collections]
    assert sizes == [500, min(500, len(oracle)), 300]
    colours = {tuple(c.get_facecolor()[0][:3]) for c in fig.axes[0].collections}
    assert len(colours) == 3
    fig.savefig(tmp_path / "pairs.png")
    assert (tmp_path / "pairs.png").stat().st_size > 1000


def test_pair_plot_default_pairs_and_given_axes():
    from matplotlib.figure import Figure

    df = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 3)), columns=["a", "b", "c"])
    fig = pair_plot(df, df + 1)
    assert [(a.get_xlabel(), a.get_ylabel()) for a in fig.axes] == [
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    ]
    own = Figure()
    ax = own.subplots()
    assert pair_plot(df, df, pairs=[("a", "c")], ax=ax) is own


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"pairs": [("a", "zz")]}, sp.DataError, "'zz'"),
        ({"oracle": pd.DataFrame({"a": [0.0]})}, sp.DataError, "oracle has no column 'b'"),
        ({"pairs": [("a",)]}, sp.OptionError, "pair"),
        ({"pairs": [("a", "b")], "ax": [None, None]}, sp.OptionError, "2 Axes"),
        ({"max_points": 0}, sp.OptionError, "max_points"),
    ],
)
def test_pair_plot_errors(kwargs, error, fragment):
    df = pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 0.0]})
    with pytest.raises(error, match=fragment):
        pair_plot(df, df, **kwargs)


def test_docs_example_runs(tmp_path, monkeypatch, capsys):
    doc = Path(__file__).resolve().parents[2] / "docs" / "diagnostics.md"
    code = re.search(r"```python\n(.*?)```", doc.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(doc), "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("MMD ") and "likelihood" in out and "oracle" in out and "r_hat" in out
    assert (tmp_path / "pairs.png").stat().st_size > 1000


# ---------------------------------------------------------------------- mmd_floor


def test_mmd_floor_is_the_mmd_between_independent_samples():
    from sedge_pyro.diagnostics import mmd_floor

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2000, 2))
    floor = mmd_floor(reference, 300, repeats=10, bandwidth=1.0, unbiased=False)
    fresh = [
        float(
            mmd(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)), bandwidth=1.0, unbiased=False)
        )
        for _ in range(10)
    ]
    assert 0.0 < floor
    assert abs(floor - np.mean(fresh)) < 3 * np.std(fresh) / np.sqrt(10) + 0.01
    shifted = float(
        mmd(reference[:300], rng.normal(0.5, 1.0, size=(300, 2)), bandwidth=1.0, unbiased=False)
    )
    assert shifted > 3 * floor


def test_mmd_floor_defaults_seeds_and_frames():
    from sedge_pyro.diagnostics import mmd_floor

    frame = pd.DataFrame(np.random.default_rng(1).uniform(size=(101, 3)), columns=list("abc"))
    assert mmd_floor(frame, seed=3) == mmd_floor(frame.to_numpy(), seed=3)
    assert mmd_floor(frame, 50, seed=3, bandwidth=0.5) != mmd_floor(
        frame, 50, seed=4, bandwidth=0.5
    )
    # one repeat is the MMD of the first split of the seeded permutation
    order = np.random.default_rng(7).permutation(101)
    expected = mmd(frame.iloc[order[:20]], frame.iloc[order[20:40]], bandwidth=1.0, seed=7)
    assert mmd_floor(frame, 20, repeats=1, seed=7, bandwidth=1.0) == float(expected)


def test_mmd_floor_errors():
    from sedge_pyro.diagnostics import mmd_floor

    reference = np.zeros((9, 2))
    with pytest.raises(sp.DataError, match=r"n=5.*10 rows.*reference has 9"):
        mmd_floor(reference, 5)
    with pytest.raises(sp.DataError, match="unbiased MMD needs two"):
        mmd_floor(np.zeros((3, 2)))  # n = 1 fits, but the unbiased MMD needs two rows each
    with pytest.raises(sp.OptionError, match="n=0"):
        mmd_floor(reference, 0)
    with pytest.raises(sp.OptionError, match="repeats=0"):
        mmd_floor(reference, 2, repeats=0)
    with pytest.raises(sp.OptionError, match="bandwidth"):
        mmd_floor(reference, 2, bandwidth=-1.0)
