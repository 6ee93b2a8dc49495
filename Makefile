# Two commands do all the set-up on a fresh clone:
#   make train   creates .venv, installs npembed with what training needs, prepares the data,
#                trains the tutorial model
#   make test    creates .venv, installs npembed with everything, runs every test (parity tests included)
# and one more: make notebook re-runs docs/tutorial.ipynb and saves its outputs
#                (tests/test_notebook.py runs it in make test)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The shared offline archive, when this checkout has one beside it; otherwise npembed looks at
# --data / NPEMBED_DATA and tells you what to pass.
SHARED_DATA := $(wildcard ../shared/data/aclImdb_labeled.tar.gz)
DATA   ?= $(if $(NPEMBED_DATA),$(NPEMBED_DATA),$(SHARED_DATA))
RUN    ?= runs/tutorial
PYTEST_ARGS ?=

export NPEMBED_DATA := $(DATA)

.PHONY: install install-train train test notebook quick-bench bench clean

# Two installs: `make train` takes only what training uses (NumPy, plus tqdm and matplotlib for
# its progress bars and figures: setup.cfg's `train` extra; its .venv measured 198 MB); `make test`
# takes everything (`all`: TensorFlow and tensorflow-datasets for the parity tests, and more).
install: $(VENV)/.installed

install-train: $(VENV)/.installed-train

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@ $(VENV)/.installed-train

$(VENV)/.installed-train: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train]'
	touch $@

train: install-train
	$(BIN)/npembed prepare
	$(BIN)/npembed train --out $(RUN)

test: install
	$(BIN)/python -m pytest tests parity_tests $(PYTEST_ARGS)

notebook: install
	$(BIN)/python tests/test_notebook.py --write

quick-bench: install
	$(BIN)/python -m benchmarks --quick

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) *.egg-info
