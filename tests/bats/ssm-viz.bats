#!/usr/bin/env bats
# ssm-viz: output files are valid pictures of the documented size, colours follow the data, NaN is
# drawn and counted, bad input gives one line and exit 1 or 2.  Tensors are made with
# tests/ref/ssm_stream.py (numpy); PNGs are decoded with Pillow (python3-pil), SVGs parsed with
# xml.etree.

setup() {
    PY=python3
    [ -x /usr/bin/python3 ] && PY=/usr/bin/python3   # Debian's numpy/PIL, not a pyenv shim's
    export PYTHONPATH="$BATS_TEST_DIRNAME/../ref${PYTHONPATH:+:$PYTHONPATH}"
    T=$BATS_TEST_TMPDIR
}

# make_stream FILE PYTHON-EXPR-DICT: writes {name: array} as a stream
make_stream() {
    $PY - "$1" "$2" <<'EOF'
import sys, numpy as np, ssm_stream
tensors = eval(sys.argv[2], {"np": np})
with open(sys.argv[1], "wb") as f:
    for name, a in tensors.items():
        ssm_stream.write(f, name, a, {"kind": "test"})
EOF
}

# png_info FILE: "WIDTH HEIGHT" after a full decode
png_info() {
    $PY -c 'import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.load(); print(im.format, *im.size)' "$1"
}

@test "ssm-viz: --help and --version" {
    run ssm-viz --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"--reshape HxW"* ]]
    run ssm-viz --version
    [ "$status" -eq 0 ]
    [[ "$output" == "ssm-viz (ssm toolkit) "* ]]
}

@test "ssm-viz: heatmap PNG decodes with the default and the requested size" {
    make_stream "$T/k.ssm" '{"K": np.random.randn(8, 3001).astype(np.float32)}'
    run ssm-viz -o "$T/k.png" "$T/k.ssm"
    [ "$status" -eq 0 ]
    run png_info "$T/k.png"
    [ "$output" = "PNG 800 450" ]
    run ssm-viz --size 640x360 --scale 2 -o "$T/k2.png" "$T/k.ssm"
    [ "$status" -eq 0 ]
    run png_info "$T/k2.png"
    [ "$output" = "PNG 1280 720" ]
    # PNG on stdout when asked
    ssm-viz --size 300x200 -o - "$T/k.ssm" > "$T/k3.png"
    run png_info "$T/k3.png"
    [ "$output" = "PNG 300 200" ]
}

@test "ssm-viz: the PNG header checks out without Pillow (zlib + struct)" {
    make_stream "$T/k.ssm" '{"K": np.random.randn(3, 100)}'
    ssm-viz --size 333x222 -o "$T/k.png" "$T/k.ssm"
    run $PY - "$T/k.png" <<'EOF'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, size = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body), kind
    if kind == b"IHDR": size = struct.unpack(">II", body[:8]); channels = {2: 3, 6: 4}[body[9]]
    if kind == b"IDAT": idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
print(*size, len(raw) == size[1] * (1 + channels * size[0]))
EOF
    [ "$status" -eq 0 ]
    [ "$output" = "333 222 True" ]
}

@test "ssm-viz: SVG parses, with the documented size and real text" {
    make_stream "$T/k.ssm" '{"K": np.random.randn(4, 64)}'
    run ssm-viz --size 500x300 -o "$T/k.svg" "$T/k.ssm"
    [ "$status" -eq 0 ]
    run $PY -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
print(root.tag.split("}")[1], root.get("width"), root.get("height"), len(list(root.iter())) > 20)' "$T/k.svg"
    [ "$status" -eq 0 ]
    [ "$output" = "svg 500pt 300pt True" ]
    # line plots and training curves as SVG too
    make_stream "$T/x.ssm" '{"x": np.sin(np.arange(500) / 20.0)}'
    ssm-viz -o "$T/x.svg" "$T/x.ssm"
    $PY -c 'import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])' "$T/x.svg"
}

@test "ssm-viz: a ramp maps to monotone colours (viridis lightness increases)" {
    make_stream "$T/r.ssm" '{"r": np.linspace(0.0, 1.0, 1000)[None, :].astype(np.float32)}'
    run ssm-viz -v -o "$T/r.png" "$T/r.ssm"
    [ "$status" -eq 0 ]
    [[ "$output" == *"colour map viridis"* ]]
    area=$(echo "$output" | sed -n 's/.*area at x=\([0-9]*\) y=\([0-9]*\) w=\([0-9]*\) h=\([0-9]*\).*/\1 \2 \3 \4/p')
    [ -n "$area" ]
    run $PY - "$T/r.png" $area <<'EOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
x, y, w, h = map(int, sys.argv[2:])
def lstar(c):
    lin = [(v / 255 / 12.92) if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c]
    Y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return 116 * Y ** (1 / 3) - 16 if Y > 216 / 24389 else Y * 24389 / 27
row = [lstar(im.getpixel((x + 1 + i, y + h // 2))) for i in range(w - 2)]
steps = [b - a for a, b in zip(row, row[1:])]
print(min(steps) > -0.5, row[-1] - row[0] > 60, len(set(im.getpixel((x + 1 + i, y + h // 2)) for i in range(w - 2))) > w // 4)
EOF
    [ "$status" -eq 0 ]
    [ "$output" = "True True True" ]
}

@test "ssm-viz: signed data gets the diverging map with zero at the centre" {
    make_stream "$T/s.ssm" '{"K": np.array([[-2.0, 0.0, 1.0]])}'
    run ssm-viz -v -o "$T/s.png" "$T/s.ssm"
    [ "$status" -eq 0 ]
    [[ "$output" == *"colour map diverging, range [-2, 2]"* ]]
}

@test "ssm-viz: NaN pixels are drawn in a distinct colour and counted in a warning" {
    make_stream "$T/n.ssm" '{"x": np.where(np.arange(400) % 97 == 5, np.nan, np.linspace(0, 1, 400)).reshape(2, 200).astype(np.float32)}'
    run ssm-viz -o "$T/n.png" "$T/n.ssm"
    [ "$status" -eq 0 ]
    [ "$output" = "ssm-viz: warning: tensor 'x': 5 NaN/Inf values drawn in magenta" ]
    count_magenta() {
        $PY -c 'import sys; from PIL import Image; im = Image.open(sys.argv[1]).convert("RGB"); print(sum(1 for p in im.getdata() if p == (255, 0, 255)))' "$1"
    }
    run count_magenta "$T/n.png"
    [ "$output" -gt 100 ]
    make_stream "$T/ok.ssm" '{"x": np.linspace(0, 1, 400).reshape(2, 200)}'
    run ssm-viz -o "$T/ok.png" "$T/ok.ssm"
    [ "$output" = "" ]
    run count_magenta "$T/ok.png"
    [ "$output" -eq 0 ]
    # -q silences the warning
    run ssm-viz -q -o "$T/n2.png" "$T/n.ssm"
    [ "$status" -eq 0 ]
    [ "$output" = "" ]
}

@test "ssm-viz: --tensor picks by name, the default is the last tensor" {
    make_stream "$T/m.ssm" '{"a": np.ones(5), "b": np.arange(12.0).reshape(3, 4)}'
    run ssm-viz -v -o "$T/m.png" "$T/m.ssm"
    [[ "$output" == *"heatmap of 3 x 4"* ]]
    run ssm-viz -v --tensor a -o "$T/m.png" "$T/m.ssm"
    [[ "$output" == *"1 line series of 5 points"* ]]
    run ssm-viz -v --channels 1:3 -o "$T/m.png" - < "$T/m.ssm"
    [[ "$output" == *"heatmap of 2 x 4"* ]]
    run ssm-viz -v --lines -o "$T/m.png" "$T/m.ssm"
    [[ "$output" == *"3 line series of 4 points"* ]]
}

@test "ssm-viz: --reshape tiles channels as images; 4-D tensors need it" {
    make_stream "$T/i.ssm" '{"x": np.random.randn(6, 1, 8, 8).astype(np.float32)}'
    run ssm-viz -o "$T/i.png" "$T/i.ssm"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "ssm-viz: tensor 'x' is 4-D [6, 1, 8, 8]: draw it as images with --reshape HxW"* ]]
    [ ! -e "$T/i.png" ]
    run ssm-viz -v --reshape 8x8 -o "$T/i.png" "$T/i.ssm"
    [ "$status" -eq 0 ]
    [[ "$output" == *"6 images of 8x8"* ]]
    run png_info "$T/i.png"
    [ "$output" = "PNG 800 450" ]
    run ssm-viz --reshape 5x5 -o "$T/i.png" "$T/i.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == *"do not hold 5x5 = 25 values per image"* ]]
}

@test "ssm-viz: complex tensors by part" {
    make_stream "$T/c.ssm" '{"A": (np.random.randn(4, 16) + 1j * np.random.randn(4, 16)).astype(np.complex64)}'
    run ssm-viz -v --complex phase -o "$T/c.png" "$T/c.ssm"
    [ "$status" -eq 0 ]
    [[ "$output" == *"colour map phase, range [-3.14159, 3.14159]"* ]]
    run ssm-viz -v -o "$T/c.png" "$T/c.ssm"
    [[ "$output" == *"colour map viridis"* ]]
    run ssm-viz --complex bogus -o "$T/c.png" "$T/c.ssm"
    [ "$status" -eq 2 ]
}

@test "ssm-viz: training curves from a TSV log and from JSON lines" {
    printf 'step\tsplit\tloss\taccuracy\tlr\ttokens_per_s\ttime_s\n' > "$T/log.tsv"
    for s in 0 10 20 30 40 50; do
        printf '%d\ttrain\t%s\t\t0.001\t1000\t%d\n' $s "$(echo "2.5 / ($s + 1)" | bc -l)" $s >> "$T/log.tsv"
    done
    printf '50\teval\t0.2\t0.75\t0.001\t\t51\n' >> "$T/log.tsv"
    run ssm-viz -v --log -o "$T/log.png" "$T/log.tsv"
    [ "$status" -eq 0 ]
    [[ "$output" == *"training log: 7 records"* ]]
    run png_info "$T/log.png"
    [ "$output" = "PNG 800 450" ]
    printf '{"step": 1, "split": "train", "loss": 1.5, "accuracy": null}\n{"step": 2, "split": "eval", "loss": 1.2, "accuracy": 0.5}\n' |
        ssm-viz --size 600x300 -o "$T/j.png"
    run png_info "$T/j.png"
    [ "$output" = "PNG 600 300" ]
    printf 'step\tsplit\tloss\n1\ttrain\tnope\n' > "$T/bad.tsv"
    run ssm-viz -o "$T/bad.png" "$T/bad.tsv"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-viz: $T/bad.tsv: line 2: loss: expected a number, got 'nope'" ]
}

@test "ssm-viz: bad input gives one line and exit 1 or 2, and no output file" {
    make_stream "$T/k.ssm" '{"K": np.ones((2, 8)), "E": np.zeros((3, 0))}'
    run ssm-viz --tensor nope -o "$T/o.png" "$T/k.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-viz: $T/k.ssm: no tensor 'nope' (the stream has: K, E)" ]
    run ssm-viz --tensor E -o "$T/o.png" "$T/k.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-viz: tensor 'E' [3, 0] is empty: nothing to draw" ]
    run ssm-viz -o "$T/o.png" < /dev/null
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-viz: stdin: empty stream: no tensor to draw" ]
    run ssm-viz -o "$T/no/such/dir/o.png" "$T/k.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-viz: $T/no/such/dir/o.png: cannot open for writing: No such file or directory" ]
    run ssm-viz -o "$T/o.jpg" "$T/k.ssm"
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == "ssm-viz: -o $T/o.jpg: cannot tell the image format"* ]]
    run ssm-viz --range 3:1 -o "$T/o.png" "$T/k.ssm"
    [ "$status" -eq 2 ]
    run ssm-viz -o "$T/o.png" "$T/missing.ssm"
    [ "$status" -eq 1 ]
    [ "$output" = "ssm-viz: $T/missing.ssm: No such file or directory" ]
    # a truncated stream is an error, not a picture
    head -c 60 "$T/k.ssm" > "$T/cut.ssm"
    run ssm-viz -o "$T/o.png" "$T/cut.ssm"
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [ ! -e "$T/o.png" ]
    [ -z "$(ls "$T" | grep '\.tmp\.')" ]
}

@test "ssm-viz: --columns crops lags, --normalize scales each row" {
    make_stream "$T/k.ssm" '{"K": np.vstack([np.linspace(-1, 1, 100), 1e-3 * np.linspace(0, 1, 100)])}'
    run ssm-viz -v --columns 10:60 -o "$T/c.png" "$T/k.ssm"
    [ "$status" -eq 0 ]
    [[ "$output" == *"heatmap of 2 x 50, colour map diverging, range [-0.79798, 0.79798]"* ]]
    run ssm-viz -v --normalize -o "$T/n.png" "$T/k.ssm"
    [[ "$output" == *"range [-1, 1]"* ]]
    run ssm-viz -v --lines --columns 90: -o "$T/l.png" "$T/k.ssm"
    [[ "$output" == *"2 line series of 10 points"* ]]
    run ssm-viz --columns 200:300 -o "$T/x.png" "$T/k.ssm"
    [ "$status" -eq 2 ]
    run ssm-viz --reshape 10x10 --columns 0:5 -o "$T/x.png" "$T/k.ssm"
    [ "$status" -eq 2 ]
}

@test "ssm-viz: the pipeline ssm-discretize | ssm-kernel | ssm-viz" {
    command -v ssm-discretize && command -v ssm-kernel || skip "ssm-discretize or ssm-kernel not built"
    ssm-discretize --init legs -N 16 -H 3 --dt 0.05 | ssm-kernel -L 300 | ssm-viz -v -o "$T/k.png" 2> "$T/log"
    grep -q "heatmap of 3 x 300" "$T/log"
    run png_info "$T/k.png"
    [ "$output" = "PNG 800 450" ]
    # the title carries the context the pipeline accumulated
    ssm-discretize --init s4d-lin -N 16 -H 2 --dt 0.05 | ssm-kernel -L 100 | ssm-viz --format svg -o "$T/k.svg"
    grep -q "<svg" "$T/k.svg"
    ssm-discretize --init legs -N 16 | ssm-viz --tensor A --reshape 16x16 -o "$T/a.png"
    run png_info "$T/a.png"
    [ "$output" = "PNG 800 450" ]
}
