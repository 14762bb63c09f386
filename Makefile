# flashsale-ml — two commands matter: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Machines that keep wheels on disk (e.g. the CPU build of torch) expose them here.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
# The embedded defaults' state (lake, MLflow store, Airflow home); FLASHSALE_HOME moves it.
HOME_DIR := $(abspath $(or $(FLASHSALE_HOME),$(CURDIR)/.flashsale))
MLFLOW_PORT ?= 5000
AIRFLOW_PORT ?= 8080

.PHONY: install demo test test-fast test-elastic mutation lint format mlflow-ui airflow-ui constraints clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(FIND_LINKS) -c constraints.txt -e ".[airflow,torch,dev]"
	touch $@

install: $(BIN)/.installed

## The main job on embedded defaults: simulate -> validate -> features -> train -> register,
## run by Airflow (`airflow dags test`) against a real MLflow server.
demo: install
	FLASHSALE_HOME=$(HOME_DIR) $(BIN)/flashsale demo

## The full test suite (unit, DAG integrity, end-to-end with Airflow + MLflow + S3).
test: install
	$(BIN)/python -m pytest

## In-place torchrun restarts (a killed worker group re-forms and resumes); flaky on loopback.
test-elastic: install
	$(BIN)/python -m pytest -m elastic

test-fast: install
	$(BIN)/python -m pytest -m "not e2e and not slow"

## Known bugs put into a copy of the tree one at a time: how many do the tests catch?
mutation: install
	$(BIN)/python -m tools.mutation.run

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## Browse runs, plots and registered models of the demo.
mlflow-ui: install
	mkdir -p $(HOME_DIR)/mlartifacts
	exec env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	  $(abspath $(BIN))/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
	  --backend-store-uri sqlite:///$(HOME_DIR)/mlflow.db \
	  --default-artifact-root file://$(HOME_DIR)/mlartifacts --no-serve-artifacts

## Airflow UI (scheduler, API server, dag processor, triggerer) on the demo's metadata DB.
## Loopback only; `airflow standalone` starts its parts as `airflow ...` from PATH, hence the
## venv first on PATH. Tasks triggered here log straight into the demo's MLflow store, which
## `make mlflow-ui` serves. umask 077: the generated admin password file is readable by you only.
airflow-ui: install
	umask 077 && mkdir -p $(HOME_DIR)/airflow && \
	PATH="$(abspath $(BIN)):$$PATH" \
	AIRFLOW_HOME=$(HOME_DIR)/airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	FLASHSALE_HOME=$(HOME_DIR) FLASHSALE_MLFLOW_TRACKING_URI=sqlite:///$(HOME_DIR)/mlflow.db \
	exec $(abspath $(BIN))/airflow standalone

## Re-resolve and pin every dependency (run after changing pyproject.toml).
constraints:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet $(FIND_LINKS) -e ".[airflow,torch,dev]"
	{ echo "# Exact versions tested together (Python 3.11, Linux x86_64). Regenerate with: make constraints"; \
	  echo "# torch==2.13.0 resolves to the CPU wheel where one is on the find-links path; see README for GPU."; \
	  .venv-lock/bin/pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(HOME_DIR) .pytest_cache .ruff_cache
