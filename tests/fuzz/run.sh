#!/bin/sh
# run.sh SECONDS - builds the stream-reader fuzz target with clang's libFuzzer (+ASan/UBSan) and
# runs it for SECONDS, seeded with the damaged-stream corpus and valid streams of every dtype.
# A finding leaves crash-* files in build-fuzz/ and exits non-zero.
set -eu
secs=${1:-60}
out=build-fuzz
mkdir -p "$out/corpus"
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fopenmp -D_GNU_SOURCE -Ilibcommon"
clang $flags tests/fuzz/fuzz_stream.c libcommon/stream.c libcommon/tensor.c libcommon/cli.c -lz -lm -o "$out/fuzz_stream"
cp tests/bad-streams/*.ssm "$out/corpus/"
/usr/bin/python3 tests/ref/ssm_stream.py write-demo "$out/corpus/demo.ssm"
echo "fuzz: running the stream reader for ${secs}s"
cd "$out"
./fuzz_stream -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 corpus 2>&1 | tail -n 12
