# Two entry points for a fresh machine:
#   make demo   set up .venv, install the package, train LightGCN on the built-in data set
#   make test   set up .venv, install the package (non-editable) with test extras, run the tests
# and the documentation site:
#   make docs   the same install plus the docs extra; build docs/ with warnings as errors
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
BIN     = $(VENV)/bin
DEMO_OUT ?= runs/demo
SOURCES := $(shell find csrc kernels fastgcn_denoise -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.cu' -o -name '*.h' \)) setup.py pyproject.toml

.PHONY: demo test lint docs bench info clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel ninja
	# The CPU build of torch (a plain `torch` requirement would pull a multi-GB CUDA build), and
	# triton, which the CPU wheel does not depend on.
	$(PIP) install -q torch==2.13.0 triton

# Non-editable install: the tests run against the installed package, not the source tree.
$(VENV)/.installed: $(VENV)/bin/python $(SOURCES)
	MAX_JOBS=2 $(PIP) install -q --no-build-isolation --force-reinstall --no-deps .
	$(PIP) install -q --no-build-isolation ".[test,plot]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/fastgcn-denoise info
	$(BIN)/fastgcn-denoise train --model lightgcn --out $(DEMO_OUT)

test: $(VENV)/.installed
	cd tests && FASTGCN_REQUIRE_INSTALLED=1 OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE ../$(BIN)/pytest -q -p no:cacheprovider .

# ruff (lint + format check) over the tree; the layers contract runs in the tests
# (tests/test_architecture.py) against the installed package.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs extra's requirements only (read from pyproject.toml): `pip install ".[docs]"` would
# rebuild and reinstall the package itself.
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['docs']))" > $(VENV)/docs-requirements.txt
	$(PIP) install -q -r $(VENV)/docs-requirements.txt
	touch $@

# The result tables are regenerated from bench/results/ first (docs/gen_tables.py; docs/conf.py
# runs it too, for a bare sphinx-build): a missing result file stops here with a one-line error.
# autodoc imports the installed package.
docs: $(VENV)/.docs-installed
	$(BIN)/python docs/gen_tables.py
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(VENV)/.installed
	$(BIN)/python -m bench

info: $(VENV)/.installed
	$(BIN)/fastgcn-denoise info

clean:
	rm -rf $(VENV) build *.egg-info runs docs/_build docs/_generated
