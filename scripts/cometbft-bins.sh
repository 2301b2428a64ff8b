#!/usr/bin/env bash
# Builds (once) and caches CometBFT for the validator duty tests, from the Go module proxy:
# the `cometbft` binary generates a 4-validator testnet and runs it on loopback with the
# built-in `kvstore` app (tests/support/cometbft.rs). Prints the directory holding
# `cometbft` on stdout; progress goes to stderr. The cache lives per user and per version,
# outside the repository:
#   ${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/bins/cometbft-$COMETBFT/
set -euo pipefail

COMETBFT_VERSION=${COMETBFT_VERSION:-1.0.1}

CACHE_ROOT=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
BIN=$CACHE_ROOT/bins/cometbft-$COMETBFT_VERSION
WORK=$CACHE_ROOT/build

log() { printf '[cometbft-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [[ -x $BIN/cometbft ]]; then
  log "cometbft v$COMETBFT_VERSION cached in $BIN"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "ERROR: go is not installed (needed once, to build cometbft)"; exit 1; }
mkdir -p "$BIN" "$WORK"

# shellcheck source=heartbeat.sh
source "$(dirname "${BASH_SOURCE[0]}")/heartbeat.sh"
go_scratch_caches

# `go install` into a scratch GOBIN, then move into place, so that an interrupted build
# never leaves a truncated binary that looks cached.
gobin=$WORK/cometbft-$COMETBFT_VERSION-bin
rm -rf "$gobin"; mkdir -p "$gobin"
log "building cometbft v$COMETBFT_VERSION (first time: about a minute)"
GOBIN=$gobin with_heartbeat cometbft go install -trimpath -ldflags "-s -w" \
  "github.com/cometbft/cometbft/cmd/cometbft@v$COMETBFT_VERSION" >&2
mv "$gobin/cometbft" "$BIN/cometbft"
rm -rf "$gobin"

log "cometbft ready in $BIN"
echo "$BIN"
