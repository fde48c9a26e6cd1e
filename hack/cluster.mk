# Local Kubernetes control plane (hack/k8s/README.md). Included by the top Makefile,
# which defines PY (the repo venv's python).
PY ?= .venv/bin/python
CLUSTER_DIR ?= .cluster

.PHONY: k8s-tools cluster-up cluster-down cluster-env

## Build etcd, kube-apiserver/-controller-manager/-scheduler, kwok, helm; fetch KubeRay's CRDs
k8s-tools:
	hack/k8s/build.sh
	hack/k8s/kuberay-crds.sh

## Start the local cluster in $(CLUSTER_DIR)/ and print `export KUBECONFIG=...`
cluster-up: k8s-tools
	$(PY) hack/k8s/cluster.py --workdir $(CLUSTER_DIR) up

## Stop the local cluster (logs stay in $(CLUSTER_DIR)/logs)
cluster-down:
	$(PY) hack/k8s/cluster.py --workdir $(CLUSTER_DIR) down

## Print KUBECONFIG and PATH exports for the local cluster: eval "$$(make -s cluster-env)"
cluster-env:
	@$(PY) hack/k8s/cluster.py --workdir $(CLUSTER_DIR) env
