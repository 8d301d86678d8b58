#!/bin/sh
# bench_stream_tool.sh - pass-through through a real tool and a real pipe: `ssm-tensor cat` of a
# 512 MiB stream (level 0, from tmpfs) into a pipe, against `cat` of the same file (the baseline:
# what moving the bytes through a pipe costs on this machine), measured in the same run.
set -eu
bin=${SSM_BIN:-bin}
dir=$(mktemp -d /dev/shm/ssm-bench.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 tests/ref/ssm_stream.py big 512 > "$dir/big.ssm"
mb=$(( $(stat -c %s "$dir/big.ssm") / 1000000 ))
best() {  # best of 3 wall times of a shell command, in seconds
    b=999
    for i in 1 2 3; do
        t0=$(date +%s.%N); sh -c "$1"; t1=$(date +%s.%N)
        b=$(echo "$t1 $t0 $b" | awk '{d=$1-$2; print (d<$3)?d:$3}')
    done
    echo "$b"
}
tc=$(best "cat '$dir/big.ssm' | cat > /dev/null")
ts=$(best "'$bin/ssm-tensor' cat '$dir/big.ssm' | cat > /dev/null")
printf '%-40s %10s %8s\n' case MB/s vs-cat
awk -v mb="$mb" -v tc="$tc" -v ts="$ts" 'BEGIN {
    printf "%-40s %10.0f %8.2f\n", "cat file | cat (baseline)", mb/tc, 1.0;
    printf "%-40s %10.0f %8.2f\n", "ssm-tensor cat file | cat (pass-through)", mb/ts, tc/ts }'
