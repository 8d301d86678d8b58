#!/bin/sh
# bench_train.sh - training throughput of ssm-train against the same models in plain PyTorch
# (bench/train_torch.py), same sizes, batch and threads, measured in this run.  Prints tokens/s and
# the ratio (target: ssm-train >= 2x PyTorch).  BENCH_STEPS (default 5) steps after one warm-up.
set -eu
# OpenMP threads that wait sleep instead of spinning (both programs use libgomp): on a shared
# machine a spinning thread takes the core from the thread that has work.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
bin=${SSM_BIN:-bin}
py=${SSM_PYTHON:-/usr/bin/python3}
steps=${BENCH_STEPS:-5}
threads=${BENCH_THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-34s %14s %14s %8s\n' case ssm_tok_s torch_tok_s ratio
run() {   # name model task-args torch-args
    name=$1 model=$2 targs=$3 pargs=$4
    "$bin/ssm-train" --model "$model" $targs --steps $((steps + 1)) --eval-every 1000000 --eval-examples 1 \
        --threads "$threads" --log "$tmp/log.tsv" -o "$tmp/c.ssm"
    ours=$(awk -F'\t' '$2 == "train" && $1 > 1 { s += $6; n++ } END { printf "%.1f", s / n }' "$tmp/log.tsv")
    theirs=$($py bench/train_torch.py $pargs "$steps" "$threads")
    printf '%-34s %14s %14s %8.2f\n' "$name" "$ours" "$theirs" "$(echo "$ours / $theirs" | bc -l)"
}
run "mamba d64 x2 N16 b8 L272" mamba "--task selective-copy --seq-len 256 --copy-tokens 16 --d-model 64 --n-layers 2 --batch 8" \
    "mamba 64 2 16 8 272 16"
run "s4d d64 x4 N64 b8 L784 (fmnist)" s4d "--task fmnist --d-model 64 --n-layers 4 --d-state 64 --batch 8" \
    "s4d 64 4 64 8 784 10"
