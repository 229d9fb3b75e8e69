# One entry point for the tools. Every target sets itself up first (idempotent, see scripts/setup.sh).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv

export PATH := $(VENV)/bin:$(PATH)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
# Spark for the jobs: each task is a client of one Spark Connect server on 127.0.0.1 (scripts/spark_connect.py,
# started and stopped by `make run`, `make demo` and `make airflow`). {"conn_type": "spark", "host": "local[*]"}
# (or a cluster's master) runs every task as a spark-submit of its own instead.
export AIRFLOW_CONN_SPARK_DEFAULT ?= {"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": 15002}
export CDP_WORKSPACE ?= $(CURDIR)/examples/retail
export CDP_LAKE ?= $(CURDIR)/data/lake
export CDP_LANDING ?= $(CURDIR)/data/landing
export CDP_EXPORTS ?= $(CURDIR)/data/exports

.PHONY: setup demo run test lint airflow bench docs clean lock

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

run: setup
	@scripts/run_day.sh $(DATE)

test: setup lint
	python -m pytest -n 2 --dist loadscope --no-loadscope-reorder tests

lint: setup
	ruff check --no-cache .
	mypy
	cdp docs --check

bench: setup
	python -m bench

airflow: setup
	CDP_LATE_RUN_HOURS=$${CDP_LATE_RUN_HOURS:-6} python scripts/spark_connect.py run -- airflow standalone

docs: setup
	cdp docs

lock:
	python3.11 -m venv /tmp/cdp-lock && /tmp/cdp-lock/bin/pip install -q -r requirements.in && \
	  (echo "# Generated from requirements.in: pip install -r requirements.in && pip freeze (make lock)"; \
	   /tmp/cdp-lock/bin/pip freeze) > requirements.txt

clean:
	rm -rf data .airflow/logs
