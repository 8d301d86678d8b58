#!/bin/sh
# demo.sh BIN - the main job of `make demo`: a small pipeline through the tools.
set -eu
bin=$1
out=demo-out
mkdir -p "$out"
echo "demo: streams through ssm-tensor"
"$bin/ssm-tensor" cat < /dev/null > "$out/empty.ssm"
"$bin/ssm-tensor" info "$out/empty.ssm"
