#!/usr/bin/env bats
# ssm-generate: imported checkpoints (transformers and state-spaces layouts, f32/bf16/f16) against
# the independent PyTorch reference tests/ref/mamba_lm_ref.py; generation, the BPE tokenizer,
# state save/restore continuing exactly; one-line errors with the documented exit codes.

PY=/usr/bin/python3   # Debian's python3 with python3-torch

setup_file() {
    R="$BATS_FILE_TMPDIR"
    REFPY="$BATS_TEST_DIRNAME/../ref/mamba_lm_ref.py"
    $PY "$REFPY" "$R/hf" --layout hf --dtype f32 --seed 11
    $PY "$REFPY" "$R/hfbf" --layout hf --dtype bf16 --seed 12
    $PY "$REFPY" "$R/ss" --layout state-spaces --dtype f16 --seed 13 --length 7
}

setup() {
    R="$BATS_FILE_TMPDIR"
    T="$BATS_TEST_TMPDIR"
    export PYTHONPATH="$BATS_TEST_DIRNAME/../ref"
}

# tokens of a reference directory, comma-separated
ref_tokens() {
    $PY -c "import sys, ssm_stream
for n, c, a, x in ssm_stream.frames(open(sys.argv[1], 'rb')):
    if n == 'tokens': print(','.join(map(str, x)))" "$1/ref.ssm"
}

# ||logits - ref|| / ||ref||
logits_err() {
    $PY -c "import sys, ssm_stream, numpy as np
get = lambda p: {n: x for n, c, a, x in ssm_stream.frames(open(p, 'rb'))}['logits'].astype(float)
a, b = get(sys.argv[1]), get(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
print(np.linalg.norm(a - b) / np.linalg.norm(b))" "$1" "$2"
}

@test "--help and --version" {
    run ssm-generate --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"Usage: ssm-generate -m CHECKPOINT"* ]]
    run ssm-generate --version
    [ "$status" -eq 0 ]
}

@test "imported transformers-layout f32 checkpoint: logits equal the PyTorch reference" {
    ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens "$(ref_tokens "$R/hf")" \
        -n 0 --logits-out "$T/out.ssm" -q
    err=$(logits_err "$T/out.ssm" "$R/hf/ref.ssm")
    echo "relative error $err"
    $PY -c "import sys; sys.exit(0 if float('$err') < 1e-5 else 1)"
}

@test "a .safetensors file, directly or through ssm-tensor import, gives the reference logits" {
    toks=$(ref_tokens "$R/hfbf")
    ssm-generate -m "$R/hfbf/model.safetensors" --config "$R/hfbf/config.json" --tokens "$toks" \
        -n 0 --logits-out "$T/a.ssm" -q
    err=$(logits_err "$T/a.ssm" "$R/hfbf/ref.ssm")
    echo "relative error $err"
    $PY -c "import sys; sys.exit(0 if float('$err') < 1e-5 else 1)"
    ssm-tensor import "$R/hfbf/model.safetensors" > "$T/sd.ssm"
    ssm-generate -m "$T/sd.ssm" --config "$R/hfbf/config.json" --tokens "$toks" -n 0 --logits-out "$T/b.ssm" -q
    cmp <(ssm-tensor info "$T/a.ssm") <(ssm-tensor info "$T/b.ssm")
}

@test "imported bf16 weights: logits equal the reference computed from the same bf16 values" {
    ssm-generate -m "$R/hfbf/state_dict.ssm" --config "$R/hfbf/config.json" --tokens "$(ref_tokens "$R/hfbf")" \
        -n 0 --logits-out "$T/out.ssm" -q
    err=$(logits_err "$T/out.ssm" "$R/hfbf/ref.ssm")
    echo "relative error $err"
    $PY -c "import sys; sys.exit(0 if float('$err') < 1e-5 else 1)"
}

@test "imported state-spaces layout (f16, padded vocabulary): logits equal the reference" {
    ssm-generate -m "$R/ss/state_dict.ssm" --config "$R/ss/config.json" --tokens "$(ref_tokens "$R/ss")" \
        -n 0 --logits-out "$T/out.ssm" -q
    err=$(logits_err "$T/out.ssm" "$R/ss/ref.ssm")
    echo "relative error $err"
    $PY -c "import sys; sys.exit(0 if float('$err') < 1e-5 else 1)"
}

@test "greedy generation: n ids, deterministic, statistics on stderr only" {
    run ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens 1,2,3 -n 9 --temperature 0
    [ "$status" -eq 0 ]
    [[ "${lines[1]}" == "ssm-generate: prompt 3 tokens in "*"generated 9 tokens in "*"tokens/s)" ]]
    first="${lines[0]}"
    [ "$(echo "$first" | wc -w)" -eq 9 ]
    ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens 1,2,3 -n 9 --temperature 0 -q > "$T/a"
    [ "$(cat "$T/a")" = "$first" ]
}

@test "greedy first token is the argmax of the reference logits at the last prompt position" {
    toks=$(ref_tokens "$R/hf")
    got=$(ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens "$toks" -n 1 --temperature 0 -q)
    want=$($PY -c "import ssm_stream, numpy as np
x = {n: x for n, c, a, x in ssm_stream.frames(open('$R/hf/ref.ssm', 'rb'))}['logits']
print(int(np.argmax(x[-1])))")
    [ "$got" = "$want" ]
}

@test "--state-out then --state-in continues exactly as one run (sampling, same seed)" {
    M=(-m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --temperature 3 --top-k 20 --top-p 0.98 -q)
    whole=$(ssm-generate "${M[@]}" --tokens 5,6,7,8 -n 14 --seed 3)
    part1=$(ssm-generate "${M[@]}" --tokens 5,6,7,8 -n 6 --seed 3 --state-out "$T/s.ssm")
    part2=$(ssm-generate "${M[@]}" --state-in "$T/s.ssm" -n 8)
    echo "whole: $whole"; echo "parts: $part1 | $part2"
    [ "$whole" = "$part1 $part2" ]
    # another seed gives another continuation (the test can fail)
    other=$(ssm-generate "${M[@]}" --tokens 5,6,7,8 -n 14 --seed 4)
    [ "$other" != "$whole" ]
}

@test "a saved state continued with more prompt equals the prompt in one piece" {
    M=(-m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --temperature 0 -q)
    whole=$(ssm-generate "${M[@]}" --tokens 1,2,3,4,5,6,7 -n 6)
    ssm-generate "${M[@]}" --tokens 1,2,3 -n 0 --state-out "$T/s.ssm"
    ssm-tensor info "$T/s.ssm" | grep -q '^state.layers.1.ssm_state  *f32 \[1, 48, 5\]'
    rest=$(ssm-generate "${M[@]}" --state-in "$T/s.ssm" --tokens 4,5,6,7 -n 6)
    [ "$whole" = "$rest" ]
}

@test "BPE tokenizer.json: the prompt is encoded with ranked merges, text comes out decoded" {
    # 26 letters, 'Ġ' (space), then merges; every id below the model's vocabulary (40)
    $PY - "$T/tok.json" <<'EOF'
import json, string, sys
vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
vocab['\u0120'] = 26
merges = [['t', 'h'], ['th', 'e'], ['\u0120', 't'], ['\u0120t', 'h'], ['\u0120th', 'e'], ['c', 'a']]
for a, b in merges: vocab[a + b] = len(vocab)
json.dump({'version': '1.0', 'added_tokens': [], 'normalizer': None,
           'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': True},
           'decoder': {'type': 'ByteLevel'},
           'model': {'type': 'BPE', 'vocab': vocab, 'merges': [a + ' ' + b for a, b in merges]}},
          open(sys.argv[1], 'w'))
EOF
    M=(-m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokenizer "$T/tok.json" --temperature 0)
    run ssm-generate "${M[@]}" --prompt "the cat the" -n 0 -v
    [ "$status" -eq 0 ]
    # 'the' = 28; ' cat' = Ġ ca t; ' the' = Ġ the: (t h) outranks (Ġ t), so Ġthe is never reached
    [[ "$output" == *"prompt tokens: 28 26 32 19 26 28"* ]]
    ids=$(ssm-generate "${M[@]}" --prompt "the cat the" -n 8 --ids -q)
    text=$(ssm-generate "${M[@]}" --prompt "the cat the" -n 8 -q)
    want=$($PY -c "import json
v = {i: t.replace('\u0120', ' ') for t, i in json.load(open('$T/tok.json'))['model']['vocab'].items()}
print(''.join(v.get(int(i), '') for i in '$ids'.split()))")
    [ "$text" = "$want" ]
}

@test "errors: a missing tensor, shapes contradicting config.json" {
    $PY -c "import ssm_stream, sys
with open('$T/bad.ssm', 'wb') as f:
    for n, c, a, x in ssm_stream.frames(open('$R/hf/state_dict.ssm', 'rb')):
        if n != 'backbone.layers.1.mixer.D': f.write(ssm_stream.frame(n, c, x))"
    run ssm-generate -m "$T/bad.ssm" --config "$R/hf/config.json" --tokens 1 -n 1
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-generate: $T/bad.ssm: missing tensor 'backbone.layers.1.mixer.D'" ]
    sed 's/"state_size": 5/"state_size": 6/' "$R/hf/config.json" > "$T/config.json"
    run ssm-generate -m "$R/hf/state_dict.ssm" --config "$T/config.json" --tokens 1 -n 1
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-generate: $R/hf/state_dict.ssm: tensor 'backbone.layers.0.mixer.A_log': shape [48, 5] contradicts $T/config.json (expected [48, 6])" ]]
    [ "${#lines[@]}" -eq 1 ]
    echo '{"hidden_size": 24,' > "$T/broken.json"
    run ssm-generate -m "$R/hf/state_dict.ssm" --config "$T/broken.json" --tokens 1
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-generate: $T/broken.json: line 2, column 1: expected a member name"* ]]
}

@test "errors: unknown token id, empty prompt, no prompt, bad options, state of another model" {
    M=(-m "$R/hf/state_dict.ssm" --config "$R/hf/config.json")
    run ssm-generate "${M[@]}" --tokens 1,40
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == "ssm-generate: --tokens: token id 40 is not in [0, 40)" ]]
    run ssm-generate "${M[@]}" --tokens ""
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == "ssm-generate: --tokens: empty prompt (at least one token is needed)" ]]
    run ssm-generate "${M[@]}" --prompt ""
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == "ssm-generate: --prompt: empty prompt (at least one token is needed)" ]]
    : > "$T/empty.txt"
    run ssm-generate "${M[@]}" --prompt-file "$T/empty.txt"
    [ "$status" -eq 1 ]
    [[ "${lines[0]}" == "ssm-generate: $T/empty.txt: empty prompt (at least one token is needed)" ]]
    run ssm-generate "${M[@]}" --tokenizer /dev/null --prompt "x"
    [ "$status" -eq 1 ]
    [[ "${lines[0]}" == "ssm-generate: /dev/null: line 1, column 1: expected a value, got end of input" ]]
    run ssm-generate "${M[@]}"
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == "ssm-generate: no prompt: give --prompt, --prompt-file or --tokens (or --state-in)" ]]
    run ssm-generate "${M[@]}" --tokens 1 --top-p 1.5
    [ "$status" -eq 2 ]
    run ssm-generate "${M[@]}" --prompt "abc"
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == *"--prompt: this checkpoint's tokenizer is not built in"* ]]
    ssm-generate -m "$R/ss/state_dict.ssm" --config "$R/ss/config.json" --tokens 1 -n 0 -q --state-out "$T/ss.ssm"
    run ssm-generate "${M[@]}" --state-in "$T/ss.ssm" -n 1
    [ "$status" -eq 1 ]
    [[ "${lines[0]}" == "ssm-generate: $T/ss.ssm: the state is of another model"* ]]
}

@test "-o FILE gets the text" {
    ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens 3 -n 4 --temperature 0 -q -o "$T/out.txt"
    [ "$(wc -w < "$T/out.txt")" -eq 4 ]
}

@test "a byte-level text model from ssm-train generates bytes (tokenizer=bytes)" {
    printf 'abcabcabcabc abc abcabc %.0s' $(seq 40) > "$T/text.txt"
    OMP_NUM_THREADS=1 ssm-train --model mamba --task text "$T/text.txt" --d-model 8 --n-layers 1 --d-state 4 \
        --seq-len 16 --steps 5 --batch 2 -q -o "$T/lm.ssm"
    ssm-generate -m "$T/lm.ssm" --prompt "abc" -n 25 --temperature 0.7 --seed 2 -q -o "$T/out.bin"
    [ "$(wc -c < "$T/out.bin")" -eq 25 ]
    run ssm-generate -m "$T/lm.ssm" --classify "$T/text.txt"
    [ "$status" -eq 1 ]
    [[ "${lines[0]}" == *"not a classification model"* ]]
}

@test "--classify: predictions of s4d and mamba classifiers reproduce ssm-train's eval accuracy" {
    $PY -c "import ssm_stream, numpy as np
r = np.random.default_rng(5); n, L = 200, 12
x = r.integers(0, 6, (n, L)).astype('<i4'); y = (x[:, 0] >= 3).astype('<i4')
open('$T/cls.ssm', 'wb').write(ssm_stream.frame('x', 5, x) + ssm_stream.frame('y', 5, y))
open('$T/eval.ssm', 'wb').write(ssm_stream.frame('x', 5, x[180:]) + ssm_stream.frame('y', 5, y[180:]))
open('$T/bad.ssm', 'wb').write(ssm_stream.frame('x', 1, x[180:].astype('<f4')))"
    for model in s4d mamba; do
        OMP_NUM_THREADS=1 ssm-train --model $model --task stream "$T/cls.ssm" --d-model 16 --n-layers 1 --d-state 8 \
            --steps 40 --batch 16 --eval-every 40 --lr 1e-2 --log "$T/log.tsv" -q -o "$T/$model.ssm"
        # the eval split is the last 10% (20 examples); the log's accuracy is of the final weights
        want=$(awk -F'\t' '$2 == "eval" {a = $4} END {printf "%d", a * 20 + 0.5}' "$T/log.tsv")
        run ssm-generate -m "$T/$model.ssm" --classify "$T/eval.ssm" -o "$T/pred1"
        [ "$status" -eq 0 ]
        [[ "$output" == *"accuracy $want/20 = "* ]]
        [ "$(wc -l < "$T/pred1")" -eq 20 ]
        ssm-generate -m "$T/$model.ssm" --classify --batch 1 -q < "$T/eval.ssm" > "$T/pred2"
        cmp "$T/pred1" "$T/pred2"
        run ssm-generate -m "$T/$model.ssm" --classify "$T/bad.ssm"
        [ "$status" -eq 1 ]
        [[ "${lines[0]}" == *"tensor 'x': expected i32 tokens (count, L) for this model, got f32 [20, 12]" ]]
    done
}

# an s4d byte-level text model from ssm-train (odd d_model; d_state 2 or 6: M = 1 or 3 modes)
train_s4d() {
    printf 'abcabcabcabc abc abcabc %.0s' $(seq 40) > "$T/text.txt"
    OMP_NUM_THREADS=1 ssm-train --model s4d --task text "$T/text.txt" --d-model 7 --n-layers 2 --d-state "$2" \
        --seq-len 16 --steps 5 --batch 2 -q -o "$1"
}

@test "s4d text model: step mode equals parallel mode at every prompt position (M = 1 and 3)" {
    toks=$($PY -c "import random; r = random.Random(7); print(','.join(str(r.randrange(256)) for _ in range(37)))")
    for N in 2 6; do
        train_s4d "$T/s4d$N.ssm" $N
        G=(ssm-generate -m "$T/s4d$N.ssm" --tokens "$toks" -n 0 -q)
        "${G[@]}" --logits-out "$T/par.ssm"
        "${G[@]}" --logits-out "$T/step.ssm" --prefill-chunk 1     # every token one recurrent step
        "${G[@]}" --logits-out "$T/chunk.ssm" --prefill-chunk 10   # chunks starting from a state
        for f in step chunk; do
            err=$($PY -c "import sys, ssm_stream, numpy as np
get = lambda p: {n: x for n, c, a, x in ssm_stream.frames(open(p, 'rb'))}['logits'].astype(float)
a, b = get(sys.argv[1]), get(sys.argv[2])
assert a.shape == b.shape == (37, 256), (a.shape, b.shape)
print(max(np.linalg.norm(a[t] - b[t]) / np.linalg.norm(b[t]) for t in range(37)))" "$T/$f.ssm" "$T/par.ssm")
            echo "N $N $f: worst relative error $err"
            $PY -c "import sys; sys.exit(0 if float('$err') < 1e-4 else 1)"
        done
    done
}

@test "s4d text model: --state-out then --state-in continues exactly as one run" {
    train_s4d "$T/s4d.ssm" 6
    M=(-m "$T/s4d.ssm" --temperature 2 --ids -q)
    whole=$(ssm-generate "${M[@]}" --prompt "abcab" -n 20 --seed 5)
    part1=$(ssm-generate "${M[@]}" --prompt "abcab" -n 7 --seed 5 --state-out "$T/s.ssm")
    part2=$(ssm-generate "${M[@]}" --state-in "$T/s.ssm" -n 13)
    echo "whole: $whole"; echo "parts: $part1 | $part2"
    [ "$whole" = "$part1 $part2" ]
    other=$(ssm-generate "${M[@]}" --prompt "abcab" -n 20 --seed 6)
    [ "$other" != "$whole" ]
    # more prompt after a saved state equals the prompt in one piece
    one=$(ssm-generate "${M[@]}" --temperature 0 --prompt "abc abcabc ab" -n 10)
    ssm-generate "${M[@]}" --prompt "abc ab" -n 0 --state-out "$T/p.ssm"
    ssm-tensor info "$T/p.ssm" | grep -q '^state.layers.1.ssm_state  *c64 \[1, 7, 3\]'
    two=$(ssm-generate "${M[@]}" --temperature 0 --state-in "$T/p.ssm" --prompt "cabc ab" -n 10)
    [ "$one" = "$two" ]
}

@test "s4d errors: a missing tensor, states of another model" {
    train_s4d "$T/s4d.ssm" 6
    train_s4d "$T/s4d2.ssm" 2
    ssm-tensor drop 'layers.1.ssm.C' -i "$T/s4d.ssm" > "$T/bad.ssm"
    run ssm-generate -m "$T/bad.ssm" --prompt abc -n 3
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-generate: missing tensor 'layers.1.ssm.C' (expected c64 [7, 3])" ]
    ssm-generate -m "$T/s4d.ssm" --prompt "abc" -n 0 -q --state-out "$T/s.ssm"
    run ssm-generate -m "$T/s4d2.ssm" --state-in "$T/s.ssm" -n 1
    [ "$status" -eq 1 ]
    [[ "${lines[0]}" == "ssm-generate: $T/s.ssm: the state is of another model"* ]]
    ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens 1 -n 0 -q --state-out "$T/m.ssm"
    run ssm-generate -m "$T/s4d.ssm" --state-in "$T/m.ssm" -n 1
    [ "$status" -eq 1 ]
    [ "${lines[0]}" = "ssm-generate: $T/m.ssm: the state is of another model (model=mamba, this one s4d)" ]
    run ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --state-in "$T/s.ssm" -n 1
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
}

@test "s4 text model (DPLR step): generates, and --state-out then --state-in continues exactly as one run" {
    printf 'abcabcabcabc abc abcabc %.0s' $(seq 40) > "$T/text.txt"
    OMP_NUM_THREADS=1 ssm-train --model s4 --task text "$T/text.txt" --d-model 7 --n-layers 2 --d-state 6 \
        --seq-len 16 --steps 5 --batch 2 -q -o "$T/s4.ssm"
    ssm-tensor info "$T/s4.ssm" | grep -q 'l_kernel=16'
    M=(-m "$T/s4.ssm" --temperature 2 --ids -q)
    whole=$(ssm-generate "${M[@]}" --prompt "abcab" -n 20 --seed 5)
    part1=$(ssm-generate "${M[@]}" --prompt "abcab" -n 7 --seed 5 --state-out "$T/s.ssm")
    part2=$(ssm-generate "${M[@]}" --state-in "$T/s.ssm" -n 13)
    echo "whole: $whole"; echo "parts: $part1 | $part2"
    [ "$whole" = "$part1 $part2" ]
    [ "$(echo $whole | wc -w)" -eq 20 ]
}

# --device cuda: the build has CUDA when the tool links libcudart (make with nvcc present, no NO_CUDA)
cuda_build() { ldd "$(command -v ssm-generate)" 2>/dev/null | grep -q libcudart; }

@test "--device: bad values are usage errors; cuda without CUDA support is a usage error" {
    run ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens 1,2 --device tpu
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-generate: --device: expected cpu or cuda, got 'tpu'" ]
    cuda_build && skip "this build has CUDA"
    run ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens 1,2 --device cuda
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-generate: --device cuda: this build has no CUDA support (rebuild with nvcc installed)" ]
}

@test "--device cuda with CUDA built but no usable GPU: one line naming the CUDA error, exit 1" {
    cuda_build || skip "this build has no CUDA"
    nvidia-smi -L > /dev/null 2>&1 && skip "a GPU is present (tests/cuda/models.sh checks it)"
    run ssm-generate -m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" --tokens 1,2 -n 2 --device cuda
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "ssm-generate: --device cuda: "?* ]]
}
