#!/usr/bin/env bash
# Builds (once) and caches the real servers the alert tests send to, from the Go module
# proxy: Prometheus Alertmanager (API v2) and Mailpit (SMTP with STARTTLS and auth, and an
# HTTP API to read what it received). Prints the directory holding `alertmanager` and
# `mailpit` on stdout; progress goes to stderr. The cache lives per user and per version,
# outside the repository:
#   ${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/bins/alert-am-$AM-mailpit-$MAILPIT/
set -euo pipefail

ALERTMANAGER_VERSION=${ALERTMANAGER_VERSION:-0.28.1}
MAILPIT_VERSION=${MAILPIT_VERSION:-1.33.1}

CACHE_ROOT=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
BIN=$CACHE_ROOT/bins/alert-am-$ALERTMANAGER_VERSION-mailpit-$MAILPIT_VERSION
WORK=$CACHE_ROOT/build

log() { printf '[alert-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [[ -x $BIN/alertmanager && -x $BIN/mailpit ]]; then
  log "alertmanager v$ALERTMANAGER_VERSION and mailpit v$MAILPIT_VERSION cached in $BIN"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "ERROR: go is not installed (needed once, to build the alert test servers)"; exit 1; }
mkdir -p "$BIN" "$WORK"

# shellcheck source=heartbeat.sh
source "$(dirname "${BASH_SOURCE[0]}")/heartbeat.sh"
go_scratch_caches

# build NAME MODULE VERSION PACKAGE: `go install` into a scratch GOBIN, then move into place,
# so that an interrupted build never leaves a truncated binary that looks cached.
build() {
  local name=$1 module=$2 version=$3 package=$4
  [[ -x $BIN/$name ]] && return 0
  local gobin=$WORK/$name-$version-bin
  rm -rf "$gobin"; mkdir -p "$gobin"
  log "building $name v$version (first time: about a minute)"
  GOBIN=$gobin with_heartbeat "$name" go install -trimpath -ldflags "-s -w" "$package@v$version" >&2
  mv "$gobin/$(basename "$package")" "$BIN/$name"
  rm -rf "$gobin"
}

build alertmanager github.com/prometheus/alertmanager "$ALERTMANAGER_VERSION" \
  github.com/prometheus/alertmanager/cmd/alertmanager
build mailpit github.com/axllent/mailpit "$MAILPIT_VERSION" github.com/axllent/mailpit

log "alertmanager and mailpit ready in $BIN"
echo "$BIN"
