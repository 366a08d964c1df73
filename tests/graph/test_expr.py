"""Unit tests of sedge_pyro.expr with hand-computed answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sedge_pyro.errors import DataError, TargetError
from sedge_pyro.expr import Factor, Factorization, Interval, Term, Var, events, format_value

# ---------------------------------------------------------------------------------------------
# Interval


def test_interval_low_above_high_names_both_values() -> None:
    with pytest.raises(TargetError, match=r"low=2 > high=1"):
        Interval(low=2, high=1)


@pytest.mark.parametrize("bad", ["a", [1.0], True])
def test_interval_bound_must_be_a_number(bad: object) -> None:
    culprit = repr(bad).replace("[", r"\[")
    with pytest.raises(TargetError, match="low=" + culprit):
        Interval(low=bad)  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="high=" + culprit):
        Interval(high=bad)  # type: ignore[arg-type]


def test_interval_nan_bound_raises() -> None:
    with pytest.raises(TargetError, match="NaN"):
        Interval(high=float("nan"))


def test_interval_is_a_target_error_and_value_error() -> None:
    with pytest.raises(ValueError):
        Interval(low=1.0, high=0.0)


def test_interval_bounds_become_floats_and_equal_bounds_are_allowed() -> None:
    iv = Interval(low=np.int64(1), high=1)
    assert iv.low == 1.0 and isinstance(iv.low, float)
    assert iv.contains([0.999, 1.0, 1.001]).tolist() == [False, True, False]


def test_interval_contains_is_inclusive() -> None:
    values = [-0.1, 0.0, 0.5, 1.0, 1.1]
    assert Interval(0.0, 1.0).contains(values).tolist() == [False, True, True, True, False]
    assert Interval(high=0.5).contains(values).tolist() == [True, True, True, False, False]
    assert Interval(low=0.5).contains(values).tolist() == [False, False, True, True, True]
    assert Interval().contains(values).all()
    assert Interval(0, 1).contains(np.array([[0, 2], [1, 3]])).tolist() == [
        [True, False],
        [True, False],
    ]


def test_interval_text_and_latex() -> None:
    assert Interval(high=0.8).to_text("z1") == "z1 ≤ 0.8"
    assert Interval(low=0.2).to_text("z1") == "z1 ≥ 0.2"
    assert Interval(0.2, 0.8).to_text("z1") == "0.2 ≤ z1 ≤ 0.8"
    assert Interval().to_text("z1") == "z1 ∈ ℝ"
    assert Interval(high=0.8).to_latex("z1") == r"z_{1} \le 0.8"
    assert Interval(low=0.2).to_latex("z1") == r"z_{1} \ge 0.2"
    assert Interval(0.2, 0.8).to_latex("z1") == r"0.2 \le z_{1} \le 0.8"
    assert Interval().to_latex("z1") == r"z_{1} \in \mathbb{R}"


# ---------------------------------------------------------------------------------------------
# Var and value formatting


def test_format_value() -> None:
    assert format_value(1) == "1"
    assert format_value(np.int64(3)) == "3"
    assert format_value(True) == "1"
    assert format_value(np.bool_(False)) == "0"
    assert format_value(0.5) == "0.5"
    assert format_value(np.float32(0.25)) == "0.25"
    assert format_value(1.0) == "1"
    assert format_value("red") == "red"


def test_var_text_and_latex() -> None:
    assert Var("x1").to_text() == "x1"
    assert Var("x1").is_free
    assert not Var("z1", 0).is_free
    assert Var("z1", 1).to_text() == "z1=1"
    assert Var("z1", 0).to_text() == "z1=0"
    assert Var("z1", "red").to_text() == "z1=red"
    assert Var("z1", Interval(high=0.8)).to_text() == "z1 ≤ 0.8"
    assert Var("x1").to_latex() == "x_{1}"
    assert Var("z1", 1).to_latex() == "z_{1}=1"
    assert Var("z1", "red").to_latex() == r"z_{1}=\text{red}"
    assert Var("x_12").to_latex() == "x_{12}"
    assert Var("y").to_latex() == "y"
    assert Var("my_var").to_latex() == r"\mathrm{my\_var}"


@pytest.mark.parametrize("name", ["", None, 3])
def test_var_name_must_be_a_non_empty_string(name: object) -> None:
    with pytest.raises(TargetError, match=repr(name)):
        Var(name)  # type: ignore[arg-type]


def test_var_mask() -> None:
    column = np.array([0.0, 0.5, 1.0])
    assert Var("z").mask(column).tolist() == [True, True, True]
    assert Var("z", 1).mask(column).tolist() == [False, False, True]
    assert Var("z", Interval(high=0.5)).mask(column).tolist() == [True, True, False]


# ---------------------------------------------------------------------------------------------
# Term, Factor, Factorization: rendering and validation


def _term(lhs: str, rhs: str = "", *, source: str = "D", exact: bool = True) -> Term:
    """A term from text such as ``"x1 x2"`` / ``"z1=1 x3"`` (values are ints)."""

    def parse(text: str) -> tuple[Var, ...]:
        out = []
        for tok in text.split():
            name, _, value = tok.partition("=")
            out.append(Var(name, int(value)) if value else Var(name))
        return tuple(out)

    return Term(parse(lhs), parse(rhs), source=source, exact=exact)


def test_term_text() -> None:
    assert str(_term("x2 x1", "z1=1")) == "pD(x1, x2 | z1=1)"
    assert _term("x1 x2", "z1=1", source="P").to_text() == "p(x1, x2 | z1=1)"
    assert str(_term("x1")) == "pD(x1)"
    assert str(_term("z2=1", "x2")) == "pD(z2=1 | x2)"
    term = Term((Var("x1"),), (Var("z1", Interval(high=0.8)),))
    assert str(term) == "pD(x1 | z1 ≤ 0.8)"


def test_term_latex() -> None:
    assert _term("x1 x2", "z1=1").to_latex() == r"p_{D}(x_{1}, x_{2} \mid z_{1}=1)"
    assert _term("x1", source="P").to_latex() == "p(x_{1})"
    assert _term("x1").to_latex() == "p_{D}(x_{1})"
    assert _term("x1", "z1=1")._repr_latex_() == r"$p_{D}(x_{1} \mid z_{1}=1)$"
    term = Term((Var("x1"),), (Var("z1", Interval(high=0.8)),), source="P")
    assert term.to_latex() == r"p(x_{1} \mid z_{1} \le 0.8)"


def test_term_orders_variables_naturally() -> None:
    term = _term("x10 x2 x1", "z10=1 z2=0")
    assert term.names == ("x1", "x2", "x10", "z2", "z10")
    assert str(term) == "pD(x1, x2, x10 | z2=0, z10=1)"
    assert term.free == ("x1", "x2", "x10")
    assert _term("z1=1", "x3 x1").free == ("x1", "x3")
    # equal terms compare and hash equal, whatever order they were written in
    assert _term("x2 x1", "z1=1") == _term("x1 x2", "z1=1")
    assert hash(_term("x2 x1", "z1=1")) == hash(_term("x1 x2", "z1=1"))
    assert _term("x1", "z1=1") != _term("x1", "z1=0")
    assert _term("x1", exact=True) != _term("x1", exact=False)


def test_events_are_in_natural_order() -> None:
    assert events({"z10": 1, "z2": 0}) == (Var("z2", 0), Var("z10", 1))


def test_term_rejects_empty_lhs() -> None:
    with pytest.raises(TargetError, match="lhs is empty"):
        Term((), (Var("z1", 1),))


def test_term_rejects_bad_source() -> None:
    with pytest.raises(TargetError, match="'Q'"):
        Term((Var("x1"),), source="Q")


def test_term_rejects_duplicate_names() -> None:
    with pytest.raises(TargetError, match="x1") as info:
        Term((Var("x1"), Var("x2")), (Var("x1", 0),))
    assert "x2" not in str(info.value)
    with pytest.raises(TargetError, match="x3"):
        Term((Var("x3"), Var("x3")))


def test_term_is_frozen() -> None:
    term = _term("x1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        term.source = "P"  # type: ignore[misc]


def test_factor_text_and_latex() -> None:
    term = _term("z1=1", "x1")
    assert str(Factor(term)) == "pD(z1=1 | x1)"
    assert str(Factor(term, -1)) == "pD(z1=1 | x1)⁻¹"
    assert Factor(term, 2).to_text() == "pD(z1=1 | x1)²"
    assert Factor(term, -12).to_text() == "pD(z1=1 | x1)⁻¹²"
    assert Factor(term).to_latex() == r"p_{D}(z_{1}=1 \mid x_{1})"
    assert Factor(term, -1).to_latex() == r"p_{D}(z_{1}=1 \mid x_{1})^{-1}"


@pytest.mark.parametrize("power", [0, True, 1.0, "1"])
def test_factor_power_must_be_a_non_zero_int(power: object) -> None:
    with pytest.raises(TargetError, match="power " + repr(power)):
        Factor(_term("x1"), power)  # type: ignore[arg-type]


def test_factorization_rejects_non_factors() -> None:
    with pytest.raises(TargetError, match="expected Factor"):
        Factorization((_term("x1"),))  # type: ignore[arg-type]


def _eq3() -> Factorization:
    """Eq. (3) of the paper for Fig. 2(b), conservative middle term."""
    return Factorization.from_terms(
        [
            _term("x1 x2", "z1=1"),
            _term("z2=1", "x2", exact=False),
            _term("x3", "x2 z2=1"),
        ],
        proportional=True,
    )


def test_factorization_text_and_latex() -> None:
    fac = _eq3()
    assert str(fac) == "pD(x1, x2 | z1=1) · pD(z2=1 | x2) · pD(x3 | x2, z2=1)"
    assert fac.to_latex() == (
        r"p_{D}(x_{1}, x_{2} \mid z_{1}=1) \, p_{D}(z_{2}=1 \mid x_{2}) \, "
        r"p_{D}(x_{3} \mid x_{2}, z_{2}=1)"
    )
    assert fac.latex() == fac.to_latex()
    assert fac._repr_latex_() == f"${fac.to_latex()}$"
    with_power = Factorization((Factor(_term("x1")), Factor(_term("z1=1"), -1)))
    assert str(with_power) == "pD(x1) · pD(z1=1)⁻¹"
    assert str(Factorization(())) == "1"
    assert Factorization(()).to_latex() == "1"


def test_factorization_properties() -> None:
    fac = _eq3()
    assert fac.proportional
    assert not fac.exact
    assert fac.terms == tuple(f.term for f in fac.factors)
    assert all(f.power == 1 for f in fac.factors)
    assert fac.free == ("x1", "x2", "x3")
    assert Factorization.from_terms([_term("x10"), _term("x2", "x1")]).free == ("x1", "x2", "x10")
    assert Factorization.from_terms([_term("x1")]).exact
    assert not Factorization.from_terms([_term("x1")]).proportional


def test_canonical_makes_orderings_equal() -> None:
    a, b, c = _term("x1 x2", "z1=1"), _term("z2=1", "x2", exact=False), _term("x3", "x2 z2=1")
    first = Factorization((Factor(a), Factor(b), Factor(c, -1)), proportional=True)
    second = Factorization((Factor(c, -1), Factor(a), Factor(b)), proportional=True)
    assert first != second
    assert first.canonical() == second.canonical()
    assert first.canonical().canonical() == first.canonical()
    assert first.canonical().proportional
    # exactness, power and proportionality still tell factorizations apart
    flipped = Factorization((Factor(a), Factor(_term("z2=1", "x2")), Factor(c, -1)), True)
    assert flipped.canonical() != first.canonical()
    assert Factorization((Factor(a), Factor(b), Factor(c)), True).canonical() != first.canonical()
    assert Factorization(first.factors, False).canonical() != first.canonical()


# ---------------------------------------------------------------------------------------------
# Evaluation on a hand-built joint table
#
# Population p(x, z), x in {0, 1, 2} (x = 2 has probability 0), z in {0, 1}:
#   p(0,0) = 0.1  p(0,1) = 0.2  p(1,0) = 0.3  p(1,1) = 0.4  p(2,.) = 0
# Selection P(S = 1 | z) = 1 for z = 0 and 1/2 for z = 1, so under S = 1 (unnormalised):
#   (0,0) 0.1  (0,1) 0.1  (1,0) 0.3  (1,1) 0.2,   P(S = 1) = 0.7
# Then p(z=1 | x) = (2/3, 4/7, undefined), pD(z=1 | x) = (1/2, 2/5, undefined), and since S
# depends on z only, pD(x | z=1) = p(x | z=1) = (1/3, 2/3, 0).


@pytest.fixture
def joint() -> pd.DataFrame:
    rows = [
        # x, z, S, p
        (0, 0, 1, 0.1),
        (0, 0, 0, 0.0),
        (0, 1, 1, 0.1),
        (0, 1, 0, 0.1),
        (1, 0, 1, 0.3),
        (1, 0, 0, 0.0),
        (1, 1, 1, 0.2),
        (1, 1, 0, 0.2),
        (2, 0, 1, 0.0),
        (2, 0, 0, 0.0),
        (2, 1, 1, 0.0),
        (2, 1, 0, 0.0),
    ]
    return pd.DataFrame(rows, columns=["x", "z", "S", "p"])


def _values(frame: pd.DataFrame, prob: str = "p") -> list[float]:
    return frame[prob].tolist()


def test_term_evaluate_conditional_with_undefined_entry(joint: pd.DataFrame) -> None:
    term = Term((Var("z", 1),), (Var("x"),))
    pop = term.evaluate(joint, population=True)
    assert list(pop.columns) == ["x", "p"]
    assert pop["x"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(_values(pop), [2 / 3, 4 / 7, np.nan], atol=1e-12)
    d = term.evaluate(joint)
    np.testing.assert_allclose(_values(d), [1 / 2, 2 / 5, np.nan], atol=1e-12)
    # a population term ignores the selection column
    p_term = dataclasses.replace(term, source="P")
    np.testing.assert_allclose(_values(p_term.evaluate(joint)), _values(pop), atol=1e-12)


def test_term_evaluate_d_separated_term_agrees(joint: pd.DataFrame) -> None:
    term = Term((Var("x"),), (Var("z", 1),))
    d = term.evaluate(joint)
    pop = term.evaluate(joint, population=True)
    np.testing.assert_allclose(_values(d), [1 / 3, 2 / 3, 0.0], atol=1e-12)
    np.testing.assert_allclose(_values(pop), [1 / 3, 2 / 3, 0.0], atol=1e-12)


def test_term_evaluate_marginals_and_joint(joint: pd.DataFrame) -> None:
    np.testing.assert_allclose(
        _values(Term((Var("x"),)).evaluate(joint)), [0.2 / 0.7, 0.5 / 0.7, 0.0], atol=1e-12
    )
    np.testing.assert_allclose(
        _values(Term((Var("x"),)).evaluate(joint, population=True)), [0.3, 0.7, 0.0], atol=1e-12
    )
    # no free variable: one row
    np.testing.assert_allclose(_values(Term((Var("z", 1),)).evaluate(joint)), [0.3 / 0.7])
    np.testing.assert_allclose(
        _values(Term((Var("z", 1),)).evaluate(joint, population=True)), [0.6]
    )
    # two free variables, in natural order, over the product of their values
    both = Term((Var("z"), Var("x"))).evaluate(joint, population=True)
    assert list(both.columns) == ["x", "z", "p"]
    got = {(int(r.x), int(r.z)): r.p for r in both.itertuples()}
    want = {(0, 0): 0.1, (0, 1): 0.2, (1, 0): 0.3, (1, 1): 0.4, (2, 0): 0.0, (2, 1): 0.0}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value)
    # a free conditional p(z | x): undefined for both values of z when x = 2
    cond = Term((Var("z"),), (Var("x"),)).evaluate(joint, population=True)
    got = {(int(r.x), int(r.z)): r.p for r in cond.itertuples()}
    assert got[0, 1] == pytest.approx(2 / 3) and got[1, 0] == pytest.approx(3 / 7)
    assert np.isnan(got[2, 0]) and np.isnan(got[2, 1])


def test_term_evaluate_interval_event(joint: pd.DataFrame) -> None:
    point = Term((Var("x"),), (Var("z", 1),)).evaluate(joint)
    interval = Term((Var("x"),), (Var("z", Interval(low=0.5)),)).evaluate(joint)
    np.testing.assert_allclose(_values(interval), _values(point), atol=1e-12)
    everything = Term((Var("x"),), (Var("z", Interval()),)).evaluate(joint, population=True)
    np.testing.assert_allclose(_values(everything), [0.3, 0.7, 0.0], atol=1e-12)


def test_term_evaluate_custom_column_names(joint: pd.DataFrame) -> None:
    renamed = joint.rename(columns={"p": "prob", "S": "sel"})
    term = Term((Var("z", 1),), (Var("x"),))
    out = term.evaluate(renamed, prob="prob", selection="sel")
    assert list(out.columns) == ["x", "prob"]
    np.testing.assert_allclose(_values(out, "prob"), [1 / 2, 2 / 5, np.nan], atol=1e-12)


def test_term_evaluate_missing_rows_count_as_zero(joint: pd.DataFrame) -> None:
    sparse = joint[joint["p"] > 0].reset_index(drop=True)
    out = Term((Var("z", 1),), (Var("x"),)).evaluate(sparse)
    np.testing.assert_allclose(_values(out), [1 / 2, 2 / 5], atol=1e-12)


def test_term_evaluate_missing_column_raises(joint: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="'y'"):
        Term((Var("y"),)).evaluate(joint)
    no_selection = joint.drop(columns="S")
    with pytest.raises(DataError, match="'S'"):
        Term((Var("x"),)).evaluate(no_selection)
    out = Term((Var("x"),)).evaluate(no_selection, population=True)
    np.testing.assert_allclose(_values(out), [0.3, 0.7, 0.0], atol=1e-12)
    with pytest.raises(DataError, match="'q'"):
        Term((Var("x"),)).evaluate(joint, prob="q")


def test_factorization_evaluate_power_minus_one(joint: pd.DataFrame) -> None:
    # Bayes: p(x) p(z=1 | x) p(z=1)^-1 = p(x | z=1); at x = 2, p(x) = 0 wins over the undefined
    # p(z=1 | x=2)
    fac = Factorization(
        (
            Factor(Term((Var("x"),))),
            Factor(Term((Var("z", 1),), (Var("x"),))),
            Factor(Term((Var("z", 1),)), -1),
        )
    )
    assert str(fac) == "pD(x) · pD(z=1 | x) · pD(z=1)⁻¹"
    out = fac.evaluate(joint)
    assert list(out.columns) == ["x", "p"]
    np.testing.assert_allclose(_values(out), [1 / 3, 2 / 3, 0.0], atol=1e-12)
    pop = fac.evaluate(joint, population=True)
    np.testing.assert_allclose(_values(pop), [1 / 3, 2 / 3, 0.0], atol=1e-12)


def test_factorization_evaluate_proportional_normalises(joint: pd.DataFrame) -> None:
    # pD(x, z=1) pD(x)^-1 = pD(z=1 | x) = (1/2, 2/5, .), normalised (5/9, 4/9, 0); x = 2 is 0
    # because its first factor is 0
    fac = Factorization(
        (Factor(Term((Var("x"), Var("z", 1)))), Factor(Term((Var("x"),)), -1)),
        proportional=True,
    )
    np.testing.assert_allclose(_values(fac.evaluate(joint)), [5 / 9, 4 / 9, 0.0], atol=1e-12)
    # population: p(z=1 | x) = (2/3, 4/7), normalised
    total = 2 / 3 + 4 / 7
    np.testing.assert_allclose(
        _values(fac.evaluate(joint, population=True)),
        [2 / 3 / total, 4 / 7 / total, 0.0],
        atol=1e-12,
    )
    # the same product, not marked proportional, is left as it is
    plain = Factorization(fac.factors)
    np.testing.assert_allclose(_values(plain.evaluate(joint)), [1 / 2, 2 / 5, 0.0], atol=1e-12)


def test_factorization_evaluate_undefined_factor_gives_nan(joint: pd.DataFrame) -> None:
    # no factor is zero at x = 2, so the undefined pD(z=1 | x=2) makes the product NaN; the
    # proportional normalisation runs over the defined entries only
    fac = Factorization.from_terms([Term((Var("z", 1),), (Var("x"),))], proportional=True)
    np.testing.assert_allclose(
        _values(fac.evaluate(joint)), [0.5 / 0.9, 0.4 / 0.9, np.nan], atol=1e-12
    )


def test_factorization_evaluate_product_over_variables(joint: pd.DataFrame) -> None:
    # pD(x) pD(z) over the grid of (x, z): an outer product in natural column order
    fac = Factorization.from_terms([Term((Var("z"),)), Term((Var("x"),))])
    out = fac.evaluate(joint, population=True)
    assert list(out.columns) == ["x", "z", "p"]
    px = {0: 0.3, 1: 0.7, 2: 0.0}
    pz = {0: 0.4, 1: 0.6}
    for r in out.itertuples():
        assert r.p == pytest.approx(px[int(r.x)] * pz[int(r.z)])


def test_factorization_evaluate_docstring_example() -> None:
    table = pd.DataFrame({"x": [0, 1], "S": [1, 1], "p": [0.25, 0.75]})
    fac = Factorization((Factor(Term((Var("x"),))),))
    assert fac.evaluate(table)["p"].tolist() == [0.25, 0.75]


def test_zero_denominator_is_undefined_not_zero():
    joint = pd.DataFrame({"x": [0, 1], "z": [0, 0], "S": [1, 1], "p": [1.0, 0.0]})
    f = Factorization((Factor(Term((Var("z", 1),)), -1),))
    assert np.isnan(f.evaluate(joint)["p"].iloc[0])
    # a zero numerator still wins over an undefined denominator
    g = Factorization((Factor(Term((Var("x"),))), Factor(Term((Var("z", 1),)), -1)))
    out = g.evaluate(joint)
    assert out.loc[out["x"] == 1, "p"].item() == 0.0
    assert np.isnan(out.loc[out["x"] == 0, "p"].item())
