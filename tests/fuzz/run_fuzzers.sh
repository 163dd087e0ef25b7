#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (FERRY_FUZZ=ON) and runs each for a
# bounded time on a scratch copy of the committed corpus. A crash leaves a
# crash-* file in the build directory: copy it into tests/fuzz/corpus/<target>/
# as a regression input once the bug is fixed.
#
#   tests/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET (default 60)] [BUILD_DIR]
#   FUZZ_TARGETS="gguf" tests/fuzz/run_fuzzers.sh 30
#   FUZZ_TARGETS=all: every tests/fuzz/*_fuzz.cc. FUZZ_SEED (default 1) makes a
#   run repeatable: a slower machine explores a prefix of the same inputs.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${2:-$root/build-fuzz}"

cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DFERRY_FUZZ=ON -DFERRY_CUDA=OFF -DFERRY_BUILD_BENCHMARKS=OFF
targets="${FUZZ_TARGETS:-gguf safetensors config_file tokenizer}"
if [[ $targets == all ]]; then
  targets=$(cd "$root/tests/fuzz" && for f in *_fuzz.cc; do echo -n "${f%_fuzz.cc} "; done)
fi
if [[ -z "${FUZZ_TARGETS:-}" && -f "$root/tests/fuzz/kv_transfer_fuzz.cc" ]]; then
  targets="$targets kv_transfer"
fi
# shellcheck disable=SC2086
ninja -C "$build" $(for t in $targets; do echo "${t}_fuzz"; done)

status=0
failed=()
for target in $targets; do
  work="$build/fuzz-$target"
  mkdir -p "$work/corpus"
  cp -n "$root/tests/fuzz/corpus/$target/"* "$work/corpus/" 2>/dev/null || true
  echo "== $target: ${seconds}s"
  # The whole output goes to fuzz.log; the progress lines are not echoed, so
  # a failure's report is what the end of the stage's output shows.
  if (cd "$work" && ASAN_OPTIONS=detect_leaks=1 "$build/bin/${target}_fuzz" \
        -max_total_time="$seconds" -seed="${FUZZ_SEED:-1}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 corpus > fuzz.log 2>&1); then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$work/fuzz.log" || true
  else
    echo "!! $target found a failure; see $work/fuzz.log and the crash-*, leak-*, timeout-* or oom-* input there" >&2
    failed+=("$target")
    status=1
  fi
done
for target in "${failed[@]}"; do
  work="$build/fuzz-$target"
  echo "== $target failed; the end of $work/fuzz.log:"
  grep -v -E '^#[0-9]+' "$work/fuzz.log" | tail -n 80
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -f "$f" ] || continue
    echo "-- $f (base64):"
    head -c 4096 "$f" | base64
  done
done
exit $status
