#!/bin/sh
# run.sh BIN BUILD - every benchmark, each printing a table of ratios against a baseline measured
# in the same run.  Set BENCH_ONLY=name (e.g. stream) to run one.  Machine details come first.
bin=$1; build=$2
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
for b in "$build"/bench/bench_*; do
    [ -x "$b" ] || continue
    name=$(basename "$b" | sed 's/^bench_//')
    [ -n "${BENCH_ONLY:-}" ] && [ "$BENCH_ONLY" != "$name" ] && continue
    echo; echo "## $name"; "$b" || exit 1
done
for s in bench/bench_*.sh; do
    [ -e "$s" ] || continue
    name=$(basename "$s" .sh | sed 's/^bench_//')
    [ -n "${BENCH_ONLY:-}" ] && [ "$BENCH_ONLY" != "$name" ] && continue
    echo; echo "## $name"; SSM_BIN="$bin" sh "$s" || exit 1
done
