# Quick start: `make demo` serves examples/krakend.json on :8080; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: install install-test demo test lint format check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

# The rate-limit tests start a real redis-server: installed here when missing (as root, with apt-get). Where apt-get
# is unavailable they are skipped with the reason shown; under CI (CI set) they fail instead of skipping.
install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	    command -v redis-server >/dev/null 2>&1 || { echo "install-test: could not install redis-server" >&2; exit 1; }; \
	  else \
	    echo "install-test: redis-server is missing and cannot be installed here (needs root and apt-get:" \
	      "apt-get install redis-server); the Redis rate-limit tests will be skipped" >&2; \
	  fi; \
	fi

demo: install
	$(BIN)/lambdagate run -c examples/krakend.json --functions examples/functions --port $(PORT) --debug

check: install
	$(BIN)/lambdagate check -c examples/krakend.json --functions examples/functions

# Lint first (seconds), then the suite.
test: install-test lint
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

format: install-test
	$(BIN)/ruff check --fix src tests bench tools
	$(BIN)/ruff format src tests bench tools

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# Soak: bounded run at fixed concurrency against HTTP and Lambda backends; errors must be 0 and the worker's RSS
# growth after warm-up < 10 %. SOAK_SECONDS (default 600), SOAK_CONNECTIONS (32); writes docs/soak.md.
.PHONY: soak
soak: install
	$(BIN)/python tools/soak.py

# --- Benchmarks (never part of `make test`): wrk + nginx on 127.0.0.1, each server under test pinned to CPU 1
# with one worker, wrk and the upstream on CPU 0. Results: bench/results/*.json and docs/benchmarks.md.
.PHONY: bench bench-quick bench-rss bench-tools

BENCH_TOOLS_HELP := the bench needs wrk, nginx, taskset and redis-server: sudo apt-get install wrk nginx-light util-linux redis-server

bench-tools:
	@for t in wrk nginx taskset redis-server; do command -v $$t >/dev/null 2>&1 || { echo "$(BENCH_TOOLS_HELP)"; exit 1; }; done

$(VENV)/.bench-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[bench]'
	touch $@

# One short run of every scenario (about 50 s): writes bench/results/latest.json.
bench-quick: bench-tools $(VENV)/.bench-deps
	$(BIN)/python bench/run.py quick

# The full run (about 6 min), py-spy profiles of the gateway, then the long RSS run (1M requests a scenario, up to 12 min);
# rewrites docs/benchmarks.md and docs/benchmarks.png.
bench: bench-tools $(VENV)/.bench-deps
	$(BIN)/python bench/run.py full --no-report
	$(BIN)/python bench/profile.py gateway_http --seconds 10 > /dev/null
	$(BIN)/python bench/profile.py gateway_lambda --seconds 10 > /dev/null
	$(BIN)/python bench/run.py rss

# Only the long run: worker RSS over 1M requests on /proxy and on /lambda.
bench-rss: bench-tools $(VENV)/.bench-deps
	$(BIN)/python bench/run.py rss
