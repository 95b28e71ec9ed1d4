#!/bin/sh
# Set up tinykube on a fresh Debian 12 machine (as root), then either start a cluster with an
# example (`./bootstrap.sh example`) or run the test suite (`./bootstrap.sh test`).
set -eu
cd "$(dirname "$0")"

install_system() {
    pkgs="nftables bubblewrap nginx-light dnsutils iproute2 netcat-openbsd iputils-ping conntrack curl
          python3-venv python3-nftables sqlite3 procps util-linux etcd-server"
    missing=""
    for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
    # Debian's nginx and etcd packages start servers of their own; tinykube runs its own nginx per
    # pod and for Ingress, and an etcd only when one is given to --store.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now nginx etcd >/dev/null 2>&1 || true
    fi
    pkill -x nginx 2>/dev/null || true
    command -v kubectl >/dev/null || { echo "kubectl is required (it is preinstalled on these machines)" >&2; exit 1; }
}

install_python() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
}

install_system
install_python

case "${1:-example}" in
example)
    .venv/bin/tinykube up
    KUBECONFIG="$(.venv/bin/tinykube kubeconfig)"; export KUBECONFIG
    kubectl apply -f examples/hello.yaml
    kubectl rollout status deployment/hello --timeout=120s
    kubectl get deployment,pods,service,endpoints -o wide
    echo
    echo "Try: export KUBECONFIG=$KUBECONFIG"
    echo "     kubectl run t --image=centos:6 --restart=Never --rm -i -- curl -s http://hello:8080/"
    ;;
test)
    shift || true
    exec .venv/bin/pytest -q -p no:cacheprovider "$@"
    ;;
*)
    echo "usage: $0 [example|test [pytest args...]]" >&2; exit 2 ;;
esac
