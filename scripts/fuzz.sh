#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (docs/fuzzing.md), each for a bounded time, and fails on the
# first crash, printing the input that reproduces it.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]
#
# Every target by default; N seconds each (default $VIGIL_FUZZ_SECONDS, else 20).
#
# A pinned cargo-fuzz is installed once into the per-user cache, and the instrumented build
# lives there too, so later runs rebuild only what changed. It works on the stable toolchain:
# RUSTC_BOOTSTRAP=1 lets rustc take the -Z flags cargo-fuzz passes (AddressSanitizer).
# Each target fuzzes a work corpus in the cache (kept between runs, so coverage builds up),
# into which the committed seeds of fuzz/corpus/TARGET and the matching captured payloads of
# ../shared/fixtures/real-payloads (when that folder exists) are copied first. Nothing is
# written into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

seconds=${VIGIL_FUZZ_SECONDS:-20}
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=${2:-}; shift 2 || shift ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case $seconds in
  '' | *[!0-9]* | 0) echo "fuzz.sh: --seconds takes a whole number of seconds, not '$seconds'" >&2; exit 2 ;;
esac
all=$(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//')
if [ ${#targets[@]} -eq 0 ]; then
  read -r -a targets <<<"$(echo $all)"
fi
for t in "${targets[@]}"; do
  if ! grep -qx -- "$t" <<<"$all"; then
    echo "fuzz.sh: no fuzz target '$t'; there are: $(echo $all)" >&2
    exit 2
  fi
done

# Which captured payloads seed which target (names in SOURCES.md of that folder).
fixture_globs() {
  case $1 in
    prom_text) echo '*_metrics_*.txt' ;;
    jsonrpc_probe) echo 'substrate_rpc_*.json eth_*.json cometbft_*.json' ;;
    duty_decode) echo 'cometbft_status*.json' ;;
    advisor_decision) echo 'anthropic_*.json openai_*.json' ;;
    alert_payload) echo 'slack_webhook_response_*.txt slack_webhook_payload_*.json alertmanager_*.json' ;;
    *) echo '' ;;
  esac
}
fixtures=${VIGIL_FUZZ_FIXTURES:-../shared/fixtures/real-payloads}

cache=${XDG_CACHE_HOME:-$HOME/.cache}/vigil
tool=$cache/tools/cargo-fuzz-$CARGO_FUZZ_VERSION
if [ ! -x "$tool/bin/cargo-fuzz" ]; then
  echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION into $tool (once, a few minutes)" >&2
  mkdir -p "$cache/tools"
  tmp=$(mktemp -d "$cache/tools/.cargo-fuzz.XXXXXX")
  cargo install --locked --root "$tmp" --version "=$CARGO_FUZZ_VERSION" cargo-fuzz
  # Another run may have installed it meanwhile: keep that one.
  mv -T "$tmp" "$tool" 2>/dev/null || rm -rf "$tmp"
fi

export RUSTC_BOOTSTRAP=1
target_dir=$cache/fuzz/target
echo "fuzz.sh: building ${targets[*]} (the first build takes a while; build dir $target_dir)" >&2
# 16 codegen units: the instrumented build of the operator and its dependencies is several
# times faster than with cargo-fuzz's default of 1, for somewhat slower fuzzing.
build=(build --fuzz-dir fuzz --target-dir "$target_dir" --codegen-units 16)
if [ "${targets[*]}" = "$(echo $all)" ]; then
  PATH="$tool/bin:$PATH" cargo fuzz "${build[@]}"
else
  for t in "${targets[@]}"; do
    PATH="$tool/bin:$PATH" cargo fuzz "${build[@]}" "$t"
  done
fi
bin_dir=$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release

# Every change of the operator adds a new instrumented libvigil and new target binaries (about
# 1.5 GB) beside the old ones, which cargo never removes: keep only the newest of each, so
# the cache stays the size of one build.
for pattern in 'libvigil-*.rlib' 'libvigil-*.rmeta' $(printf '%s-* ' $all); do
  find "$bin_dir/deps" -maxdepth 1 -type f -name "$pattern" ! -name '*.d' -printf '%T@ %p\n' |
    sort -rn | tail -n +2 | cut -d' ' -f2- | xargs -r rm -f --
done

log=$(mktemp "${TMPDIR:-/tmp}/vigil-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  corpus=$cache/fuzz/corpus/$t
  artifacts=$cache/fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -- fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  seeded=0
  if [ -d "$fixtures" ]; then
    for g in $(fixture_globs "$t"); do
      for f in "$fixtures"/$g; do
        [ -f "$f" ] || continue
        cp -- "$f" "$corpus/fixture-$(basename "$f")"
        seeded=$((seeded + 1))
      done
    done
  fi
  echo "fuzz.sh: $t for ${seconds}s ($(ls "$corpus" | wc -l) inputs in $corpus, $seeded from captured payloads)" >&2
  # -timeout: an input that takes 10 s is a hang. -max_len: longer inputs (whole scrapes of
  # half a megabyte) are cut, else each run takes a fifth of a second. The crash input goes
  # to $artifacts.
  if ! "$bin_dir/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1; then
    # The report's head (panic message or sanitizer error), then libFuzzer's last words.
    grep -m 1 -A 6 -E 'panicked at|ERROR: (Address|Leak)Sanitizer|ERROR: libFuzzer' "$log" >&2 || true
    echo "..." >&2
    tail -n 12 "$log" >&2
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo >&2
    echo "fuzz.sh: $t FAILED. The input that reproduces it: ${crash:-(none written; see above)}" >&2
    if [ -n "$crash" ]; then
      echo "  reproduce: $bin_dir/$t $crash" >&2
      echo "  minimise:  $bin_dir/$t -minimize_crash=1 -max_total_time=60 -exact_artifact_path=$crash.min $crash" >&2
    fi
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  echo "fuzz.sh: $t ok: ${runs:-?} runs, ${cov:-cov: ?}, $(ls "$corpus" | wc -l) inputs in the corpus" >&2
done
