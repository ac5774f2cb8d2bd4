# Two commands on a fresh machine:
#   make demo   # creates .venv, installs linrfm with the `demo` extra only (no torch,
#               # Dask or pyarrow: the demo imports none of them), runs the main job
#   make test   # creates .venv, installs linrfm with every extra, runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.linrfm-installed
DEMO_STAMP := $(VENV)/.linrfm-demo-installed
# torch for `make test`. From pypi.org on x86_64 Linux this is the CUDA build (several
# GB with its nvidia-* wheels); the CPU build comes from PyTorch's own index, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (see docs/install.md). The package index of this project's machines serves the CPU build.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test venv bench-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[demo]"
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/linrfm demo

test: $(STAMP)
	$(PY) -m pytest -q

# Every benchmark in its --quick mode (minutes; results *_quick.* are git-ignored).
bench-quick: $(STAMP)
	$(PY) -m pip install --quiet -e ".[all,bench]"
	for s in benchmarks/bench_*.py; do $(PY) $$s --quick || exit 1; done

clean:
	rm -rf $(VENV) demo_output .pytest_cache
