# Model Library — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint venv venv-runtime chromium migrate seed worker web bench-search clean

# Two install stamps: `make run` needs only the run-time set (requirements.txt);
# `make test`/`make lint` install the development set (requirements-dev.txt,
# which includes requirements.txt).
$(BIN)/.installed-runtime: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/.installed-runtime $@

venv-runtime: $(BIN)/.installed-runtime

venv: $(BIN)/.installed

# Debian's chromium for the browser tests (apt-get as root, sudo otherwise).
chromium:
	@bash scripts/ensure_chromium.sh

migrate: venv-runtime
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

# Web server and one Celery worker together; Ctrl-C stops both.
run: seed
	@echo "Model Library on http://127.0.0.1:$(PORT)/  (Ctrl-C stops web and worker)"
	$(BIN)/python scripts/run.py --port $(PORT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The SQLite suite always; the same suite on PostgreSQL (and the Celery broker
# named by CELERY_BROKER_URL) when DATABASE_URL points at a server.
test: lint chromium
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/pytest
	@if [ -n "$$DATABASE_URL" ]; then \
		echo "== service-backed suite: DATABASE_URL=$$DATABASE_URL CELERY_BROKER_URL=$$CELERY_BROKER_URL"; \
		$(BIN)/pytest; \
	fi

bench-search: venv
	$(BIN)/python bench/search.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
