#!/usr/bin/env bash
# The validator duty benchmark: what tracking the duty of 1,000 Cosmos validators costs when
# they all read it through one duty RPC (src/duty/feed.rs: one block follower per endpoint,
# shared by every validator whose spec.duty.rpc names it), on a real CometBFT network.
#
#   scripts/bench-duty.sh [--validators 1000] [--window 120s]
#
# Builds `vigil` (release); cometbft (scripts/cometbft-bins.sh) and the Kubernetes binaries
# (scripts/k8s-bins.sh) are built once and cached. Starts a control plane
# (scripts/control-plane.sh) and a 4-validator CometBFT testnet (`cometbft testnet`,
# `--proxy_app=kvstore`, a block about every second) on 127.0.77.1-4 (RPC 26657, P2P 26656),
# and tears both down on exit. Then, one after the other, each in its own namespace:
#   duty:    N MonitoredValidators `chain: cosmos`, health probes round-robin over the 4
#            nodes' RPC, `duty: {consensusAddress: <the node's validator>, rpc: <node 0>}`
#            (all N read duty through ONE endpoint); policy probe interval 10s, timeout 5s;
#   no duty: the same N without spec.duty.
# Each time it runs `vigil run`, waits until all N are Ready=True (with duty also
# Signing=True), waits one probe interval, then measures a steady window: blocks (node 0's
# height), vigil_duty_requests_total, the operator's CPU (/proc/PID/stat) and RSS.
# Prints a markdown table on stdout; it is also saved, with every log (operator, nodes), in
# target/bench-duty/<time>/. Every wait has a deadline; about 12 minutes after the builds.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'bench failed: %s\n' "$*" >&2; exit 1; }

VALIDATORS=1000
WINDOW=120
ARGS_TEXT=''
seconds() { # "120s", "2m" or "120" -> 120
  case $1 in
    *m) [[ ${1%m} =~ ^[0-9]+$ ]] && echo $((${1%m} * 60)) ;;
    *s) [[ ${1%s} =~ ^[0-9]+$ ]] && echo "${1%s}" ;;
    *) [[ $1 =~ ^[0-9]+$ ]] && echo "$1" ;;
  esac
}
while (($#)); do
  case $1 in
    --validators | --window)
      v=${2:?$1 needs a value}
      ARGS_TEXT+=" $1 $v"
      case $1 in
        --validators) VALIDATORS=$v ;;
        --window) WINDOW=$(seconds "$v") || die "--window must be like 120s or 2m, not '$v'" ;;
      esac
      shift 2
      ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'unknown argument: %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
done
[[ $VALIDATORS =~ ^[0-9]+$ ]] && ((VALIDATORS >= 4 && VALIDATORS <= 20000)) ||
  die "--validators must be an integer in 4..20000, not '$VALIDATORS'"
((WINDOW >= 30 && WINDOW <= 3600)) || die "--window must be 30s..1h, not ${WINDOW}s"

# The network: fixed loopback addresses and CometBFT's default ports.
IPS=(127.0.77.1 127.0.77.2 127.0.77.3 127.0.77.4)
RPC_PORT=26657
P2P_PORT=26656
OP_IP=127.0.77.9 # the operator's /metrics
INTERVAL=10      # the policy's probe interval, seconds
# Deadlines (seconds).
NET_TIMEOUT=120
READY_TIMEOUT=$((180 + VALIDATORS / 25))
TICK_TIMEOUT=60
RPC=()
for ip in "${IPS[@]}"; do RPC+=("http://$ip:$RPC_PORT"); done

# ---------------------------------------------------------------- binaries

step "cargo build --release: vigil"
cargo build --release --locked -p vigil --bin vigil
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$PWD/$TARGET_DIR
VIGIL=$TARGET_DIR/release/vigil

step "Kubernetes binaries (built once, then cached)"
BIN_DIR=$(scripts/k8s-bins.sh)
export PATH=$BIN_DIR:$PATH

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-duty.XXXXXX")
OP_PID=''
NODE_PIDS=()
stop_pid() { # PID NAME: SIGTERM, up to 15 s, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    note "$2 did not stop after SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  [[ -n $OP_PID ]] && stop_pid "$OP_PID" operator
  local pid
  for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid" cometbft; done
  # On failure, keep the control plane's logs beside the others.
  if ((rc != 0)) && [[ -n ${OUT:-} && -d $WORK/cp/logs ]]; then
    cp -r "$WORK/cp/logs" "$OUT/control-plane-logs" 2>/dev/null || true
  fi
  scripts/control-plane.sh stop --dir "$WORK/cp" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "cometbft (built once, then cached)"
if [[ -x scripts/cometbft-bins.sh ]]; then
  COMETBFT=$(scripts/cometbft-bins.sh)/cometbft
else
  command -v go >/dev/null || die "go is needed to build cometbft"
  GOBIN=$WORK/gobin GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    go install github.com/cometbft/cometbft/cmd/cometbft@v1.0.1 >&2
  COMETBFT=$WORK/gobin/cometbft
fi
[[ -x $COMETBFT ]] || die "no cometbft at $COMETBFT"
note "$("$COMETBFT" version 2>/dev/null | head -n1)"

OUT=target/bench-duty/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# ---------------------------------------------------------------- helpers

# Fails if anything listens on IP:PORT (or on the port of every address).
port_free() {
  ! ss -Hltn 2>/dev/null | awk -v a="$1:$2" -v p=":$2" '
    { l = $4 } l == a || l == "0.0.0.0" p || l == "*" p || l == "[::]" p { found = 1 }
    END { exit !found }'
}
# GET URL: the body, or failure (no answer, non-2xx, 5 s).
get() { curl -fsS --max-time 5 "$1" 2>/dev/null; }
# Node i's latest height (empty when it does not answer).
height() {
  get "${RPC[$1]}/status" | tr -d ' \n\r\t' |
    sed -n 's/.*"latest_block_height":"\([0-9]*\)".*/\1/p'
}
# The operator's metric NAME (the sum of its series whose labels contain LABELS; 0 when
# it has none); fails, printing nothing, when /metrics does not answer.
metric() {
  local text
  text=$(get "http://$OP_IP:$OP_PORT/metrics") || return 1
  awk -v name="$1" -v labels="${2:-}" '
    $1 == name || index($1, name "{") == 1 {
      if (labels == "" || index($1, labels) > 0) s += $2
    }
    END { printf "%.0f\n", s }' <<<"$text"
}
now() { date +%s.%N; }
# Lines of the operator's log FILE at level WARN or ERROR (colours stripped).
warnings() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -cE '^[^ ]+ +(WARN|ERROR) ' || true; }
# utime + stime of PID, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# Busy ticks of the whole machine (everything but idle and iowait).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# VmHWM and VmRSS of PID in MiB: "peak now".
rss() { awk '$1 == "VmHWM:" { h = $2 } $1 == "VmRSS:" { r = $2 } END { printf "%.1f %.1f\n", h / 1024, r / 1024 }' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
# Validators of namespace NS whose condition TYPE is True.
count_true() {
  { kubectl get mv -n "$1" -o jsonpath="{range .items[*]}{.status.conditions[?(@.type==\"$2\")].status}{\"\\n\"}{end}" 2>/dev/null || true; } |
    grep -c '^True$' || true
}
op_alive() {
  kill -0 "$OP_PID" 2>/dev/null && return 0
  tail -n 30 "$OP_LOG" >&2 || true
  die "the operator exited; its log: $OP_LOG"
}
nodes_alive() {
  local i
  for i in "${!NODE_PIDS[@]}"; do
    kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || {
      tail -n 20 "$OUT/node$i.log" >&2 || true
      die "cometbft node $i exited; its log: $OUT/node$i.log"
    }
  done
}
# Sets `KEY = VALUE` in [SECTION] of a CometBFT config.toml (the key must be there:
# `cometbft testnet` writes every option). SECTION "" is the top level.
set_toml() {
  local file=$1
  awk -v sec="$2" -v key="$3" -v val="$4" '
    /^[ \t]*\[[^]]*\][ \t]*$/ { cur = $0; gsub(/^[ \t]*\[|\][ \t]*$/, "", cur); print; next }
    cur == sec && !/^[ \t]*#/ && index($0, "=") {
      k = substr($0, 1, index($0, "=") - 1); gsub(/[ \t]/, "", k)
      if (k == key) { print key " = " val; done = 1; next }
    }
    { print }
    END { exit !done }' "$file" >"$file.tmp" || die "$file has no $3 in [$2]"
  mv "$file.tmp" "$file"
}

# ---------------------------------------------------------------- the network

step "checking that the bench's addresses are free"
for ip in "${IPS[@]}"; do
  for p in $RPC_PORT $P2P_PORT; do
    port_free "$ip" "$p" || die "$ip:$p is in use (another run of this bench, or a local node?)"
  done
done
OP_PORT=''
for p in $(seq 9464 9564); do
  port_free "$OP_IP" "$p" && { OP_PORT=$p; break; }
done
[[ -n $OP_PORT ]] || die "no free port on $OP_IP in 9464..9564 for the operator"

step "a 4-validator CometBFT testnet on ${IPS[0]}-4 (logs in $OUT/node<i>.log)"
NET=$WORK/net
"$COMETBFT" testnet --v 4 --n 0 --o "$NET" --starting-ip-address "${IPS[0]}" \
  --p2p-port "$P2P_PORT" </dev/null >"$OUT/testnet.log" 2>&1 ||
  { cat "$OUT/testnet.log" >&2; die "cometbft testnet failed"; }
IDS=()
for i in 0 1 2 3; do
  IDS+=("$("$COMETBFT" show-node-id --home "$NET/node$i" </dev/null)")
done
for i in 0 1 2 3; do
  ip=${IPS[$i]}
  peers=()
  for j in 0 1 2 3; do ((j == i)) || peers+=("${IDS[$j]}@${IPS[$j]}:$P2P_PORT"); done
  cfg=$NET/node$i/config/config.toml
  set_toml "$cfg" "" moniker "\"node$i\""
  set_toml "$cfg" rpc laddr "\"tcp://$ip:$RPC_PORT\""
  set_toml "$cfg" p2p laddr "\"tcp://$ip:$P2P_PORT\""
  set_toml "$cfg" p2p external_address "\"$ip:$P2P_PORT\""
  set_toml "$cfg" p2p persistent_peers "\"$(IFS=,; echo "${peers[*]}")\""
  set_toml "$cfg" p2p pex false # only the configured peers
  set_toml "$cfg" p2p allow_duplicate_ip true
  set_toml "$cfg" p2p addr_book_strict false
  set_toml "$cfg" consensus timeout_propose '"1s"'
  set_toml "$cfg" consensus timeout_commit '"1s"'
done
for i in 0 1 2 3; do
  "$COMETBFT" start --home "$NET/node$i" --proxy_app=kvstore </dev/null >"$OUT/node$i.log" 2>&1 &
  NODE_PIDS+=($!)
done
deadline=$((SECONDS + NET_TIMEOUT))
while :; do
  nodes_alive
  hs=()
  ok=1
  for i in 0 1 2 3; do
    h=$(height "$i" || true)
    hs+=("${h:-none}")
    [[ -n $h ]] && ((h >= 3)) || ok=0
  done
  ((ok)) && break
  ((SECONDS < deadline)) || die "the testnet did not reach height 3 in ${NET_TIMEOUT}s: heights ${hs[*]}"
  sleep 0.5
done
ADDRS=()
for i in 0 1 2 3; do
  a=$(get "${RPC[$i]}/status" | tr -d ' \n\r\t' |
    sed -n 's/.*"validator_info":{"address":"\([0-9A-Fa-f]*\)".*/\1/p')
  [[ -n $a ]] || die "node $i's /status has no result.validator_info.address"
  ADDRS+=("$a")
done
note "heights ${hs[*]}; validators ${ADDRS[*]}"

# ---------------------------------------------------------------- the control plane

step "starting the local control plane"
scripts/control-plane.sh start --dir "$WORK/cp" >/dev/null
export KUBECONFIG=$WORK/cp/kubeconfig
"$VIGIL" crd | kubectl apply --server-side -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/monitoredvalidators.vigil.dev crd/monitorpolicies.vigil.dev >/dev/null

# Namespace NS with the policy and VALIDATORS MonitoredValidators; with duty if $2 = duty.
create_fleet() {
  local ns=$1 duty=$2 file=$WORK/$1.yaml i t0
  {
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$ns"
    printf -- '---\napiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata: {name: bench, namespace: %s}\n' "$ns"
    printf 'spec:\n  probe: {interval: %ss, timeout: 5s, failureThreshold: 3, successThreshold: 1}\n' "$INTERVAL"
    printf '  remediation: {action: none}\n'
    for ((i = 0; i < VALIDATORS; i++)); do
      printf -- '---\napiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\n'
      printf 'metadata: {name: val-%05d, namespace: %s}\n' "$i" "$ns"
      printf "spec:\n  chain: cosmos\n  endpoints: {rpc: '%s'}\n" "${RPC[i % 4]}"
      [[ $duty == duty ]] && printf "  duty: {consensusAddress: '%s', rpc: '%s'}\n" "${ADDRS[i % 4]}" "${RPC[0]}"
      printf '  policyRef: {name: bench}\n'
    done
  } >"$file"
  t0=$(now)
  kubectl apply --server-side -f "$file" >/dev/null
  note "created namespace $ns, the policy and $VALIDATORS MonitoredValidators in $(calc %.1f "$(now) - $t0")s"
}

# Runs the operator on namespace NS (log: $OUT/operator-$2.log).
start_operator() {
  OP_LOG=$OUT/operator-$2.log
  "$VIGIL" run --allow-loopback --namespace "$1" --listen "$OP_IP:$OP_PORT" --lease-namespace "$1" \
    </dev/null >"$OP_LOG" 2>&1 &
  OP_PID=$!
  OP_START=$SECONDS
}
stop_operator() {
  stop_pid "$OP_PID" operator
  OP_PID=''
}

# Waits until every validator of NS is Ready=True and, with $2 = duty, Signing=True.
wait_settled() {
  local ns=$1 duty=$2 deadline=$((SECONDS + READY_TIMEOUT)) said=$SECONDS ready signing
  while :; do
    op_alive
    nodes_alive
    ready=$(metric vigil_validators 'ready="True"' || echo 0)
    signing=-
    [[ $duty == duty ]] && signing=$(count_true "$ns" Signing)
    if ((ready >= VALIDATORS)) && [[ $signing == - || $signing -ge $VALIDATORS ]]; then
      break
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$OP_LOG" >&2 || true
      die "$ns: after ${READY_TIMEOUT}s only $ready of $VALIDATORS Ready=True, Signing=True: $signing (operator log: $OP_LOG)"
    fi
    if ((SECONDS - said >= 15)); then
      note "$((SECONDS - OP_START))s: Ready=True $ready, Signing=True $signing of $VALIDATORS"
      said=$SECONDS
    fi
    sleep 5
  done
  SETTLED=$((SECONDS - OP_START))
  local what=Ready=True
  [[ $duty == duty ]] && what+=' and Signing=True'
  note "all $VALIDATORS $what ${SETTLED}s after the operator started"
}

# Polls the duty request counter until it differs from $1 and prints the new value.
# The counter is published every 5 s and the follower reads in one burst per probe
# interval, so a window from one published change to another holds whole bursts.
next_change() {
  local old=$1 deadline=$((SECONDS + TICK_TIMEOUT)) v
  while :; do
    if v=$(metric vigil_duty_requests_total) && [[ $v != "$old" ]]; then
      echo "$v"
      return 0
    fi
    ((SECONDS < deadline)) || die "vigil_duty_requests_total stood at $old for ${TICK_TIMEOUT}s"
    sleep 0.2
  done
}

# Measures one window; sets W_* (seconds, blocks, requests, cores, rss, node 0 cores,
# machine cores, status writes).
measure() {
  local aligned=$1 t0 t1 h0 h1 r0 r1 c0 c1 n0 n1 m0 m1 s0 s1
  r0=$(metric vigil_duty_requests_total) || die "the operator's /metrics did not answer"
  if [[ $aligned == aligned ]]; then r0=$(next_change "$r0"); fi
  t0=$(now); h0=$(height 0 || true); c0=$(cpu_ticks "$OP_PID"); n0=$(cpu_ticks "${NODE_PIDS[0]}")
  m0=$(machine_ticks); s0=$(metric vigil_status_writes_total || echo 0)
  [[ -n $h0 ]] || die "node 0 did not answer /status"
  if [[ $aligned == aligned ]]; then
    sleep $((WINDOW - 3))
    r1=$(metric vigil_duty_requests_total) || die "the operator's /metrics did not answer"
    r1=$(next_change "$r1")
  else
    sleep "$WINDOW"
    r1=$(metric vigil_duty_requests_total) || die "the operator's /metrics did not answer"
  fi
  t1=$(now); h1=$(height 0 || true); c1=$(cpu_ticks "$OP_PID"); n1=$(cpu_ticks "${NODE_PIDS[0]}")
  m1=$(machine_ticks); s1=$(metric vigil_status_writes_total || echo 0)
  [[ -n $h1 ]] || die "node 0 did not answer /status"
  op_alive
  nodes_alive
  W_SECS=$(calc %.1f "$t1 - $t0")
  W_BLOCKS=$((h1 - h0))
  W_REQS=$((r1 - r0))
  W_CORES=$(calc %.4f "($c1 - $c0) / $TICK / ($t1 - $t0)")
  W_NODE0=$(calc %.3f "($n1 - $n0) / $TICK / ($t1 - $t0)")
  W_MACHINE=$(calc %.2f "($m1 - $m0) / $TICK / ($t1 - $t0)")
  W_WRITES=$((s1 - s0))
  W_RSS=$(rss "$OP_PID")
  note "window ${W_SECS}s: $W_BLOCKS blocks, $W_REQS duty requests, operator $W_CORES cores, RSS (peak now) $W_RSS MiB, node 0 $W_NODE0 cores, machine $W_MACHINE cores busy, $W_WRITES status writes"
}

# ---------------------------------------------------------------- with duty

NS_DUTY=bench-duty-$VALIDATORS
NS_PLAIN=bench-noduty-$VALIDATORS

step "with duty: $VALIDATORS validators, all reading duty through ${RPC[0]}"
create_fleet "$NS_DUTY" duty
start_operator "$NS_DUTY" duty
wait_settled "$NS_DUTY" duty
SETTLED_DUTY=$SETTLED
note "one more probe interval, then a window of ${WINDOW}s (from one published change of vigil_duty_requests_total to another)"
sleep "$INTERVAL"
measure aligned
D_SECS=$W_SECS D_BLOCKS=$W_BLOCKS D_REQS=$W_REQS D_CORES=$W_CORES D_NODE0=$W_NODE0
D_MACHINE=$W_MACHINE D_WRITES=$W_WRITES D_RSS=$W_RSS
D_SIGNING_END=$(count_true "$NS_DUTY" Signing)
D_READY_END=$(metric vigil_validators 'ready="True"' || echo '?')
D_TOTAL_REQS=$(metric vigil_duty_requests_total || echo '?')
D_UPTIME=$((SECONDS - OP_START))
note "at the end: Signing=True $D_SIGNING_END, Ready=True $D_READY_END of $VALIDATORS; $D_TOTAL_REQS duty requests in ${D_UPTIME}s since the operator started"
D_WARN=$(warnings "$OP_LOG")
D_UNKNOWN=$(grep -c '"type":"Signing","status":"Unknown"' "$OP_LOG" || true)
note "operator log lines at WARN or ERROR: $D_WARN; Signing set to Unknown $D_UNKNOWN times (first read included)"
stop_operator

# ---------------------------------------------------------------- without duty

step "without duty: the same $VALIDATORS validators without spec.duty"
create_fleet "$NS_PLAIN" plain
start_operator "$NS_PLAIN" noduty
wait_settled "$NS_PLAIN" plain
SETTLED_PLAIN=$SETTLED
note "one more probe interval, then a window of ${WINDOW}s"
sleep "$INTERVAL"
measure plain
P_SECS=$W_SECS P_REQS=$W_REQS P_CORES=$W_CORES P_NODE0=$W_NODE0 P_MACHINE=$W_MACHINE
P_WRITES=$W_WRITES P_RSS=$W_RSS P_BLOCKS=$W_BLOCKS
P_READY_END=$(metric vigil_validators 'ready="True"' || echo '?')
P_WARN=$(warnings "$OP_LOG")
note "operator log lines at WARN or ERROR: $P_WARN"
stop_operator

# ---------------------------------------------------------------- the table

PER_VALIDATOR=$((VALIDATORS * D_BLOCKS))
read -r D_PEAK D_NOW <<<"$D_RSS"
read -r P_PEAK P_NOW <<<"$P_RSS"
{
  printf 'Command: `scripts/bench-duty.sh%s` (commit %s%s), %s; %s cores, %s.\n\n' "$ARGS_TEXT" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(git diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes')" \
    "$(date -u +'%Y-%m-%d %H:%M UTC')" "$(nproc)" \
    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  printf '| validators | window (s) | blocks | duty requests | requests/s | requests per block | per-validator design, computed: reads | ratio | operator CPU with duty (cores) | without duty (cores) | duty'"'"'s CPU (cores) | RSS with / without duty, peak MiB |\n'
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' \
    "$VALIDATORS" "$D_SECS" "$D_BLOCKS" "$D_REQS" \
    "$(calc %.2f "$D_REQS / $D_SECS")" \
    "$(calc %.2f "$D_REQS / ($D_BLOCKS > 0 ? $D_BLOCKS : 1)")" \
    "$PER_VALIDATOR" \
    "$(calc '%.0f×' "$PER_VALIDATOR / ($D_REQS > 0 ? $D_REQS : 1)")" \
    "$D_CORES" "$P_CORES" "$(calc %+.4f "$D_CORES - $P_CORES")" "$D_PEAK" "$P_PEAK"
  printf '\n'
  printf -- '- With duty: all %s Ready=True and Signing=True %ss after the operator started; at the end of the window Signing=True %s, Ready=True %s; %s status writes in the window; Signing set to Unknown %s times in the whole run (the first read included); %s operator log lines at WARN or ERROR; RSS now %s MiB. Node 0 (the duty RPC, also probed by a quarter of the validators) used %s cores; the machine was %s cores busy.\n' \
    "$VALIDATORS" "$SETTLED_DUTY" "$D_SIGNING_END" "$D_READY_END" "$D_WRITES" "$D_UNKNOWN" "$D_WARN" "$D_NOW" "$D_NODE0" "$D_MACHINE"
  printf -- '- Without duty: all %s Ready=True %ss after the operator started; window %ss, %s blocks, %s duty requests, Ready=True %s at the end; %s status writes in the window; %s operator log lines at WARN or ERROR; RSS now %s MiB. Node 0 used %s cores; the machine was %s cores busy.\n' \
    "$VALIDATORS" "$SETTLED_PLAIN" "$P_SECS" "$P_BLOCKS" "$P_REQS" "$P_READY_END" "$P_WRITES" "$P_WARN" "$P_NOW" "$P_NODE0" "$P_MACHINE"
  printf -- '- Per-validator design (computed, not run): one `/commit` read per validator per block (%s × %s blocks), status polls not counted; the ratio is those reads over the duty requests measured. Block time %ss.\n' \
    "$VALIDATORS" "$D_BLOCKS" "$(calc %.2f "$D_SECS / ($D_BLOCKS > 0 ? $D_BLOCKS : 1)")"
} | tee "$OUT/results.md"
note "results and logs in $OUT"
