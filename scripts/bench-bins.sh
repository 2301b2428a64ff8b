#!/usr/bin/env bash
# Builds (once) and caches the benchmark's comparison binary from the Go module proxy:
# Prometheus blackbox_exporter. Prints the binary's path on stdout; progress goes to stderr.
# The cache lives per user and per version, outside the repository:
#   ${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/bins/blackbox-$BLACKBOX_VERSION/
set -euo pipefail

BLACKBOX_VERSION=${BLACKBOX_VERSION:-0.27.0}

CACHE_ROOT=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
BIN=$CACHE_ROOT/bins/blackbox-$BLACKBOX_VERSION
WORK=$CACHE_ROOT/build

log() { printf '[bench-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [[ -x $BIN/blackbox_exporter ]]; then
  log "blackbox_exporter v$BLACKBOX_VERSION cached in $BIN"
  echo "$BIN/blackbox_exporter"
  exit 0
fi

command -v go >/dev/null || { log "ERROR: go is not installed (needed once, to build blackbox_exporter)"; exit 1; }
mkdir -p "$BIN" "$WORK"

# shellcheck source=heartbeat.sh
source "$(dirname "${BASH_SOURCE[0]}")/heartbeat.sh"
go_scratch_caches

# `go install module@version` needs the proxy's version list, which is refused here; a
# wrapper module that requires the exact version works.
dir=$WORK/blackbox-$BLACKBOX_VERSION
log "building blackbox_exporter v$BLACKBOX_VERSION (first time: a few minutes)"
rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
printf 'module local/bbe\n\ngo 1.25\n' > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/blackbox_exporter"
GO
go get "github.com/prometheus/blackbox_exporter@v$BLACKBOX_VERSION" >&2
go mod tidy -e >&2 || true
ld="-s -w -X github.com/prometheus/common/version.Version=$BLACKBOX_VERSION"
# Build next to the cache and move into place, so that an interrupted build never leaves
# a truncated binary that looks cached.
with_heartbeat blackbox_exporter go build -trimpath -ldflags "$ld" -o "$dir/blackbox_exporter" \
  github.com/prometheus/blackbox_exporter >&2
mv "$dir/blackbox_exporter" "$BIN/blackbox_exporter"
log "blackbox_exporter ready in $BIN"
echo "$BIN/blackbox_exporter"
