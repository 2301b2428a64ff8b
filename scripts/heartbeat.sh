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
