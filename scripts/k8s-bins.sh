#!/usr/bin/env bash
# Builds (once) and caches the test infrastructure binaries from the Go module proxy:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, helm.
# Prints the bin directory on stdout; progress goes to stderr.
# The cache lives per user and per version, outside the repository:
#   ${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/bins/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION/
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.36.3}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
KWOK_VERSION=${KWOK_VERSION:-0.7.0}
HELM_VERSION=${HELM_VERSION:-3.22.0}

CACHE_ROOT=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
BIN=$CACHE_ROOT/bins/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION
WORK=$CACHE_ROOT/build

log() { printf '[k8s-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

need() {
  for b in "$@"; do [[ -x $BIN/$b ]] || return 0; done
  return 1
}

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
mkdir -p "$BIN" "$WORK"

# shellcheck source=heartbeat.sh
source "$(dirname "${BASH_SOURCE[0]}")/heartbeat.sh"
if need kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm; then go_scratch_caches; fi

build_kube() {
  local dir=$WORK/kube-$KUBE_VERSION minor=${KUBE_VERSION#1.}
  minor=${minor%%.*}
  local sv=v0.${KUBE_VERSION#1.}
  log "building Kubernetes v$KUBE_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl); first time takes 10-30 min"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  local gover
  gover=$(awk '$1=="go" {print $2; exit}' "$gomod")
  printf 'module local/k8sbins\n\ngo %s\n' "$gover" > go.mod
  # k/k replaces every staging module with a local path; point each at its published version.
  local m
  for m in $(awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' "$gomod"); do
    go mod edit -replace="$m=$m@$sv"
  done
  local c=k8s.io/kubernetes/cmd
  go get "k8s.io/kubernetes@v$KUBE_VERSION" >&2
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy -e >&2 || true
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
  # Build next to the cache and move into place, so that an interrupted build never leaves
  # a truncated binary that looks cached.
  rm -rf "$dir/out"; mkdir -p "$dir/out"
  with_heartbeat "Kubernetes" go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$dir/out/" \
    $c/kube-apiserver $c/kube-controller-manager $c/kube-scheduler $c/kubectl >&2
  mv "$dir/out/"* "$BIN/"
}

build_etcd() {
  local dir=$WORK/etcd-$ETCD_VERSION
  log "building etcd v$ETCD_VERSION"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  printf 'module local/etcdbin\n\ngo 1.25\n' > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  go mod tidy -e >&2 || true
  with_heartbeat "etcd" go build -trimpath -ldflags "-s -w" -o "$dir/etcd" go.etcd.io/etcd/server/v3 >&2
  mv "$dir/etcd" "$BIN/etcd"
}

if need kube-apiserver kube-controller-manager kube-scheduler kubectl; then build_kube; fi
if need etcd; then build_etcd; fi
if need kwok; then
  log "building kwok v$KWOK_VERSION"
  GOBIN=$WORK/gobin with_heartbeat kwok go install "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" >&2
  mv "$WORK/gobin/kwok" "$BIN/kwok"
fi
if need helm; then
  log "building helm v$HELM_VERSION"
  GOBIN=$WORK/gobin with_heartbeat helm go install "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
  mv "$WORK/gobin/helm" "$BIN/helm"
fi
log "binaries ready in $BIN"
echo "$BIN"
