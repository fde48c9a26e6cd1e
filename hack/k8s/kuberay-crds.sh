#!/usr/bin/env bash
# Fetches KubeRay's own CRDs (RayJob, RayService, RayCluster) from the Go module
# github.com/ray-project/kuberay/ray-operator (config/crd/bases/) into a versioned cache:
#   ${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}/kuberay-<version>/crds/ray.io_*.yaml
# The integration tests install them, so the operator's RayJobs and RayServices meet the
# schema a real KubeRay serves (a field the schema does not know is pruned by the server).
# Each file must match its sha256 in kuberay-crds.sha256. Idempotent: a warm run only
# checks the sums. Prints the crds dir on stdout; progress goes to stderr.
#
#   hack/k8s/kuberay-crds.sh            fetch what is missing
#   hack/k8s/kuberay-crds.sh --print    print the crds dir and exit
# Environment: FLYWHEEL_CACHE, GO (as build.sh), FLYWHEEL_FETCH_TIMEOUT (seconds, 120).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC1091
set -a && . "$here/versions.env" && set +a

module=github.com/ray-project/kuberay/ray-operator
cache=${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}
dir="$cache/kuberay-$KUBERAY_VERSION/crds"
sums="$here/kuberay-crds.sha256"

log() { printf '[kuberay-crds] %s\n' "$*" >&2; }

case "${1:-}" in
  --print) echo "$dir"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print]" >&2; exit 2 ;;
esac

verified() { [[ -d "$dir" ]] && (cd "$dir" && sha256sum --check --quiet --strict "$sums" >/dev/null 2>&1); }

if verified; then
  log "KubeRay $KUBERAY_VERSION CRDs: cached"
  echo "$dir"
  exit 0
fi

GO=${GO:-}
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else log "go not found (set GO=/path/to/go): it fetches $module@$KUBERAY_VERSION"; exit 1
  fi
fi

log "KubeRay $KUBERAY_VERSION CRDs: fetching $module@$KUBERAY_VERSION"
# `go mod download` retries a dead network for minutes: bound it, and say what failed.
timeout=${FLYWHEEL_FETCH_TIMEOUT:-120}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! info=$(cd "$work" && GOFLAGS=-mod=mod timeout "$timeout" "$GO" mod download -json \
    "$module@$KUBERAY_VERSION" 2>&1); then
  log "could not fetch $module@$KUBERAY_VERSION through the Go module proxy"
  log "(GOPROXY=$("$GO" env GOPROXY), timeout ${timeout}s): the integration tests need KubeRay's CRDs"
  printf '%s\n' "$info" | tail -5 >&2
  exit 1
fi
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")/config/crd/bases
[[ -d "$src" ]] || { log "no config/crd/bases in the module: $info"; exit 1; }

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.new.XXXXXX")
trap 'rm -rf "$work" "$tmp"' EXIT
for name in $(awk '{ print $2 }' "$sums"); do
  cp "$src/$name" "$tmp/$name"
done
if ! (cd "$tmp" && sha256sum --check --quiet --strict "$sums" >&2); then
  log "$module@$KUBERAY_VERSION: a CRD differs from $sums"
  exit 1
fi
chmod 0644 "$tmp"/*.yaml
mv -f "$tmp"/*.yaml "$dir/"
log "KubeRay $KUBERAY_VERSION CRDs: in $dir"
echo "$dir"
