#!/usr/bin/env bats
# ssm-scan: the tool against reference tensors from PyTorch autograd (tests/ref/selective_scan_ref.py,
# generated here, at test time), chunked scans through h0 / h, packed sequences, and bad input.

setup() {
    T="$BATS_TEST_TMPDIR"
    REF="$BATS_TEST_DIRNAME/../ref/selective_scan_ref.py"
    # Debian's python3 (python3-torch, python3-numpy), even when another python3 comes first
    PY=python3
    [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
    # a well-formed small input: batch 2, D 5, L 9, N 3, layout bdl
    GOOD="u:f32:2,5,9 delta:f32:2,5,9 A:f32:5,3:neg B:f32:2,3,9 C:f32:2,3,9 D:f32:5"
}

# reference_case CASE: forward and backward of ssm-scan against PyTorch autograd
reference_case() {
    mkdir -p "$T/$1"
    flags=$($PY "$REF" make "$1" "$T/$1")
    ssm-scan $flags "$T/$1/in.ssm" > "$T/$1/fwd.ssm"
    ssm-scan --backward $flags "$T/$1/in.ssm" > "$T/$1/bwd.ssm"
    run $PY "$REF" check "$T/$1/want.ssm" "$T/$1/fwd.ssm" "$T/$1/bwd.ssm"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "--help and --version" {
    run ssm-scan --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"--layout bdl|bld"* ]]
    run ssm-scan --version
    [ "$status" -eq 0 ]
}

@test "PyTorch reference: the Mamba block's call (bld, selective B/C, z, D, delta_bias, softplus, h0, dh)" {
    reference_case mamba
}
@test "PyTorch reference: official layout bdl, 2 groups of B/C" { reference_case official; }
@test "PyTorch reference: nothing optional" { reference_case plain; }
@test "PyTorch reference: time-invariant B, C" { reference_case invariant; }
@test "PyTorch reference: complex A, B, C (y = 2 Re)" { reference_case complex; }
@test "PyTorch reference: complex, selective grouped B/C, packed sequences" { reference_case complex-selective; }
@test "PyTorch reference: packed sequences (seq_idx)" { reference_case packed; }

@test "--reference (double) agrees with the float32 kernels" {
    $PY "$REF" write "$T/in.ssm" $GOOD z:f32:2,5,9 delta_bias:f32:5 h0:f32:2,5,3 dy:f32:2,5,9
    ssm-scan --softplus "$T/in.ssm" > "$T/fast.ssm"
    ssm-scan --softplus --reference "$T/in.ssm" > "$T/ref.ssm"
    run $PY "$REF" check "$T/ref.ssm" "$T/fast.ssm"
    echo "$output"
    [ "$status" -eq 0 ]
    ssm-scan --softplus --backward "$T/in.ssm" > "$T/fastb.ssm"
    ssm-scan --softplus --backward --reference --chunk 2 "$T/in.ssm" > "$T/refb.ssm"
    run $PY "$REF" check "$T/refb.ssm" "$T/fastb.ssm"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "scanning two halves with the state handed over (h -> h0) equals one scan" {
    $PY "$REF" write "$T/a.ssm" u:f32:1,4,6 delta:f32:1,4,6 A:f32:4,3:neg B:f32:1,3,6 C:f32:1,3,6 \
        u2:f32:1,4,5 delta2:f32:1,4,5 B2:f32:1,3,5 C2:f32:1,3,5
    # first half: u, delta, B, C; second half: u2... renamed, with h0 = the first half's h
    ssm-scan --softplus "$T/a.ssm" > "$T/first.ssm"
    REFDIR="$BATS_TEST_DIRNAME/../ref" $PY - "$T" <<'EOF'
import os, sys
import numpy as np
sys.path.insert(0, os.environ['REFDIR'])
import ssm_stream as s
T = sys.argv[1]
rd = lambda p: {n: a for n, _, _, a in s.frames(open(p, 'rb'))}
a, f = rd(T + '/a.ssm'), rd(T + '/first.ssm')
w = lambda name, arr: s.frame(name, 1, np.ascontiguousarray(arr).astype('<f4'))
with open(T + '/second.ssm', 'wb') as o:
    for n in ('u', 'delta', 'B', 'C'): o.write(w(n, a[n + '2']))
    o.write(w('A', a['A'])); o.write(w('h0', f['h']))
with open(T + '/whole.ssm', 'wb') as o:
    for n in ('u', 'delta', 'B', 'C'): o.write(w(n, np.concatenate([a[n], a[n + '2']], axis=2)))
    o.write(w('A', a['A']))
EOF
    ssm-scan --softplus "$T/second.ssm" > "$T/second-out.ssm"
    ssm-scan --softplus "$T/whole.ssm" > "$T/whole-out.ssm"
    REFDIR="$BATS_TEST_DIRNAME/../ref" run $PY - "$T" <<'EOF'
import os, sys
import numpy as np
sys.path.insert(0, os.environ['REFDIR'])
import ssm_stream as s
T = sys.argv[1]
rd = lambda p: {n: a for n, _, _, a in s.frames(open(p, 'rb'))}
f, g, w = rd(T + '/first.ssm'), rd(T + '/second-out.ssm'), rd(T + '/whole-out.ssm')
y = np.concatenate([f['y'], g['y']], axis=2)
e = np.abs(y - w['y']).max() + np.abs(g['h'] - w['h']).max()
print('max difference', e)
sys.exit(0 if e < 1e-6 else 1)
EOF
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "lengths gives the same result as the equivalent seq_idx" {
    $PY "$REF" write "$T/in.ssm" u:f32:1,9,4 delta:f32:1,9,4 A:f32:4,2:neg B:f32:1,9,2 C:f32:1,9,2
    REFDIR="$BATS_TEST_DIRNAME/../ref" $PY - "$T" <<'EOF'
import os, sys
import numpy as np
sys.path.insert(0, os.environ['REFDIR'])
import ssm_stream as s
T = sys.argv[1]
open(T + '/seq.ssm', 'wb').write(s.frame('seq_idx', 5, np.array([[0, 0, 0, 1, 1, 2, 2, 2, 2]], '<i4')))
open(T + '/len.ssm', 'wb').write(s.frame('lengths', 5, np.array([[3, 2]], '<i4')))
EOF
    ssm-scan --layout bld "$T/in.ssm" "$T/seq.ssm" > "$T/a.ssm"
    ssm-scan --layout bld "$T/in.ssm" "$T/len.ssm" > "$T/b.ssm"
    ssm-scan --layout bld "$T/in.ssm" > "$T/c.ssm"
    run $PY "$REF" check --only y,h "$T/a.ssm" "$T/b.ssm"
    [ "$status" -eq 0 ]
    # and the resets matter
    run $PY "$REF" check --only y,h "$T/a.ssm" "$T/c.ssm"
    [ "$status" -eq 1 ]
}

@test "other tensors pass through, inputs are written back, y carries its layout" {
    $PY "$REF" write "$T/in.ssm" other:f32:3 $GOOD
    ssm-scan "$T/in.ssm" > "$T/out.ssm"
    run ssm-tensor info "$T/out.ssm"
    [ "$status" -eq 0 ]
    for n in other u delta A B C D y h; do echo "$output" | grep -q "^$n "; done
    echo "$output" | grep -q "layout=bdl"
    echo "$output" | grep -q "^h  *f32 \[2, 5, 3\]"
}

@test "a missing tensor is named" {
    $PY "$REF" write "$T/in.ssm" u:f32:2,5,9 delta:f32:2,5,9 A:f32:5,3:neg B:f32:2,3,9
    run ssm-scan "$T/in.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-scan: missing tensor 'C'"* ]]
    [ ! -e "$T/out.ssm" ]
    $PY "$REF" write "$T/in2.ssm" $GOOD
    run ssm-scan --backward "$T/in2.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-scan: missing tensor 'dy'"* ]]
}

@test "mis-shaped tensors: the error names the tensor, the expected and the actual shape" {
    $PY "$REF" write "$T/a.ssm" u:f32:2,5,9 delta:f32:2,5,8 A:f32:5,3 B:f32:2,3,9 C:f32:2,3,9
    run ssm-scan "$T/a.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'delta': expected shape [2, 5, 9], got [2, 5, 8]" ]
    $PY "$REF" write "$T/b.ssm" u:f32:2,5,9 delta:f32:2,5,9 A:f32:4,3 B:f32:2,3,9 C:f32:2,3,9
    run ssm-scan "$T/b.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'A': expected shape [5, N], got [4, 3]" ]
    $PY "$REF" write "$T/c.ssm" u:f32:2,5,9 delta:f32:2,5,9 A:f32:5,3 B:f32:2,9,3 C:f32:2,3,9
    run ssm-scan "$T/c.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-scan: tensor 'B': expected shape [D, N] = [5, 3], [2, 3, 9] or [batch, G, N, L], got [2, 9, 3]" ]]
    # the same B is right in layout bld (u, delta then (batch, L, D))
    $PY "$REF" write "$T/d.ssm" u:f32:2,9,5 delta:f32:2,9,5 A:f32:5,3:neg B:f32:2,9,3 C:f32:2,9,3
    run ssm-scan --layout bld "$T/d.ssm" -o "$T/out.ssm"
    [ "$status" -eq 0 ]
    $PY "$REF" write "$T/e.ssm" $GOOD h0:f32:2,5,4
    run ssm-scan "$T/e.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'h0': expected shape [2, 5, 3], got [2, 5, 4]" ]
    $PY "$REF" write "$T/f.ssm" u:f32:2,6,9 delta:f32:2,6,9 A:f32:6,3 B:f32:2,4,3,9 C:f32:2,4,3,9
    run ssm-scan "$T/f.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == *"tensor 'B': 4 groups do not divide D = 6 channels"* ]]
    $PY "$REF" write "$T/g.ssm" $GOOD seq_idx:i32:2,8
    run ssm-scan "$T/g.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'seq_idx': expected shape [2, 9], got [2, 8]" ]
}

@test "dtype mismatches are refused" {
    $PY "$REF" write "$T/a.ssm" u:f32:2,5,9 delta:f64:2,5,9 A:f32:5,3 B:f32:2,3,9 C:f32:2,3,9
    run ssm-scan "$T/a.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'delta': dtype f64 does not match u's f32" ]
    $PY "$REF" write "$T/b.ssm" u:i32:2,5,9 delta:f32:2,5,9 A:f32:5,3 B:f32:2,3,9 C:f32:2,3,9
    run ssm-scan "$T/b.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == "ssm-scan: tensor 'u': expected a real float dtype"*", got i32" ]]
    $PY "$REF" write "$T/c.ssm" u:f32:2,5,9 delta:f32:2,5,9 A:f32:5,3 B:c64:2,3,9 C:f32:2,3,9
    run ssm-scan "$T/c.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'B': complex (c64) but A is real" ]
    $PY "$REF" write "$T/d.ssm" $GOOD seq_idx:f32:2,9
    run ssm-scan "$T/d.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == *"tensor 'seq_idx': expected an integer dtype"* ]]
    # parameters may differ in precision from the activations
    $PY "$REF" write "$T/e.ssm" u:f32:2,5,9 delta:f32:2,5,9 A:f64:5,3:neg B:f32:2,3,9 C:f32:2,3,9 D:f64:5
    run ssm-scan "$T/e.ssm" -o "$T/out.ssm"
    [ "$status" -eq 0 ]
}

@test "NaN in an input is reported, not propagated" {
    $PY "$REF" write "$T/a.ssm" u:f32:2,5,9:nan delta:f32:2,5,9 A:f32:5,3 B:f32:2,3,9 C:f32:2,3,9
    run ssm-scan "$T/a.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'u': 1 NaN/Inf values in the input" ]
    [ ! -e "$T/out.ssm" ]
    $PY "$REF" write "$T/b.ssm" $GOOD dy:f32:2,5,9:nan
    run ssm-scan --backward "$T/b.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-scan: tensor 'dy': 1 NaN/Inf values in the input" ]
    # an exploding state (A > 0) is an error, not a stream of Inf
    $PY "$REF" write "$T/c.ssm" u:f32:1,2,3000 delta:f32:1,2,3000:pos A:f32:2,3:pos B:f32:1,3,3000:pos C:f32:1,3,3000
    run ssm-scan "$T/c.ssm" -o "$T/out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == *"non-finite values in the result"* ]]
}

@test "usage errors exit 2" {
    run ssm-scan --layout dlb
    [ "$status" -eq 2 ]
    [[ "$output" == "ssm-scan: --layout: expected bdl or bld, got 'dlb'"* ]]
    run ssm-scan --chunk 0
    [ "$status" -eq 2 ]
    run ssm-scan --frobnicate
    [ "$status" -eq 2 ]
}

@test "a pipeline: forward, then backward on its output with dy added; y and h pass the backward" {
    $PY "$REF" write "$T/in.ssm" $GOOD z:f32:2,5,9
    $PY "$REF" write "$T/dy.ssm" dy:f32:2,5,9
    ssm-scan --softplus "$T/in.ssm" > "$T/fwd.ssm"
    ssm-tensor cat "$T/fwd.ssm" "$T/dy.ssm" | ssm-scan --softplus --backward > "$T/bwd.ssm"
    run ssm-tensor info "$T/bwd.ssm"
    [ "$status" -eq 0 ]
    for n in y h u delta A B C D z dy du ddelta dA dB dC dD dz dh0; do echo "$output" | grep -q "^$n "; done
    ! echo "$output" | grep -q "^ddelta_bias "
    # the same gradients as from the inputs directly
    ssm-tensor cat "$T/in.ssm" "$T/dy.ssm" | ssm-scan --softplus --backward > "$T/direct.ssm"
    run $PY "$REF" check --only du,ddelta,dA,dB,dC,dD,dz,dh0 "$T/direct.ssm" "$T/bwd.ssm"
    [ "$status" -eq 0 ]
}

# --device: the build has CUDA when the tool links libcudart (make with nvcc present, no NO_CUDA)
cuda_build() { ldd "$(command -v ssm-scan)" 2>/dev/null | grep -q libcudart; }

@test "--device cpu is the default; an unknown device is a usage error" {
    $PY "$REF" write "$T/in.ssm" $GOOD
    ssm-scan "$T/in.ssm" > "$T/a.ssm"
    ssm-scan --device cpu "$T/in.ssm" > "$T/b.ssm"
    cmp "$T/a.ssm" "$T/b.ssm"
    run ssm-scan --device gpu
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-scan: --device: expected cpu or cuda, got 'gpu'" ]
    run ssm-scan --device cuda --reference
    [ "$status" -eq 2 ]
    cuda_build || return 0   # without CUDA, --device cuda itself is the error
    [[ "${lines[0]}" == *"--reference"*"--device cuda"* ]]
}

@test "--device cuda in a build without CUDA: usage error naming the rebuild" {
    cuda_build && skip "this build has CUDA"
    run ssm-scan --device cuda < /dev/null
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "ssm-scan: --device cuda: this build has no CUDA support (rebuild with nvcc installed)" ]
}

@test "--device cuda with CUDA built but no usable GPU: one line naming the CUDA error, exit 1" {
    cuda_build || skip "this build has no CUDA"
    nvidia-smi -L > /dev/null 2>&1 && skip "a GPU is present (tests/cuda/tools.sh checks it)"
    $PY "$REF" write "$T/in.ssm" $GOOD dy:f32:2,5,9
    for mode in "" --backward; do
        run ssm-scan $mode --device cuda "$T/in.ssm"
        [ "$status" -eq 1 ]
        [ "${#lines[@]}" -eq 1 ]
        [[ "$output" == "ssm-scan: --device cuda: "?* ]]
    done
}
