#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the
# stable toolchain and runs each for a bounded time, starting from the
# committed corpus (copied: a run never rewrites it). A crash, a timeout or
# a leak fails the run and leaves the input in fuzz/artifacts/TARGET/; such
# an input becomes a regression test (crates/*/tests or the unit tests), then
# a corpus file.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET…]     (default 60 s, every target)
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jsonrpc_framing tool_args roadmap_yaml shell_lexer path_resolver)

# what cargo-fuzz passes, minus -Zsanitizer=address (nightly only)
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# an explicit --target keeps RUSTFLAGS off build scripts and proc macros
triple="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --quiet --bins --target "$triple"
bin="$CARGO_TARGET_DIR/$triple/release"

status=0
for t in "${targets[@]}"; do
  work="$(mktemp -d)"
  cp -r "corpus/$t/." "$work/" 2>/dev/null || true
  mkdir -p "artifacts/$t"
  echo "== fuzz $t for ${secs}s (corpus: $(ls "corpus/$t" 2>/dev/null | wc -l) files)"
  if ! "$bin/$t" "$work" -max_total_time="$secs" -timeout=10 \
       -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="artifacts/$t/" 2>"$work.log"; then
    status=1
    tail -n 40 "$work.log"
    echo "!! $t: crash input(s) in fuzz/artifacts/$t/"
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added|cov:" "$work.log" | tail -n 3
  fi
  rm -rf "$work" "$work.log"
done
exit $status
