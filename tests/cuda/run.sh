#!/bin/sh
# tests/cuda/run.sh [check|bench|all] - builds the CUDA tests with nvcc alone (no libssm, no
# fftw/openblas), checks every kernel against the double CPU oracle on fresh random inputs, then
# times the issue's shapes.  Logs go to $OUT (or ./cuda-out).  Run from the repository root.
# Modes: all (checks, then timings), check (small + large shapes), small, large, bench, build.
# Options: PREBUILT=1 (use build/cuda/test_scan_cuda as built here by `run.sh build` with the same
# nvcc), KERNEL=0 (skip the S4D kernel / convolution tests), SANITIZE=1 (compute-sanitizer on the
# small checks), TORCH=0, NCU=1, NCU_BWD=1, MB3=1.
set -u
mode=${1:-all}
out=${OUT:-cuda-out}; mkdir -p "$out"
bld=build/cuda; mkdir -p "$bld"
NVCC=${NVCC:-nvcc}
NVFLAGS="-O3 -lineinfo -gencode=arch=compute_90,code=sm_90 -Ikernels -Ilibcommon -Itests/cuda"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
status=0
echo "== build"
if [ "${PREBUILT:-0}" = 1 ] && [ -x $bld/test_scan_cuda ]; then   # built elsewhere with the same nvcc (run.sh build)
    echo "prebuilt $bld/test_scan_cuda"; cp $bld/build.log "$out/build.log" 2>/dev/null
else
$NVCC $NVFLAGS -Xptxas -v -o $bld/test_scan_cuda tests/cuda/test_scan_cuda.cu kernels/selective_scan_cuda.cu \
    tests/cuda/scan_ref.c > "$out/build.log" 2>&1 || { cat "$out/build.log" | grep -v ptxas | tail -30; exit 1; }
cp "$out/build.log" $bld/build.log
fi
[ "$mode" = build ] && exit 0
if [ "${MB3:-0}" = 1 ]; then   # variant: fast forward kernel compiled for 3 blocks/SM (168 registers)
    $NVCC $NVFLAGS -DSMEM_MINB=3 -o $bld/test_scan_cuda_mb3 tests/cuda/test_scan_cuda.cu kernels/selective_scan_cuda.cu \
        tests/cuda/scan_ref.c > /dev/null 2>&1 || echo "mb3 build failed"
fi
grep -E 'ptxas info    : Used|spill' "$out/build.log" | paste - - | grep smem | sed 's/ptxas info    ://g' > "$out/regs.txt"
[ "${KERNEL:-1}" = 1 ] && { $NVCC $NVFLAGS -o $bld/test_kernel_cuda tests/cuda/test_kernel_cuda.cu kernels/ssm_kernel_cuda.cu \
    kernels/selective_scan_cuda.cu -lcufft > "$out/build_kernel.log" 2>&1 || { tail -20 "$out/build_kernel.log"; status=1; }; }
echo "== S4D kernel and gradient, Vandermonde, FFT convolution and backward, Cauchy (DPLR)"
[ "${KERNEL:-1}" = 1 ] && [ -x $bld/test_kernel_cuda ] && { timeout 200 $bld/test_kernel_cuda $(date +%s) all > "$out/kernel.log" 2>&1 || status=$?
    grep -E '^FAIL|checks,|^\||^device' "$out/kernel.log"; }
echo "== selective scan: checks and timings"
timeout ${CHECK_TIMEOUT:-300} $bld/test_scan_cuda "$mode" > "$out/scan.log" 2>&1 || status=$?
[ $status = 124 ] && { echo "TIMEOUT; last lines:"; tail -n 5 "$out/scan.log"; }
grep -E '^FAIL' "$out/scan.log" | head -40
grep -c '^ok' "$out/scan.log" | sed 's/^/ok checks: /'
sed -n '/^device/,$p' "$out/scan.log"
tail -n 1 "$out/scan.log"
if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer > /dev/null; then
    echo "== compute-sanitizer memcheck, small checks"
    compute-sanitizer --tool memcheck --print-limit 5 $bld/test_scan_cuda small > "$out/memcheck.log" 2>&1
    grep -E 'ERROR SUMMARY|checks,' "$out/memcheck.log"
fi
if [ "$mode" != check ] && [ "${MB3:-0}" = 1 ]; then
    echo "== variant: fast kernel compiled for 3 blocks/SM (168 registers)"
    $bld/test_scan_cuda_mb3 bench > "$out/scan_mb3.log" 2>&1
    grep -E '^(f32|bf16) ' "$out/scan_mb3.log"
fi
if [ "$mode" != check ] && [ "${TORCH:-1}" = 1 ]; then
    echo "== PyTorch autograd of the plain scan (loop over L), same GPU"
    PYTHONUNBUFFERED=1 timeout 240 python3 tests/cuda/torch_baseline.py 8 1536 2048 16 f32 8 1536 2048 16 bf16 \
        > "$out/torch.log" 2>&1; tail -n 4 "$out/torch.log"
fi
if [ "${NCU_BWD:-0}" = 1 ] && command -v ncu > /dev/null; then
    echo "== ncu: backward kernels at b8 D1536 L2048 f32 (durations)"
    ncu --kernel-name 'regex:scan_|sum_rows' --section SpeedOfLight --section Occupancy --section WarpStateStats \
        --section LaunchStats $bld/test_scan_cuda profile_bwd > "$out/ncu_bwd.txt" 2>&1
    grep -E '^  [a-z_]+.*(scan_|sum_rows)|^  void|Duration|Achieved Occupancy|Compute \(SM\) Th|Memory Throughput|Registers Per|Warp Cycles Per Issued|Stall' "$out/ncu_bwd.txt" | sed 's/(ScanArgs).*//' | head -80
fi
if [ "$mode" = all ] && [ "${NCU:-0}" = 1 ] && command -v ncu > /dev/null; then
    echo "== ncu: forward kernels at b8 D1536 L2048 (f32 then bf16, chunk 512)"
    ncu --kernel-name regex:scan_fwd --section SpeedOfLight --section Occupancy --section WarpStateStats \
        --section ComputeWorkloadAnalysis --section InstructionStats --section LaunchStats \
        $bld/test_scan_cuda profile > "$out/ncu.txt" 2>&1
    grep -E '^  scan_|Duration|Achieved Occupancy|Registers Per|Issue Slots Busy|Warp Cycles Per Issued|Executed Ipc A|Theoretical Occ|Memory Throughput|Compute \(SM\) Th' "$out/ncu.txt" | head -60
    for k in scan_fwd_smem_kernelIfLi16ELb0ELi3E scan_fwd_smem_kernelIfLi16ELb0ELi1E; do
        cuobjdump -sass -fun "_Z20${k}Ev8ScanArgs" $bld/test_scan_cuda > "$out/sass_$k.txt" 2>&1
        printf '%s: %s SASS lines, MUFU %s, LDS %s, STL %s, LDL %s\n' $k $(wc -l < "$out/sass_$k.txt") \
            $(grep -c MUFU "$out/sass_$k.txt") $(grep -c 'LDS' "$out/sass_$k.txt") $(grep -c STL "$out/sass_$k.txt") $(grep -c LDL "$out/sass_$k.txt")
    done
fi
exit $status
