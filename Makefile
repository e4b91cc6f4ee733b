# Fast Loans — entry points. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Downloads (pip wheels, Kafka jars, Go tools) are cached outside the repository.
export FASTLOANS_CACHE ?= $(HOME)/.cache/fastloans
export PIP_CACHE_DIR ?= $(FASTLOANS_CACHE)/pip
PYTEST_ARGS ?=
# The runtime packages the images install, plus the development tools (devtools/: `fastloans up`, `fastloans policy`).
PACKAGES := -e ./shared -e ./devtools -e ./services/gateway -e ./services/risk -e ./services/approval -e ./services/recorder -e ./services/webhooks
STAMP := $(VENV)/.installed
LINT_PATHS := shared services devtools bench tests

.PHONY: help venv pdf-deps up test test-unit test-integration lint images test-images k8s-tools browser-deps prometheus bench chaos clean-state

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): constraints.txt requirements-dev.txt shared/pyproject.toml devtools/pyproject.toml $(wildcard services/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt $(PACKAGES) -r requirements-dev.txt
	@touch $@

venv: $(STAMP) pdf-deps ## Create .venv with every package (editable) and the `fastloans` command

pdf-deps: ## Install the Debian packages of PDF notices (Pango, a font) and pdftotext for their tests (when missing)
	@scripts/install-pdf-deps.sh

up: venv ## Run the local stack in the foreground (PostgreSQL primary+replica, Kafka, services)
	$(BIN)/fastloans up

k8s-tools: ## Install the pinned helm and chart-test tools into $(FASTLOANS_CACHE)/bin
	@if [ -x scripts/install-k8s-tools.sh ]; then scripts/install-k8s-tools.sh; fi

browser-deps: ## Install Debian's Chromium for the browser tests (when missing)
	@if [ -x scripts/install-browser.sh ]; then scripts/install-browser.sh; fi

prometheus: ## Install Debian's Prometheus and promtool into $(FASTLOANS_CACHE) for the alert and dashboard tests (when missing)
	@if [ -x scripts/install-prometheus.sh ]; then scripts/install-prometheus.sh; fi

test: lint k8s-tools browser-deps prometheus ## Static checks, then the whole suite (unit, integration, e2e, charts) with its coverage floor
	$(BIN)/pytest --cov --cov-report=term:skip-covered --cov-report=html:test-output/coverage $(PYTEST_ARGS)

test-unit: venv ## Unit tests only (no I/O)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: venv ## Integration and end-to-end tests only
	$(BIN)/pytest -m "not unit and not charts" $(PYTEST_ARGS)

lint: venv ## Static checks: ruff, ruff format, mypy (strict on shared/ and services/)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

bench: venv ## Benchmark the pipeline (open-loop load); writes bench/results/
	$(BIN)/python -m bench $(BENCH_ARGS)

chaos: venv ## Fault injection under load for a few minutes; ends with accepted/decided/lost/duplicates
	$(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

images: venv ## Build every image the chart runs: with a Docker engine the service images; without one all of them with podman (scripts/images.sh)
	@if ! docker info >/dev/null 2>&1; then exec scripts/images.sh; fi; \
	$(BIN)/python -m fastloans.services | while read -r s ports; do \
	  docker build -f docker/service.Dockerfile --build-arg SERVICE=$$s --build-arg PORTS="$$ports" -t fastloans/$$s:dev . || exit 1; \
	done

test-images: images ## Run each built image with podman (no cluster): uid, read-only root, PostgreSQL and Kafka answering; minutes
	$(BIN)/pytest -m images tests/images $(PYTEST_ARGS)

clean-state: ## Delete the local stack's data (.fastloans/)
	rm -rf .fastloans

.PHONY: test-k8s
test-k8s: venv images cluster ## The chart on the local cluster: dev and production-like installs (install --wait, helm test through the Ingress), then upgrade, pods deleted and scaling under load; leaves the cluster up
	$(BIN)/pytest -m k8s tests/k8s -v $(PYTEST_ARGS)

.PHONY: test-k8s-operations
test-k8s-operations: venv images cluster ## Only the operations module of test-k8s: upgrade, pods deleted and scaling under load (tests/k8s/test_operations.py)
	$(BIN)/pytest -m k8s tests/k8s/test_operations.py -v $(PYTEST_ARGS)

.PHONY: cluster cluster-down k8s-binaries
k8s-binaries: ## Build the local cluster's pinned binaries and images into $(FASTLOANS_CACHE)/k8s (k8s/build.sh)
	k8s/build.sh

cluster: ## Start the local single-node Kubernetes cluster and wait until Ready (k8s/cluster.sh up; k8s/README.md)
	k8s/cluster.sh up

cluster-down: ## Stop the local cluster; leaves no process, mount, netns, link or iptables rule (k8s/cluster.sh down)
	k8s/cluster.sh down
