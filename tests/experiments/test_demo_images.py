"""``sedge images``: the image pipeline end to end on a tiny run, its outputs and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sedge_pyro import cli
from sedge_pyro.errors import OptionError, SedgeError
from sedge_pyro.experiments.images import (
    METHODS,
    SEDGE_METHODS,
    image_experiment,
    score_images,
    table_markdown,
    write_image_outputs,
)

#: the whole pipeline at toy size: it runs every stage, its numbers mean nothing
TINY = {
    "images": 400,
    "vae_steps": 300,
    "cvae_steps": 20,
    "fit_steps": 20,
    "judge_images": 300,
    "draws": 8,
    "width": 8,
    "diffusion_T": 20,
    "prior_steps": 50,
}


@pytest.fixture(scope="module")
def tiny():
    return image_experiment(seed=0, sizes=TINY, threshold=0.3, progress=False)


def test_a_tiny_run_scores_every_method_on_every_held_out_combination(tiny):
    combos = {"circle+blue", "square+red", "triangle+green"}
    methods = [m for m, _ in METHODS] + ["real"]
    assert {(r["combo"], r["method"]) for r in tiny.rows} == {
        (c, m) for c in combos for m in methods
    }
    for r in tiny.rows:
        assert r["status"] in ("IDENTIFIABLE", "CONSERVATIVE")
        assert 0.0 <= r["joint"] <= 1.0
        if "error" not in r:
            # joint accuracy never exceeds either attribute's accuracy
            assert r["joint"] <= min(r["shape"], r["colour"]) + 1e-12
    assert set(tiny.graph.specs) == {"shape", "colour", "size", "position"}
    assert set(tiny.judge_accuracy) >= {"shape", "colour", "joint"}
    assert tiny.masks.shape == (4, 2 + 10)
    for (combo, method), images in tiny.images.items():
        assert images.ndim == 4 and images.shape[1:] == (3, 32, 32), (combo, method)
    assert tiny.best[0] in SEDGE_METHODS
    assert "| method | mean joint accuracy |" in table_markdown(tiny)
    # the concept check ran before generation, on every held-out combination
    assert set(tiny.concept_check) == combos
    assert all(0.0 <= v <= 1.0 for v in tiny.concept_check.values())


def test_a_low_concept_check_is_a_warning_in_the_table_and_the_file(tiny, tmp_path):
    import dataclasses

    exp = dataclasses.replace(tiny, concept_check={"circle+blue": 0.97, "square+red": 0.62})
    (line,) = exp.warnings
    assert "square+red" in line and "62%" in line and "circle+blue" not in line
    assert f"- warning: {line}" in table_markdown(exp)
    payload = json.loads((write_image_outputs(exp, tmp_path / "w") / "table.json").read_text())
    assert payload["warnings"] == [line] and payload["concept_check"]["square+red"] == 0.62
    assert dataclasses.replace(tiny, concept_check={"square+red": 0.95}).warnings == []


def test_outputs_are_written_and_a_different_run_is_refused(tiny, tmp_path):
    out = write_image_outputs(tiny, tmp_path / "images")
    assert {p.name for p in out.iterdir()} == {"figure.png", "table.md", "table.json", "run.json"}
    payload = json.loads((out / "table.json").read_text())
    assert len(payload["rows"]) == len(tiny.rows) and "masks" in payload
    assert (out / "figure.png").stat().st_size > 10_000
    # the same run may be written again; a different one needs force
    write_image_outputs(tiny, out)
    (out / "run.json").write_text(json.dumps({"config": {"seed": 1}}))
    with pytest.raises(SedgeError, match="holds a different run"):
        write_image_outputs(tiny, out)
    write_image_outputs(tiny, out, force=True)


def test_score_images_on_real_images_is_perfect_for_a_perfect_judge():
    class Judge:
        def predict(self, images):
            import pandas as pd

            return pd.DataFrame({"shape": ["circle"] * len(images), "colour": ["blue"] * 3})

        def features(self, images):
            return images.reshape(len(images), -1)[:, :4].astype(float)

    rng = np.random.default_rng(0)
    imgs = rng.random((3, 3, 8, 8)).astype(np.float32)
    s = score_images(Judge(), imgs, {"shape": "circle", "colour": "blue"}, imgs)
    assert s["shape"] == s["colour"] == s["joint"] == 1.0
    assert s["mmd"] == pytest.approx(0.0, abs=1e-9) and s["diversity"] == pytest.approx(1.0)


def test_bad_sizes_are_named():
    with pytest.raises(OptionError, match="sizes names 'rows'"):
        image_experiment(sizes={"rows": 10}, progress=False)
    with pytest.raises(OptionError, match=r"sizes\['draws'\]=0"):
        image_experiment(sizes={"draws": 0}, progress=False)
    with pytest.raises(OptionError, match="seed=-1"):
        image_experiment(seed=-1, progress=False)


def test_cli_refuses_a_different_run_before_working(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"config": {"seed": 5, "quick": True, "pool": True}}))
    assert cli.main(["images", "--quick", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a different run" in err
    (tmp_path / "file").write_text("x")
    assert cli.main(["images", "--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_too_few_real_images_are_refused_before_any_fit():
    with pytest.raises(OptionError, match=r"sizes\['images'\]=20 leaves \d real images of"):
        image_experiment(sizes={"images": 20}, progress=False)
