#!/usr/bin/env bash
# Build both images, load them into the kind cluster, install KubeRay (from its Helm
# repository: network needed) and the flywheel chart with the local image tags.
#
#   hack/kind/deploy.sh            (make deploy)
#
# Environment (defaults in hack/kind.mk): KIND_CLUSTER, IMAGE_TAG, OPERATOR_IMAGE,
# RUNTIME_IMAGE, RUNTIME_EXTRAS, TORCH_INDEX_URL, KUBERAY_INSTALL, KUBERAY_VERSION, FLYWHEEL_NAMESPACE,
# HELM, KUBECTL, KIND, DOCKER.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

: "${KIND_CLUSTER:=flywheel}"
: "${IMAGE_TAG:=dev}"
: "${OPERATOR_IMAGE:=flywheel/operator}"
: "${RUNTIME_IMAGE:=flywheel/runtime}"
: "${RUNTIME_EXTRAS:=data,train,serve}"
# CPU-only torch for kind; empty for PyPI's default (CUDA) wheels.
: "${TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu}"
: "${KUBERAY_INSTALL:=true}"
: "${KUBERAY_VERSION:=1.5.1}"
: "${FLYWHEEL_NAMESPACE:=flywheel-system}"
: "${HELM:=helm}"
: "${KUBECTL:=kubectl}"
: "${KIND:=kind}"
: "${DOCKER:=docker}"

log() { printf '[deploy] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { log "$1 not found ($2)"; exit 1; }; }
need "$DOCKER" "install Docker"
need "$KIND" "install kind: https://kind.sigs.k8s.io"
need "$HELM" "make k8s-tools builds one; or set HELM=/path/to/helm"
need "$KUBECTL" "make dev puts one in .venv/bin"

context="kind-$KIND_CLUSTER"
if ! "$KIND" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  log "no kind cluster named $KIND_CLUSTER: run make kind-up"
  exit 1
fi

log "building $OPERATOR_IMAGE:$IMAGE_TAG and $RUNTIME_IMAGE:$IMAGE_TAG (extras: $RUNTIME_EXTRAS)"
"$DOCKER" build -f operator/Dockerfile -t "$OPERATOR_IMAGE:$IMAGE_TAG" .
"$DOCKER" build -f runtime/Dockerfile --build-arg "EXTRAS=$RUNTIME_EXTRAS" \
  --build-arg "EXTRA_INDEX_URL=$TORCH_INDEX_URL" \
  -t "$RUNTIME_IMAGE:$IMAGE_TAG" .

log "loading the images into kind cluster $KIND_CLUSTER"
"$KIND" load docker-image --name "$KIND_CLUSTER" "$OPERATOR_IMAGE:$IMAGE_TAG" "$RUNTIME_IMAGE:$IMAGE_TAG"

if [[ "$KUBERAY_INSTALL" == true ]]; then
  log "installing KubeRay $KUBERAY_VERSION from https://ray-project.github.io/kuberay-helm/"
  "$HELM" repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update >/dev/null
  "$HELM" repo update kuberay >/dev/null
  "$HELM" upgrade --install kuberay-operator kuberay/kuberay-operator \
    --kube-context "$context" --version "$KUBERAY_VERSION" \
    --namespace ray-system --create-namespace --wait --timeout 5m
else
  log "KUBERAY_INSTALL=$KUBERAY_INSTALL: skipping KubeRay (TrainingJobs will wait for it)"
fi

log "installing the flywheel chart into $FLYWHEEL_NAMESPACE"
"$KUBECTL" --context "$context" create namespace "$FLYWHEEL_NAMESPACE" \
  --dry-run=client -o yaml | "$KUBECTL" --context "$context" apply -f - >/dev/null
"$KUBECTL" --context "$context" label namespace "$FLYWHEEL_NAMESPACE" --overwrite \
  pod-security.kubernetes.io/enforce=restricted >/dev/null
# Helm never upgrades CRDs in crds/: apply them so a re-deploy picks up schema changes.
"$KUBECTL" --context "$context" apply --server-side --force-conflicts \
  -f charts/flywheel/crds/ >/dev/null
"$HELM" upgrade --install flywheel charts/flywheel \
  --kube-context "$context" --namespace "$FLYWHEEL_NAMESPACE" \
  --set "image.repository=$OPERATOR_IMAGE" --set "image.tag=$IMAGE_TAG" \
  --set "runtimeImage.repository=$RUNTIME_IMAGE" --set "runtimeImage.tag=$IMAGE_TAG" \
  --set image.pullPolicy=IfNotPresent --set runtimeImage.pullPolicy=IfNotPresent \
  --wait --timeout 5m
"$KUBECTL" --context "$context" -n "$FLYWHEEL_NAMESPACE" rollout status deployment/flywheel --timeout=120s
log "done: make e2e"
