# sedge-pyro: `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch on these machines; elsewhere pip resolves pyproject's `torch>=2.2`.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-arviz1 lint format bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet '$(TORCH_PIN)' -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sedge demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q --doctest-modules sedge_pyro tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

# The ArviZ 1.x path (an xarray.DataTree; what Python >= 3.12 gets from `arviz>=0.23,<2`) on
# this Python: arviz-base and arviz-stats in a folder of their own, put on PYTHONPATH, make
# `arviz_base` importable, which selects that path. --no-deps: numpy, scipy, xarray,
# xarray-einstats and h5netcdf are already in the venv (ArviZ 0.x needs them), and --target
# would install second copies of them. SEDGE_EXPECT_ARVIZ=1 makes a test fail unless the
# DataTree path is the one tested.
ARVIZ1_SITE := .arviz1-site

$(ARVIZ1_SITE)/.installed: $(STAMP)
	rm -rf $(ARVIZ1_SITE)
	$(BIN)/pip install --quiet --no-deps --target $(ARVIZ1_SITE) 'arviz-base>=0.8' 'arviz-stats>=0.8'
	touch $@

test-arviz1: $(ARVIZ1_SITE)/.installed
	SEDGE_EXPECT_ARVIZ=1 PYTHONPATH=$(ARVIZ1_SITE) $(BIN)/python -m pytest -m "not slow" -q \
		tests/diagnostics/test_arviz_compat.py tests/inference/test_samples.py tests/inference/test_per_draw_targets.py \
		tests/inference/test_sample_verdict.py tests/cli/test_cli.py::test_sample_to_netcdf_round_trips

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/identify_scale.py
	$(BIN)/python benchmarks/fit_speed.py
	$(BIN)/python benchmarks/sample_speed.py
	$(BIN)/python benchmarks/paper_synthetic.py --seeds 5
	$(BIN)/python benchmarks/paper_latent.py --runs 10
	$(BIN)/python benchmarks/dual_estimator.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/pip install --quiet '$(TORCH_PIN)' -e '.[test,bench]'
	$(BIN)/python benchmarks/small_sample.py --seeds 3 --jobs 2

docs: $(STAMP)
	@echo "docs are Markdown under docs/; see docs/index.md"

clean:
	rm -rf $(VENV) $(ARVIZ1_SITE) build *.egg-info .pytest_cache .ruff_cache .hypothesis
