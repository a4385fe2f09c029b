# The two commands of README.md: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast test-slow lint api-fuzz deploy-check bench install install-dev system-deps

run: $(VENV)/.installed
	$(BIN)/relay serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev system-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python scripts/schemathesis_run.py
	$(BIN)/pytest -m "not slow"
	$(BIN)/pytest -m slow

test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not slow"

test-slow: $(VENV)/.installed-dev system-deps
	$(BIN)/pytest -m slow

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Schemathesis (--checks all, 100 examples per operation) against a live relay with seeded ids; part of `test`.
api-fuzz: $(VENV)/.installed-dev
	$(BIN)/python scripts/schemathesis_run.py

deploy-check: $(VENV)/.installed-dev
	VENV=$(VENV) scripts/check-deploy.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The default run is the whole product: transcription included (the image's EXTRAS can slim it).
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[postgres,transcription]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml client/pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[postgres,transcription,dev]' -e './client[discord,cli]'
	touch $(VENV)/.installed $@

# Benchmarks print ratios measured side by side in one run; they are not part of `make test`.
bench: $(VENV)/.installed-dev
	-$(BIN)/python -m bench.ingest --rounds 2
	-$(BIN)/python -m bench.render
	-$(BIN)/python -m bench.delivery
	-$(BIN)/python -m bench.chaos
	-$(BIN)/python -m bench.takeover
	-$(BIN)/python -m bench.channel
	-$(BIN)/python -m bench.scale --postgres
	-$(BIN)/python bench/transcription.py

system-deps:
	VENV=$(VENV) scripts/install-test-deps.sh
