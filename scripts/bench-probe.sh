#!/usr/bin/env bash
# The probe benchmark: `vigil run` against simulated Substrate validators (1,000 / 5,000 /
# 10,000 by default, 10 s interval) on a real local control plane, and Prometheus
# blackbox_exporter doing the equivalent JSON-RPC POST probe at the same rate.
#
#   scripts/bench-probe.sh [--validators 1000,5000,10000] [--window 60s] [--no-blackbox]
#
# Builds `vigil` and `vigil-sim` (release), the Kubernetes binaries (scripts/k8s-bins.sh) and
# blackbox_exporter (scripts/bench-bins.sh), both cached after the first run; starts a
# control plane (scripts/control-plane.sh) and tears it down on exit; then runs
# `cargo bench --bench probe`, which prints markdown tables and the machine on stdout.
# The tables are also saved in target/bench-probe/<time>/results.md, next to every log
# (operator, simulators, blackbox_exporter); control-plane logs are kept if it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

BENCH_ARGS=()
while (($#)); do
  case $1 in
    --validators | --window) BENCH_ARGS+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --validators=* | --window=* | --no-blackbox) BENCH_ARGS+=("$1"); shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'unknown argument: %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
done

step "cargo build --release: vigil and vigil-sim"
cargo build --release --locked -p vigil --bin vigil -p vigil-sim --bin vigil-sim

step "Kubernetes binaries (built once, then cached)"
BIN_DIR=$(scripts/k8s-bins.sh)

BLACKBOX=''
if [[ " ${BENCH_ARGS[*]-} " != *" --no-blackbox "* ]]; then
  step "blackbox_exporter (built once, then cached)"
  BLACKBOX=$(scripts/bench-bins.sh)
fi

step "building the benchmark"
cargo bench --locked --bench probe --no-run

OUT=target/bench-probe/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

step "starting the local control plane"
CP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-cp.XXXXXX")
trap 'scripts/control-plane.sh stop --dir "$CP_DIR" >/dev/null 2>&1 || true; rm -rf "$CP_DIR"' EXIT
scripts/control-plane.sh start --dir "$CP_DIR" >/dev/null

step "cargo bench --bench probe -- ${BENCH_ARGS[*]-} (results also in $OUT/results.md)"
export VIGIL_BENCH_KUBECONFIG=$CP_DIR/kubeconfig
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$PWD/$TARGET_DIR
export VIGIL_BENCH_VIGIL_BIN=$TARGET_DIR/release/vigil
export VIGIL_BENCH_SIM_BIN=$TARGET_DIR/release/vigil-sim
export VIGIL_BENCH_BLACKBOX_BIN=$BLACKBOX
export VIGIL_BENCH_CP_DIR=$CP_DIR
export VIGIL_BENCH_DIR=$OUT
ARGS_TEXT=''
if ((${#BENCH_ARGS[@]})); then ARGS_TEXT=$(printf ' %s' "${BENCH_ARGS[@]}"); fi
set +e
{
  printf 'Command: `scripts/bench-probe.sh%s` (commit %s%s), %s.\n' "$ARGS_TEXT" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(git diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes')" \
    "$(date -u +'%Y-%m-%d %H:%M UTC')"
  cargo bench --locked --bench probe -- "${BENCH_ARGS[@]}"
} | tee "$OUT/results.md"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
