#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, and the integration tests against a real
# local control plane (etcd, kube-apiserver with RBAC, controller-manager, scheduler, kwok)
# that this script starts once and tears down on exit. Kubernetes binaries are built on the
# first run and cached per user (see scripts/k8s-bins.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# A run from a fresh clone gains nothing from incremental compilation, whose caches took more
# disk than the test binaries themselves. Set CARGO_INCREMENTAL=1 to keep it.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "fuzz targets: ${VIGIL_FUZZ_SECONDS:-20} s each (scripts/fuzz.sh; cargo-fuzz and its build cached)"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
CARGO_TARGET_DIR=$PWD/target cargo clippy --manifest-path fuzz/Cargo.toml --locked -- -D warnings
scripts/fuzz.sh

step "Kubernetes test binaries (built once, then cached)"
BIN_DIR=$(scripts/k8s-bins.sh)
export VIGIL_TEST_BIN_DIR=$BIN_DIR

step "OpenSSH server for the SSH tests (from Debian's packages, then cached)"
SSHD_DIR=$(scripts/sshd-bins.sh) # not `export X=$(...)`: that would hide a failure from set -e
export VIGIL_TEST_SSHD_DIR=$SSHD_DIR

step "Alertmanager and Mailpit for the alert tests (built once, then cached)"
ALERT_DIR=$(scripts/alert-bins.sh)
export VIGIL_TEST_ALERT_DIR=$ALERT_DIR

step "SeaweedFS (S3) for the pipeline run archive tests (built once, then cached)"
S3_DIR=$(scripts/s3-bins.sh) # not `export X=$(...)`: that would hide a failure from set -e
export VIGIL_TEST_S3_DIR=$S3_DIR

step "CometBFT for the validator duty tests (built once, then cached)"
COMETBFT_DIR=$(scripts/cometbft-bins.sh) # not `export X=$(...)`: that would hide a failure from set -e
export VIGIL_TEST_COMETBFT_DIR=$COMETBFT_DIR

step "building tests"
# The integration tests spawn vigil-sim from the same target dir (tests/support/simulator.rs).
cargo build --locked -p vigil-sim --bin vigil-sim
cargo test --workspace --locked --no-run

step "starting the local control plane"
CP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vigil-cp.XXXXXX")
trap 'scripts/control-plane.sh stop --dir "$CP_DIR" >/dev/null 2>&1 || true; rm -rf "$CP_DIR"' EXIT
scripts/control-plane.sh start --dir "$CP_DIR" >/dev/null
export VIGIL_TEST_KUBECONFIG=$CP_DIR/kubeconfig

step "cargo test --workspace"
cargo test --workspace --locked -- --test-threads="${VIGIL_TEST_THREADS:-4}"
