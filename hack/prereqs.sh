#!/usr/bin/env bash
# Checks, in the first seconds, what the Makefile cannot install through pip or uv.
#   hack/prereqs.sh demo   python3 >= 3.11
#   hack/prereqs.sh test   also go (builds the local control plane), redis-server, openssl,
#                          prometheus (the canary analysis test scrapes the router with it)
# As root with apt-get, missing Debian packages are installed; otherwise the exact
# command to install them is printed and the script fails.
set -euo pipefail
what=${1:-test}

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    echo "error: Python 3.11 or newer is needed as python3 (found: $(python3 --version 2>&1))." >&2
    echo "  Debian/Ubuntu: apt-get install python3 python3-venv" >&2
    exit 1
}
python3 -c 'import venv, ensurepip' 2>/dev/null || missing_venv=1

[[ $what == test ]] || { [[ -z ${missing_venv:-} ]] || {
    echo "error: python3 has no venv/ensurepip; run: apt-get install python3-venv" >&2; exit 1; }; exit 0; }

command -v go >/dev/null || {
    echo "error: Go is needed to build the local Kubernetes control plane for the tests." >&2
    echo "  Install Go 1.25 or newer (https://go.dev/doc/install) and put it on PATH." >&2
    exit 1
}

apt_packages=()
command -v redis-server >/dev/null || apt_packages+=(redis-server)
command -v openssl >/dev/null || apt_packages+=(openssl)
command -v prometheus >/dev/null || apt_packages+=(prometheus)
[[ -z ${missing_venv:-} ]] || apt_packages+=(python3-venv)
((${#apt_packages[@]})) || exit 0

if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${apt_packages[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_packages[@]}" >/dev/null
    exit 0
fi
echo "error: the tests need ${apt_packages[*]}; install them first:" >&2
echo "  sudo apt-get install -y ${apt_packages[*]}" >&2
exit 1
