#!/bin/bash
# Run every test: unit (cmocka) and integration (real usergate + real
# redis-server + mock Twilio) in a -Werror build, again under ASan/UBSan, then
# the libFuzzer harnesses (FUZZ_SECONDS each, default 20), `make distcheck`
# and the formatting check. Prints one summary line:
# "summary: N passed, M failed".
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/install-deps.sh" || exit 1
./autogen.sh >/dev/null 2>&1 || { echo "autogen failed"; ./autogen.sh; exit 1; }
# Builds go to build/<name>; an in-tree configure would block them.
[ -f Makefile ] && make -s distclean >/dev/null 2>&1

jobs=$(nproc)
warn="-Wall -Wextra -Werror"
failed=0
logs=()

run_build() { # name, CFLAGS, extra env...
    local name=$1 cflags=$2
    local dir="$top/build/$name"
    rm -rf "$dir" && mkdir -p "$dir"
    echo "== $name build"
    (cd "$dir" && "$top/configure" -q --with-systemd CFLAGS="$cflags" >/dev/null &&
        make -s -j"$jobs" >/dev/null) || { echo "$name: build failed"; failed=1; return; }
    echo "== $name tests"
    (cd "$dir" && make -s check -j1 "${@:3}") || failed=1
    for f in "$dir"/tests/unit/*.log "$dir"/tests/integration/*.log; do
        [ -f "$f" ] && logs+=("$f")
    done
}

run_build plain "-O2 -g $warn"
san="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined $warn"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    run_build sanitize "$san"

echo "== fuzz (${FUZZ_SECONDS:-20} s per harness)"
fuzz_ok=0 fuzz_failed=0
while read -r line; do
    echo "$line"
    case $line in
    *": ok "*) fuzz_ok=$((fuzz_ok + 1)) ;;
    *FAILED*) fuzz_failed=$((fuzz_failed + 1)) ;;
    esac
done < <(FUZZ_OUT="$top/build/fuzz" "$top/tests/fuzz/run.sh" "${FUZZ_SECONDS:-20}" 2>&1)
harnesses=$(find "$top/tests/fuzz" -name 'fuzz_*.c' | wc -l)
[ "$fuzz_failed" = 0 ] && [ "$fuzz_ok" = "$harnesses" ] || { echo "fuzz: FAILED"; failed=1; }

echo "== distcheck"
(cd "$top/build/plain" && make -s distcheck DISTCHECK_CONFIGURE_FLAGS=--with-systemd \
    >"$top/build/distcheck.log" 2>&1) ||
    { echo "distcheck: FAILED (log: build/distcheck.log); its failures:"
      grep -E '^(FAIL|ERROR)|^E  |FAILED|Error [0-9]' "$top/build/distcheck.log" | head -20
      failed=1; }

echo "== systemd units"
# verify the units as they would be installed, with ExecStart pointing at the
# binary just built (verify insists the command exists), and keep the
# service's exposure under 2.0 on systemd-analyze security's 0-10 scale.
unitdir=$(mktemp -d)
# The units as make builds them (the single unit and the template).
(cd "$top/build/plain" && make -s systemd/usergate.service systemd/usergate@.service >/dev/null) &&
    sed -e "s|/usr/local/sbin|$top/build/plain/src|g" \
        "$top/build/plain/systemd/usergate.service" > "$unitdir/usergate.service" &&
    sed -e "s|/usr/local/sbin|$top/build/plain/src|g" \
        "$top/build/plain/systemd/usergate@.service" > "$unitdir/usergate@.service"
ln -s usergate@.service "$unitdir/usergate@example.service"
cp "$top/systemd/usergate.socket" "$unitdir/"
units_ok=0 units_failed=0
# verify only warns about an unknown or misspelt directive and still exits 0:
# the units are clean, so anything it prints is a failure too.
if out=$(cd "$unitdir" && systemd-analyze verify --man=no usergate.service usergate.socket \
        ./usergate@example.service 2>&1) &&
    [ -z "$out" ]; then
    units_ok=$((units_ok + 1))
else
    printf '%s\n' "$out"; echo "systemd-analyze verify: FAILED"
    units_failed=$((units_failed + 1)); failed=1
fi
if (cd "$unitdir" && systemd-analyze security --offline=true --threshold=20 --no-pager \
        usergate.service ./usergate@example.service | tail -2); then
    units_ok=$((units_ok + 1))
else
    echo "systemd-analyze security: exposure above 2.0"
    units_failed=$((units_failed + 1)); failed=1
fi
rm -rf "$unitdir"

echo "== clang-format"
bad=$(clang-format --dry-run -Werror src/*.c src/*.h tests/unit/*.c tests/fuzz/*.[ch] 2>&1 | grep -c 'error:' || true)
if [ "$bad" != 0 ]; then echo "clang-format: $bad problems"; failed=1; fi

# Per-case totals from cmocka and pytest logs.
pass=0 fail=0
for f in "${logs[@]}"; do
    p=$(grep -hoE '\[  PASSED  \] [0-9]+' "$f" | awk '{s+=$NF} END {print s+0}')
    q=$(grep -hoE '\[  FAILED  \] [0-9]+ test' "$f" | awk '{s+=$(NF-1)} END {print s+0}')
    pp=$(grep -hoE '[0-9]+ passed' "$f" | tail -1 | awk '{print $1+0}')
    pf=$(grep -hoE '[0-9]+ (failed|error)' "$f" | tail -1 | awk '{print $1+0}')
    pass=$((pass + p + ${pp:-0})); fail=$((fail + q + ${pf:-0}))
    if grep -qE '^(FAIL|ERROR):' "${f%.log}.trs" 2>/dev/null || grep -qE ':test-result: (FAIL|ERROR)' "${f%.log}.trs" 2>/dev/null; then
        echo "---- ${f#$top/} ----"; tail -60 "$f"
    fi
done
pass=$((pass + units_ok + fuzz_ok)); fail=$((fail + units_failed + fuzz_failed))
[ "$failed" = 0 ] || [ "$fail" != 0 ] || fail=1
echo "summary: $pass passed, $fail failed"
[ "$failed" = 0 ] && [ "$fail" = 0 ]
