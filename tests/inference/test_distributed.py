"""Scale: fitting from files agrees with fitting from a DataFrame, two processes on gloo agree
with one, spread chains do not depend on the number of processes, and the launcher's
environment and --nproc are checked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sedge_pyro as sp
from sedge_pyro.cli import main
from sedge_pyro.inference.distributed import World, world


def _nll(model, rows: pd.DataFrame) -> float:
    return float(-np.mean(model.log_prob(rows)))


def test_a_parquet_fit_matches_the_dataframe_fit(tmp_path):
    seen, _, graph = sp.datasets.linear_gaussian(4000, seed=0)
    test, _, _ = sp.datasets.linear_gaussian(4000, seed=1)
    path = tmp_path / "rows.parquet"
    seen.to_parquet(path, row_group_size=1000)
    kw = dict(likelihood="gaussian", prior="gaussian")
    fit = dict(steps=500, progress=False)
    from_frame = sp.SEDGEModel(graph, **kw).fit(seen, **fit)
    from_file = sp.SEDGEModel(graph, **kw).fit(path, **fit)
    assert _nll(from_file, test) == pytest.approx(_nll(from_frame, test), abs=0.03)
    assert from_file.data_rows["rows"] == 4000
    assert from_file.data_rows["kept_rows"] == from_file.data_rows["train_rows"]
    assert from_frame.data_rows == {"rows": 4000, "kept_rows": 4000}
    assert len(from_file.seen) == from_file.data_rows["kept_rows"] > 3400
    # the saved model holds the kept rows and loads without the file
    from_file.save(tmp_path / "m.safetensors")
    back = sp.SEDGEModel.load(tmp_path / "m.safetensors")
    assert _nll(back, test) == pytest.approx(_nll(from_file, test), abs=1e-5)
    assert back.data_rows == from_file.data_rows


def test_world_without_a_launcher_is_one_process():
    assert world() == World(0, 1, 0)
    assert World(1, 2).distributed and not World(1, 2).main


@pytest.mark.parametrize(
    "env, match",
    [
        ({"SLURM_NTASKS": "4"}, "MASTER_ADDR is not set"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, "expected 0 <= RANK < WORLD_SIZE"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': expected a whole number"),
    ],
)
def test_a_malformed_launcher_environment_is_an_option_error(monkeypatch, env, match):
    for name in ("WORLD_SIZE", "RANK", "SLURM_NTASKS", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(sp.OptionError, match=match):
        world()


def test_nproc_is_checked_before_any_process_starts(tmp_path, capsys, monkeypatch):
    seen, _, graph = sp.datasets.linear_gaussian(200, seed=0)
    seen.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "g.json").write_text(graph.to_json())
    args = [
        "fit",
        str(tmp_path / "g.json"),
        str(tmp_path / "rows.csv"),
        "-o",
        str(tmp_path / "m.safetensors"),
    ]
    assert main([*args, "--nproc", "0"]) == 2
    assert "--nproc 0: expected a whole number from 1 to" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*args, "--nproc", "2"]) == 2
    assert "leave --nproc out" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_two_processes_fit_like_one_and_spread_chains_do_not_depend_on_them(tmp_path):
    seen, _, graph = sp.datasets.linear_gaussian(2000, seed=0)
    test, _, _ = sp.datasets.linear_gaussian(3000, seed=1)
    (tmp_path / "g.json").write_text(graph.to_json())
    (tmp_path / "rows").mkdir()
    seen.iloc[:1000].to_parquet(tmp_path / "rows" / "a.parquet")
    seen.iloc[1000:].to_parquet(tmp_path / "rows" / "b.parquet")
    common = [
        str(tmp_path / "g.json"),
        str(tmp_path / "rows"),
        "--steps",
        "150",
        "--quiet",
        "--prior",
        "gaussian",
    ]
    # the default likelihoods: a Gaussian MLP and a flow per spec, the choice agreed across
    # the processes
    assert main(["fit", *common, "-o", str(tmp_path / "two.safetensors"), "--nproc", "2"]) == 0
    assert main(["fit", *common, "-o", str(tmp_path / "one.safetensors")]) == 0
    two = sp.SEDGEModel.load(tmp_path / "two.safetensors")
    one = sp.SEDGEModel.load(tmp_path / "one.safetensors")
    assert two.chosen == one.chosen
    assert _nll(two, test) == pytest.approx(_nll(one, test), abs=0.08)
    draws = []
    for n in (2, 3):
        out = tmp_path / f"draws{n}.csv"
        code = main(
            [
                "sample",
                str(tmp_path / "two.safetensors"),
                "--target",
                "z1=1.0",
                "--chains",
                "4",
                "-n",
                "50",
                "--nproc",
                str(n),
                "-o",
                str(out),
                "--quiet",
            ]
        )
        assert code == 0
        draws.append(pd.read_csv(out))
    assert draws[0].shape == (200, 5)
    pd.testing.assert_frame_equal(draws[0], draws[1])


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_a_streamed_fit_and_its_draws_run_on_cuda(tmp_path):
    seen, _, graph = sp.datasets.linear_gaussian(3000, seed=0)
    test, _, _ = sp.datasets.linear_gaussian(3000, seed=1)
    seen.to_parquet(tmp_path / "rows.parquet", row_group_size=500)
    kw = dict(likelihood="gaussian", prior="flow")
    on_gpu = sp.SEDGEModel(graph, **kw).fit(
        tmp_path / "rows.parquet", steps=300, device="cuda", progress=False
    )
    on_cpu = sp.SEDGEModel(graph, **kw).fit(tmp_path / "rows.parquet", steps=300, progress=False)
    assert on_gpu.device.type == "cuda"
    assert _nll(on_gpu, test) == pytest.approx(_nll(on_cpu, test), abs=0.05)
    s = on_gpu.sample({"z1": 1.0}, n=500, method="plan", chains=2)
    assert s.info["device"].startswith("cuda") and np.isfinite(s.values).all()


def test_auto_prior_on_a_file_scores_both_candidates_on_its_held_out_rows(tmp_path):
    seen, _, graph = sp.datasets.linear_gaussian(3000, seed=0)
    seen.to_parquet(tmp_path / "rows.parquet", row_group_size=700)
    model = sp.SEDGEModel(graph, likelihood="gaussian").fit(
        tmp_path / "rows.parquet", steps=200, progress=False
    )
    auto = model.history["prior"]["auto"]
    # Gaussian features: the closed-form Gaussian is the right model, and its held-out NLL
    # (normalised units, 3 features) is the entropy of the standardised covariance
    x = (seen[list(model.features)] - seen[list(model.features)].mean()) / seen[
        list(model.features)
    ].std(ddof=0)
    entropy = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * np.cov(x.T, bias=True))[1]
    assert auto["held_out_nll"]["gaussian"] == pytest.approx(entropy, abs=0.1)
    assert np.isfinite(auto["held_out_nll"]["flow"])
    assert auto["chosen"] == "gaussian"
