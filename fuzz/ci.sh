#!/usr/bin/env bash
# CI entry point for fuzzing (called from .ci/run): installs cargo-fuzz if missing, then runs
# every target for FUZZ_SECONDS (default 20) each on the stable toolchain (no sanitizer) and
# fails on any crash. 11 targets × FUZZ_SECONDS plus one release build of the fuzz crate.
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
# The fuzz crate is its own workspace with its own Cargo.lock; refuse to build if it is stale.
cargo fetch --locked
exec ./run-all.sh "${FUZZ_SECONDS:-20}"
