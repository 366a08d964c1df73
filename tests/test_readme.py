"""The README's example runs as written and prints what it says."""

import contextlib
import io
import re
from pathlib import Path

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
    assert lines[-2] == "CONSERVATIVE"
    assert float(lines[-1]) < 1.0  # held-out NLL per row of a fitted Gaussian likelihood


def test_readme_names_the_test_command_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in README.read_text()
    assert "make test" in ci
