#!/usr/bin/env bats
# ssm-discretize: every init and form from the shell, the tensor contract (names, shapes, dtypes,
# attributes), input-stream mode (re-discretization, --rate, pass-through), --check, and every
# kind of bad input giving a one-line error with exit 1 or 2 and no output.

setup() {
    T="$BATS_TEST_TMPDIR"
    MK="python3 $BATS_TEST_DIRNAME/ssmstream.py"
    export PYTHONPATH="$BATS_TEST_DIRNAME${PYTHONPATH:+:$PYTHONPATH}"
}

# "name dtype [shape]" of each tensor of a stream, one per line
shapes() { ssm-tensor info "$1" | grep -E '^[A-Za-z_]' | sed -E 's/  +[0-9]+ elements.*//; s/ +/ /g'; }

# a python3 with numpy (Debian's; a pyenv shim may lack it)
numpy_python() {
    for p in python3 /usr/bin/python3; do
        if "$p" -c 'import numpy' 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

@test "--help and --version" {
    run ssm-discretize --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"--init NAME"* ]]
    run ssm-discretize --version
    [ "$status" -eq 0 ]
    [[ "$output" == *"ssm-discretize"* ]]
}

@test "dense HiPPO inits: A (H,N,N), B, C, Abar, Bbar (H,N), D, dt (H), attributes" {
    for init in legs legt lagt fout; do
        ssm-discretize --init $init -N 7 -H 3 -o "$T/d.ssm"
        run shapes "$T/d.ssm"
        [ "${lines[0]}" = "A f32 [3, 7, 7]" ]
        [ "${lines[1]}" = "B f32 [3, 7]" ]
        [ "${lines[2]}" = "C f32 [3, 7]" ]
        [ "${lines[3]}" = "Abar f32 [3, 7, 7]" ]
        [ "${lines[4]}" = "Bbar f32 [3, 7]" ]
        [ "${lines[5]}" = "D f32 [3]" ]
        [ "${lines[6]}" = "dt f32 [3]" ]
        run ssm-tensor info "$T/d.ssm"
        [ "$(echo "$output" | grep -c "form=dense")" -eq 7 ]
        [ "$(echo "$output" | grep -c "init=$init")" -eq 7 ]
        [ "$(echo "$output" | grep -c "N=7")" -eq 7 ]
        [ "$(echo "$output" | grep -c "method=zoh")" -eq 7 ]
    done
}

@test "dplr form: Lambda, P (H,r,M), B, C complex with conj=half; legt has rank 2" {
    ssm-discretize --init legs -N 16 -H 2 --form dplr --dtype f64 -o "$T/p.ssm"
    run shapes "$T/p.ssm"
    [ "${lines[0]}" = "Lambda c128 [2, 8]" ]
    [ "${lines[1]}" = "P c128 [2, 1, 8]" ]
    [ "${lines[2]}" = "B c128 [2, 8]" ]
    [ "${lines[3]}" = "C c128 [2, 8]" ]
    [ "${lines[4]}" = "D f64 [2]" ]
    [ "${lines[5]}" = "dt f64 [2]" ]
    run ssm-tensor info "$T/p.ssm"
    [ "$(echo "$output" | grep -c "conj=half")" -eq 4 ]
    [ "$(echo "$output" | grep -c "method=bilinear")" -eq 6 ]
    ssm-discretize --init legt -N 16 --form dplr -o "$T/t.ssm"
    run shapes "$T/t.ssm"
    [ "${lines[1]}" = "P c64 [1, 2, 8]" ]
}

@test "diag inits: complex (H,M) for s4d-lin/inv/legs, real (H,N) for s4d-real/mamba/random; mamba A_log" {
    for init in s4d-lin s4d-inv s4d-legs; do
        ssm-discretize --init $init -N 10 -H 2 -o "$T/d.ssm"
        run shapes "$T/d.ssm"
        [ "${lines[0]}" = "A c64 [2, 5]" ]
        [ "${lines[4]}" = "Bbar c64 [2, 5]" ]
        [ "$(ssm-tensor info "$T/d.ssm" | grep -c conj=half)" -eq 5 ]
    done
    for init in s4d-real random; do
        ssm-discretize --init $init -N 9 -H 2 --form diag -o "$T/d.ssm"
        run shapes "$T/d.ssm"
        [ "${lines[0]}" = "A f32 [2, 9]" ]
        [ "${lines[4]}" = "Bbar f32 [2, 9]" ]
    done
    ssm-discretize --init mamba -N 16 -H 3 -o "$T/m.ssm"
    run shapes "$T/m.ssm"
    [ "${lines[0]}" = "A_log f32 [3, 16]" ]
    [ "${lines[1]}" = "A f32 [3, 16]" ]
}

@test "the same seed gives the same output; another seed another C" {
    ssm-discretize --init s4d-lin -N 8 -H 4 --seed 5 -o "$T/a.ssm"
    ssm-discretize --init s4d-lin -N 8 -H 4 --seed 5 -o "$T/b.ssm"
    ssm-discretize --init s4d-lin -N 8 -H 4 --seed 6 -o "$T/c.ssm"
    cmp "$T/a.ssm" "$T/b.ssm"
    ! cmp -s "$T/a.ssm" "$T/c.ssm"
}

@test "dense and dplr forms of every HiPPO init and seed are the same system (numpy kernel, 1e-9)" {
    PY=$(numpy_python) || skip "no python3 with numpy"
    for init in legs legt lagt fout; do
        ssm-discretize --init $init -N 12 -H 2 --seed 3 --method bilinear --dtype f64 --level 0 -o "$T/dense.ssm"
        ssm-discretize --init $init -N 12 -H 2 --seed 3 --form dplr --dtype f64 --level 0 -o "$T/dplr.ssm"
        run "$PY" - "$T/dense.ssm" "$T/dplr.ssm" <<'EOF'
import sys
import numpy as np
import ssmstream as s
d = s.read_stream(open(sys.argv[1], "rb").read())
p = s.read_stream(open(sys.argv[2], "rb").read())
arr = lambda t: np.array(t[3]).reshape(t[1])
A, B, C, dt = arr(d["A"]), arr(d["B"]), arr(d["C"]), arr(d["dt"])
Lam, P, Bp, Cp, dtp = arr(p["Lambda"]), arr(p["P"]), arr(p["B"]), arr(p["C"]), arr(p["dt"])
assert np.array_equal(dt, dtp)
L, worst = 64, 0.0
for h in range(A.shape[0]):
    N = A.shape[1]
    I = np.eye(N)
    Ab = np.linalg.solve(I - dt[h] / 2 * A[h], I + dt[h] / 2 * A[h])
    Bb = np.linalg.solve(I - dt[h] / 2 * A[h], dt[h] * B[h])
    K1 = np.array([C[h] @ np.linalg.matrix_power(Ab, l) @ Bb for l in range(L)])
    # the documented convention: full = stored half followed by its conjugate
    Lf = np.concatenate([Lam[h], Lam[h].conj()])
    Pf = np.concatenate([P[h], P[h].conj()], axis=1)          # (r, N)
    Af = np.diag(Lf) - Pf.T @ Pf.conj()
    Bf = np.concatenate([Bp[h], Bp[h].conj()])
    Cf = np.concatenate([Cp[h], Cp[h].conj()])
    Abf = np.linalg.solve(I - dt[h] / 2 * Af, I + dt[h] / 2 * Af)
    Bbf = np.linalg.solve(I - dt[h] / 2 * Af, dt[h] * Bf)
    K2 = np.array([Cf @ np.linalg.matrix_power(Abf, l) @ Bbf for l in range(L)])
    worst = max(worst, np.linalg.norm(K2 - K1) / np.linalg.norm(K1), np.abs(K2.imag).max() / np.abs(K1).max())
print("rel err %.3g" % worst)
sys.exit(0 if worst < 1e-9 else 1)
EOF
        echo "$init: $output"
        [ "$status" -eq 0 ]
    done
}

@test "s4d-legs is the legs dplr form without P: same Lambda, B, C for the same seed" {
    ssm-discretize --init legs -N 16 -H 3 --seed 9 --form dplr --dtype f64 -o "$T/p.ssm"
    ssm-discretize --init s4d-legs -N 16 -H 3 --seed 9 --dtype f64 -o "$T/d.ssm"
    run python3 - "$T/p.ssm" "$T/d.ssm" <<'EOF'
import sys
import ssmstream as s
p = s.read_stream(open(sys.argv[1], "rb").read())
d = s.read_stream(open(sys.argv[2], "rb").read())
assert p["Lambda"][3] == d["A"][3], "Lambda"
assert p["B"][3] == d["B"][3] and p["C"][3] == d["C"][3], "B, C"
assert all(abs(l.real + 0.5) < 1e-12 and l.imag >= 0 for l in d["A"][3]), "Re = -1/2, Im >= 0"
EOF
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "input mode: re-discretizing at the same dt reproduces the stream; --rate 2 equals dt x 2" {
    ssm-discretize --init legs -N 8 -H 2 --dt 0.01 --dtype f64 -o "$T/a.ssm"
    ssm-discretize < "$T/a.ssm" > "$T/b.ssm"
    cmp "$T/a.ssm" "$T/b.ssm"
    ssm-discretize --rate 2 "$T/a.ssm" -o "$T/r.ssm"
    ssm-discretize --init legs -N 8 -H 2 --dt 0.02 --dtype f64 -o "$T/c.ssm"
    cmp "$T/r.ssm" "$T/c.ssm"
    for init in s4d-lin mamba s4d-real; do
        ssm-discretize --init $init -N 8 -H 2 --dt 0.04 --dtype f64 -o "$T/a.ssm"
        ssm-discretize --rate 0.5 < "$T/a.ssm" > "$T/b.ssm"
        ssm-discretize --init $init -N 8 -H 2 --dt 0.02 --dtype f64 -o "$T/c.ssm"
        cmp "$T/b.ssm" "$T/c.ssm"
    done
    ssm-discretize --init legt -N 8 --form dplr --dt 0.01 -o "$T/a.ssm"
    ssm-discretize < "$T/a.ssm" > "$T/b.ssm"
    cmp "$T/a.ssm" "$T/b.ssm"
}

@test "input mode: --method and --dt override, other tensors pass through, dtype follows the input" {
    ssm-discretize --init s4d-lin -N 8 -H 2 -o "$T/a.ssm"
    $MK "u:f32:1x2x5:randn" | cat "$T/a.ssm" - | ssm-discretize --method bilinear --dt 0.5 > "$T/b.ssm"
    run shapes "$T/b.ssm"
    [ "${lines[0]}" = "u f32 [1, 2, 5]" ]     # passed through as it arrived, before the rewritten tensors
    run ssm-tensor info "$T/b.ssm"
    [ "$(echo "$output" | grep -c method=bilinear)" -eq 7 ]
    [[ "$output" == *"min 0.5  max 0.5"* ]]
    # a hand-made real diagonal system, f64 in -> f64 out; init attribute defaults to "input"
    $MK "A:f64:2x3:negexp" "B:f64:2x3:randn" "C:f64:2x3:randn" "D:f64:2:randn" "dt:f64:2:const=0.1" | ssm-discretize > "$T/c.ssm"
    run shapes "$T/c.ssm"
    [ "${lines[3]}" = "Abar f64 [2, 3]" ]
    ssm-tensor info "$T/c.ssm" | grep -q "init=input"
}

@test "--check: NPLR error, stability margin, condition numbers; forward Euler instability is reported" {
    run ssm-discretize --init legs -N 32 --form dplr --check -o /dev/null
    [ "$status" -eq 0 ]
    [[ "$output" == *"NPLR reconstruction"* ]]
    [[ "$output" == *"max |eig(Abar)|"* ]]
    run ssm-discretize --init legs -N 32 --method bilinear --check -o /dev/null
    [[ "$output" == *"cond(eigenvectors of A)"* ]]
    [[ "$output" == *"cond(I - 1/2 dt A)"* ]]
    [[ "$output" != *"UNSTABLE"* ]]
    run ssm-discretize --init legs -N 32 --method euler --dt 1 --check -o /dev/null
    [ "$status" -eq 0 ]
    [[ "$output" == *"UNSTABLE"* ]]
    [[ "$output" == *"forward Euler is unstable"* ]]
}

# a usage error: exit 2, the first line names the flag, nothing on stdout
usage_error() {
    run ssm-discretize "$@" -o "$T/out.ssm"
    echo "$output"
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == "ssm-discretize: "* ]]
    [ ! -e "$T/out.ssm" ]
}

@test "bad options: unknown init/method/form, N <= 0, odd N where pairs are needed, dt <= 0, unrepresentable forms" {
    usage_error --init legx
    [[ "${lines[0]}" == *"--init: unknown initialization 'legx'"* ]]
    usage_error --init legs --method rk4
    [[ "${lines[0]}" == *"--method"* ]]
    usage_error --init legs --form sparse
    usage_error --init legs -N 0
    usage_error --init legs -N -4
    usage_error --init s4d-lin -N 7
    [[ "${lines[0]}" == *"even"* ]]
    usage_error --init legs --form dplr -N 9
    usage_error --init legs --dt 0
    usage_error --init legs --dt -1
    usage_error --init legs --dt nan
    usage_error --init legs --dt inf
    usage_error --init legs --dt-min 0.1 --dt-max 0.01
    usage_error --init legs --rate 0
    usage_error --init legs --form diag
    [[ "${lines[0]}" == *"s4d-legs"* ]]
    usage_error --init s4d-lin --form dense
    usage_error --init s4d-inv --form dplr
    usage_error --init legs --form dplr --method zoh
    usage_error --init legs --dtype f16
}

# a data error: exit 1, one line naming the tensor, no output file
data_error() {
    run sh -c "cat '$1' | ssm-discretize -o '$T/out.ssm'"
    echo "$output"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "${lines[0]}" == "ssm-discretize: "* ]]
    [ ! -e "$T/out.ssm" ]
}

@test "bad input streams: mismatched shapes, NaN/Inf, dt <= 0, missing tensors" {
    ssm-discretize --init legs -N 8 -H 2 --dtype f64 -o "$T/a.ssm"
    $MK "B:f64:2x7:randn" | cat "$T/a.ssm" - > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"tensor 'B': expected shape [2, 8], got [2, 7]"* ]]
    $MK "D:f64:3:randn" | cat "$T/a.ssm" - > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"'D'"* ]]
    $MK "C:f64:2x8:randn+nan" | cat "$T/a.ssm" - > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"tensor 'C'"*"NaN"* ]]
    $MK "A:f64:2x8x8:randn+inf" | cat "$T/a.ssm" - > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    $MK "dt:f64:2:list=0.1,0" | cat "$T/a.ssm" - > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"tensor 'dt'"* ]]
    $MK "dt:f64:2:list=0.1,-1" | cat "$T/a.ssm" - > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    $MK "A:f64:2x8x7:randn" | cat "$T/a.ssm" - > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    $MK "A:c128:2x4:randn" "B:c128:2x4:randn" "C:c128:2x5:randn" "D:f64:2:randn" "dt:f64:2:const=0.1" > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"tensor 'C'"* ]]
    $MK "B:f64:2x8:randn" "C:f64:2x8:randn" > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"missing tensor 'A'"* ]]
    $MK "A:f64:2x3:negexp" "B:f64:2x3:randn" "C:f64:2x3:randn" "D:f64:2:randn" > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"missing tensor 'dt'"* ]]
    ssm-discretize --init legs -N 8 -H 2 --form dplr -o "$T/p.ssm"
    cat "$T/a.ssm" "$T/p.ssm" > "$T/bad.ssm"
    data_error "$T/bad.ssm"
    [[ "$output" == *"both 'A' and 'Lambda'"* ]]
    # A (H, M) complex with P given but no Lambda is just a diag system; P alone is passed through
}

@test "input mode refuses a form change and an unstable overflow gives an error, not NaN output" {
    ssm-discretize --init legs -N 8 -o "$T/a.ssm"
    run sh -c "ssm-discretize --form dplr < '$T/a.ssm' -o '$T/out.ssm'"
    [ "$status" -eq 2 ]
    [ ! -e "$T/out.ssm" ]
    $MK "A:f64:1x2:list=1000,2000" "B:f64:1x2:randn" "C:f64:1x2:randn" "D:f64:1:randn" "dt:f64:1:const=1" > "$T/big.ssm"
    run sh -c "ssm-discretize --method zoh -o '$T/out.ssm' < '$T/big.ssm'"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"non-finite"* ]]
    [ ! -e "$T/out.ssm" ]
}

@test "no --init and a terminal on stdin is a usage error; --init with a FILE too" {
    run ssm-discretize --init legs "$T/nothing.ssm" -o "$T/out.ssm"
    [ "$status" -eq 2 ]
}
