"""Model files hold data, never code: safetensors + JSON, hostile and damaged files refused."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

import sedge_pyro as sp
from sedge_pyro import SEDGEModel
from sedge_pyro.experiments import ConditionalImageVAE, ImageSEDGE
from sedge_pyro.models import LatentSEDGE
from sedge_pyro.models.files import LegacyFormatError, read_state, write_state

FAST = {"steps": 20, "batch_size": 64, "progress": False}
LOADERS = [SEDGEModel.load, LatentSEDGE.load, ImageSEDGE.load, ConditionalImageVAE.load]


class Payload:
    """Unpickling this creates the marker folder: what a hostile model file would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def fitted():
    seen, _, graph = sp.datasets.paper_synthetic(600, seed=0)
    df = seen.assign(colour=np.where(seen["z1"] > seen["z1"].median(), "red", "blue"))
    graph = sp.SpecGraph.from_parents({"z1": ["x1", "x2"], "z2": ["x2", "x3"], "colour": ["x1"]})
    model = SEDGEModel(graph, prior="flow", hidden=(8,), prior_options={"n_transforms": 1})
    return model.fit(df, **FAST), df


def hostile_files(tmp_path, marker):
    """The two ways a pickle reaches a user: a plain pickle and a torch.save zip."""
    plain, zipped = tmp_path / "plain.pt", tmp_path / "zipped.pt"
    with open(plain, "wb") as fh:
        pickle.dump({"format": 1, "graph": Payload(str(marker))}, fh)
    torch.save({"format": 1, "graph": Payload(str(marker))}, zipped)
    return [plain, zipped]


@pytest.mark.parametrize("load", LOADERS, ids=lambda f: f.__self__.__name__)
def test_a_pickle_that_would_run_code_runs_nothing(tmp_path, load):
    marker = tmp_path / "pwned"
    for path in hostile_files(tmp_path, marker):
        with pytest.raises(LegacyFormatError, match=r"old pickle format.*sedge convert"):
            load(path)
        assert not marker.exists()
    # the payload is real: unpickling it (what the old loader did) does create the marker
    with open(tmp_path / "plain.pt", "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_sedge_sample_on_a_hostile_file_is_one_line_and_exit_2(tmp_path):
    marker = tmp_path / "pwned"
    for path in hostile_files(tmp_path, marker):
        proc = subprocess.run(
            [sys.executable, "-m", "sedge_pyro.cli", "sample", str(path), "--target", "z1=1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sedge: error:"), proc.stderr
        assert str(path) in lines[0] and "old pickle format" in lines[0]
        assert not marker.exists()


def test_round_trip_is_exact_and_the_file_is_safetensors(tmp_path, fitted):
    model, df = fitted
    path = model.save(tmp_path / "m.safetensors")
    # a plain safetensors file: any safetensors reader opens it, the rest is JSON metadata
    tensors = safetensors.torch.load_file(path)
    assert any(k.startswith("/components/prior/state/") for k in tensors)
    with safetensors.safe_open(str(path), "pt") as fh:
        header = json.loads(fh.metadata()["sedge_pyro.state"])
        assert fh.metadata()["sedge_pyro.version"] == sp.__version__
    assert header["format"] == 1 and header["structure"] == "sparse"
    loaded = SEDGEModel.load(path)
    np.testing.assert_array_equal(model.log_prob(df.head(50)), loaded.log_prob(df.head(50)))
    assert loaded.history == model.history
    assert loaded.columns["colour"].categories == ["blue", "red"]
    pd.testing.assert_frame_equal(loaded.seen, model.seen, check_dtype=False)
    assert loaded.seen["colour"].tolist() == model.seen["colour"].tolist()


def test_save_refuses_to_replace_a_file_unless_asked(tmp_path, fitted):
    model, _ = fitted
    path = tmp_path / "m.safetensors"
    path.write_text("the user's own file")
    with pytest.raises(sp.SedgeError, match=r"m\.safetensors.*exists.*overwrite=True"):
        model.save(path)
    assert path.read_text() == "the user's own file"
    model.save(path, overwrite=True)
    assert SEDGEModel.load(path).fitted


def test_temporary_files_have_unique_names_and_leave_a_users_file_alone(tmp_path, fitted):
    model, _ = fitted
    own = tmp_path / ".m.safetensors.tmp"
    own.write_text("mine")
    model.save(tmp_path / "m.safetensors")
    assert own.read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == [".m.safetensors.tmp", "m.safetensors"]


def test_two_saves_at_once_leave_one_whole_file_and_one_refusal(tmp_path, fitted):
    model, df = fitted
    source = model.save(tmp_path / "source.safetensors")
    target = tmp_path / "race.safetensors"
    script = textwrap.dedent(
        f"""
        import sys, sedge_pyro as sp
        model = sp.SEDGEModel.load({str(source)!r})
        try:
            model.save({str(target)!r})
        except sp.SedgeError:
            sys.exit(3)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 3, 3]
    np.testing.assert_array_equal(
        SEDGEModel.load(target).log_prob(df.head(10)), model.log_prob(df.head(10))
    )
    assert sorted(os.listdir(tmp_path)) == ["race.safetensors", "source.safetensors"]


def test_convert_is_the_one_path_that_unpickles_and_needs_trust(tmp_path, fitted):
    model, df = fitted
    old = tmp_path / "old.pt"
    torch.save(model.state(), old)  # exactly what save() wrote before the safe format
    with pytest.raises(LegacyFormatError, match="old.pt"):
        SEDGEModel.load(old)
    with pytest.raises(sp.SedgeError, match="trust=True"):
        sp.convert(old, tmp_path / "new.safetensors")
    assert not (tmp_path / "new.safetensors").exists()
    new = sp.convert(old, tmp_path / "new.safetensors", trust=True)
    np.testing.assert_array_equal(
        SEDGEModel.load(new).log_prob(df.head(20)), model.log_prob(df.head(20))
    )
    with pytest.raises(sp.SedgeError, match="exists"):
        sp.convert(old, new, trust=True)
    with pytest.raises(sp.SedgeError, match="old file itself"):
        sp.convert(old, old, trust=True, overwrite=True)
    with pytest.raises(sp.SedgeError, match="not a model file of the old"):
        sp.convert(new, tmp_path / "again.safetensors", trust=True)


def test_convert_other_model_classes(tmp_path):
    rng = np.random.default_rng(0)
    latent = LatentSEDGE(2, 1, 3, 2, hidden=(4,))
    y_x, y_z = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    latent.fit(y_x, y_z, steps=3, batch_size=20, progress=False, align=False)
    torch.save(latent.state(), tmp_path / "latent.pt")
    back = LatentSEDGE.load(sp.convert(tmp_path / "latent.pt", tmp_path / "l.st", trust=True))
    assert back.config() == latent.config()
    np.testing.assert_allclose(back.decode(x=np.zeros((2, 2))), latent.decode(x=np.zeros((2, 2))))
    cvae = ConditionalImageVAE(2, size=8, width=4, attributes={"colour": ["red", "blue"]})
    torch.save(cvae.state(), tmp_path / "cvae.pt")
    back = ConditionalImageVAE.load(sp.convert(tmp_path / "cvae.pt", tmp_path / "c.st", trust=True))
    assert back.config() == cvae.config()


def damaged(tmp_path, fitted, edit):
    model, _ = fitted
    state = model.state()
    edit(state)
    return write_state(state, tmp_path / "damaged.safetensors")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("columns"), "missing entry 'columns'"),
        (
            lambda s: s["components"]["prior"].update({"class": "os.system"}),
            "unknown class 'os.system'",
        ),
        (lambda s: s["components"]["prior"]["config"].update({"bogus": 1}), "bogus"),
        (lambda s: s["components"]["prior"]["config"].update({"dim": "three"}), "damaged"),
        (lambda s: s.update({"hidden": "sixty-four"}), "damaged"),
        (lambda s: s.update({"graph": {"nodes": 5}}), "damaged"),
        (lambda s: s["components"]["z1"]["state"].popitem(), "damaged"),
        (
            lambda s: s["components"]["z1"]["state"].update(
                {k: torch.zeros(1) for k in list(s["components"]["z1"]["state"])[:1]}
            ),
            "damaged",
        ),
        (lambda s: s.update({"format": 99}), "of format 1"),
    ],
)
def test_a_damaged_file_with_the_right_tag_names_the_file(tmp_path, fitted, edit, message):
    path = damaged(tmp_path, fitted, edit)
    with pytest.raises(sp.SedgeError, match="damaged.safetensors") as info:
        SEDGEModel.load(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a model",
        b"\x00" * 8,
        (2**62).to_bytes(8, "little") + b"{}",
        (40).to_bytes(8, "little") + b'{"__metadata__": {"a": "b"}}'.ljust(40),
        (10).to_bytes(8, "little") + b"\xff" * 10,
    ],
)
def test_garbage_bytes_give_a_sedge_error_naming_the_file(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    for load in LOADERS:
        with pytest.raises(sp.SedgeError, match="junk.safetensors"):
            load(path)


def test_a_safetensors_file_of_someone_else_and_a_truncated_file(tmp_path, fitted):
    model, _ = fitted
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(sp.SedgeError, match="without sedge-pyro's header"):
        SEDGEModel.load(foreign)
    whole = model.save(tmp_path / "whole.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(sp.SedgeError, match="cut.safetensors"):
        SEDGEModel.load(cut)
    # a header naming a tensor the file lacks
    state = model.state()
    path = write_state(state, tmp_path / "ok.safetensors")
    with safetensors.safe_open(str(path), "pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    tensors.pop(next(iter(tensors)))
    safetensors.torch.save_file(tensors, tmp_path / "lacking.safetensors", metadata=meta)
    with pytest.raises(sp.SedgeError, match="does not hold"):
        SEDGEModel.load(tmp_path / "lacking.safetensors")


def test_missing_file_and_directory_are_told_apart(tmp_path):
    with pytest.raises(sp.SedgeError, match="nope.safetensors.*does not exist"):
        SEDGEModel.load(tmp_path / "nope.safetensors")
    with pytest.raises(sp.SedgeError, match="is a directory"):
        SEDGEModel.load(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_load_on_a_missing_device_blames_the_device(tmp_path, fitted):
    model, _ = fitted
    path = model.save(tmp_path / "m.safetensors")
    with pytest.raises(sp.OptionError, match="CUDA is not available"):
        SEDGEModel.load(path, device="cuda")


def test_names_that_look_like_the_files_own_markers_round_trip(tmp_path):
    state = {"format": 1, "__tensor__": {"__ndarray__": "x"}, "rows": np.array(["a", None])}
    back, _ = read_state(write_state(state, tmp_path / "s.safetensors"), 1, "state")
    assert back["__tensor__"] == {"__ndarray__": "x"}
    assert back["rows"].tolist() == ["a", None]


def test_sedge_convert_needs_trust_then_writes_a_safe_file(tmp_path, fitted, capsys):
    from sedge_pyro.cli import main

    model, df = fitted
    marker = tmp_path / "pwned"
    for path in hostile_files(tmp_path, marker):
        assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--trust" in err
        assert not marker.exists() and not (tmp_path / "out.safetensors").exists()
    old = tmp_path / "old.pt"
    torch.save(model.state(), old)
    new = tmp_path / "new.safetensors"
    assert main(["convert", str(old), str(new), "--trust"]) == 0
    assert "converted" in capsys.readouterr().out
    np.testing.assert_array_equal(
        SEDGEModel.load(new).log_prob(df.head(5)), model.log_prob(df.head(5))
    )
    assert main(["convert", str(old), str(new), "--trust"]) == 2
    assert "exists" in capsys.readouterr().err


def test_a_diffusion_prior_saved_before_the_box_loads_unboxed(tmp_path):
    seen, _, graph = sp.datasets.linear_gaussian(500, seed=0)
    options = {"T": 10, "hidden": (8,), "box": False}
    model = SEDGEModel(graph, prior="diffusion", hidden=(8,), prior_options=options)
    model.fit(seen, steps=20, progress=False)
    state = model.state()
    # what a file written before DiffusionPrior had a box holds
    del state["components"]["prior"]["config"]["box"]
    state["prior_options"] = {"T": 10, "hidden": [8]}
    old = SEDGEModel.from_state(state)
    assert old.prior.box is False
    a = model.sample({"z1": 1.0}, n=20, method="dps", seed=0).values
    b = old.sample({"z1": 1.0}, n=20, method="dps", seed=0).values
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # and a boxed one round-trips through a file with its box
    boxed = SEDGEModel(graph, prior="diffusion", hidden=(8,), prior_options={"T": 10})
    boxed.fit(seen, steps=20, progress=False)
    path = boxed.save(tmp_path / "boxed.sedge")
    back = SEDGEModel.load(path)
    assert back.prior.boxed
    torch.testing.assert_close(back.prior.box_low, boxed.prior.box_low)
