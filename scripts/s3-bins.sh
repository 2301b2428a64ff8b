#!/usr/bin/env bash
# Builds (once) and caches a real S3-compatible server for the pipeline run archive tests,
# from the Go module proxy: SeaweedFS (`weed mini` serves signed S3 on loopback; Apache-2.0).
# Prints the directory holding `weed` on stdout; progress goes to stderr. The cache lives per
# user and per version, outside the repository:
#   ${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/bins/seaweedfs-$SEAWEEDFS_VERSION/
# `go install` refuses this module (its go.mod has a replace directive), so it is downloaded
# with `go mod download` and built with `go build` in the module's directory.
set -euo pipefail

SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}

CACHE_ROOT=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
BIN=$CACHE_ROOT/bins/seaweedfs-$SEAWEEDFS_VERSION
WORK=$CACHE_ROOT/build

log() { printf '[s3-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [[ -x $BIN/weed ]]; then
  log "seaweedfs $SEAWEEDFS_VERSION cached in $BIN"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "ERROR: go is not installed (needed once, to build the S3 test server)"; exit 1; }
mkdir -p "$BIN" "$WORK"

# shellcheck source=heartbeat.sh
source "$(dirname "${BASH_SOURCE[0]}")/heartbeat.sh"
go_scratch_caches

log "downloading github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION"
# Outside any module, so that no go.mod is consulted or changed.
cd "$WORK"
src=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
  sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
[[ -n $src && -d $src/weed ]] || { log "ERROR: no module source (weed/) for seaweedfs@$SEAWEEDFS_VERSION"; exit 1; }

# Built inside the module's own directory, so that its go.mod (with the replace directive)
# is the main module; the build only reads there (the module cache is read-only). Built next
# to the cache and moved into place, so that an interrupted build never leaves a truncated
# binary that looks cached.
out=$WORK/seaweedfs-$SEAWEEDFS_VERSION
rm -rf "$out"; mkdir -p "$out"
log "building weed (first time: 3-10 min on 2 cores)"
(cd "$src" && with_heartbeat weed go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out/weed" ./weed >&2)
mv "$out/weed" "$BIN/weed"
rm -rf "$out"

log "weed ready in $BIN"
echo "$BIN"
