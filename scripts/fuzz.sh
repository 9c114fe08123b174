#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, nightly, libFuzzer with AddressSanitizer and
# overflow checks; unoptimised for the short run, optimised for --long) for SECONDS each,
# from the committed seeds plus what earlier runs found.
#   scripts/fuzz.sh [SECONDS]        short run, 20 s per target by default (scripts/test.sh)
#   scripts/fuzz.sh --long [SECONDS] benchmark: 300 s per target by default, one table of
#                                    runs, runs/s and corpus size per target at the end
# Targets run side by side, one per core.
# A crash, panic, failed check, leak, timeout (> 10 s for one input) or > 2 GiB RSS fails the
# run; the input is kept in target/fuzz-artifacts/<target>/ and the command to replay it is
# printed. Working corpora live in target/fuzz-corpus/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

long=0
if [ "${1:-}" = "--long" ]; then long=1; shift; fi
seconds=${1:-$([ "$long" = 1 ] && echo 300 || echo 20)}
targets=(submit config journal snmp_response snmp_tables packets http_api report_form csv_import)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

export CARGO_TARGET_DIR="$PWD/target/fuzz"
# The short run builds unoptimised (--dev: AddressSanitizer and overflow checks still on), a
# fraction of the release build's compile time inside the test suite; --long builds optimised.
if [ "$long" = 1 ]; then profile=(--release); dir=release; else profile=(--dev); dir=debug; fi
(cd fuzz && cargo +nightly fuzz build "${profile[@]}")
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/$dir"

# One fuzzer per core at a time (libFuzzer runs on one thread), so the short run takes
# targets/cores × SECONDS; each writes its own log, read once all have finished.
cores=$(nproc)
run_target() {
  local t=$1 corpus="target/fuzz-corpus/$1" artifacts="target/fuzz-artifacts/$1" rc=0
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/corpus/"$t"/seed-* "$corpus"/ 2>/dev/null || true
  "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" \
    >"target/fuzz-artifacts/$t.log" 2>&1 || rc=$?
  echo "$rc" >"target/fuzz-artifacts/$t.rc"
}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$cores" ]; do wait -n || true; done
  echo "== fuzz $t for ${seconds}s"
  run_target "$t" &
done
wait

summary=()
failed=()
for t in "${targets[@]}"; do
  log="target/fuzz-artifacts/$t.log"
  if [ "$(cat "target/fuzz-artifacts/$t.rc")" = 0 ]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    summary+=("$t $runs $((runs / seconds)) $(ls "target/fuzz-corpus/$t" | wc -l)")
  else
    failed+=("$t")
    echo "== fuzz $t failed"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 || true
    echo "   replay: (cd fuzz && cargo +nightly fuzz run $t ../target/fuzz-artifacts/$t/<file>)   log: $log"
  fi
done

if [ "$long" = 1 ] || [ ${#failed[@]} -eq 0 ]; then
  printf '%-14s %12s %10s %8s\n' target runs runs/s corpus
  for row in "${summary[@]}"; do printf '%-14s %12s %10s %8s\n' $row; done
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
