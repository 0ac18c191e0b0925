# `make run`  : set everything up, then train the default Sgmod classifier.
# `make test` : set everything up, then run the test suite.
# `make offline-bundle` : wheels + Fashion-MNIST for a GPU node without internet (README, "Offline GPU node").
# Both are idempotent: a second call only re-installs when pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?= activation=sgmod

BUNDLE ?= offline-bundle

.PHONY: run test lint setup data services clean offline-bundle

run: setup data
	$(PY) src/train.py $(ARGS)

test: setup services
	$(PY) -m pytest tests

lint: setup
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,sweep]'
	touch $@

data:
	@bash scripts/install_data.sh

services:
	@bash scripts/install_test_services.sh

offline-bundle: setup
	bash scripts/offline_bundle/make_bundle.sh $(BUNDLE)

clean:
	rm -rf $(VENV) outputs $(BUNDLE)
