# warehouse-tracker — the two commands: `make up` (run it) and `make test` (check it).
SHELL := /bin/bash
.DEFAULT_GOAL := venv

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PGPORT ?= 5432
KAFKA_PORT ?= 9092
export PGPORT KAFKA_PORT
export DATABASE_URL ?= postgresql://warehouse:warehouse@127.0.0.1:$(PGPORT)/warehouse
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)

.PHONY: vendor browser prometheus venv lock stack test-containers down stack-status migrate up test lint format bench-db bench-trigger-cost bench-trigger-instructions bench-bridge bench-stream bench-debezium bench-ledger bench-api bench-auth-flood bench-live soak docs

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The locks: every package pinned with its hashes, the runtime set (the images) and runtime + dev (make venv), for
# Python 3.11 on any platform. Refresh after changing pyproject.toml's dependencies; `make lock UPGRADE=1` moves
# every pin to the newest allowed. docs/development.md "Dependencies".
LOCK := $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet $(if $(UPGRADE),--upgrade)
lock: venv
	$(LOCK) -o requirements.lock
	$(LOCK) --extra dev --constraint requirements.lock -o requirements-dev.lock

stack:  ## start PostgreSQL and Kafka in the background (idempotent)
	@stack/stack.sh start

down:  ## stop the stack; data is kept in .stack/
	@stack/stack.sh stop

stack-status:
	@stack/stack.sh status

migrate: venv stack
	$(PY) -m db migrate

up: venv stack migrate  ## run every service in the foreground; Ctrl-C stops them
	@$(PY) -m api local-admin-key --file .stack/local-admin-key
	@$(PY) stack/up.py stack/Procfile

test: venv stack browser prometheus
	$(PY) -m pytest $(PYTEST_ARGS)

test-containers: venv  ## docker-compose.yml itself under podman: both images built, every service run, stand-ins for postgres and kafka (docs/containers.md)
	stack/containers/images.sh
	WAREHOUSE_TEST_CONTAINERS=1 $(PY) -m pytest tests/containers -s $(PYTEST_ARGS)

browser:  ## Debian's chromium and chromedriver, for the dashboard's test (installed with apt when missing)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium chromium-driver; \
	  else echo "the dashboard test needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2; exit 1; fi; }

prometheus:  ## Debian's prometheus and promtool (the version the compose file pins), for the monitoring tests (apt when missing)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; \
	  else echo "the monitoring tests need prometheus: sudo apt-get install prometheus" >&2; exit 1; fi; }

docs: venv stack  ## regenerate what the docs take from the code: docs/configuration.md's settings table, the event's JSON Schema and AsyncAPI document, db/schema.sql
	$(PY) -m docs.settings
	$(PY) -m bridge schema
	$(PY) -m db schema

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-db: venv stack  ## database core throughput, ratios against the trigger-less limit (minutes)
	$(PY) -m bench.db_bench

bench-bridge: venv stack  ## the bridge: drain rate vs a bare producer, latency at 1,000 changes/s, RSS (~5 min)
	$(PY) -m bench.bridge_bench

bench-stream: venv stack  ## the stream tools at 1M pairs: snapshot time, verify time and peak RSS (~2 min)
	$(PY) -m bench.stream_bench

bench-debezium: venv  ## the bridge beside Debezium 3.6.1 (Kafka Connect standalone) on a stack of its own: drain, latency, RSS, CPU, kill -9 (~12 min)
	$(PY) -m bench.debezium_bench

bench-ledger: venv stack  ## reading a 10M-operation ledger (each filter, first and middle page) and documents vs COPY (~10 min)
	$(PY) -m bench.ledger_bench

bench-trigger-cost: venv stack  ## the triggers' CPU cost per single-operation transaction, one session (~1 min)
	$(PY) -m bench.trigger_cost

bench-trigger-instructions: venv  ## the same in CPU instructions, under valgrind: deterministic (~30 s)
	$(PY) -m bench.trigger_instructions

LOADGEN := bench/loadgen
$(LOADGEN)/node_modules/.installed: $(LOADGEN)/package.json $(LOADGEN)/package-lock.json
	cd $(LOADGEN) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

bench-api: venv stack $(LOADGEN)/node_modules/.installed  ## the API: overhead vs bare Starlette, paging, write latency (~3 min)
	$(PY) -m bench.api_bench

bench-auth-flood: venv stack $(LOADGEN)/node_modules/.installed  ## a good key's latency under 241 made-up keys/s ÷ idle (~1.5 min)
	$(PY) -m bench.auth_flood

vendor:  ## refresh the vendored chart library and Swagger UI from the npm registry, at the versions in api/static/package.json
	cd api/static && SCARF_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error --ignore-scripts
	cp api/static/node_modules/chart.js/dist/chart.umd.min.js api/static/vendor/
	cp api/static/node_modules/chart.js/LICENSE.md api/static/vendor/chart.js-LICENSE.md
	cp api/static/node_modules/swagger-ui-dist/swagger-ui-bundle.js api/static/node_modules/swagger-ui-dist/swagger-ui.css api/static/vendor/
	cp api/static/node_modules/swagger-ui-dist/LICENSE api/static/vendor/swagger-ui-LICENSE
	rm -rf api/static/node_modules

bench-live: venv stack  ## commit → SSE client latency at 500 status changes/s with 100 clients (~1 min)
	$(PY) -m bench.live_bench

soak: venv  ## the chaos soak on a stack of its own: 4 loaders for 5 min, bridge kill -9 every 30 s, Kafka and PostgreSQL restarted once (~7 min)
	$(PY) -m tests.soak $(SOAK_ARGS)
