"""Names that moved with the layout of issue 23 say where they went."""

import pytest

import sedge_pyro as sp


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("SEDGEModel", "sedge_pyro.SEDGEModel"),
        ("ImageSEDGE", "sedge_pyro.experiments.ImageSEDGE"),
        ("ConditionalImageVAE", "sedge_pyro.experiments.ConditionalImageVAE"),
        ("AttributeClassifier", "sedge_pyro.experiments.AttributeClassifier"),
        ("convert", "sedge_pyro.convert"),
    ],
)
def test_a_moved_name_says_where_it_went(name, where):
    with pytest.raises(AttributeError, match=f"has moved: use {where}"):
        getattr(sp.models, name)


def test_an_unknown_name_is_a_plain_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        sp.models.nothing  # noqa: B018


def test_the_user_class_is_the_program_with_fit_and_sample():
    assert issubclass(sp.SEDGEModel, sp.models.SEDGEProgram)
    assert not hasattr(sp.models.SEDGEProgram, "fit")
    assert not hasattr(sp.models.SEDGEProgram, "sample")
    assert sp.inference.SEDGEModel is sp.SEDGEModel
