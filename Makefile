# Model Library — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint venv migrate seed worker web bench-search clean

$(BIN)/.installed: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(BIN)/.installed

migrate: venv
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
test: lint
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/pytest
	@if [ -n "$$DATABASE_URL" ]; then \
		echo "== service-backed suite: DATABASE_URL=$$DATABASE_URL CELERY_BROKER_URL=$$CELERY_BROKER_URL"; \
		$(BIN)/pytest; \
	fi

bench-search: venv
	$(BIN)/python bench/search.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
