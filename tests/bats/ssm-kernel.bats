#!/usr/bin/env bats
# ssm-kernel: the kernel three ways from the shell, --apply, --backward, --dt/--rate, errors.
# Numbers are compared with `ssm-tensor info` statistics here (the unit tests compare elementwise);
# tests that need `ssm-tensor rand/diff` skip when that ssm-tensor is not built.

setup() {
    TMP=$(mktemp -d)
}
teardown() {
    rm -rf "$TMP"
}

# the "min .. max .. mean .." line of tensor $2 in stream file $1
stats() {
    ssm-tensor info "$1" | awk -v n="$2" '$1 == n {on = 1; next} on && /min/ {print; exit}'
}
need_tensor_tools() {
    ssm-tensor rand --shape 1 --name x --seed 1 > /dev/null 2>&1 || skip "needs ssm-tensor rand/diff"
}

@test "help, version, usage errors" {
    run ssm-kernel --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"--method"* ]]
    run ssm-kernel --version
    [ "$status" -eq 0 ]
    run ssm-kernel --bogus
    [ "$status" -eq 2 ]
    [[ "$output" == "ssm-kernel: "* ]]
    run ssm-kernel -L 0 < /dev/null
    [ "$status" -eq 2 ]
    [[ "$output" == *"--length"* ]]
    run ssm-kernel -L -3 < /dev/null
    [ "$status" -eq 2 ]
    run ssm-kernel -L 10 --method fast < /dev/null
    [ "$status" -eq 2 ]
}

@test "empty input: names what is missing" {
    run ssm-kernel -L 10 < /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensors: "* ]]
}

@test "cauchy (dplr) and naive (dense) give the same kernel for legs" {
    ssm-discretize --init legs -N 64 -H 3 --form dplr --dt 0.01 --dtype f64 --seed 3 | ssm-kernel -L 1000 > "$TMP/dplr"
    ssm-discretize --init legs -N 64 -H 3 --method bilinear --dt 0.01 --dtype f64 --seed 3 | ssm-kernel -L 1000 > "$TMP/dense"
    ssm-tensor info "$TMP/dplr" | grep -q "method=cauchy"
    ssm-tensor info "$TMP/dense" | grep -q "method=naive"
    a=$(stats "$TMP/dplr" K); b=$(stats "$TMP/dense" K)
    [ -n "$a" ]
    [ "$a" = "$b" ]
}

@test "every HiPPO init: dplr and dense agree from the shell (N 32, L 777)" {
    for init in legs legt lagt fout; do
        a=$(ssm-discretize --init $init -N 32 --form dplr --dt 0.05 --dtype f64 | ssm-kernel -L 777 | ssm-tensor info | awk '$1 == "K" {on = 1} on && /min/ {print; exit}')
        b=$(ssm-discretize --init $init -N 32 -m bilinear --dt 0.05 --dtype f64 | ssm-kernel -L 777 | ssm-tensor info | awk '$1 == "K" {on = 1} on && /min/ {print; exit}')
        echo "$init: $a | $b"
        [ "$a" = "$b" ]
    done
}

@test "vandermonde on s4d inits, real and complex; K has the right shape and attributes" {
    for init in s4d-lin s4d-inv s4d-legs s4d-real mamba; do
        ssm-discretize --init $init -N 16 -H 5 | ssm-kernel -L 333 > "$TMP/k"
        ssm-tensor info "$TMP/k" | grep -q '^K  *f32 \[5, 333\]'
        ssm-tensor info "$TMP/k" | grep -q 'method=vandermonde'
        ssm-tensor info "$TMP/k" | grep -q "init=$init"
        # the SSM passes through for the next tool
        ssm-tensor info "$TMP/k" | grep -q '^C '
        ssm-tensor info "$TMP/k" | grep -q '^dt '
        stats "$TMP/k" K | grep -Eq 'nonfinite 0|nan 0 +inf 0'
    done
}

@test "--rate and --dt recompute from the continuous parameters" {
    ssm-discretize --init s4d-lin -N 16 -H 3 --dt 0.01 --dtype f64 | ssm-kernel -L 200 --rate 2 > "$TMP/a"
    ssm-discretize --init s4d-lin -N 16 -H 3 --dt 0.02 --dtype f64 | ssm-kernel -L 200 > "$TMP/b"
    [ "$(stats "$TMP/a" K)" = "$(stats "$TMP/b" K)" ]
    [ "$(stats "$TMP/a" dt)" = "$(stats "$TMP/b" dt)" ]
    [ "$(stats "$TMP/a" Abar)" = "$(stats "$TMP/b" Abar)" ]
    ssm-discretize --init legs -N 16 --form dplr --dt 0.01 --dtype f64 | ssm-kernel -L 200 --dt 0.03 > "$TMP/c"
    ssm-discretize --init legs -N 16 -m bilinear --dt 0.01 --dtype f64 | ssm-kernel -L 200 --dt 0.03 > "$TMP/d"
    [ "$(stats "$TMP/c" K)" = "$(stats "$TMP/d" K)" ]
}

@test "a form that does not fit the method is a usage error naming both" {
    run sh -c 'ssm-discretize --init s4d-lin -N 8 | ssm-kernel -L 10 --method cauchy'
    [ "$status" -eq 2 ]
    [[ "$output" == *"--method cauchy: needs the dplr form, but the input has the diag form"* ]]
    run sh -c 'ssm-discretize --init legs -N 8 --form dplr | ssm-kernel -L 10 --method vandermonde'
    [ "$status" -eq 2 ]
    run sh -c 'ssm-discretize --init legs -N 8 | ssm-kernel -L 10 --method vandermonde'
    [ "$status" -eq 2 ]
}

@test "missing and misshapen tensors: one line naming the tensor, exit 1" {
    need_tensor_tools
    run sh -c 'ssm-discretize --init s4d-lin -N 8 -H 2 | ssm-tensor drop C | ssm-kernel -L 10 > /dev/null'
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensor 'C'"* ]]
    [ "$(echo "$output" | wc -l)" -eq 1 ]
    run sh -c 'ssm-discretize --init legs -N 8 -H 2 --form dplr | ssm-tensor drop P | ssm-kernel -L 10 > /dev/null'
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensor 'P'"* ]]
    run sh -c 'ssm-discretize --init s4d-lin -N 8 -H 2 | ssm-tensor rand --shape 3,4 --dtype c64 --name Bbar --append | ssm-kernel -L 10 > /dev/null'
    [ "$status" -eq 1 ]
    [[ "$output" == *"tensor 'Bbar': expected shape [2, 4], got [3, 4]"* ]]
    run sh -c 'ssm-discretize --init s4d-lin -N 8 -H 2 | ssm-tensor rand --shape 2,4 --dtype f32 --name C --append | ssm-kernel -L 10 > /dev/null'
    [ "$status" -eq 1 ]
}

@test "--apply: y = K * u + D u; L from u; FFT agrees with a re-run in f64" {
    need_tensor_tools
    ssm-discretize --init s4d-lin -N 16 -H 4 --seed 1 | ssm-tensor rand --shape 2,4,300 --name u --seed 5 --append > "$TMP/in"
    ssm-kernel --apply "$TMP/in" > "$TMP/y32"
    ssm-tensor info "$TMP/y32" | grep -q '^y  *f32 \[2, 4, 300\]'
    ssm-tensor info "$TMP/y32" | grep -q '^K  *f32 \[4, 300\]'
    ssm-kernel --apply --dtype f64 "$TMP/in" > "$TMP/y64"
    ssm-tensor info "$TMP/y64" | grep -q '^y  *f64 \[2, 4, 300\]'
    # f32 and f64 runs agree to float32 rounding (statistics printed to 6 digits)
    [ "$(stats "$TMP/y32" y | awk '{print $1, $2, $3, $4, $5, $6}')" = "$(stats "$TMP/y64" y | awk '{print $1, $2, $3, $4, $5, $6}')" ]
    run sh -c "ssm-kernel --apply -L 299 '$TMP/in' > /dev/null"
    [ "$status" -eq 2 ]
}

@test "--apply with a K on the stream and no SSM; --bidirectional with K2" {
    need_tensor_tools
    ssm-tensor rand --shape 3,64 --name K --seed 1 | ssm-tensor rand --shape 3,64 --name K2 --seed 2 --append \
        | ssm-tensor rand --shape 1,3,64 --name u --seed 3 --append > "$TMP/in"
    ssm-kernel --apply "$TMP/in" > "$TMP/causal"
    ssm-kernel --apply --bidirectional "$TMP/in" > "$TMP/bidir"
    ssm-tensor info "$TMP/bidir" | grep -q 'bidirectional=1'
    [ "$(stats "$TMP/causal" y)" != "$(stats "$TMP/bidir" y)" ]
    # a zero K2 makes the bidirectional result the causal one
    ssm-tensor fill --shape 3,64 --name K2 --value 0 --append < "$TMP/in" > "$TMP/in0"
    ssm-kernel --apply --bidirectional "$TMP/in0" | ssm-tensor pick y > "$TMP/a"
    ssm-tensor pick y < "$TMP/causal" > "$TMP/b"
    ssm-tensor diff "$TMP/a" "$TMP/b"
    run sh -c "ssm-tensor drop u < '$TMP/in' | ssm-kernel --apply > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensor 'u'"* ]]
}

@test "--bidirectional from an SSM of 2H channels: the second half is K2" {
    need_tensor_tools
    ssm-discretize --init s4d-lin -N 8 -H 6 | ssm-tensor rand --shape 2,3,50 --name u --append > "$TMP/in"
    ssm-kernel --apply --bidirectional "$TMP/in" > "$TMP/out"
    ssm-tensor info "$TMP/out" | grep -q '^y  *f32 \[2, 3, 50\]'
    ssm-tensor info "$TMP/out" | grep -q '^K  *f32 \[6, 50\]'
    run sh -c "ssm-kernel --apply '$TMP/in' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"3 channels, but the kernel has 6"* ]]
}

@test "--backward: dK -> dlog_dt, dA, dB, dC; dy -> du, dK, dD and on to the S4D parameters" {
    need_tensor_tools
    ssm-discretize --init s4d-inv -N 16 -H 4 --dtype f64 | ssm-tensor rand --shape 4,100 --name dK --dtype f64 --append | ssm-kernel --backward > "$TMP/g"
    for t in dlog_dt dA dB dC; do ssm-tensor info "$TMP/g" | grep -q "^$t "; done
    ssm-tensor info "$TMP/g" | grep -q '^dA  *c128 \[4, 8\]'
    ssm-discretize --init s4d-inv -N 16 -H 4 | ssm-tensor rand --shape 2,4,100 --name u --append \
        | ssm-tensor rand --shape 2,4,100 --name dy --append | ssm-kernel --backward > "$TMP/h"
    for t in du dK dD dlog_dt dA dB dC; do ssm-tensor info "$TMP/h" | grep -q "^$t "; done
    run sh -c 'ssm-discretize --init legs -N 8 --form dplr | ssm-tensor rand --shape 1,10 --name dK --append | ssm-kernel --backward > /dev/null'
    [ "$status" -eq 1 ]
    [[ "$output" == *"complex diagonal (S4D) form"* ]]
}
