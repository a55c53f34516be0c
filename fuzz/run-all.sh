#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the other, and prints
# a table: target, execs, execs/s, coverage, crashes.
#
#   fuzz/run-all.sh SECONDS [TARGET...]
#
# FUZZ_SANITIZER: none (default; works on stable) or address/leak/memory/thread (needs nightly
# features: RUSTC_BOOTSTRAP=1 is set for you on a stable toolchain).
# FUZZ_ARGS: extra libFuzzer flags, e.g. FUZZ_ARGS="-max_len=512".
#
# New inputs go to fuzz/work/corpus/<target>/ (ignored by git); the committed seeds in
# fuzz/corpus/<target>/ are read only. Crashes go to fuzz/artifacts/<target>/; turn each into a
# file under fuzz/regressions/<target>/ (see README.md). Logs: fuzz/work/logs/<target>.log.
# Exit status: 0 if no target crashed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")"

secs="${1:?usage: run-all.sh SECONDS [TARGET...]}"
shift
sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ] && ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s "$sanitizer" || { echo "fuzz build failed" >&2; exit 2; }

mkdir -p work/logs
rows=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "work/corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log="work/logs/$t.log"
  echo "== $t: ${secs}s (sanitizer: $sanitizer)" >&2
  # One process, one job: the machines this runs on are shared. -timeout catches inputs that
  # take seconds (a quadratic path is a bug too).
  # shellcheck disable=SC2086
  cargo fuzz run -s "$sanitizer" "$t" "work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  after=$(find "artifacts/$t" -type f | wc -l)
  crashes=$((after - before))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="rc=$rc"; fi
  [ "$rc" -ne 0 ] || [ "$after" -ne "$before" ] && failed=1
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  rows+=("$(printf '%-14s %12s %10s %8s %8s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$crashes")")
  if [ "$crashes" != 0 ]; then
    grep -E 'panicked at|^SUMMARY|Test unit written|ERROR:' "$log" | head -5 >&2
  fi
done

printf '\n%-14s %12s %10s %8s %8s\n' target execs execs/s cov crashes
printf '%s\n' "${rows[@]}"
exit "$failed"
