# `make run`  : set everything up, then train the default Sgmod classifier.
# `make test` : set everything up, then run the whole test suite (CI runs this): two pytest-xdist workers,
#               one module per worker. Serial, it took 25:17 on CI's 2 cores (stop 42); two workers took
#               18:43 on a 2-core AMD EPYC. Two, not one per core: each test module spawns trainers and
#               sweep workers of its own, and the sweeper/SLURM tests wait on real heartbeats.
# `make test-fast` : the tests that train nothing, start no server and spawn no src/train.py (under
#                    3 min on 2 cores), on every core (pytest-xdist, one module per worker so a module's
#                    fixtures are built once): run it after each change. `make test` runs them too.
# `make offline-bundle` : wheels + Fashion-MNIST for a GPU node without internet (README, "Offline GPU node").
# They are idempotent: a second call only re-installs when pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?= activation=sgmod

BUNDLE ?= offline-bundle

.PHONY: run test test-fast lint setup data services clean offline-bundle

run: setup data
	$(PY) src/train.py $(ARGS)

test: setup services
	$(PY) -m pytest tests -n 2 --dist loadscope

test-fast: setup
	$(PY) -m pytest tests -m "not slow" -n auto --dist loadscope

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
