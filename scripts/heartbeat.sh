# Sourced by the scripts that build test and benchmark binaries: a first build takes
# minutes, so it logs a line every 30 s to show it makes progress. Uses the caller's `log`.

heartbeat() {
  local what=$1 start=$SECONDS
  while sleep 30; do log "still building $what ($((SECONDS - start))s)"; done
}

# with_heartbeat WHAT CMD...: runs CMD, logging progress until it ends; returns its status.
with_heartbeat() {
  local what=$1; shift
  heartbeat "$what" & local hb=$!
  local rc=0
  "$@" || rc=$?
  kill "$hb" 2>/dev/null || true
  wait "$hb" 2>/dev/null || true
  return $rc
}

# go_scratch_caches: points this build's Go caches (gigabytes of module sources and object
# files, useless once the binaries are cached) at a scratch directory under $WORK that is
# removed on exit, unless the user set GOCACHE or GOMODCACHE. Call it only when a build is
# needed: a fresh machine's disk would otherwise keep some 12 GB it never uses again.
go_scratch_caches() {
  [ -z "${GOCACHE:-}${GOMODCACHE:-}" ] || return 0
  mkdir -p "$WORK"
  GO_SCRATCH=$(mktemp -d "$WORK/.go-caches.XXXXXX")
  export GOCACHE=$GO_SCRATCH/build GOMODCACHE=$GO_SCRATCH/mod
  # The module cache is read-only by design; -modcacherw lets `rm` remove it.
  export GOFLAGS="${GOFLAGS:-} -modcacherw"
  trap 'rm -rf "$GO_SCRATCH"' EXIT
}
