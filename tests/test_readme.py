"""The README's example runs as written and prints what it says."""

import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "CONSERVATIVE"
    assert lines[1] == "['x2']"
    assert lines[2] == "pD(x1, x2 | z1=1) · pD(z2=1 | x2) · pD(x3 | x2, z2=1)"
    # the sampling part: plan's means for the novel target are the Oracle's (App. D.1)
    (drawn,) = [ln for ln in lines if ln.startswith("CONSERVATIVE [")]
    means = ast.literal_eval(drawn.split(" ", 1)[1])
    assert np.allclose(means, [0.16, 0.78, 0.72], atol=0.03)
    header, row = lines[-2].split(), lines[-1].split()
    assert header == ["z1", "z2", "all"] and row[0] == "likelihood"
    assert 0.5 < float(row[3]) <= 1.0  # the draws meet the target under the fitted model


def test_readme_names_the_test_command_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in README.read_text()
    assert "make test" in ci
