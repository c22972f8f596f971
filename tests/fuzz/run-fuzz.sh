#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time and fails on any crash, leak, timeout or
# sanitizer report: run-fuzz.sh NAME HARNESS SEED_CORPUS_DIR
#
# Environment:
#   PAF_FUZZ_SECONDS  how long (default 5)
#   PAF_FUZZ_JOBS     parallel processes sharing the corpus (default 1)
#   PAF_FUZZ_CORPUS   where the grown corpus lives (default: a temporary directory, dropped)
#   PAF_FUZZ_OUT      where logs and crashing inputs go (default: ./fuzz-out/NAME)
#   PAF_FUZZ_FLAGS    more libFuzzer flags (-max_len=…, -use_value_profile=1 …)
# Prints "fuzz NAME: N executions in S s, C crashes" (N summed over the jobs).
set -uo pipefail

name=$1 bin=$2 seeds=$3
secs=${PAF_FUZZ_SECONDS:-5}
jobs=${PAF_FUZZ_JOBS:-1}
out=${PAF_FUZZ_OUT:-$PWD/fuzz-out}/$name

case $secs in '' | *[!0-9]*) echo "PAF_FUZZ_SECONDS: not a number: $secs" >&2; exit 2 ;; esac
case $jobs in '' | *[!0-9]* | 0) echo "PAF_FUZZ_JOBS: not a positive number: $jobs" >&2; exit 2 ;; esac
[ -x "$bin" ] || { echo "$bin: not an executable" >&2; exit 2; }
[ -d "$seeds" ] || { echo "$seeds: no seed corpus" >&2; exit 2; }

tmp=$(mktemp -d /tmp/paf-fuzz-XXXXXX) || exit 2
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

corpus=${PAF_FUZZ_CORPUS:-$tmp/corpus}
mkdir -p "$corpus" "$out" || exit 2
rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* "$out"/slow-unit-* "$out"/job-*.log

dict=
[ -f "$(dirname "$0")/$name.dict" ] && dict=-dict=$(dirname "$0")/$name.dict

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
[ -x /usr/bin/llvm-symbolizer ] && export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer

for ((j = 0; j < jobs; j++)); do
        # -timeout: one input taking 10 s is a hang. -rss_limit_mb: growth without bound.
        "$bin" -max_total_time="$secs" -print_final_stats=1 -detect_leaks=1 -timeout=10 \
                -rss_limit_mb=2048 -max_len=8192 -artifact_prefix="$out/" $dict \
                ${PAF_FUZZ_FLAGS:-} "$corpus" "$seeds" >"$out/job-$j.log" 2>&1 &
        pids+=($!)
done
status=0
for p in "${pids[@]}"; do
        wait "$p" || status=1
done
pids=()

execs=0
for ((j = 0; j < jobs; j++)); do
        n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$out/job-$j.log" | tail -n 1)
        [ -n "$n" ] || status=1
        execs=$((execs + ${n:-0}))
done
artifacts=$(find "$out" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' \) | wc -l)
reports=$(cat "$out"/job-*.log | grep -c -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant broken')
[ "$artifacts" -eq 0 ] && [ "$reports" -eq 0 ] || status=1

crashes=$((artifacts > reports ? artifacts : reports))
echo "fuzz $name: $execs executions in $secs s ($jobs job(s)), $crashes crashes"
if [ $status -ne 0 ]; then
        for ((j = 0; j < jobs; j++)); do
                if grep -q -E 'ERROR:|runtime error:|invariant broken|deadly signal' "$out/job-$j.log" ||
                        ! grep -q '^stat::number_of_executed_units' "$out/job-$j.log"; then
                        echo "--- $out/job-$j.log (end)"
                        tail -n 60 "$out/job-$j.log"
                fi
        done
        find "$out" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
                -printf 'input kept: %p\n'
        echo "reproduce: $bin INPUT" >&2
fi
exit $status
