#!/bin/sh
# run.sh BIN BUILD - runs every C unit test (BUILD/tests/test_*) and every bats file in tests/bats
# against the tools in BIN, and ends with the line "N passed, N failed".
bin=$(cd "$1" && pwd); build=$2
# /usr/bin first: Debian's python3 (with numpy/torch from apt) rather than a pyenv shim
export SSM_BIN="$bin" PATH="$bin:/usr/bin:$PATH"
passed=0; failed=0; failures=""
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if out=$("$t" 2>&1); then
        passed=$((passed + 1)); echo "ok   unit $name  ($(echo "$out" | tail -n 1))"
    else
        failed=$((failed + 1)); failures="$failures unit:$name"
        echo "FAIL unit $name"; echo "$out" | tail -n 40 | sed 's/^/    /'
    fi
done
if ls tests/bats/*.bats >/dev/null 2>&1; then
    tap=$(mktemp)
    bats --tap tests/bats > "$tap" 2>&1
    grep -E '^(not )?ok ' "$tap" | sed 's/^/bats /'
    p=$(grep -c '^ok ' "$tap"); f=$(grep -c '^not ok ' "$tap")
    if [ "$f" -gt 0 ] || ! grep -q '^1\.\.' "$tap"; then
        echo "---- bats failures ----"; grep -v -E '^ok ' "$tap" | head -n 200
        [ "$f" -eq 0 ] && f=1
        failures="$failures bats"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    rm -f "$tap"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
