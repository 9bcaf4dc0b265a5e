# Stockade developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python

.PHONY: help venv binaries crds manifests cluster-up cluster-down run bench test test-unit test-integration \
	lint docs bench-gateway dashboard dashboard-picture promtool e2e-kind node-binaries node-up node-down e2e clean \
	release release-check playground playground-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV_STAMP) ## create .venv and install Stockade with its test and dev tools

binaries: ## find or build the pinned control-plane binaries (no-op when cached)
	bash hack/k8s-binaries.sh

crds: $(VENV_STAMP) binaries ## regenerate crds/*.yaml from the API models, then `make manifests`
	$(PY) -m stockade.api.crd
	bash hack/manifests.sh

manifests: binaries ## copy crds/ into the chart; render manifests/install.yaml and argocd-cm-patch.yaml
	bash hack/manifests.sh

cluster-up: ## start the local control plane (idempotent); kubeconfig in .cache/cluster/
	bash hack/cluster-up.sh

cluster-down: ## stop and delete the local control plane (idempotent)
	bash hack/cluster-down.sh

run: $(VENV_STAMP) binaries ## the demo: local cluster + operator + samples, until they settle
	bash hack/run.sh

docs: $(VENV_STAMP) ## regenerate docs/reference/ (API, CLI, Helm values) and build the site --strict into .cache/site
	$(PY) -m tests.docs.reference
	$(PY) -m mkdocs build --strict

dashboard: $(VENV_STAMP) ## regenerate the Grafana dashboard (manifests/monitoring/, the chart's dashboards/)
	$(PY) -m tests.monitoring.dashboard

dashboard-picture: $(VENV_STAMP) ## docs/dashboard.png from the scrapes of tests/integration/test_metrics_scrape.py
	$(PY) -m tests.monitoring.picture

promtool: ## find or build the pinned promtool (no-op when cached)
	bash hack/promtool.sh

test: $(VENV_STAMP) binaries ## every test suite; then Agents and sessions as the chart's ServiceAccount (2 RBAC modes)
	bash hack/test.sh

# make bench: the standard set with BENCH_AGENTS Agents (default 1000); BENCH_SCENARIOS
# picks scenarios (e.g. burst-forever,steady), BENCH_RATE / BENCH_DURATION shape `steady`,
# BENCH_ARGS passes anything else (`python -m bench --help`). Results in bench/results/.
BENCH_AGENTS ?= 1000
BENCH_SCENARIOS ?= burst-forever,burst-fixed,session-one,sessions-many,restart
BENCH_RATE ?= 5
BENCH_DURATION ?= 120
BENCH_ARGS ?=
bench: $(VENV_STAMP) binaries ## benchmarks vs bare pods (outside `make test`); BENCH_AGENTS=1000, BENCH_SCENARIOS, BENCH_RATE
	$(PY) -m bench --agents $(BENCH_AGENTS) --scenarios $(BENCH_SCENARIOS) \
	  --rate $(BENCH_RATE) --duration $(BENCH_DURATION) $(BENCH_ARGS)

bench-gateway: $(VENV_STAMP) ## the egress gateway on loopback: added latency and throughput vs direct
	$(PY) -m bench.gateway --requests 500 --mib 64

playground: $(VENV_STAMP) ## the control plane, the real gVisor node, the operator and an Agent, left running (root)
	bash hack/playground.sh up

playground-down: ## stop what `make playground` started and restore the machine
	bash hack/playground.sh down

release: $(VENV_STAMP) binaries ## build dist/: wheel, sdist, packaged chart, image context, krew archive and manifest
	bash hack/release.sh

release-check: $(VENV_STAMP) binaries ## install and lint what `make release` built (fresh virtualenv, helm lint)
	bash hack/release-check.sh

test-unit: $(VENV_STAMP) ## run only the unit tests (no cluster)
	$(PY) -m pytest tests/unit

test-integration: $(VENV_STAMP) binaries promtool ## run only the integration tests
	$(PY) -m pytest tests/integration

lint: $(VENV_STAMP) ## ruff (lint + format check), mypy, hadolint, shellcheck when installed
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile examples/agent/Dockerfile
	@if command -v shellcheck >/dev/null; then shellcheck -x -P SCRIPTDIR hack/*.sh hack/kind/*.sh hack/node/agent/*.sh examples/agent/*.sh .ci/run; \
	else echo "shellcheck not installed; skipped"; fi

node-binaries: ## find or build kubelet, containerd, ctr, runsc and its shim (no-op when cached)
	bash hack/node-binaries.sh

node-up: ## a real node (kubelet + containerd + gVisor) beside the local control plane (root)
	bash hack/node-up.sh

node-down: ## stop the real node and undo what node-up changed (sysctls, bridge, cgroups)
	bash hack/node-down.sh

e2e: $(VENV_STAMP) ## node-up, the end-to-end tests on the real node (tests/e2e), node-down (always)
	bash hack/e2e.sh

e2e-kind: ## kind + gVisor end to end (needs Docker): build, load, helm install, samples
	bash hack/e2e-kind.sh

clean: cluster-down ## delete the cluster, the virtualenv and local caches (not the binary cache)
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache dist
