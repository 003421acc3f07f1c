# STREAMER in Python. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The data sets: ../shared/data beside the checkout when it exists (developers, CI), else ./data.
DATA_DIR ?= $(if $(wildcard ../shared/data/kdd-cup-99),$(abspath ../shared/data),$(abspath data))
PYTEST_ARGS ?=
API_PORT ?= 8000
export STREAMER_DATA_DIR := $(DATA_DIR)

KDD_URL := http://kdd.ics.uci.edu/databases/kddcup99/kddcup.data_10_percent.gz
SAMPLE_URL := https://raw.githubusercontent.com/streamer-framework/streamer/master/data/data_kdd-cup-99/multiclass_classification_kdd_cup_99.csv
# Environment of the locally started services (ports, URLs), for commands that talk to them.
WITH_SERVICES_ENV := eval "$$(bash scripts/services.sh env)" &&

.PHONY: help install services services-down services-status data test test-unit lint fmt up down bench browser

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install the project with its dev tools

services: ## Install (if missing) and start Kafka, Redis, InfluxDB, Elasticsearch on loopback
	bash scripts/services.sh up

services-down: ## Stop exactly what `make services` started
	bash scripts/services.sh down

services-status: ## Show which local services run, where
	bash scripts/services.sh status

data: ## Download the public data sets that are missing from DATA_DIR
	@mkdir -p "$(DATA_DIR)/kdd-cup-99"
	@for pair in "kddcup.data_10_percent.gz $(KDD_URL)" \
	             "multiclass_classification_kdd_cup_99.csv $(SAMPLE_URL)"; do \
	  set -- $$pair; target="$(DATA_DIR)/kdd-cup-99/$$1"; \
	  if [ -s "$$target" ]; then echo "present: $$target"; continue; fi; \
	  echo "downloading $$2"; \
	  curl -fL --retry 3 -o "$$target.part" "$$2" && mv "$$target.part" "$$target" \
	    || { rm -f "$$target.part"; echo "error: could not download $$2 to $$target" >&2; exit 1; }; \
	done

browser: ## Install Debian's chromium and playwright-core (tests/browser) for the dashboard's browser test
	bash scripts/browser-setup.sh

test: install services browser ## Install, start the services, run every test (unit + integration)
	$(WITH_SERVICES_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## Run the tests that need no service
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

fmt: install ## ruff format and autofix
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

up: ## Run the pipeline of USECASE (e.g. make up USECASE=kdd-cup-99 or USECASE=a,b); Ctrl-C stops it
	@if [ -z "$(USECASE)" ]; then echo "error: say which use case: make up USECASE=kdd-cup-99" >&2; exit 2; fi
	@$(MAKE) --no-print-directory install data services
	$(VENV)/bin/streamer config validate $(subst $(comma), ,$(USECASE)) > /dev/null
	@echo "make up: local mode (the Compose deployment is not there yet): the pipeline runs as local"
	@echo "processes on the services of 'make services'. Dashboard: http://127.0.0.1:$(API_PORT)/dashboard,"
	@echo "health: http://127.0.0.1:$(API_PORT)/health, Kibana's dashboard: compose/kibana/ (needs Compose)."
	@mkdir -p .run && [ -s .run/model-secret ] || (umask 077 && $(PY) -c 'import secrets; print(secrets.token_hex(32))' > .run/model-secret)
	$(WITH_SERVICES_ENV) STREAMER_MODEL_SECRET="$${STREAMER_MODEL_SECRET:-$$(cat .run/model-secret)}" \
	  $(VENV)/bin/streamer run $(subst $(comma), ,$(USECASE)) --port $(API_PORT)

down: services-down ## Stop what `make up` started (the pipeline stops with Ctrl-C; this stops the services)

comma := ,

bench: install services ## Benchmark the pipeline on the whole KDD 10% file (JSON report, last line)
	$(WITH_SERVICES_ENV) $(PY) -m benchmarks.pipeline $(BENCH_ARGS)
