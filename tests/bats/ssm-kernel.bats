#!/usr/bin/env bats
# ssm-kernel: the kernel three ways from the shell, --apply, --backward, --dt/--rate, errors.
# Kernels are compared through `ssm-tensor info` statistics (the unit tests compare them
# elementwise); convolutions elementwise against numpy through tests/ref/ssm_stream.py.

setup() {
    TMP=$(mktemp -d)
    MK="$BATS_TEST_DIRNAME/../ref/ssm_stream.py"   # hand-made streams: python3 "$MK" make make SPEC...
}
teardown() {
    rm -rf "$TMP"
}

# the "min .. max .. mean .." line of tensor $2 in stream file $1
stats() {
    ssm-tensor info "$1" | awk -v n="$2" '$1 == n {on = 1; next} on && /min/ {print; exit}'
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

# same_k A B TOL: ||K_A - K_B|| / ||K_B|| < TOL, through tests/ref/ssm_stream.py
same_k() {
    python3 - "$1" "$2" "$3" "$BATS_TEST_DIRNAME" <<'PY'
import math, sys
sys.path.insert(0, sys.argv[4] + "/../ref")
from ssm_stream import read_stream
a = read_stream(open(sys.argv[1], "rb").read())["K"][3]
b = read_stream(open(sys.argv[2], "rb").read())["K"][3]
assert len(a) == len(b) > 0
err = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / sum(y * y for y in b))
print("relative error", err)
sys.exit(0 if err < float(sys.argv[3]) else 1)
PY
}

@test "every HiPPO init: dplr (cauchy) and dense (naive) of the same seed agree elementwise" {
    for init in legs legt lagt fout; do
        for dt in 0.001 0.1; do
            ssm-discretize --init $init -N 64 -H 2 --form dplr --dt $dt --dtype f64 --seed 7 | ssm-kernel -L 1000 > "$TMP/a"
            ssm-discretize --init $init -N 64 -H 2 -m bilinear --dt $dt --dtype f64 --seed 7 | ssm-kernel -L 1000 > "$TMP/b"
            same_k "$TMP/a" "$TMP/b" 1e-9
            ssm-discretize --init $init -N 64 -H 2 --form dplr --dt $dt --seed 7 | ssm-kernel -L 1000 > "$TMP/a"
            ssm-discretize --init $init -N 64 -H 2 -m bilinear --dt $dt --seed 7 | ssm-kernel -L 1000 > "$TMP/b"
            same_k "$TMP/a" "$TMP/b" 1e-4
        done
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
    run sh -c "python3 '$MK' make Abar:c64:2x4:randn Bbar:c64:2x4:randn | ssm-kernel -L 10 > /dev/null"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-kernel: missing tensor 'C' (expected the output vector of the SSM, (H, N) or (H, M) complex)" ]
    run sh -c "python3 '$MK' make Lambda:c64:2x4:randn B:c64:2x4:randn C:c64:2x4:randn dt:f32:2:const=0.1 | ssm-kernel -L 10 > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensor 'P'"* ]]
    run sh -c "python3 '$MK' make Abar:c64:2x4:randn Bbar:c64:3x4:randn C:c64:2x4:randn | ssm-kernel -L 10 > /dev/null"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-kernel: tensor 'Bbar': expected shape [2, 4], got [3, 4]" ]
    run sh -c "python3 '$MK' make Abar:c64:2x4:randn Bbar:c64:2x4:randn C:f32:2x4:randn | ssm-kernel -L 10 > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: tensor 'Abar': expected a real float dtype"* ]]
    run sh -c "python3 '$MK' make Abar:c64:2x4:randn+nan Bbar:c64:2x4:randn C:c64:2x4:randn | ssm-kernel -L 10 > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: "*"Abar"* ]]
    # an unstable system is refused, not written as inf/NaN
    run sh -c "python3 '$MK' make Abar:f64:1x2:list=3,0.5 Bbar:f64:1x2:const=1 C:f64:1x2:const=1 | ssm-kernel -L 2000 > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: kernel: not finite"* ]]
}

# check_conv FILE DIR [K2]: y == causal_conv(u, K) (+ the anti-causal K2) + D u elementwise, by
# the direct sum in Python
check_conv() {
    python3 - "$@" <<'PY'
import math, sys
sys.path.insert(0, sys.argv[2] + "/../ref")
from ssm_stream import read_stream
t = read_stream(open(sys.argv[1], "rb").read())
u_dims, u = t["u"][1], t["u"][3]
Bt, H, L = u_dims
y, K = t["y"][3], t["K"][3]
HK = t["K"][1][0]
use_k2 = len(sys.argv) > 3 or HK == 2 * H
K2 = t["K2"][3] if len(sys.argv) > 3 else (K[H * L:] if HK == 2 * H else None)
D = t["D"][3][:H] if "D" in t else [0.0] * H
num = den = 0.0
for b in range(Bt):
    for h in range(H):
        row = u[(b * H + h) * L:(b * H + h + 1) * L]
        for i in range(L):
            s = D[h] * row[i] + sum(K[h * L + i - j] * row[j] for j in range(i + 1))
            if use_k2:
                s += sum(K2[h * L + j - i] * row[j] for j in range(i, L))
            e = y[(b * H + h) * L + i] - s
            num += e * e
            den += s * s
err = math.sqrt(num / den)
print("relative error", err)
sys.exit(0 if err < 1e-5 else 1)
PY
}

@test "--apply: y = K * u + D u elementwise (numpy reference); L from u; f32 and f64" {
    { ssm-discretize --init s4d-lin -N 16 -H 4 --seed 1; python3 "$MK" make u:f32:2x4x300:randn; } > "$TMP/in"
    ssm-kernel --apply "$TMP/in" > "$TMP/y32"
    ssm-tensor info "$TMP/y32" | grep -q '^y  *f32 \[2, 4, 300\]'
    ssm-tensor info "$TMP/y32" | grep -q '^K  *f32 \[4, 300\]'
    check_conv "$TMP/y32" "$BATS_TEST_DIRNAME"
    ssm-kernel --apply --dtype f64 "$TMP/in" > "$TMP/y64"
    ssm-tensor info "$TMP/y64" | grep -q '^y  *f64 \[2, 4, 300\]'
    check_conv "$TMP/y64" "$BATS_TEST_DIRNAME"
    run sh -c "ssm-kernel --apply -L 299 '$TMP/in' > /dev/null"
    [ "$status" -eq 2 ]
}

@test "--apply with a K on the stream and no SSM; --bidirectional with K2" {
    python3 "$MK" make K:f32:3x64:randn K2:f32:3x64:randn u:f32:1x3x64:randn D:f32:3:randn > "$TMP/in"
    ssm-kernel --apply "$TMP/in" > "$TMP/causal"
    check_conv "$TMP/causal" "$BATS_TEST_DIRNAME"
    ssm-kernel --apply --bidirectional "$TMP/in" > "$TMP/bidir"
    ssm-tensor info "$TMP/bidir" | grep -q 'bidirectional=1'
    check_conv "$TMP/bidir" "$BATS_TEST_DIRNAME" K2
    run sh -c "python3 '$MK' make K:f32:3x64:randn | ssm-kernel --apply > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensor 'u'"* ]]
}

@test "--bidirectional from an SSM of 2H channels: the second half is K2" {
    { ssm-discretize --init s4d-lin -N 8 -H 6; python3 "$MK" make u:f32:2x3x50:randn; } > "$TMP/in"
    ssm-kernel --apply --bidirectional "$TMP/in" > "$TMP/out"
    ssm-tensor info "$TMP/out" | grep -q '^y  *f32 \[2, 3, 50\]'
    ssm-tensor info "$TMP/out" | grep -q '^K  *f32 \[6, 50\]'
    check_conv "$TMP/out" "$BATS_TEST_DIRNAME"
    run sh -c "ssm-kernel --apply '$TMP/in' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"3 channels, but the kernel has 6"* ]]
}

@test "--backward: dK -> dlog_dt, dA, dB, dC; dy -> du, dK, dD and on to the S4D parameters" {
    { ssm-discretize --init s4d-inv -N 16 -H 4 --dtype f64; python3 "$MK" make dK:f64:4x100:randn; } | ssm-kernel --backward > "$TMP/g"
    for t in dlog_dt dA dB dC; do ssm-tensor info "$TMP/g" | grep -q "^$t "; done
    ssm-tensor info "$TMP/g" | grep -q '^dA  *c128 \[4, 8\]'
    { ssm-discretize --init s4d-inv -N 16 -H 4; python3 "$MK" make u:f32:2x4x100:randn dy:f32:2x4x100:randn; } | ssm-kernel --backward > "$TMP/h"
    for t in du dK dD dlog_dt dA dB dC; do ssm-tensor info "$TMP/h" | grep -q "^$t "; done
    run sh -c "{ ssm-discretize --init legs -N 8 --form dplr; python3 '$MK' make dK:f32:1x10:randn; } | ssm-kernel --backward > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"complex diagonal (S4D) form"* ]]
    run sh -c "ssm-discretize --init s4d-inv -N 8 | ssm-kernel --backward > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensor 'dK'"* ]]
}

@test "--layer: a checkpoint's S4D layer gives the kernel of the same diagonal system" {
    L="layers.0.ssm"
    python3 "$MK" make $L.log_dt:f64:1:list=-3 $L.A_real_log:f64:1x2:list=-0.6931471805599453,0 \
        $L.A_imag:f64:1x2:list=0,3.14 $L.B:c128:1x2:list=1,0,1,0 $L.C:c128:1x2:list=0.5,0.2,-0.3,0.1 \
        $L.D:f64:1:list=0.7 > "$TMP/layer"
    ssm-kernel --layer $L -L 500 "$TMP/layer" > "$TMP/a"
    python3 "$MK" make A:c128:1x2:list=-0.5,0,-1,3.14:form=diag,method=zoh B:c128:1x2:list=1,0,1,0 \
        C:c128:1x2:list=0.5,0.2,-0.3,0.1 dt:f64:1:list=0.049787068367863944 | ssm-kernel -L 500 > "$TMP/b"
    [ -n "$(stats "$TMP/a" K)" ]
    [ "$(stats "$TMP/a" K)" = "$(stats "$TMP/b" K)" ]
    # the layer's tensors pass back unchanged, no stray A/B/C/dt appear
    ssm-tensor info "$TMP/a" | grep -q "^$L.A_imag "
    ! ssm-tensor info "$TMP/a" | grep -q '^A '
    { cat "$TMP/layer"; python3 "$MK" make dK:f64:1x500:randn; } | ssm-kernel --layer $L --backward > "$TMP/g"
    for t in dlog_dt dA dB dC dA_real_log dA_imag; do ssm-tensor info "$TMP/g" | grep -q "^$t "; done
    run sh -c "ssm-tensor cat '$TMP/layer' | ssm-kernel --layer layers.1.ssm -L 10 > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-kernel: missing tensor 'layers.1.ssm.log_dt'"* ]]
}

@test "a layer picked from an ssm-train checkpoint gives its kernel without --layer; several layers need --layer" {
    ssm-train --model s4d --task selective-copy --d-model 8 --n-layers 2 --d-state 8 --steps 1 --batch 2 -o "$TMP/ck.ssm" 2>/dev/null
    ssm-tensor pick 'layers.1.*' < "$TMP/ck.ssm" | ssm-kernel -L 256 > "$TMP/auto.ssm"
    ssm-kernel --layer layers.1.ssm -L 256 < "$TMP/ck.ssm" > "$TMP/named.ssm"
    ssm-tensor pick K < "$TMP/auto.ssm" > "$TMP/k1"
    ssm-tensor pick K < "$TMP/named.ssm" > "$TMP/k2"
    ssm-tensor diff --exact "$TMP/k1" "$TMP/k2"
    run ssm-tensor info "$TMP/k1"
    [[ "$output" == *"K "*"f32 [8, 256]"* ]]
    run sh -c "ssm-kernel -L 256 '$TMP/ck.ssm' > /dev/null"
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == *"S4D layers"*"--layer"* ]]
}

# --device: the build has CUDA when the tool links libcudart (make with nvcc present, no NO_CUDA)
cuda_build() { ldd "$(command -v ssm-kernel)" 2>/dev/null | grep -q libcudart; }

@test "--device: cpu is the default; cuda not with --backward or --bidirectional; bad values are usage errors" {
    python3 "$MK" make K:f32:3x64:randn u:f32:1x3x64:randn D:f32:3:randn > "$TMP/in"
    ssm-kernel --apply "$TMP/in" > "$TMP/a"
    ssm-kernel --apply --device cpu "$TMP/in" > "$TMP/b"
    cmp "$TMP/a" "$TMP/b"
    run ssm-kernel --apply --device tpu "$TMP/in"
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-kernel: --device: expected cpu or cuda, got 'tpu'" ]
    for flags in "--apply --backward" "--apply --bidirectional" "-L 8 --backward"; do
        run ssm-kernel $flags --device cuda "$TMP/in"
        [ "$status" -eq 2 ]
        [[ "${lines[0]}" == "ssm-kernel: --device cuda: "* ]]
    done
}

@test "--device cuda in a build without CUDA: usage error naming the rebuild" {
    cuda_build && skip "this build has CUDA"
    run ssm-kernel --apply --device cuda < /dev/null
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-kernel: --device cuda: this build has no CUDA support (rebuild with nvcc installed)" ]
}

@test "--device cuda with CUDA built but no usable GPU: one line naming the CUDA error, exit 1" {
    cuda_build || skip "this build has no CUDA"
    nvidia-smi -L > /dev/null 2>&1 && skip "a GPU is present (tests/cuda/tools.sh checks it)"
    python3 "$MK" make K:f32:3x64:randn u:f32:1x3x64:randn > "$TMP/in"
    run ssm-kernel --apply --device cuda "$TMP/in"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "ssm-kernel: --device cuda: "?* ]]
}
