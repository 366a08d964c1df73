# sedge-pyro: `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch on these machines; elsewhere pip resolves pyproject's `torch>=2.2`.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint format bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet '$(TORCH_PIN)' -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sedge demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q --doctest-modules sedge_pyro models inference tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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
	$(BIN)/pip install --quiet '$(TORCH_PIN)' -e '.[test,bench]'
	$(BIN)/python benchmarks/small_sample.py --seeds 3 --jobs 2

docs: $(STAMP)
	@echo "docs are Markdown under docs/; see docs/index.md"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
