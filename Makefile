# stockflow — every target is idempotent; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INFRA := $(PY) deploy/local/infra.py
PACKAGES := libs/contracts libs/runtime services/catalog services/stock services/order services/fulfillment services/accounting cli

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/requirements.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	@touch $@

setup: $(VENV)/.installed ## virtualenv, pinned packages, Kafka jars
	@$(INFRA) fetch

lock: ## recompile requirements/requirements.txt from requirements.in (needs network)
	$(PY) -m piptools compile -q --no-emit-index-url --no-emit-trusted-host --strip-extras --allow-unsafe \
	  -o requirements/requirements.txt requirements/requirements.in

up: setup ## start Kafka and PostgreSQL (local processes), create roles, schemas and topics
	@$(INFRA) up

up-secure: setup ## the `secure` profile: Kafka with SASL/SCRAM + ACLs per service (local passwords)
	@$(INFRA) up --profile secure

down: ## stop services, Kafka and PostgreSQL of every profile started here (dev, test, secure, ...)
	@$(PYTHON) deploy/local/infra.py down --all

status: ## KEY=value lines to eval (they also put .venv/bin, the CLI, on PATH), then what is up
	@$(PYTHON) deploy/local/infra.py status

run: up ## run the five services and the replenishment worker in the foreground (Ctrl-C stops them); logs in .state/dev/logs
	@$(INFRA) run

# The demo warehouse's short picks and cancels (every Nth pick list / picked shipment; 0: never).
# The demo ends with `stockflow check` (every invariant of every service).
DEMO_SHORT_PICK_EVERY ?= 4
DEMO_WAREHOUSE_CANCEL_EVERY ?= 15

demo: up ## the whole system plus a simulated checkout stream and a summary (STOCKFLOW_PROFILE picks the lane)
	@$(INFRA) stop-services
	@STOCKFLOW_FULFILLMENT_AUTO_SHIP=true STOCKFLOW_FULFILLMENT_AUTO_DELIVER_DELAY_S=4 \
	  STOCKFLOW_FULFILLMENT_AUTO_SHORT_PICK_EVERY=$(DEMO_SHORT_PICK_EVERY) \
	  STOCKFLOW_FULFILLMENT_AUTO_CANCEL_EVERY=$(DEMO_WAREHOUSE_CANCEL_EVERY) \
	  $(INFRA) start-services
	@set -a; eval "$$($(INFRA) status)"; set +a; $(VENV)/bin/stockflow demo $(DEMO_ARGS) && $(VENV)/bin/stockflow check

# The tests start their Kafka and PostgreSQL on demand (the `test` profile, or
# STOCKFLOW_TEST_PROFILE); `make test` stops them when it ends unless KEEP_INFRA=1.
STOP_TEST_INFRA = $(if $(KEEP_INFRA),true,$(INFRA) down --profile $${STOCKFLOW_TEST_PROFILE:-test})

test: setup tools ## every test that must pass (unit, integration, system) against real Kafka and PostgreSQL; KEEP_INFRA=1 leaves it running
	$(PY) -m pytest -m "not chaos" $(PYTEST_ARGS); status=$$?; $(STOP_TEST_INFRA); exit $$status

tools: ## helm and docker-compose for the deploy checks, built into ~/.cache/stockflow/tools
	@bash deploy/tools/install-tools.sh

.PHONY: tools

test-unit: setup tools ## only the tests that need no infrastructure
	$(PY) -m pytest -m "not integration and not system and not chaos" $(PYTEST_ARGS)

test-chaos: setup ## fault injection under load (tests/chaos), then the README reliability table
	$(PY) -m pytest tests/chaos $(PYTEST_ARGS); status=$$?; $(PY) tests/chaos/report.py; $(STOP_TEST_INFRA); exit $$status

lint: setup ## ruff (rules, complexity, format), mypy (strict on every domain), import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs/*/src services/*/src cli/src
	$(VENV)/bin/lint-imports

bench: setup ## full benchmark (~20 min): layer limits, saga ramp, stock reserve, py-spy profile, invariants → bench-results/
	$(PY) tests/bench/run.py --profile all $(BENCH_ARGS)

bench-quick: setup ## short benchmark (under 3 minutes) → bench-results/latest.{json,md,png}
	$(PY) tests/bench/run.py --quick $(BENCH_ARGS)

clean-state: down ## delete the local Kafka and PostgreSQL data (.state/)
	rm -rf .state

.PHONY: help setup lock up up-secure down status run demo test test-unit test-chaos lint bench bench-quick clean-state
