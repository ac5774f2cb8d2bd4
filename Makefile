# Two commands on a fresh machine:
#   make demo   # creates .venv, installs linrfm with every extra, runs the main job
#   make test   # creates .venv, installs linrfm with every extra, runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.linrfm-installed
# The CPU build of torch; a bare "torch" requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test venv bench-quick experiments-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/linrfm demo

test: $(STAMP)
	$(PY) -m pytest -q

bench-quick: $(STAMP)
	$(PY) -m pip install --quiet -e ".[all,bench]"
	$(PY) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) demo_output .pytest_cache
