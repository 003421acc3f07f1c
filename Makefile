# STREAMER in Python. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The data sets: ../shared/data beside the checkout when it exists (developers, CI), else ./data.
DATA_DIR ?= $(if $(wildcard ../shared/data/kdd-cup-99),$(abspath ../shared/data),$(abspath data))
PYTEST_ARGS ?=
comma := ,
API_PORT ?= 8000
export STREAMER_DATA_DIR := $(DATA_DIR)

KDD_URL := http://kdd.ics.uci.edu/databases/kddcup99/kddcup.data_10_percent.gz
SAMPLE_URL := https://raw.githubusercontent.com/streamer-framework/streamer/master/data/data_kdd-cup-99/multiclass_classification_kdd_cup_99.csv
# Environment of the locally started services (ports, URLs), for commands that talk to them.
WITH_SERVICES_ENV := eval "$$(bash scripts/services.sh env)" &&

.PHONY: help install lock typecheck services services-down services-status data test test-unit lint fmt docs up up-docker up-local down logs ps bench chaos browser

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# Exactly the versions of requirements/dev.lock (hash-checked), then the project itself. The
# moa extra brings MOA (capymoa); its batch helper is compiled with javac into the venv.
$(VENV)/.installed: requirements/dev.lock pyproject.toml shared/algorithms/MoaBatch.java
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m shared.algorithms.moa compile
	touch $@

install: $(VENV)/.installed ## Create .venv and install the project with its dev tools and MOA

LOCK := $(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet
lock: install ## Pin every dependency with its hashes (requirements/*.lock) after pyproject.toml changed
	$(LOCK) -o requirements/runtime.lock
	$(LOCK) --extra moa -o requirements/runtime-moa.lock
	$(LOCK) --extra dev --extra moa --extra sklearn -o requirements/dev.lock

typecheck: install ## mypy: strict on shared/, the default checks elsewhere
	$(VENV)/bin/mypy

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
	@# the federated example's shares are generated (services/federated/example.py: stdlib only)
	@if [ -s "$(DATA_DIR)/federated-regression/holdout.csv" ]; then echo "present: $(DATA_DIR)/federated-regression"; \
	else PYTHONPATH=. $(PYTHON) -m services.federated.example "$(DATA_DIR)"; fi

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

docs: install ## Regenerate the generated part of docs/wire-format.md from shared/wire
	$(PY) -m shared.wire.reference --update docs/wire-format.md

# Docker Compose when an engine answers (make up MODE=local forces local processes).
MODE ?= auto
COMPOSE_ENV ?= compose/.env
COMPOSE := docker compose -f compose/docker-compose.yml --env-file $(COMPOSE_ENV)
DOCKER_ANSWERS := docker info > /dev/null 2>&1 && docker compose version > /dev/null 2>&1
USECASES := $(subst $(comma), ,$(USECASE))
PIPELINE_PID := .run/pipeline.pid
PIPELINE_LOG := .run/pipeline.log

up: ## Run the pipeline of USECASE (make up USECASE=kdd-cup-99, or USECASE=a,b): Compose, else local
	@if [ -z "$(USECASE)" ]; then echo "error: say which use case: make up USECASE=kdd-cup-99 (folders under usecases/)" >&2; exit 2; fi
	@for name in $(USECASES); do [ -d "usecases/$$name" ] || { echo "error: no use case '$$name' (no folder usecases/$$name)" >&2; exit 2; }; done
	@if [ "$(MODE)" = docker ] || { [ "$(MODE)" = auto ] && $(DOCKER_ANSWERS); }; then \
	  $(MAKE) --no-print-directory up-docker; \
	else \
	  $(MAKE) --no-print-directory up-local; \
	fi

up-docker: data
	@echo "make up: Docker Compose mode (a Docker engine answers)"
	@python3 scripts/compose_env.py $(COMPOSE_ENV) USECASES=$(USECASE) STREAMER_DATA_DIR=$(DATA_DIR)
	$(COMPOSE) up --detach --build --wait
	@echo ""
	@echo "STREAMER runs $(USECASE) in Docker Compose:"
	@echo "  web dashboard   http://127.0.0.1:$(API_PORT)/dashboard"
	@echo "  health, config  http://127.0.0.1:$(API_PORT)/health   (token: STREAMER_API_TOKEN in $(COMPOSE_ENV))"
	@echo "  Kibana          http://127.0.0.1:5601   (user elastic, ELASTIC_PASSWORD in $(COMPOSE_ENV))"
	@echo "  make logs | make ps | make down"

up-local: install data services
	@echo "make up: local mode (no Docker engine answers): the services run as local processes on"
	@echo "the backing services of 'make services'. Ctrl-C or 'make down' stops them."
	$(VENV)/bin/streamer config validate $(USECASES) > /dev/null
	@echo "  web dashboard   http://127.0.0.1:$(API_PORT)/dashboard"
	@echo "  health, config  http://127.0.0.1:$(API_PORT)/health"
	@echo "  logs            $(PIPELINE_LOG) (make logs); Kibana needs Compose (compose/kibana/)"
	@mkdir -p .run && [ -s .run/model-secret ] || (umask 077 && $(PY) -c 'import secrets; print(secrets.token_hex(32))' > .run/model-secret)
	@$(WITH_SERVICES_ENV) export STREAMER_MODEL_SECRET="$${STREAMER_MODEL_SECRET:-$$(cat .run/model-secret)}" && \
	  echo $$$$ > $(PIPELINE_PID) && \
	  exec $(VENV)/bin/streamer run $(USECASES) --port $(API_PORT) --log-file $(PIPELINE_LOG)

down: ## Stop what `make up` started: the Compose project, or the local pipeline and services
	@if [ -f $(COMPOSE_ENV) ] && $(DOCKER_ANSWERS); then $(COMPOSE) down; fi
	@if [ -f $(PIPELINE_PID) ] && kill -0 "$$(cat $(PIPELINE_PID))" 2> /dev/null; then \
	  pid=$$(cat $(PIPELINE_PID)); echo "stopping the local pipeline (pid $$pid)"; kill -TERM "$$pid"; \
	  for i in $$(seq 120); do kill -0 "$$pid" 2> /dev/null || break; sleep 0.5; done; \
	fi
	@rm -f $(PIPELINE_PID)
	@$(MAKE) --no-print-directory services-down

logs: ## Follow the logs: Compose's, or the local pipeline's
	@if [ -f $(COMPOSE_ENV) ] && $(DOCKER_ANSWERS); then $(COMPOSE) logs --follow --tail=100; \
	elif [ -f $(PIPELINE_LOG) ]; then tail -n 100 -F $(PIPELINE_LOG); \
	else echo "no logs yet: make up USECASE=..." >&2; exit 1; fi

ps: ## Show what runs: Compose's containers, or the local services and the pipeline's health
	@if [ -f $(COMPOSE_ENV) ] && $(DOCKER_ANSWERS); then $(COMPOSE) ps; \
	else bash scripts/services.sh status; \
	  if [ -x $(VENV)/bin/streamer ]; then $(WITH_SERVICES_ENV) $(VENV)/bin/streamer status --url http://127.0.0.1:$(API_PORT)/health || true; fi; \
	fi


bench: install services ## Benchmark the pipeline on the whole KDD 10% file (JSON report, last line)
	$(WITH_SERVICES_ENV) $(PY) -m benchmarks.pipeline $(BENCH_ARGS)

chaos: install services data ## Kill services and restart Kafka during one replay, then check every record (JSON report, last line)
	$(WITH_SERVICES_ENV) $(PY) -m benchmarks.chaos $(CHAOS_ARGS)
