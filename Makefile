# Flywheel: the words a newcomer looks for. `make help` lists them.
SHELL := /bin/bash
PY ?= .venv/bin/python
VENV_STAMP := .venv/.installed
UV_VERSION := 0.13.9
EXAMPLE ?= examples/quickstart

.DEFAULT_GOAL := help
.PHONY: help dev demo test lint crds crds-check chart unit integration bench clean

## List the targets
help:
	@awk '/^## /{d=substr($$0,4)} /^[a-z0-9-]+:/{if(d){split($$0,a,":");printf "  %-14s %s\n",a[1],d;d=""}}' $(MAKEFILE_LIST)

# The venv holds both packages (editable), test tools and linters; rebuilt when a
# dependency list changes. uv reuses its download cache across runs.
$(VENV_STAMP): runtime/pyproject.toml operator/pyproject.toml requirements/dev.txt
	test -x .venv/bin/python || python3 -m venv .venv
	test -x .venv/bin/uv || { .venv/bin/python -m ensurepip >/dev/null && \
		.venv/bin/python -m pip install -q "uv==$(UV_VERSION)"; }
	.venv/bin/uv pip install -q --python .venv/bin/python \
		-e "runtime[data,train,serve]" -e operator -r requirements/dev.txt
	touch $@

## Create the development environment (.venv)
dev: $(VENV_STAMP)

## Generate the example data and run the quickstart on this machine
demo: dev
	$(PY) $(EXAMPLE)/generate_data.py
	.venv/bin/flywheel run -f $(EXAMPLE)/

## Regenerate crds/ and the chart's copy from the api models
crds: dev
	.venv/bin/flywheel crds --out crds
	.venv/bin/flywheel crds --out charts/flywheel/crds

## Fail if crds/ or the chart's copy differ from the api models
crds-check: dev
	.venv/bin/flywheel crds --check crds
	.venv/bin/flywheel crds --check charts/flywheel/crds

## Lint the Helm chart and check what it renders
chart: dev k8s-tools
	"$$(hack/k8s/build.sh --print)/helm" lint --strict charts/flywheel
	.venv/bin/pytest -q tests/unit/test_chart_render.py

## ruff, mypy, import contracts
lint: dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy runtime/src operator/src tests
	.venv/bin/lint-imports

## Unit tests only (no cluster)
unit: dev
	.venv/bin/pytest -m "not integration and not kind and not bench" tests

## Integration tests against the local control plane
integration: dev k8s-tools
	.venv/bin/pytest -m integration tests

## Everything CI runs: lint, CRD check, all tests (starts the local control plane)
test: dev k8s-tools lint crds-check
	.venv/bin/pytest -m "not kind and not bench" tests
	.venv/bin/pytest --collect-only -q tests/e2e >/dev/null

## Benchmarks: print figures and ratios against their baselines
bench: dev
	.venv/bin/pytest -m bench -s tests/bench

## Remove build and run outputs (keeps .venv and the k8s tool cache)
clean:
	rm -rf .flywheel .pytest_cache .mypy_cache .ruff_cache $(EXAMPLE)/data

include hack/cluster.mk
include hack/kind.mk
