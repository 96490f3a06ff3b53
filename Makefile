# airloop: one file of entry points. `make demo` runs the loop locally; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
export PYTHONPATH := $(CURDIR)

.PHONY: setup demo test test-fast lint format up down status bench bench-loop bench-prod lock clean

setup: $(VENV)/.installed  ## create .venv with every pinned dependency and the airloop command (idempotent)

$(VENV)/.installed: requirements.txt requirements.lock pyproject.toml
	@echo "==> creating $(VENV) (torch from pip's local CPU wheel, the rest with uv)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 uv
	@$(BIN)/uv pip install -q --python $(PY) -r requirements.txt -c requirements.lock -e .
	@test -x $(BIN)/airloop || { echo "error: the airloop command was not installed" >&2; exit 1; }
	@echo "==> precompiling bytecode (Airflow processes start ~3x faster)"
	@$(PY) -m compileall -q -j 0 $(VENV)/lib/python3.11/site-packages >/dev/null 2>&1 || true
	@touch $@
	@echo "==> $(VENV) ready"

demo: setup  ## start the local stack and run the loop on simulated data (airloop demo)
	@$(BIN)/airloop demo

test: setup  ## lint, type check, secret scan, dependency audit, then the whole suite (unit, DAG, integration, end-to-end)
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .
	@$(BIN)/mypy
	@$(PY) -m tools.secret_scan
	@$(PY) -m tools.dependency_audit
	@$(PY) -m pytest

test-fast: setup  ## everything but the end-to-end tests that start Airflow processes
	@$(PY) -m pytest -m "not e2e"

lint: setup  ## ruff and the type checker (mypy: strict on tasks/ and config/)
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .
	@$(BIN)/mypy

format: setup
	@$(BIN)/ruff format . && $(BIN)/ruff check --fix .

up: setup  ## start PostgreSQL, Airflow (api-server, scheduler, dag-processor, triggerer) and MLflow (airloop up)
	@$(BIN)/airloop up

down:  ## stop the local stack (airloop down)
	@$(BIN)/airloop down

status:  ## each service of the local stack: running or stopped, health, memory (airloop status)
	@$(BIN)/airloop status

bench: setup  ## benchmarks: ratios against baselines measured in the same run
	@$(PY) -m benchmarks.dag_parse
	@$(PY) -m benchmarks.feature_store
	@$(PY) -m benchmarks.train
	@$(PY) -m benchmarks.train_dag
	@$(PY) -m benchmarks.serving
	@$(PY) -m benchmarks.drift

bench-loop: setup  ## the closed loop's timeline and the stack's memory against the goals (a stack of its own, ~15 min)
	@$(PY) -m benchmarks.closed_loop

bench-prod: setup  ## the production profile end to end on this machine, each stage timed (prod-local, ~15 min)
	@$(BIN)/airloop prod-local run --until monitor --down

lock:  ## re-resolve requirements.lock from requirements.txt
	@$(BIN)/uv pip compile -q requirements.txt -o requirements.lock --python $(PY)

clean: down
	rm -rf data .airflow
