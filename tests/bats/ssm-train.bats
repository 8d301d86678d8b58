#!/usr/bin/env bats
# ssm-train: options and errors, the log and checkpoint formats, bit-exact --resume, thread-count
# independence, signals and NaN handling, every task.  Tiny models only: each test a few seconds.

setup() {
    T="$BATS_TEST_TMPDIR"
    REF="$BATS_TEST_DIRNAME/../ref/ssm_stream.py"
    TINY="--seq-len 20 --copy-tokens 4 --d-model 16 --d-state 8 --batch 4 --eval-examples 8 --eval-every 4"
}

@test "--help, --version, usage errors" {
    run ssm-train --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"Usage: ssm-train"* ]]
    run ssm-train --version
    [ "$status" -eq 0 ]
    run ssm-train --task selective-copy -o "$T/c.ssm"
    [ "$status" -eq 2 ]
    [[ "$output" == *"ssm-train: --model is required"* ]]
    run ssm-train --model lstm --task selective-copy -o "$T/c.ssm"
    [ "$status" -eq 2 ]
    run ssm-train --model mamba --task nope -o "$T/c.ssm"
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown task 'nope'"* ]]
    run ssm-train --model mamba --task selective-copy --device tpu -o "$T/c.ssm"
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-train: --device: expected cpu or cuda, got 'tpu'" ]
    run ssm-train --model mamba --task text -o "$T/c.ssm"
    [ "$status" -eq 2 ]
    run ssm-train --model mamba --task text /nonexistent -o "$T/c.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-train: /nonexistent: cannot open"* ]]
    run ssm-train --model mamba --task selective-copy --save-every 2 $TINY --steps 2
    [ "$status" -eq 2 ]
    [ ! -e "$T/c.ssm" ]
}

@test "a Mamba run writes the TSV log and a checkpoint with config, parameters and optimizer state" {
    ssm-train --model mamba --task selective-copy $TINY --steps 8 --log "$T/log.tsv" -o "$T/c.ssm"
    [ "$(head -n 1 "$T/log.tsv")" = "$(printf 'step\tsplit\tloss\taccuracy\tlr\ttokens_per_s\ttime_s')" ]
    [ "$(grep -c "$(printf '\ttrain\t')" "$T/log.tsv")" -eq 8 ]
    [ "$(grep -c "$(printf '\teval\t')" "$T/log.tsv")" -eq 2 ]
    run ssm-tensor info "$T/c.ssm"
    [ "$status" -eq 0 ]
    for n in config train embedding.weight layers.1.mixer.A_log layers.0.mixer.in_proj.weight \
             layers.0.mixer.conv1d.weight layers.0.mixer.dt_proj.bias norm_f.weight adam.m.norm_f.weight \
             adam.v.layers.1.mixer.x_proj.weight; do
        echo "$output" | grep -q "^$n "
    done
    echo "$output" | grep -q "model=mamba"
    echo "$output" | grep -q "task=selective-copy"
    echo "$output" | grep -q "step=8"
    ! echo "$output" | grep -q "^lm_head.weight"      # tied
}

@test "the log as JSON lines (.jsonl or --log-format jsonl): the TSV's records, one object per line; ssm-viz plots it" {
    A="--model s4d --task selective-copy $TINY --steps 6 --threads 1"
    ssm-train $A --log "$T/log.tsv" -o "$T/a.ssm"
    ssm-train $A --log "$T/log.jsonl" -o "$T/b.ssm"
    ssm-train $A --log "$T/log.txt" --log-format jsonl -o "$T/c.ssm"
    [ "$(wc -l < "$T/log.jsonl")" -eq 8 ]           # 6 train + 2 eval, no header
    [ "$(head -c 1 "$T/log.txt")" = "{" ]
    # every line a JSON object with the TSV's keys and (but for the timings) its values
    /usr/bin/python3 - "$T/log.tsv" "$T/log.jsonl" "$T/log.txt" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
for path in sys.argv[2:]:
    recs = [json.loads(l) for l in open(path)]
    assert len(recs) == len(rows), (path, len(recs), len(rows))
    for r, j in zip(rows, recs):
        assert list(j) == list(r), (list(j), list(r))
        assert j['step'] == int(r['step']) and j['split'] == r['split'], (r, j)
        for k in ('loss', 'accuracy', 'lr'):
            assert abs(j[k] - float(r[k])) <= 1e-6 * max(1.0, abs(j[k])), (k, r, j)
        assert (j['tokens_per_s'] is None) == (r['tokens_per_s'] == ''), (r, j)
        assert j['split'] == 'eval' or j['tokens_per_s'] > 0
PY
    run ssm-viz -v --log -o "$T/curves.png" "$T/log.jsonl"
    [ "$status" -eq 0 ]
    [[ "$output" == *"training log: 8 records"* ]]
    # --resume appends (no header line in the middle of JSON lines)
    ssm-train $A --stop-at 3 --log "$T/r.jsonl" -o "$T/r.ssm"
    ssm-train --resume "$T/r.ssm" --threads 1 --log "$T/r.jsonl" -o "$T/r.ssm"
    [ "$(cut -d, -f1,2,3 "$T/r.jsonl")" = "$(cut -d, -f1,2,3 "$T/log.jsonl")" ]
    run ssm-train $A --log "$T/x.log" --log-format csv -o "$T/x.ssm"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--log-format: expected tsv or jsonl, got 'csv'"* ]]
    run ssm-train $A --log-format jsonl -o "$T/x.ssm"
    [ "$status" -eq 2 ]
}

@test "--resume continues bit-exactly (Mamba): same losses and the same final checkpoint" {
    ssm-train --model mamba --task selective-copy $TINY --steps 10 --threads 1 --log "$T/a.tsv" -o "$T/a.ssm"
    ssm-train --model mamba --task selective-copy $TINY --steps 10 --threads 1 --stop-at 4 --log "$T/b.tsv" -o "$T/b.ssm"
    ssm-train --resume "$T/b.ssm" --threads 1 --log "$T/b.tsv" -o "$T/b.ssm"
    diff <(cut -f1-5 "$T/a.tsv") <(cut -f1-5 "$T/b.tsv")
    cmp "$T/a.ssm" "$T/b.ssm"
}

@test "--resume continues bit-exactly (S4D with dropout), across thread counts" {
    A="--model s4d --n-layers 2 --dropout 0.1 --task selective-copy $TINY --steps 10"
    ssm-train $A --threads 1 --log "$T/a.tsv" -o "$T/a.ssm"
    ssm-train $A --threads 2 --stop-at 3 --log "$T/b.tsv" -o "$T/b.ssm"
    ssm-train --resume "$T/b.ssm" --threads 2 --log "$T/b.tsv" -o "$T/b.ssm"
    diff <(cut -f1-5 "$T/a.tsv") <(cut -f1-5 "$T/b.tsv")
    cmp "$T/a.ssm" "$T/b.ssm"
}

@test "--resume refuses a different model shape" {
    ssm-train --model mamba --task selective-copy $TINY --steps 2 -o "$T/a.ssm"
    run ssm-train --resume "$T/a.ssm" --d-model 32 -o "$T/b.ssm"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--d-model differs from the checkpoint"* ]]
}

@test "Mamba training is bit-identical for every thread count and from run to run" {
    A="--model mamba --task selective-copy $TINY --steps 6"
    ssm-train $A --threads 1 --log "$T/a.tsv" -o "$T/a.ssm"
    ssm-train $A --threads 2 --log "$T/b.tsv" -o "$T/b.ssm"
    ssm-train $A --threads 2 -o "$T/c.ssm"
    ssm-train $A --threads 3 -o "$T/d.ssm"
    diff <(cut -f1-5 "$T/a.tsv") <(cut -f1-5 "$T/b.tsv")
    cmp "$T/a.ssm" "$T/b.ssm"
    cmp "$T/b.ssm" "$T/c.ssm"
    cmp "$T/b.ssm" "$T/d.ssm"
}

@test "SIGTERM writes a checkpoint that --resume continues" {
    ssm-train --model mamba --task selective-copy $TINY --steps 1000000 --eval-every 100000 -o "$T/c.ssm" 2> "$T/err" &
    pid=$!
    sleep 2
    kill -TERM $pid
    status=0
    wait $pid || status=$?
    [ "$status" -eq 143 ]
    grep -q "terminated at step" "$T/err"
    ssm-tensor info "$T/c.ssm" | grep -q "^train "
    step=$(ssm-tensor info "$T/c.ssm" | sed -n 's/^ *step=//p')
    [ "$step" -ge 1 ]
    ssm-train --resume "$T/c.ssm" --stop-at $((step + 2)) -o "$T/d.ssm"
    ssm-tensor info "$T/d.ssm" | grep -q "step=$((step + 2))"
}

@test "a NaN loss stops with a clear message and leaves the last good checkpoint" {
    for model in "s4d --n-layers 1" mamba; do
        rm -f "$T/c.ssm"
        run ssm-train --model $model --task selective-copy $TINY --steps 50 --lr 1e9 --ssm-lr 1e9 --clip 0 --warmup 0 --save-every 1 -o "$T/c.ssm"
        [ "$status" -eq 1 ]
        [[ "$output" == *"the loss is"*"stopping (the last good checkpoint, step"* ]]
        ssm-tensor info "$T/c.ssm" | grep -q "step=1$"
    done
}

@test "task stream: features and class ids from a tensor stream" {
    ${SSM_PYTHON:-/usr/bin/python3} - "$REF" "$T/data.ssm" <<'EOF'
import sys, numpy as np
sys.path.insert(0, sys.argv[1].rsplit('/', 1)[0]); import ssm_stream
rng = np.random.default_rng(0)
x = rng.normal(size=(40, 12, 3)).astype('<f4'); y = (x[:, :, 0].mean(1) > 0).astype('<i4')
open(sys.argv[2], 'wb').write(ssm_stream.frame('x', 1, x) + ssm_stream.frame('y', 5, y))
EOF
    ssm-train --model s4d --n-layers 1 --d-model 8 --d-state 4 --task stream "$T/data.ssm" --batch 8 --steps 4 --log "$T/log.tsv" -o "$T/c.ssm"
    grep -q "$(printf '^4\teval\t')" "$T/log.tsv"
    ssm-tensor info "$T/c.ssm" | grep -q "^decoder.weight .*\[2, 8\]"
}

@test "task text: byte-level language model, tokenizer=bytes in the config" {
    seq 1 3000 > "$T/text.txt"
    ssm-train --model mamba --d-model 16 --task text "$T/text.txt" --seq-len 32 --batch 2 --steps 3 --eval-examples 4 -o "$T/c.ssm"
    ssm-tensor info "$T/c.ssm" | grep -q "tokenizer=bytes"
    # --resume finds the FILE in the checkpoint; FILE '-' is stdin
    ssm-train --resume "$T/c.ssm" --steps 5 -o "$T/d.ssm"
    ssm-tensor info "$T/d.ssm" | grep -q "step=5"
    ssm-train --model mamba --d-model 16 --task text --seq-len 32 --batch 2 --steps 1 --eval-examples 1 - -o "$T/e.ssm" < "$T/text.txt"
    ssm-tensor info "$T/c.ssm" | grep -q "^embedding.weight .*\[256, 16\]"
}

@test "task induction and fmnist run" {
    ssm-train --model mamba --d-model 16 --task induction --seq-len 16 --batch 4 --steps 2 --eval-examples 4 -o "$T/a.ssm"
    ssm-train --model s4d --n-layers 1 --d-model 8 --d-state 4 --task fmnist-permuted --batch 2 --steps 2 --eval-examples 4 \
        --log "$T/log.tsv" -o "$T/b.ssm"
    grep -q "$(printf '^2\teval\t')" "$T/log.tsv"
    ssm-tensor info "$T/b.ssm" | grep -q "^encoder.weight .*\[8, 1\]"
}

@test "--model s4: the DPLR/Cauchy kernel model trains, names its parameters, and resumes bit-exactly" {
    ssm-train --model s4 --task selective-copy $TINY --steps 6 --threads 1 --log "$T/a.tsv" -o "$T/a.ssm"
    run ssm-tensor info "$T/a.ssm"
    [ "$status" -eq 0 ]
    for n in layers.0.ssm.log_dt layers.0.ssm.Lambda_real_log layers.0.ssm.Lambda_imag layers.0.ssm.P \
             layers.3.ssm.B layers.3.ssm.C layers.3.ssm.D adam.v.layers.1.ssm.P; do
        echo "$output" | grep -q "^$n "
    done
    echo "$output" | grep -q "model=s4"
    ! echo "$output" | grep -q "A_real_log"
    ssm-train --model s4 --task selective-copy $TINY --steps 6 --threads 1 --stop-at 3 --log "$T/b.tsv" -o "$T/b.ssm"
    ssm-train --resume "$T/b.ssm" --threads 2 --log "$T/b.tsv" -o "$T/b.ssm"
    diff <(cut -f1-5 "$T/a.tsv") <(cut -f1-5 "$T/b.tsv")
}

# --device cuda: the build has CUDA when the tool links libcudart (make with nvcc present, no NO_CUDA)
cuda_build() { ldd "$(command -v ssm-train)" 2>/dev/null | grep -q libcudart; }

@test "--device cuda in a build without CUDA: usage error naming the rebuild" {
    cuda_build && skip "this build has CUDA"
    run ssm-train --model mamba --task selective-copy $TINY --steps 2 --device cuda -o "$T/c.ssm"
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-train: --device cuda: this build has no CUDA support (rebuild with nvcc installed)" ]
    [ ! -e "$T/c.ssm" ]
}

@test "--device cuda with CUDA built but no usable GPU: one line naming the CUDA error, exit 1" {
    cuda_build || skip "this build has no CUDA"
    nvidia-smi -L > /dev/null 2>&1 && skip "a GPU is present (tests/cuda/models.sh checks it)"
    run ssm-train --model mamba --task selective-copy $TINY --steps 2 --device cuda -o "$T/c.ssm"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "ssm-train: --device cuda: "?* ]]
    [ ! -e "$T/c.ssm" ]
}
