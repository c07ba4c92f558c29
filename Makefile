# Two commands do all set-up: `make run` serves the API, `make test` runs the suite.
# Python 3.11 (the image's), 3.12 or 3.13; another venv per version: make test PYTHON=python3.13 VENV=.venv313
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV ?= .venv
BENCH_VENV := bench/.venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app.main:create_app
HOST ?= 127.0.0.1
PORT ?= 8000
# Settings come from the environment only, for `flask` as for the server (python-dotenv,
# which pydantic-settings brings, would make `flask` alone read a .env file).
export FLASK_SKIP_DOTENV := 1

.PHONY: help venv run serve migrate test lint format typecheck container-test replicas-test deploy-test pipeline-test k8s-check observability-check reliability-test bench bench-smoke clean

help:
	@echo "make run              serve the API on http://$(HOST):$(PORT) (SQLite unless DATABASE_URL is set)"
	@echo "make test             run the whole test suite (PostgreSQL if it answers, and SQLite)"
	@echo "make lint             ruff (lint + format check) and mypy"
	@echo "make serve            run the production server (app/server.py: granian) locally"
	@echo "make container-test   build the image and run both compose stacks on a private Docker engine"
	@echo "make replicas-test    3 api replicas behind Caddy under load: one stopped and started again (root)"
	@echo "make deploy-test      deploy.sh rolls releases under load, 1 and 3 replicas, no failed request (root)"
	@echo "make pipeline-test    run .gitlab-ci.yml's test/build/deploy/rollback jobs locally (gitlab-ci-local, root)"
	@echo "make k8s-check        render the kustomize overlays and validate them against the Kubernetes schemas"
	@echo "make observability-check  promtool: scrape config, alert rules and their unit tests"
	@echo "make bench            API vs raw-Python ceiling (~7 min), rewrites docs/performance.md"
	@echo "make bench-smoke      the whole benchmark harness with ~10 s of load (CI)"
	@echo "make reliability-test faults under load, fuzzing, backup/restore (own PostgreSQL cluster, root; at most 6 min)"

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12), (3, 13)) and "Python 3.11, 3.12 or 3.13 is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(BIN)/.installed

migrate: venv
	$(FLASK) db upgrade

run: migrate
	$(FLASK) run --debug --host $(HOST) --port $(PORT)

serve: migrate
	PORT=$(PORT) $(BIN)/python -m app.server --host $(HOST)

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
	$(BIN)/mypy

# The proofs (proofs/): minutes long, root only, one at a time per machine (proofs/lib.sh).
container-test:
	bash proofs/container/run.sh

replicas-test:
	bash proofs/replicas/run.sh

pipeline-test:
	bash proofs/pipeline/run.sh

# Bounded to 6 minutes; SIGINT lets pytest stop its servers and delete its PostgreSQL cluster.
reliability-test:
	bash proofs/reliability/run.sh $(PYTEST_ARGS)

deploy-test:
	bash proofs/deploy/run.sh

k8s-check:
	bash scripts/check-k8s.sh

observability-check:
	bash scripts/check-observability.sh

$(BENCH_VENV)/.installed: requirements.txt bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench: venv $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m bench.run $(BENCH_ARGS)

bench-smoke: venv $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m bench.run --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache instance
