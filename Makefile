# Two entry points for a fresh machine:
#   make demo   set up .venv, install the package, train LightGCN on the built-in data set
#   make test   set up .venv, install the package (non-editable) with test extras, run the tests
# and the documentation site:
#   make docs   the same install plus the docs extra; build docs/ with warnings as errors
# and the GPU-readiness checks CI runs after the tests (no GPU needed):
#   make aot-check   every Triton kernel compiled for sm_90 / sm_80 under the venv's Triton and
#                    the oldest supported one (TRITON_OLDEST), with the launches `make test`
#                    recorded; writes bench/results/triton_compile.json (tools/aot_compile.py)
#   make cuda-check  csrc/cuda/*.cu compiled for sm_90 / sm_80 by nvcc 13.0 from PyPI (registers,
#                    spills); not in .ci/run (~2.5 min of CPU would pass the 20-minute budget):
#                    run it before every CUDA change
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
BIN     = $(VENV)/bin
DEMO_OUT ?= runs/demo
SOURCES := $(shell find csrc kernels fastgcn_denoise -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.cu' -o -name '*.h' \)) setup.py pyproject.toml

.PHONY: demo test lint docs bench info clean aot-check cuda-check
TRITON_OLDEST ?= 3.6.0
AOT_DIR ?= build/aot


$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel ninja
	# The CPU build of torch (a plain `torch` requirement would pull a multi-GB CUDA build), and
	# triton (pinned: the newest release `make aot-check` compiles for), which the CPU wheel does
	# not depend on.
	$(PIP) install -q torch==2.13.0 triton==3.9.0

# Non-editable install: the tests run against the installed package, not the source tree.
# build/lib is removed first: setuptools never deletes a module that left the tree from it, and
# the wheel would install it again.
$(VENV)/.installed: $(VENV)/bin/python $(SOURCES)
	rm -rf build/lib.* build/bdist.*
	MAX_JOBS=2 $(PIP) install -q --no-build-isolation --force-reinstall --no-deps .
	$(PIP) install -q --no-build-isolation ".[test,plot]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/fastgcn-denoise info
	$(BIN)/fastgcn-denoise train --model lightgcn --out $(DEMO_OUT)

# The tests also record every interpreted Triton launch for aot-check (tools/aot_compile.py).
test: $(VENV)/.installed
	rm -f $(AOT_DIR)/tests.jsonl
	cd tests && FASTGCN_REQUIRE_INSTALLED=1 OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE \
		AOT_RECORD=$(CURDIR)/$(AOT_DIR)/tests.jsonl PYTHONPATH=$(CURDIR)/tools \
		../$(BIN)/pytest -q -p no:cacheprovider -p aot_compile .

# The oldest supported Triton in a side folder (the venv keeps the newest).
$(VENV)/triton-$(TRITON_OLDEST)/.installed: $(VENV)/bin/python
	$(PIP) install -q --target $(VENV)/triton-$(TRITON_OLDEST) --no-deps triton==$(TRITON_OLDEST)
	touch $@

aot-check: $(VENV)/.installed $(VENV)/triton-$(TRITON_OLDEST)/.installed
	$(BIN)/python tools/aot_compile.py check --jobs 2 --workdir $(AOT_DIR) \
		--records $(AOT_DIR)/tests.jsonl --side $(VENV)/triton-$(TRITON_OLDEST) \
		--json bench/results/triton_compile.json

cuda-check: $(VENV)/bin/python
	PYTHON=$(BIN)/python bash tools/cuda_check.sh $(VENV)/nvcc

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
