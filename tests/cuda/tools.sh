#!/bin/sh
# tests/cuda/tools.sh [BIN] - the tools with --device cuda against the CPU on the same inputs
# (ssm-tensor diff --rtol 1e-4 --atol 1e-5): ssm-scan forward and --backward on a few shapes
# (odd sizes, both layouts, selective / grouped / time-invariant B and C, every optional input),
# ssm-kernel --apply (the FFT convolution) and ssm-kernel -L (K on the GPU: Vandermonde for the
# diag forms, complex and real, any method; Cauchy for dplr).
# Needs a GPU; prints one line per check and exits 1 if any differs.  Run from the repository root.
# The test is elementwise against the CPU's float32, so sums of many terms (dA over batch x L,
# long-L outputs near zero) can exceed it by summation order alone: read a FAIL's worst element.
set -u
GPU=${GPU:-cuda}   # GPU=cpu checks this script itself on a machine without a GPU
BIN=${1:-bin}
PATH="$BIN:$PATH"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
status=0
seed=1
# add NAME SHAPE [rand options]: append a random tensor to $T/in.ssm
add() {
    seed=$((seed + 1))
    n=$1 s=$2; shift 2
    ssm-tensor rand --append="$T/in.ssm" --name "$n" --shape "$s" --seed $seed "$@" -o "$T/next.ssm" &&
        mv "$T/next.ssm" "$T/in.ssm"
}
# check NAME MODES TOOL FLAGS...: TOOL on $T/in.ssm, CPU against CUDA, for each of MODES
# (forward, backward)
check() {
    name=$1 modes=$2 tool=$3; shift 3
    for mode in $modes; do
        extra=; [ $mode = backward ] && extra=--backward
        $tool $extra "$@" "$T/in.ssm" > "$T/cpu.ssm" || { echo "FAIL $name $mode: cpu run"; status=1; continue; }
        if ! $tool $extra --device $GPU "$@" "$T/in.ssm" > "$T/gpu.ssm"; then
            echo "FAIL $name $mode: cuda run"; status=1; continue
        fi
        if out=$(ssm-tensor diff --rtol 1e-4 --atol 1e-5 "$T/cpu.ssm" "$T/gpu.ssm" 2>&1); then
            echo "ok   $name $mode"
        else
            echo "FAIL $name $mode:"; echo "$out" | head -n 12; status=1
        fi
    done
}
# case: batch D L N, layout, selective B/C in G groups (0 = time-invariant), every option
scan_case() {
    b=$1 D=$2 L=$3 N=$4 lay=$5 G=$6; shift 6
    rm -f "$T/in.ssm"; : > "$T/in.ssm"
    if [ $lay = bdl ]; then x=$b,$D,$L; else x=$b,$L,$D; fi
    if [ $G = 0 ]; then bc=$D,$N; elif [ $lay = bdl ]; then bc=$b,$G,$N,$L; else bc=$b,$L,$G,$N; fi
    add u $x; add delta $x --dist uniform --low -4 --high 1; add A $D,$N --dist uniform --low -3 --high -0.1
    add B $bc; add C $bc; add D $D; add z $x; add delta_bias $D --dist uniform --low -2 --high 0
    add h0 $b,$D,$N; add dy $x; add dh $b,$D,$N
    check "ssm-scan b$b D$D L$L N$N $lay G$G" "forward backward" ssm-scan --layout $lay --softplus "$@"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -n 1
scan_case 2 5 9 3 bdl 1
scan_case 1 37 1000 16 bld 1
scan_case 3 64 300 1 bdl 0
scan_case 2 96 777 5 bdl 3
# ssm-kernel --apply: H N L batch
kernel_case() {
    ssm-discretize --init s4d-lin -H $1 -N $2 --seed $3 -o "$T/in.ssm"
    add u $4,$1,$3
    check "ssm-kernel --apply H$1 N$2 L$3 b$4" forward ssm-kernel --apply
}
kernel_case 4 16 300 2
kernel_case 7 64 1000 1
# ssm-kernel -L: K alone.  INIT FORM METHOD H N L; dtype f64 input so that the CPU's K is the
# double reference (the GPU's K is float32: rtol 1e-4 against it, atol relative to max |K|)
konly_case() {
    name="ssm-kernel -L $7 --init $1 --form $2 --method $3 H$4 N$5"
    ssm-discretize --init $1 --form $2 --method $3 -H $4 -N $5 --seed $6 --dtype f64 -o "$T/in.ssm" ||
        { echo "FAIL $name: ssm-discretize"; status=1; return; }
    ssm-kernel -L $7 "$T/in.ssm" > "$T/cpu.ssm" || { echo "FAIL $name: cpu run"; status=1; return; }
    if ! ssm-kernel -L $7 --device $GPU "$T/in.ssm" > "$T/gpu.ssm"; then
        echo "FAIL $name: cuda run"; status=1; return
    fi
    rm -rf "$T/kc" "$T/kg"; mkdir -p "$T/kc" "$T/kg"
    ssm-tensor pick K -i "$T/cpu.ssm" | ssm-tensor export --format npy --dir "$T/kc"
    ssm-tensor pick K -i "$T/gpu.ssm" | ssm-tensor export --format npy --dir "$T/kg"
    # normwise ||K_gpu - K_cpu|| / ||K_cpu|| <= 1e-4 (the GPU's K is float32, the CPU's double)
    if out=$(python3 -c "
import numpy as np, sys
a = np.load('$T/kc/K.npy').astype(np.float64); b = np.load('$T/kg/K.npy').astype(np.float64)
e = np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-300)
i = np.unravel_index(np.argmax(abs(b - a)), a.shape)
print('rel err %.2e, worst element %s: cpu %.6g gpu %.6g, max|K| %.3g' % (e, i, a[i], b[i], abs(a).max()))
sys.exit(0 if e <= 1e-4 else 1)" 2>&1); then echo "ok   $name: $out"
    else echo "FAIL $name: $out"; status=1; fi
}
konly_case s4d-lin diag zoh 5 64 1 1000
konly_case s4d-inv diag bilinear 3 16 2 777
konly_case s4d-real diag zoh 4 16 3 300
konly_case mamba diag euler 3 8 4 257
konly_case random diag zoh 2 6 5 100
konly_case legs dplr bilinear 4 64 6 1000
konly_case legt dplr bilinear 2 32 7 4097
konly_case fout dplr bilinear 3 16 8 513
konly_case legs dense zoh 2 8 9 100
[ "${QUICK:-0}" = 1 ] && exit $status
kernel_case 256 64 8192 4
scan_case 2 256 4096 16 bld 1
# timing of the whole tool (stream I/O included) at a Mamba-like shape, forward
rm -f "$T/in.ssm"; : > "$T/in.ssm"
add u 8,1536,2048; add delta 8,1536,2048 --dist uniform --low -4 --high 1; add A 1536,16 --dist uniform --low -3 --high -0.1
add B 8,1,16,2048; add C 8,1,16,2048; add z 8,1536,2048; add delta_bias 1536
for dev in cpu $GPU; do
    s=$(date +%s.%N); ssm-scan --softplus --level 0 --device $dev "$T/in.ssm" > "$T/$dev.ssm"; e=$(date +%s.%N)
    echo "time ssm-scan --device $dev b8 D1536 L2048 N16 (whole tool): $(awk "BEGIN { printf \"%.3f\", $e - $s }") s"
done
if out=$(ssm-tensor diff --rtol 1e-4 --atol 1e-5 "$T/cpu.ssm" "$T/$GPU.ssm" 2>&1); then
    echo "ok   ssm-scan b8 D1536 L2048 N16 forward"
else
    echo "FAIL ssm-scan b8 D1536 L2048 N16 forward:"; echo "$out" | head -n 12; status=1
fi
exit $status
