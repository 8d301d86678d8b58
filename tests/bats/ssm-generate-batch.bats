#!/usr/bin/env bats
# ssm-generate: several prompts as one batch (--prompt/--tokens given several times,
# --prompt-lines), and the weights of the recurrent steps (--weights f32|bf16).  The decode step
# itself is checked against the model's reference step in tests/unit/test_mamba_decode.c.

PY=/usr/bin/python3   # Debian's python3 with python3-torch

setup_file() {
    R="$BATS_FILE_TMPDIR"
    REFPY="$BATS_TEST_DIRNAME/../ref/mamba_lm_ref.py"
    $PY "$REFPY" "$R/hf" --layout hf --dtype f32 --seed 21
    $PY "$REFPY" "$R/hfbf" --layout hf --dtype bf16 --seed 22
}

setup() {
    R="$BATS_FILE_TMPDIR"
    T="$BATS_TEST_TMPDIR"
    M=(-m "$R/hf/state_dict.ssm" --config "$R/hf/config.json" -q)
}

@test "a batch of --tokens prompts: one line each, each as generated alone (greedy)" {
    run ssm-generate "${M[@]}" --tokens 5,6,7 --tokens 1,2 --tokens 5,6,7 --tokens 9 -n 7 --temperature 0
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 4 ]
    for k in 0 1 2 3; do [ "$(echo "${lines[$k]}" | wc -w)" -eq 7 ]; done
    a=$(ssm-generate "${M[@]}" --tokens 5,6,7 -n 7 --temperature 0)
    b=$(ssm-generate "${M[@]}" --tokens 1,2 -n 7 --temperature 0)
    d=$(ssm-generate "${M[@]}" --tokens 9 -n 7 --temperature 0)
    echo "batch: ${lines[*]}"; echo "alone: $a | $b | $d"
    [ "${lines[0]}" = "$a" ]
    [ "${lines[1]}" = "$b" ]
    [ "${lines[2]}" = "$a" ]
    [ "${lines[3]}" = "$d" ]
    [ "$a" != "$b" ]
}

@test "sampling in a batch: the first prompt as alone with the same seed, the others their own stream" {
    S=(--temperature 3 --top-k 30 --seed 5 -n 12)
    run ssm-generate "${M[@]}" "${S[@]}" --tokens 3,4 --tokens 3,4
    [ "$status" -eq 0 ]
    alone=$(ssm-generate "${M[@]}" "${S[@]}" --tokens 3,4)
    echo "batch: ${lines[*]}"; echo "alone: $alone"
    [ "${lines[0]}" = "$alone" ]
    [ "${lines[1]}" != "${lines[0]}" ]
}

@test "--prompt-lines with a BPE tokenizer: a prompt per non-empty line (CR stripped), one output line each" {
    $PY - "$T/tok.json" <<'EOF'
import json, string, sys
vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
vocab['\u0120'] = 26
merges = [['t', 'h'], ['th', 'e'], ['c', 'a']]
for a, b in merges: vocab[a + b] = len(vocab)
json.dump({'version': '1.0', 'added_tokens': [], 'normalizer': None,
           'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': True},
           'decoder': {'type': 'ByteLevel'},
           'model': {'type': 'BPE', 'vocab': vocab, 'merges': [a + ' ' + b for a, b in merges]}},
          open(sys.argv[1], 'w'))
EOF
    printf 'the cat\n\nsat on\r\nthe\n' > "$T/prompts.txt"
    B=("${M[@]}" --tokenizer "$T/tok.json" --temperature 0 -n 6)
    run ssm-generate "${B[@]}" --prompt-lines "$T/prompts.txt"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 3 ]
    [ "${lines[0]}" = "$(ssm-generate "${B[@]}" --prompt 'the cat')" ]
    [ "${lines[1]}" = "$(ssm-generate "${B[@]}" --prompt 'sat on')" ]
    [ "${lines[2]}" = "$(ssm-generate "${B[@]}" --prompt 'the')" ]
    run ssm-generate "${B[@]}" --prompt 'the cat' --prompt 'sat on' --prompt 'the' --ids
    [ "${#lines[@]}" -eq 3 ]
    [ "${lines[0]}" = "$(ssm-generate "${B[@]}" --prompt 'the cat' --ids)" ]
}

@test "--weights: bf16 by default for a bf16 checkpoint; bf16 steps follow the f32 steps on bf16 weights" {
    N=(-m "$R/hfbf/state_dict.ssm" --config "$R/hfbf/config.json" --tokens 1,2,3 -n 10 --temperature 0)
    run ssm-generate "${N[@]}" -v
    [ "$status" -eq 0 ]
    [[ "$output" == *"recurrent steps with bf16 weights"* ]]
    run ssm-generate "${M[@]}" --tokens 1,2,3 -n 1 -v
    [[ "$output" == *"recurrent steps with f32 weights"* ]]
    # the checkpoint's values are bf16: both paths compute with the same weights (summation order aside)
    [ "$(ssm-generate "${N[@]}" -q --weights bf16)" = "$(ssm-generate "${N[@]}" -q --weights f32)" ]
    # a batch with bf16 weights: each line equals its prompt's single run
    run ssm-generate "${N[@]}" -q --tokens 7,8
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "$(ssm-generate "${N[@]}" -q)" ]
    [ "${lines[1]}" = "$(ssm-generate "${N[@]/1,2,3/7,8}" -q)" ]
}

@test "errors: --weights, a batch with --state-out, --prompt-lines with no prompt, an empty batch prompt" {
    run ssm-generate "${M[@]}" --tokens 1 --weights f16
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-generate: --weights: expected f32 or bf16, got 'f16'" ]
    run ssm-generate "${M[@]}" --tokens 1 --tokens 2 --state-out "$T/s.ssm"
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-generate: --state-in, --state-out and --logits-out take a single prompt (not yet a batch)" ]
    printf '\n\n' > "$T/blank.txt"
    run ssm-generate "${M[@]}" --prompt-lines "$T/blank.txt"
    [ "$status" -eq 1 ]
    [ "${lines[0]}" = "ssm-generate: $T/blank.txt: no prompt (every line is empty)" ]
    run ssm-generate "${M[@]}" --tokens 1 --tokens ''
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-generate: --tokens (prompt 2): empty prompt (at least one token is needed)" ]
    run ssm-generate "${M[@]}" --tokens 1 --prompt-lines "$T/blank.txt"
    [ "$status" -eq 2 ]
}
