#!/bin/sh
# cudakern device run: prebuilt binaries (built on the workstation with nvcc 13.0): the kernel
# checks and timings (test_kernel_cuda), the tools' --device cuda against the CPU (tools.sh), then
# compute-sanitizer memcheck on the checks.  Logs to $OUT.
set -u
export PATH=$PATH:/usr/local/cuda/bin
R=${OUT:?}
cd "$(dirname "$0")"
P=/tmp/ck-prefix; mkdir -p $P
for f in debs/*.deb; do dpkg -x $f $P; done
export LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread:$PWD/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > $R/gpu.txt 2>&1; cat $R/gpu.txt
start=$(date +%s)
SEED=${SEED:-$(date +%s)}
timeout 200 bin/test_kernel_cuda $SEED all > $R/kernel.log 2>&1; echo "test_kernel_cuda rc $? after $(( $(date +%s) - start )) s" >> $R/kernel.log
grep -E '^FAIL|checks,|^\||^device|rc ' $R/kernel.log
grep -c '^ok' $R/kernel.log | sed 's/^/ok checks: /'
PATH=$PWD/bin:$PATH QUICK=1 timeout 150 sh tests/cuda/tools.sh bin > $R/tools.log 2>&1; echo "tools.sh rc $? after $(( $(date +%s) - start )) s" >> $R/tools.log
grep -E 'FAIL|ssm-kernel|rc ' $R/tools.log | cut -c1-200
if [ "${SANITIZE:-1}" = 1 ] && command -v compute-sanitizer > /dev/null; then
  timeout 120 compute-sanitizer --tool memcheck --print-limit 5 bin/test_kernel_cuda $SEED check > $R/memcheck.log 2>&1
  echo "memcheck rc $?" >> $R/memcheck.log
  grep -E 'ERROR SUMMARY|rc |^FAIL|checks,' $R/memcheck.log
fi
echo "total $(( $(date +%s) - start )) s"
