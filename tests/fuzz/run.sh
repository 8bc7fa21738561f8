#!/bin/bash
# Build every libFuzzer harness with Debian's clang (ASan + UBSan) and run
# each for SECONDS (default 60) from its seed corpus in tests/fuzz/corpus/.
# Exits non-zero on any crash, leak, timeout or failed property (libFuzzer
# prints the input; it is saved under OUT/). Usage: run.sh [SECONDS] [NAME...]
# Environment: FUZZ_OUT (default build/fuzz), CC (default clang).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-60}
shift || true
out=${FUZZ_OUT:-$top/build/fuzz}
cc=${CC:-clang}
mkdir -p "$out"
src=$top/src
pure="$src/util.c $src/twilio.c $src/route.c"
declare -A extra=(
    [http1]="$src/http1.c $src/util.c"
    [route]="$pure"
    [pct]="$src/util.c"
    [form]="$src/twilio.c $src/util.c"
    [entry]="$src/entry.c $pure"
    [auth]="$src/auth.c $src/util.c"
    [config]="$src/config.c $src/auth.c $src/log.c $pure"
    [webhook]="$src/events.c $src/signature.c $src/twilio.c $src/util.c"
    [slots]="$src/slots.c $src/util.c"
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(http1 route pct form entry auth config webhook slots)
libs="$(pkg-config --libs libcjson inih libcrypto) -lhttp_parser"
cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I$src $(pkg-config --cflags libcjson inih)"
failed=0
for n in "${names[@]}"; do
    bin=$out/fuzz_$n
    # shellcheck disable=SC2086
    if ! $cc $cflags -o "$bin" "$here/fuzz_$n.c" ${extra[$n]} $libs; then
        echo "fuzz $n: build failed"; failed=1; continue
    fi
    work=$out/corpus_$n
    rm -rf "$work" && mkdir -p "$work" "$out/crashes_$n"
    cp "$here/corpus/$n/"* "$work/" 2>/dev/null
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -artifact_prefix="$out/crashes_$n/" -print_final_stats=1 "$work" \
        >"$out/fuzz_$n.log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/fuzz_$n.log" | grep -o '[0-9]*$')
        echo "fuzz $n: ok (${runs:-?} runs in ${secs}s)"
    else
        echo "fuzz $n: FAILED (log: $out/fuzz_$n.log)"
        grep -E 'ERROR|property failed|SUMMARY|Test unit written' "$out/fuzz_$n.log" | head -8
        failed=1
    fi
done
exit $failed
