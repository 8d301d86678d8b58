#!/bin/bash
# tests/cuda/models_device.sh [PARTS] - what the device machine ran for issue 8/9's GPU figures.
# Run from a carried copy of the worktree (helper gpumodels: /work/main/.devcarry/gpumodels) that
# holds: debs/*.deb (fftw, openblas and their runtime, zlib headers; the device has none of them),
# prebuilt/ (bin/ssm-* and build/bench/bench_generate_cuda made with nvcc 13.0 on the helper's
# machine; rebuilt here when they do not run), fmnist/ (the Fashion-MNIST IDX .gz files).
# PARTS (default "check perf"): check = tests/cuda/models.sh; perf = training and decoding
# tokens/s; fmnist = a long S4D run on Fashion-MNIST (FMNIST_SECONDS of training, default 420).
# Logs go to $OUT.
set -u
parts=${1:-check perf}
OUT=${OUT:-out}; mkdir -p "$OUT"
P=/tmp/pfx; mkdir -p $P
for d in debs/*.deb; do dpkg -x "$d" $P; done
LIBS=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread
export LD_LIBRARY_PATH=$LIBS:${LD_LIBRARY_PATH:-}
export FMNIST_DIR=$PWD/fmnist
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
(command -v nvcc || echo /usr/local/cuda/bin/nvcc) | head -1; /usr/local/cuda/bin/nvcc --version 2>/dev/null | tail -1
mkdir -p bin build/bench
cp prebuilt/ssm-* bin/ 2>/dev/null; cp prebuilt/bench_generate_cuda build/bench/ 2>/dev/null
if ! bin/ssm-train --version > /dev/null 2>&1; then
    echo "prebuilt tools do not run ($(bin/ssm-train --version 2>&1 | head -1)): building"
    rm -rf bin build; mkdir -p build; touch build/.deps-build
    I="-I$P/usr/include -I$P/usr/include/x86_64-linux-gnu -I$P/usr/include/x86_64-linux-gnu/openblas-pthread"
    L="-L$P/usr/lib/x86_64-linux-gnu -L$P/usr/lib/x86_64-linux-gnu/openblas-pthread"
    make -j16 EXTRA_CFLAGS="$I" EXTRA_LDFLAGS="$L" LIB_SRC="$(ls libcommon/*.c kernels/*.c | grep -v -e plot.c -e train_log.c)" \
        bin/ssm-train bin/ssm-generate bin/ssm-tensor build/bench/bench_generate_cuda > "$OUT/build.log" 2>&1 ||
        { tail -30 "$OUT/build.log"; exit 1; }
fi
export PATH=$PWD/bin:$PATH
ROOT=$PWD
status=0
median_rate() {   # median tokens/s of the train rows of a TSV log after the first 5 steps
    awk -F'\t' '$2 == "train" && $1 > 5 { print $6 }' "$1" | sort -g | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : "?") }'
}
case " $parts " in *" check "*)
    echo "== cpu vs cuda (tests/cuda/models.sh)"
    sh tests/cuda/models.sh bin 2>&1 | tee "$OUT/models.log"
    grep -q FAIL "$OUT/models.log" && status=1 ;;
esac
case " $parts " in *" train "*|*" perf "*)
    echo "== training tokens/s (median of steps 6..N; --log column tokens_per_s)"
    cd "$OUT"
    run() {   # NAME GPU_STEPS CPU_STEPS (0 = no CPU run) ARGS...
        name=$1 steps=$2 csteps=$3; shift 3
        for dev in cuda cpu; do
            st=$steps; [ $dev = cpu ] && st=$csteps
            [ "$st" = 0 ] && continue
            s=$(date +%s.%N)
            ssm-train "$@" --steps $st --eval-examples 8 --eval-every 100000 --device $dev --log "perf_$dev.tsv" -o perf.ssm 2> perf.err ||
                { echo "FAIL $name $dev: $(tail -1 perf.err)"; continue; }
            e=$(date +%s.%N)
            printf '%-44s %-5s %12s tokens/s  (%d steps, %s s wall)\n' "$name" $dev "$(median_rate perf_$dev.tsv)" $st "$(awk "BEGIN { printf \"%.1f\", $e - $s }")"
        done
        rm -f perf.ssm
    }
    run "mamba d64 x2 N16 b8 L272 (bench_train)" 40 10 --model mamba --task selective-copy --seq-len 256 --copy-tokens 16 --d-model 64 --n-layers 2 --batch 8
    run "mamba d256 x4 N16 b16 L1040" 30 8 --model mamba --task selective-copy --seq-len 1024 --copy-tokens 16 --d-model 256 --n-layers 4 --batch 16
    run "mamba d768 x24 N16 b8 L1040 (130m shape)" 12 0 --model mamba --task selective-copy --seq-len 1024 --copy-tokens 16 --vocab 16 --d-model 768 --n-layers 24 --batch 8
    run "s4d d64 x4 N64 b8 L784 (bench_train, fmnist)" 40 10 --model s4d --task fmnist --data-dir "$FMNIST_DIR" --d-model 64 --n-layers 4 --d-state 64 --batch 8
    run "s4d d128 x4 N64 b64 L784 (fmnist)" 30 8 --model s4d --task fmnist --data-dir "$FMNIST_DIR" --d-model 128 --n-layers 4 --d-state 64 --batch 64
    cd - > /dev/null ;;
esac
case " $parts " in *" gen "*|*" perf "*)
    cd "$OUT"
    echo "== decoding: mamba-130m shape (24 x d768, vocab 50280, f32 random), bench_generate_cuda"
    BENCH_DEVICE=cuda BENCH_BATCHES="1 8 64" BENCH_STEPS=100 "$ROOT/build/bench/bench_generate_cuda"
    echo "== ssm-generate itself, batch 1 (a d256 x4 byte-level model, 1 training step): cuda then cpu"
    cat "$ROOT"/README.md "$ROOT"/man/*.1 | head -c 200000 > text.txt
    ssm-train --model mamba --task text text.txt --d-model 256 --n-layers 4 --steps 1 --device cuda -o t.ssm 2> /dev/null
    for dev in cuda cpu; do ssm-generate -m t.ssm --device $dev --prompt "The state " -n 300 --temperature 0 > /dev/null; done
    cd - > /dev/null ;;
esac
case " $parts " in *" fmnist "*)
    echo "== Fashion-MNIST S4D on the GPU"
    cd "$OUT"
    secs=${FMNIST_SECONDS:-420}
    A="--model s4d --task fmnist --data-dir $FMNIST_DIR --d-model 128 --n-layers 4 --d-state 64 --dropout 0.1 --batch 64 --lr 0.004 --ssm-lr 0.001 --weight-decay 0.05 --seed 1"
    ssm-train $A --steps 30 --eval-examples 8 --eval-every 100000 --device cuda --log probe.tsv -o probe.ssm 2>/dev/null
    rm -f probe.ssm
    rate=$(median_rate probe.tsv)
    steps=$(awk -v r="$rate" -v s=$secs 'BEGIN { n = int(s * r / (64 * 784) * 0.85); print (n < 100 ? 100 : n) }')
    echo "probe: $rate tokens/s; running $steps steps ($(awk -v n=$steps 'BEGIN { printf "%.1f", n * 64 / 60000 }') epochs), eval on the 10000 test images every 940 steps"
    s=$(date +%s)
    ssm-train $A --steps $steps --eval-every 940 --device cuda --log fmnist.tsv -o fmnist.ssm -v 2>&1 | grep -v '^\s*$' | tail -20
    e=$(date +%s)
    echo "fmnist: $steps steps in $((e - s)) s wall"
    awk -F'\t' '$2 == "eval"' fmnist.tsv
    rm -f fmnist.ssm
    cd - > /dev/null ;;
esac
exit $status
