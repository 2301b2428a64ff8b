#!/usr/bin/env bash
# The archive benchmark: a PipelineRun of 100 steps whose steps run as real Jobs on a local
# control plane and whose pod logs total 100 MB and 1 GB (default), archived by `vigil run`
# to a directory store, read back and verified; the same bytes then go through
# `tar czf` + `sha256sum` on the same machine, right after.
#
#   scripts/bench-archive.sh [--sizes 100,1000] [--steps 100] [--containers 1] [--waves 5]
#
# --sizes: total log megabytes (10^6 bytes) of one run, one run per size; --steps (1..100,
# the CRD's limit) × --containers (1..10, container vigil-log-<k> serves the control plane's
# DIR/pod-logs/<k>.log) pod logs of equal size, lines of base64 of random bytes; the steps
# run in --waves waves (each step of a wave runs after every step of the wave before, at
# most 40 names in runAfter). Builds `vigil` (release) and the Kubernetes binaries
# (scripts/k8s-bins.sh, cached), starts a control plane (scripts/control-plane.sh) and tears
# it and every operator down on exit. Prints markdown tables on stdout, progress on stderr;
# tables and logs (operator, watches, memory samples) are kept in target/bench-archive/<time>/.
# Needs about 4 × the largest size free in ${TMPDIR:-/tmp}.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'bench failed: %s\n' "$*" >&2; exit 1; }

SIZES=100,1000
STEPS=100
CONTAINERS=1
WAVES=5
ARGS_TEXT=''
while (($#)); do
  case $1 in
    --sizes | --steps | --containers | --waves)
      v=${2:?$1 needs a value}
      ARGS_TEXT+=" $1 $v"
      case $1 in
        --sizes) SIZES=$v ;; --steps) STEPS=$v ;; --containers) CONTAINERS=$v ;; --waves) WAVES=$v ;;
      esac
      shift 2
      ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'unknown argument: %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
done
int() { if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then die "$1 must be an integer in $3..$4, not '$2'"; fi; }
int --steps "$STEPS" 1 100
int --containers "$CONTAINERS" 1 10
int --waves "$WAVES" 1 "$STEPS"
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
for s in "${SIZE_LIST[@]}"; do int --sizes "$s" 1 100000; done
LOGS=$((STEPS * CONTAINERS))
PER_WAVE=$(((STEPS + WAVES - 1) / WAVES))
((PER_WAVE <= 40 || WAVES == 1)) || die "--waves $WAVES puts $PER_WAVE steps in a wave; runAfter takes at most 40 names: use more waves"

# How long each phase may take before the bench gives up, saying what did not happen.
READY_TIMEOUT=60 RUN_TIMEOUT=300 ARCHIVE_TIMEOUT=1200

step "cargo build --release: vigil"
cargo build --release --locked -p vigil --bin vigil
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$PWD/$TARGET_DIR
VIGIL=$TARGET_DIR/release/vigil

step "Kubernetes binaries (built once, then cached)"
BIN_DIR=$(scripts/k8s-bins.sh)
KUBECTL=$BIN_DIR/kubectl

OUT=target/bench-archive/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-archive.XXXXXX")
CP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-cp.XXXXXX")
largest=0
for s in "${SIZE_LIST[@]}"; do if ((s > largest)); then largest=$s; fi; done
free_mb=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') / 1000))
((free_mb >= 4 * largest)) || die "$WORK has $free_mb MB free; the ${largest} MB run needs about $((4 * largest)) MB (spool, bundle, extracted copy, reference tar.gz)"

# Every background process this script starts, by pid; killed on any exit.
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  scripts/control-plane.sh stop --dir "$CP_DIR" >/dev/null 2>&1 || true
  rm -rf "$CP_DIR" "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

step "starting the local control plane"
scripts/control-plane.sh start --dir "$CP_DIR" >/dev/null
export KUBECONFIG=$CP_DIR/kubeconfig
"$VIGIL" crd | "$KUBECTL" apply --server-side --force-conflicts -f - >/dev/null
"$KUBECTL" wait --for condition=established --timeout=60s crd/pipelineruns.vigil.dev >/dev/null
# Each component is its own process group, led by the component (DIR/pids: name pgid).
APISERVER_PID=$(awk '$1 == "kube-apiserver" { print $2 }' "$CP_DIR/pids")
KWOK_PID=$(awk '$1 == "kwok" { print $2 }' "$CP_DIR/pids")
[[ -n $APISERVER_PID && -n $KWOK_PID ]] || die "no kube-apiserver or kwok in $CP_DIR/pids"

# Prefixes every line of stdin with the time it arrived (Unix seconds, microseconds).
stamp() { local l; while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }

# Starts `kubectl "$@"` in the background with every output line time-stamped into $1;
# WATCH_PIDS gets kubectl's pid (killing it ends the stamping loop too).
WATCH_PIDS=()
watch_stamped() {
  local out=$1
  shift
  mkfifo "$out.fifo"
  stamp <"$out.fifo" >"$out" &
  PIDS+=($!)
  "$KUBECTL" "$@" >"$out.fifo" 2>>"$out.err" &
  PIDS+=($!)
  WATCH_PIDS+=($!)
}

# CPU ticks (utime + stime) of process $1, 0 if it is gone.
ticks() {
  local stat f
  read -r stat 2>/dev/null <"/proc/$1/stat" || { echo 0; return; }
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  echo $((f[11] + f[12]))
}

# Samples the operator's memory and CPU, and the machine's CPU, every 0.2 s (bash builtins
# mostly: the bench must not take the cores it measures):
# time VmRSS VmHWM RssAnon RssFile (KiB) operator-ticks machine-busy-ticks machine-total-ticks
# kube-apiserver-ticks kwok-ticks
sample() {
  local pid=$1 k v rest rss hwm anon file stat cpu m
  while [[ -r /proc/$pid/status ]]; do
    rss='' hwm='' anon='' file=''
    while read -r k v rest; do
      case $k in VmRSS:) rss=$v ;; VmHWM:) hwm=$v ;; RssAnon:) anon=$v ;; RssFile:) file=$v ;; esac
    done 2>/dev/null <"/proc/$pid/status" || break
    read -r stat 2>/dev/null <"/proc/$pid/stat" || break
    stat=${stat##*) }
    read -r -a cpu <<<"$stat"
    read -r -a m </proc/stat
    printf '%s %s %s %s %s %s %s %s %s %s\n' "$EPOCHREALTIME" "$rss" "$hwm" "$anon" "$file" \
      $((cpu[11] + cpu[12])) $((m[1] + m[2] + m[3] + m[6] + m[7] + m[8])) \
      $((m[1] + m[2] + m[3] + m[4] + m[5] + m[6] + m[7] + m[8])) \
      "$(ticks "$APISERVER_PID")" "$(ticks "$KWOK_PID")"
    sleep 0.2
  done
}

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# The operator's smaps_rollup, for where memory went.
rollup() { grep -E '^(Rss|Anonymous|Private_Dirty|Shared_Clean|Private_Clean):' "/proc/$1/smaps_rollup" | tr -s ' ' | paste -sd' '; }

# Writes a CRI-format log of about $2 bytes to $1 (as served: lines of 96 base64 characters
# of random bytes and a newline, which gzip shrinks only to about 3/4); prints the bytes
# served.
write_log() {
  local lines=$((($2 + 48) / 97))
  head -c $((lines * 72)) /dev/urandom | base64 -w 96 |
    sed 's/^/2026-01-02T03:04:05.000000000Z stdout F /' >"$1"
  echo $((lines * 97))
}

run_yaml() {
  local name=$1 store=$2 per_wave=$PER_WAVE i w k after containers
  containers=''
  for ((k = 0; k < CONTAINERS; k++)); do containers+="${containers:+, }{name: vigil-log-$k, image: busybox}"; done
  printf 'apiVersion: vigil.dev/v1alpha1\nkind: PipelineRun\nmetadata:\n  name: %s\nspec:\n' "$name"
  printf '  archive:\n    filesystem: {path: %s}\n  steps:\n' "$store"
  for ((i = 0; i < STEPS; i++)); do
    w=$((i / per_wave))
    after=''
    if ((w > 0)); then
      for ((k = (w - 1) * per_wave; k < w * per_wave; k++)); do after+="${after:+, }s$k"; done
    fi
    printf '  - name: s%d\n    runAfter: [%s]\n    template:\n      backoffLimit: 0\n' "$i" "$after"
    printf '      template:\n        metadata:\n          annotations: {vigil-test/exit-code: "0", vigil-test/run-seconds: "1"}\n'
    printf '        spec:\n          restartPolicy: Never\n          containers: [%s]\n' "$containers"
  done
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The first time in watch file $1 (stamped lines) whose text matches the regexp $2.
first_at() { awk -v re="$2" '{ t = $1; $1 = ""; if ($0 ~ re) { print t; exit } }' "$1"; }

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.1f}" 'BEGIN { printf f, a / b }'; }

ROWS_TIME=() ROWS_MEM=() ROWS_MORE=() NOTES=() FAILED=''
# An ISO-8601 time to Unix seconds.
unix() { date -u -d "$1" +%s; }

bench_one() {
  local size=$1 ns="bench-archive-$1" name=run d="$OUT/size-$1"
  local per_log=$((size * 1000000 / LOGS)) served=0 k port op store xdir
  mkdir -p "$d"
  store=$WORK/store-$size xdir=$WORK/extracted-$size
  mkdir -p "$store" "$xdir" "$WORK/spool-$size"

  step "$size MB: $STEPS steps × $CONTAINERS containers, $LOGS logs of $per_log bytes (base64 of random bytes)"
  for ((k = 0; k < CONTAINERS; k++)); do
    served=$(write_log "$CP_DIR/pod-logs/$k.log" "$per_log")
  done
  local total=$((served * LOGS))
  note "each log serves $served bytes; $total bytes of logs in the run"

  "$KUBECTL" create namespace "$ns" >/dev/null
  port=$(free_port)
  env KUBECONFIG="$CP_DIR/kubeconfig" RUST_LOG=info TMPDIR="$WORK/spool-$size" \
    setpriv --pdeathsig TERM -- "$VIGIL" run --namespace "$ns" --listen "127.0.0.1:$port" \
    --lease-name "bench-archive-$size" --lease-namespace "$ns" --log-format json \
    >"$d/operator.log" 2>&1 &
  op=$!
  PIDS+=("$op")
  local i
  for ((i = 0; i < READY_TIMEOUT * 5; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true) == 200 ]] && break
    kill -0 "$op" 2>/dev/null || die "the operator exited; see $d/operator.log"
    sleep 0.2
  done
  ((i < READY_TIMEOUT * 5)) || die "the operator was not ready after ${READY_TIMEOUT}s; see $d/operator.log"

  sample "$op" >"$d/memory.txt" &
  local sampler=$!
  PIDS+=("$sampler")
  watch_stamped "$d/jobs.watch" get jobs -n "$ns" -w -o \
    'jsonpath={.metadata.name} complete={.status.conditions[?(@.type=="Complete")].status}{"\n"}'
  watch_stamped "$d/run.watch" get pipelineruns -n "$ns" -w -o \
    'jsonpath={.metadata.name} progress={.status.progress} Succeeded={.status.conditions[?(@.type=="Succeeded")].status}/{.status.conditions[?(@.type=="Succeeded")].reason} Archived={.status.conditions[?(@.type=="Archived")].status}/{.status.conditions[?(@.type=="Archived")].reason}{"\n"}'
  # The idle baseline: VmRSS of the ready operator with nothing to do yet.
  sleep 3
  local rss_idle
  rss_idle=$(status_kib "$op" VmRSS)

  run_yaml "$name" "$store" >"$d/run.yaml"
  local t_create=$EPOCHREALTIME
  "$KUBECTL" apply -n "$ns" -f "$d/run.yaml" >/dev/null

  # The operator's high-water mark (VmHWM) is reset twice: once every Job exists (the last
  # wave is running), and when the run has ended (Succeeded=True; the archive starts after
  # that status write). The peak before the second reset is the run's; the one after, the
  # archive's.
  # The archive's phases, from the store directory: the upload's staging file appears when
  # the bundle starts (every log is spooled by then), the final .tar.gz when it is complete.
  local t_write='' t_written=''
  local reset='' reset2='' t_jobs='' archiving='' deadline=$((SECONDS + RUN_TIMEOUT)) what="the run did not end and start archiving"
  local hwm_run='' rss_end=
  while :; do
    if [[ -z $reset ]] && (($(awk '!seen[$2]++ { n++ } END { print n + 0 }' "$d/jobs.watch") >= STEPS)); then
      t_jobs=$EPOCHREALTIME
      if echo 5 2>/dev/null >"/proc/$op/clear_refs"; then reset=yes; else reset=no; fi
      note "all $STEPS Jobs exist after $(secs "$t_create" "$t_jobs") s; high-water mark reset: $reset"
    fi
    if [[ -z $reset2 ]] && grep -q ' Succeeded=True/' "$d/run.watch"; then
      hwm_run=$(status_kib "$op" VmHWM) rss_end=$(status_kib "$op" VmRSS)
      # Archiving had already begun when this loop saw the run end (one status write).
      if grep -q ' Archived=[A-Z]' "$d/run.watch"; then reset2=late; fi
      if echo 5 2>/dev/null >"/proc/$op/clear_refs"; then reset2=${reset2:-yes}; else reset2=no; fi
    fi
    if [[ -z $archiving ]] && grep -q ' Archived=Unknown/Archiving' "$d/run.watch"; then
      archiving=yes deadline=$((SECONDS + ARCHIVE_TIMEOUT)) what="no archive verdict"
      note "the run ended after $(secs "$t_create" "$EPOCHREALTIME") s; archiving"
    fi
    if [[ -n $archiving && -z $t_write ]] && compgen -G "$store/$ns/*" >/dev/null; then t_write=$EPOCHREALTIME; fi
    if [[ -n $t_write && -z $t_written ]] && compgen -G "$store/$ns/*.tar.gz" >/dev/null; then t_written=$EPOCHREALTIME; fi
    grep -q ' Archived=\(True\|False\)/' "$d/run.watch" && break
    grep -q ' Succeeded=False/' "$d/run.watch" && die "$size MB: the run failed: $(tail -1 "$d/run.watch")"
    ((SECONDS < deadline)) || die "$size MB: $what in time (last seen: $(tail -1 "$d/run.watch" 2>/dev/null)); see $d"
    kill -0 "$op" 2>/dev/null || die "the operator exited; see $d/operator.log"
    sleep 0.1
  done
  local t_seen=$EPOCHREALTIME
  local hwm_after rss_after rollup_after
  hwm_after=$(status_kib "$op" VmHWM) rss_after=$(status_kib "$op" VmRSS) rollup_after=$(rollup "$op")
  kill "$sampler" 2>/dev/null || true
  "$KUBECTL" get pipelineruns -n "$ns" "$name" -o json >"$d/run.json"
  if grep -q ' Archived=False/' "$d/run.watch"; then
    die "$size MB: Archived=False: $(jq -r '.status.conditions[] | select(.type == "Archived") | .reason + ": " + .message' "$d/run.json")"
  fi
  [[ $(jq -r '.status.conditions[] | select(.type == "Succeeded") | .status' "$d/run.json") == True ]] ||
    die "$size MB: Archived=True but Succeeded is not True"

  # Times from this script's own watches (arrival of each event, µs resolution).
  local t_last_job t_archiving t_archived
  t_last_job=$(awk '/ complete=True/ && !seen[$2]++ { t = $1 } END { print t }' "$d/jobs.watch")
  (($(awk '/ complete=True/ && !seen[$2]++' "$d/jobs.watch" | wc -l) == STEPS)) ||
    die "$size MB: the Job watch saw fewer than $STEPS Jobs complete"
  t_archiving=$(first_at "$d/run.watch" ' Archived=Unknown/Archiving')
  t_archived=$(first_at "$d/run.watch" ' Archived=True/')
  [[ -n $t_archiving && -n $t_archived ]] || die "$size MB: the watch missed Archived=Unknown or Archived=True"
  # The same from the API's own timestamps (1 s resolution).
  local api_done api_archived
  api_done=$(jq -r '[.status.steps[].completionTime] | max' "$d/run.json")
  api_archived=$(jq -r '.status.conditions[] | select(.type == "Archived") | .lastTransitionTime' "$d/run.json")

  # Memory. The archive's growth: its peak (VmHWM after Archived=True, reset when the run
  # ended) over VmRSS when the run ended; also over the idle operator before the run.
  local peak_sampled
  peak_sampled=$(awk -v a="$t_archiving" -v b="$t_seen" '$1 >= a && $1 <= b && $2 > m { m = $2 } END { print m + 0 }' "$d/memory.txt")
  [[ -n $rss_end && -n $hwm_run ]] || die "$size MB: the run's end was not seen before its archive"
  [[ $reset2 == yes ]] || NOTES+=("$size MB: the archive's peak is not apart from the run's (second VmHWM reset: $reset2)")
  local growth=$((hwm_after - rss_end)) growth_idle=$((hwm_after - rss_idle))
  [[ $reset == yes ]] || NOTES+=("$size MB: /proc/PID/clear_refs could not be written: VmHWM is the peak since the operator started")
  # Operator CPU and machine busy while archiving (from the samples nearest the watch times).
  local cpu_line
  cpu_line=$(awk -v a="$t_archiving" -v b="$t_archived" -v tick="$(getconf CLK_TCK)" -v cores="$(nproc)" '
    $1 <= a { c0 = $6; b0 = $7; n0 = $8; a0 = $9; k0 = $10 }
    $1 <= b { c1 = $6; b1 = $7; n1 = $8; a1 = $9; k1 = $10 }
    END { printf "%.1f %.2f %.1f %.1f", (c1 - c0) / tick, (n1 > n0 ? cores * (b1 - b0) / (n1 - n0) : 0), (a1 - a0) / tick, (k1 - k0) / tick }' "$d/memory.txt")
  local op_cpu busy api_cpu kwok_cpu
  read -r op_cpu busy api_cpu kwok_cpu <<<"$cpu_line"

  # The bundle and its files.
  local location bundle bsize files sha
  location=$(jq -r '.status.archive.location' "$d/run.json")
  bsize=$(jq -r '.status.archive.size' "$d/run.json")
  files=$(jq -r '.status.archive.files' "$d/run.json")
  sha=$(jq -r '.status.archive.sha256' "$d/run.json")
  bundle=${location#file://}
  [[ -f $bundle ]] || die "$size MB: no bundle at $bundle"
  [[ $(sha256sum "$bundle" | cut -d' ' -f1) == "$sha" ]] || die "$size MB: the bundle's SHA-256 differs from status.archive.sha256"

  step "$size MB: archived; the same bytes through tar czf + sha256sum"
  tar xzf "$bundle" -C "$xdir"
  local inbytes logbytes nlogs
  inbytes=$(find "$xdir" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
  logbytes=$(find "$xdir/logs" -type f -name '*.log' -printf '%s\n' | awk '{ s += $1 } END { print s }')
  nlogs=$(find "$xdir/logs" -type f -name '*.log' | wc -l)
  ((nlogs == LOGS && logbytes == total)) ||
    die "$size MB: the bundle holds $nlogs logs of $logbytes bytes, expected $LOGS of $total"
  # Every log is the served text of its file, byte for byte.
  for ((k = 0; k < CONTAINERS; k++)); do
    cut -d' ' -f4- "$CP_DIR/pod-logs/$k.log" >"$WORK/expected-$k.log"
    while IFS= read -r f; do
      cmp -s "$WORK/expected-$k.log" "$f" || die "$size MB: $f differs from the log served"
    done < <(find "$xdir/logs" -type f -name "vigil-log-$k.log")
  done
  rm -f "$WORK"/expected-*.log
  (cd "$xdir" && sha256sum -c --quiet SHA256SUMS) || die "$size MB: sha256sum -c SHA256SUMS failed on the extracted bundle"
  local ref_tgz=$WORK/ref-$size.tgz t0 t1 ref ref_fast verify_cli m0 m1 ref_busy
  sync
  read -r -a m0 </proc/stat
  t0=$EPOCHREALTIME
  tar czf "$ref_tgz" -C "$xdir" . && sha256sum "$ref_tgz" >/dev/null
  t1=$EPOCHREALTIME
  read -r -a m1 </proc/stat
  ref_busy=$(awk -v b="$((m1[1] + m1[2] + m1[3] + m1[6] + m1[7] + m1[8] - m0[1] - m0[2] - m0[3] - m0[6] - m0[7] - m0[8]))" \
    -v n="$((m1[1] + m1[2] + m1[3] + m1[4] + m1[5] + m1[6] + m1[7] + m1[8] - m0[1] - m0[2] - m0[3] - m0[4] - m0[5] - m0[6] - m0[7] - m0[8]))" \
    -v c="$(nproc)" 'BEGIN { printf "%.2f", (n > 0 ? c * b / n : 0) }')
  ref=$(secs "$t0" "$t1")
  local ref_size
  ref_size=$(stat -c %s "$ref_tgz")
  rm -f "$ref_tgz"
  sync
  t0=$EPOCHREALTIME
  tar -I 'gzip -1' -cf "$ref_tgz" -C "$xdir" . && sha256sum "$ref_tgz" >/dev/null
  t1=$EPOCHREALTIME
  ref_fast=$(secs "$t0" "$t1")
  rm -f "$ref_tgz"
  t0=$EPOCHREALTIME
  "$VIGIL" archive verify "$location" >"$d/verify-cli.txt" 2>&1 || die "$size MB: vigil archive verify failed: $(tail -3 "$d/verify-cli.txt")"
  t1=$EPOCHREALTIME
  verify_cli=$(secs "$t0" "$t1")

  local t_arch t_total phases='n/a'
  t_arch=$(secs "$t_archiving" "$t_archived")
  if [[ -n $t_write && -n $t_written ]]; then
    phases="$(secs "$t_archiving" "$t_write") / $(secs "$t_write" "$t_written") / $(secs "$t_written" "$t_archived")"
  fi
  t_total=$(secs "$t_last_job" "$t_archived")
  ROWS_TIME+=("| $(div "$total" 1000000 %.0f) | $STEPS × $CONTAINERS | $(div "$inbytes" 1000000) | $(div "$bsize" 1000000) ($(div "$inbytes" "$bsize" %.2f)×) | $t_arch | $(div "$inbytes" "$(awk -v t="$t_arch" 'BEGIN { print t * 1000000 }')") | $t_total | $(($(unix "$api_archived") - $(unix "$api_done"))) | $ref | $(div "$t_arch" "$ref" %.2f)× |")
  ROWS_MEM+=("| $(div "$total" 1000000 %.0f) | $(div "$rss_idle" 1024) | $(div "$hwm_run" 1024) | $(div "$rss_end" 1024) | $(div "$hwm_after" 1024) ($(div "$peak_sampled" 1024)) | $(div "$rss_after" 1024) | **$(div "$growth" 1024 %+.1f)** | $(div "$growth_idle" 1024 %+.1f) | $( ((growth <= 65536)) && echo met || echo '**not met**') |")
  ROWS_MORE+=("| $(div "$total" 1000000 %.0f) | $phases | $op_cpu | $api_cpu / $kwok_cpu | $busy | $ref_busy | $ref_fast ($(div "$t_arch" "$ref_fast" %.2f)×) | $(div "$ref_size" 1000000) | $verify_cli | $files |")
  printf '%s\n' "after: $rollup_after" >"$d/smaps_rollup.txt"
  ((growth <= 65536)) || FAILED+="$size MB: the archive grew RSS by $(div "$growth" 1024) MiB (limit +64 MiB). "

  step "$size MB: done (archive + verify ${t_arch}s, last Job → Archived=True ${t_total}s, RSS +$(div "$growth" 1024) MiB); cleaning up"
  kill "$op" "${WATCH_PIDS[@]}" 2>/dev/null || true
  wait "$op" "${WATCH_PIDS[@]}" 2>/dev/null || true
  WATCH_PIDS=()
  "$KUBECTL" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  rm -rf "$store" "$xdir" "$WORK/spool-$size"
}

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes')
STARTED=$(date -u +'%Y-%m-%d %H:%M UTC')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
for s in "${SIZE_LIST[@]}"; do bench_one "$s"; done

# shellcheck disable=SC2016 # backquotes are markdown here
{
  printf 'Command: `scripts/bench-archive.sh%s` (commit %s%s), %s.\n\n' "$ARGS_TEXT" "$COMMIT" "$DIRTY" "$STARTED"
  printf 'Load average when the bench started: %s (%s cores).\n\n' "$LOAD" "$(nproc)"
  printf 'Logs: %d steps × %d containers = %d pod logs a run, in %d waves; each log is lines of 96 base64 characters of random bytes (gzip gets about 3:4 at best). Times are this script'"'"'s watches (µs clock, arrival of each event); the reference `tar czf` + `sha256sum` runs on the extracted bundle right after each archive, on the same machine and under the same load.\n\n' \
    "$STEPS" "$CONTAINERS" "$LOGS" "$WAVES"
  printf '**Time**\n\n'
  printf '| logs MB | steps × containers | bundle input MB | bundle MB (ratio) | Vigil archive + verify s | MB/s | last Job Complete → Archived=True s | same, API timestamps s | `tar czf` + `sha256sum` s | Vigil / tar |\n'
  printf '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  printf '%s\n' "${ROWS_TIME[@]}"
  printf '\n**Operator memory** (MiB; limit: growth ≤ +64 MiB)\n\n'
  printf '| logs MB | VmRSS idle, before the run | peak while the Jobs ran (VmHWM) | VmRSS when the run ended | archive peak: VmHWM (highest VmRSS sampled) | VmRSS after | archive growth: peak − run end | peak − idle | |\n'
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
  printf '%s\n' "${ROWS_MEM[@]}"
  printf '\n**More**\n\n'
  printf '| logs MB | Vigil: fetch logs / write bundle / read back + verify s | operator CPU-s while archiving | kube-apiserver / kwok CPU-s meanwhile | machine busy while archiving (of %s cores) | same during `tar czf` | `tar` with `gzip -1` + `sha256sum` s (Vigil / it) | `tar czf` output MB | `vigil archive verify` alone s | files in bundle |\n' "$(nproc)"
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  printf '%s\n' "${ROWS_MORE[@]}"
  ((${#NOTES[@]})) && printf '\n- %s\n' "${NOTES[@]}"
  printf '\n'
} | tee "$OUT/results.md"
[[ -z $FAILED ]] || { printf '**Not met:** %s\n' "$FAILED" | tee -a "$OUT/results.md"; exit 1; }
