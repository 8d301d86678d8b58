#!/bin/sh
# demo.sh BIN - the main job of `make demo`: a gallery of SSM convolution kernels, each made by a
# pipeline of the tools
#
#     ssm-discretize --init INIT ... | ssm-kernel -L ... | ssm-viz ... -o demo-out/PICTURE
#
# for the HiPPO matrices LegS, LegT, LagT, FouT (dense) and the diagonal S4D-Lin and S4D-Inv, at a
# few step sizes dt.  Writes PNGs and an index.html into demo-out/ and prints what it made.
set -eu
bin=$1
out=demo-out
mkdir -p "$out"
rm -f "$out"/*.png "$out"/*.svg "$out"/index.html
PATH="$bin:$PATH"
export PATH

inits="legs legt lagt fout s4d-lin s4d-inv"
steps="0.001 0.01 0.1"
N=64
L=2048
made=""

pretty() {
    case "$1" in
    legs) echo "HiPPO-LegS" ;; legt) echo "HiPPO-LegT" ;; lagt) echo "HiPPO-LagT" ;; fout) echo "HiPPO-FouT" ;;
    s4d-lin) echo "S4D-Lin" ;; s4d-inv) echo "S4D-Inv" ;; *) echo "$1" ;;
    esac
}

note() { made="$made $1"; printf '  %-34s %s\n' "$1" "$2"; }

# kernel_stream INIT H DT-OPTIONS: the kernel K (H, L) and its context on stdout
kernel_stream() {
    init=$1; h=$2; shift 2
    # shellcheck disable=SC2086
    ssm-discretize --init "$init" -N $N -H "$h" "$@" | ssm-kernel -L $L
}

echo "demo: kernels K (channels x L=$L) of state size N=$N, from $(pretty legs) to $(pretty s4d-inv), into $out/"
for init in $inits; do
    name=$(pretty "$init")
    # one picture per step size: four channels (different C) as lines
    for dt in $steps; do
        f="K_${init}_dt${dt}.png"
        kernel_stream "$init" 4 --dt "$dt" | ssm-viz -q --lines --title "$name kernel, dt = $dt (4 channels)" -o "$out/$f"
        note "$f" "$name, dt=$dt, lines"
    done
    # all step sizes at once: 32 channels, dt log-uniform in [0.001, 0.1], as a heatmap
    f="K_${init}_heatmap.png"
    kernel_stream "$init" 32 --dt-min 0.001 --dt-max 0.1 |
        ssm-viz -q --normalize --title "$name kernels, 32 channels, dt log-uniform in [0.001, 0.1]" -o "$out/$f"
    note "$f" "$name, 32 channels, heatmap (each row / its max)"
done
# the state matrices themselves, as images
for init in legs legt lagt fout; do
    f="A_${init}.png"
    ssm-discretize --init "$init" -N 32 --dt 0.01 |
        ssm-viz -q --tensor A --reshape 32x32 --size 420x360 --title "$(pretty "$init") A (N = 32)" -o "$out/$f"
    note "$f" "$(pretty "$init") state matrix A"
done
# one SVG, to show the vector output
f="K_legs_dt0.01.svg"
kernel_stream legs 4 --dt 0.01 | ssm-viz -q --lines --title "$(pretty legs) kernel, dt = 0.01" -o "$out/$f"
note "$f" "the same as SVG"

# an index page
{
    echo "<!doctype html><meta charset=utf-8><title>ssm demo: kernels</title>"
    echo "<h1>SSM convolution kernels</h1>"
    echo "<p>Each kernel: <code>ssm-discretize --init INIT -N $N ... | ssm-kernel -L $L | ssm-viz ...</code>"
    echo "(see examples/demo.sh)</p>"
    for f in $made; do echo "<figure><img src=\"$f\" width=640><figcaption>$f</figcaption></figure>"; done
} > "$out/index.html"
echo "demo: made $(echo $made | wc -w) pictures and $out/index.html"
