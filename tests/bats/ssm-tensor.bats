#!/usr/bin/env bats
# ssm-tensor: every subcommand, round trips through npy/safetensors/text (bit-exact for every dtype),
# interop with numpy itself, globs, concatenation, and bad input for each subcommand (exit status
# and one-line message).  The stream format's own tests (fuzzing, corrupt-stream corpus, RSS and
# throughput) are elsewhere.

INTEROP="$BATS_TEST_DIRNAME/ssm_tensor_interop.py"
ALL_DTYPES="f32 f64 f16 bf16 c64 c128 i8 i16 i32 i64 u8 u16 u32 u64 bool"

setup_file() {
    # a python3 that has numpy (a pyenv python3 first on PATH may lack it); found once per file
    PY=""
    for p in /usr/bin/python3 python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
    done
    export PY
}

setup() {
    cd "$BATS_TEST_TMPDIR"
}

need_numpy() { [ -n "$PY" ] || skip "python3 with numpy not available"; }

# One tensor of every dtype, random (integer dtypes over [-100, 100) or [0, 200)), with attributes.
make_all_dtypes() {
    : > all.ssm
    for d in $ALL_DTYPES; do
        case $d in
            bool) extra="--dist uniform" ;;
            i*) extra="--dist uniform --low -100 --high 100" ;;
            u*) extra="--dist uniform --low 0 --high 200" ;;
            *) extra="" ;;
        esac
        ssm-tensor rand --shape 3,5,7 --name "t.$d" --dtype $d --seed 7 $extra --append=all.ssm > next.ssm
        mv next.ssm all.ssm
    done
}

# Checks that the last `run` printed exactly one line on stderr-merged output starting with prefix.
one_line_error() {
    [ "${#lines[@]}" -ge 1 ]
    [[ "${lines[0]}" == "ssm-tensor: "* ]]
    # a usage error adds the "Try --help" line; nothing else is printed
    [ "${#lines[@]}" -le 2 ]
}

# ---- general ---------------------------------------------------------------------------------
@test "help, version, unknown command and no command" {
    run ssm-tensor --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"pick PATTERN"* ]]
    [[ "$output" == *"diff A B"* ]]
    run ssm-tensor rand --help
    [ "$status" -eq 0 ]
    run ssm-tensor --version
    [ "$status" -eq 0 ]
    [[ "$output" == "ssm-tensor (ssm toolkit) "* ]]
    run ssm-tensor frobnicate
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown command 'frobnicate'"* ]]
    run ssm-tensor
    [ "$status" -eq 2 ]
    run ssm-tensor info --no-such-option
    [ "$status" -eq 2 ]
    one_line_error
    run ssm-tensor pick --value 3 x
    [ "$status" -eq 2 ]
    [[ "$output" == *"--value is not an option of this command"* ]]
}

@test "man page renders and documents every subcommand" {
    page="$BATS_TEST_DIRNAME/../../man/ssm-tensor.1"
    [ -f "$page" ]
    run sh -c "man -l '$page' 2>&1 | cat"
    [ "$status" -eq 0 ]
    for s in info cat pick drop rename import export rand fill arange diff TENSORS "EXIT STATUS" EXAMPLES; do
        [[ "$output" == *"$s"* ]]
    done
}

# ---- info and cat ------------------------------------------------------------------------------
@test "info: name, dtype, shape, sizes, attributes, statistics, NaN and Inf counts" {
    ssm-tensor arange --name r --stop 10 --dtype f64 > r.ssm
    run ssm-tensor info r.ssm
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "r "*"f64 [10]  10 elements, 80 bytes" ]]
    [[ "$output" == *"min 0  max 9  mean 4.5"* ]]
    [[ "$output" == *"nan 0  inf 0"* ]]
    ssm-tensor fill --shape 2,3 --name n --value nan --append=r.ssm > n.ssm
    ssm-tensor fill --shape 4 --name i --value -inf --append=n.ssm > ni.ssm
    run ssm-tensor info ni.ssm
    [[ "$output" == *"n "*"f32 [2, 3]"* ]]
    [[ "$output" == *"nan 6  inf 0"* ]]
    [[ "$output" == *"nan 0  inf 4"* ]]
    ssm-tensor rand --shape 3 --name u --seed 4 > u.ssm
    run ssm-tensor info u.ssm
    [[ "$output" == *"    dist=normal"* ]]
    [[ "$output" == *"    seed=4"* ]]
}

@test "info: empty stream, several files, stdin" {
    : > empty.ssm
    run ssm-tensor info empty.ssm
    [ "$status" -eq 0 ]
    [[ "$output" == "empty.ssm: empty stream" ]]
    ssm-tensor fill --shape 2 --name a --value 1 > a.ssm
    run ssm-tensor info a.ssm empty.ssm
    [[ "${lines[0]}" == "== a.ssm" ]]
    [[ "$output" == *"== empty.ssm"* ]]
    run sh -c "ssm-tensor info < a.ssm"
    [[ "${lines[0]}" == "a "* ]]
}

@test "cat: concatenation of streams is a stream, and cat a b == a then b" {
    ssm-tensor fill --shape 2 --name a --value 1 > a.ssm
    ssm-tensor arange --name b --stop 3 > b.ssm
    run sh -c "cat a.ssm b.ssm | ssm-tensor info"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "a "* ]]
    [[ "$output" == *"b "*"f32 [3]"* ]]
    ssm-tensor cat a.ssm b.ssm > ab.ssm
    cat a.ssm b.ssm | ssm-tensor cat > ab2.ssm
    ssm-tensor diff --exact ab.ssm ab2.ssm
    run sh -c "ssm-tensor cat a.ssm - < b.ssm | ssm-tensor info"
    [[ "$output" == *"b "*"f32 [3]"* ]]
}

@test "cat, info: missing file, directory, not a stream (exit 1, one line)" {
    run ssm-tensor cat nope.ssm
    [ "$status" -eq 1 ]
    one_line_error
    [[ "$output" == *"nope.ssm: No such file or directory"* ]]
    echo "hello" > text.txt
    run ssm-tensor info text.txt
    [ "$status" -eq 1 ]
    [[ "$output" == *"text.txt"*"not a tensor stream"* ]]
    run ssm-tensor cat .
    [ "$status" -eq 1 ]
    [[ "$output" == *"Is a directory"* ]]
}

@test "binary output to a terminal is refused (uses script(1) for a pty)" {
    command -v script >/dev/null || skip "script(1) not available"
    run script -qec "ssm-tensor rand --shape 2 --name u" /dev/null
    [ "$status" -eq 2 ]
    [[ "$output" == *"refusing to write a binary tensor stream to a terminal"* ]]
    run script -qec "ssm-tensor fill --shape 2 --name u --value 1 | ssm-tensor export --format safetensors" /dev/null
    [ "$status" -eq 2 ]
    [[ "$output" == *"refusing to write a binary safetensors file to a terminal"* ]]
    # text is for people: a terminal is fine
    run script -qec "ssm-tensor fill --shape 2 --name u --value 1 | ssm-tensor export --format text" /dev/null
    [ "$status" -eq 0 ]
    [[ "$output" == *"1 1"* ]]
}

# ---- pick, drop, rename ------------------------------------------------------------------------
make_layers() {
    : > layers.ssm
    for l in 0 1 2; do
        for p in A B; do
            ssm-tensor fill --shape 2 --name "layers.$l.$p" --value $l --append=layers.ssm > next.ssm
            mv next.ssm layers.ssm
        done
    done
    ssm-tensor fill --shape 1 --name norm_f.weight --value 1 --append=layers.ssm > next.ssm
    mv next.ssm layers.ssm
}
names() { ssm-tensor info "$@" | grep -v '^ ' | awk '{print $1}' | tr '\n' ' '; }

@test "pick: names and globs, stream order kept, from -i files or stdin" {
    make_layers
    run names <(ssm-tensor pick 'layers.2.*' -i layers.ssm)
    [ "$output" = "layers.2.A layers.2.B " ]
    run names <(ssm-tensor pick norm_f.weight 'layers.[01].B' < layers.ssm)
    [ "$output" = "layers.0.B layers.1.B norm_f.weight " ]
    run names <(ssm-tensor pick 'layers.?.A' -i layers.ssm -i layers.ssm)
    [ "$output" = "layers.0.A layers.1.A layers.2.A layers.0.A layers.1.A layers.2.A " ]
    # payloads are passed through unchanged
    ssm-tensor pick '*' -i layers.ssm > all.ssm
    cmp all.ssm layers.ssm
}

@test "pick: no pattern (2), a pattern matching nothing (1, and the output is aborted)" {
    make_layers
    run ssm-tensor pick -i layers.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor pick 'layers.9.*' -i layers.ssm -o out.ssm
    [ "$status" -eq 1 ]
    one_line_error
    [[ "$output" == *"pick: no tensor matches 'layers.9.*'"* ]]
    [ ! -e out.ssm ]
    # in a pipe, the next tool sees the failure rather than a stream that looks complete
    run sh -c "ssm-tensor pick 'layers.9.*' -i layers.ssm 2>/dev/null | ssm-tensor info"
    [ "$status" -eq 1 ]
    [[ "$output" == *"failed"* ]]
    run ssm-tensor pick x -i nope.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"nope.ssm"* ]]
    run ssm-tensor pick x -i "$INTEROP"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not a tensor stream"* ]]
}

@test "drop: names and globs; a pattern matching nothing warns" {
    make_layers
    run names <(ssm-tensor drop 'layers.*' -i layers.ssm)
    [ "$output" = "norm_f.weight " ]
    run names <(ssm-tensor drop 'layers.1.*' '*.B' < layers.ssm)
    [ "$output" = "layers.0.A layers.2.A norm_f.weight " ]
    run sh -c "ssm-tensor drop nothing.here -i layers.ssm > out.ssm"
    [ "$status" -eq 0 ]
    [[ "$output" == "ssm-tensor: warning: drop: no tensor matches 'nothing.here'" ]]
    cmp out.ssm layers.ssm
    run ssm-tensor drop
    [ "$status" -eq 2 ]
}

@test "rename: headers change, payloads and attributes do not" {
    make_layers
    ssm-tensor rename layers.0.A=first norm_f.weight=norm -i layers.ssm > r.ssm
    run names r.ssm
    [ "$output" = "first layers.0.B layers.1.A layers.1.B layers.2.A layers.2.B norm " ]
    ssm-tensor rename first=layers.0.A norm=norm_f.weight < r.ssm > back.ssm
    cmp back.ssm layers.ssm
    ssm-tensor rand --shape 3 --name u --seed 9 | ssm-tensor rename u=v > v.ssm
    run ssm-tensor info v.ssm
    [[ "$output" == *"seed=9"* ]]
}

@test "rename: bad syntax (2), absent name (1), a collision (1)" {
    make_layers
    run ssm-tensor rename layers.0.A -i layers.ssm
    [ "$status" -eq 2 ]
    [[ "$output" == *"expected OLD=NEW"* ]]
    run ssm-tensor rename =x -i layers.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor rename a=b a=c -i layers.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor rename zz=y -i layers.ssm -o out.ssm
    [ "$status" -eq 1 ]
    one_line_error
    [[ "$output" == *"no tensor named 'zz'"* ]]
    [ ! -e out.ssm ]
    run ssm-tensor rename layers.0.A=layers.0.B -i layers.ssm -o out.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"two tensors named 'layers.0.B'"* ]]
    [ ! -e out.ssm ]
}

# ---- generators ------------------------------------------------------------------------------
@test "rand: reproducible by seed, different seeds differ, every dtype" {
    ssm-tensor rand --shape 2,1024,64 --name u --seed 5 > a.ssm
    ssm-tensor rand --shape 2,1024,64 --name u --seed 5 > b.ssm
    ssm-tensor diff --exact a.ssm b.ssm
    ssm-tensor rand --shape 2,1024,64 --name u --seed 6 > c.ssm
    run ssm-tensor diff a.ssm c.ssm
    [ "$status" -eq 1 ]
    # default seed is 0
    ssm-tensor rand --shape 5 --name u > d0.ssm
    ssm-tensor rand --shape 5 --name u --seed 0 > d1.ssm
    ssm-tensor diff --exact d0.ssm d1.ssm
    make_all_dtypes
    run ssm-tensor info all.ssm
    [ "$status" -eq 0 ]
    for d in $ALL_DTYPES; do [[ "$output" == *"t.$d "*"$d [3, 5, 7]"* ]]; done
}

@test "rand: the distributions have the asked moments and ranges" {
    ssm-tensor rand --shape 200000 --name u --mean 3 --std 2 --dtype f64 --seed 1 > n.ssm
    run ssm-tensor info n.ssm
    mean=$(echo "$output" | sed -n 's/.*mean \([^ ]*\) .*/\1/p')
    std=$(echo "$output" | sed -n 's/.*std \([^ ]*\) .*/\1/p')
    awk -v m="$mean" -v s="$std" 'BEGIN { exit !(m > 2.98 && m < 3.02 && s > 1.98 && s < 2.02) }'
    ssm-tensor rand --shape 100000 --name u --dist uniform --low -2 --high 5 --seed 1 > uni.ssm
    run ssm-tensor info uni.ssm
    min=$(echo "$output" | sed -n 's/.*min \([^ ]*\) .*/\1/p')
    max=$(echo "$output" | sed -n 's/.*max \([^ ]*\) .*/\1/p')
    awk -v a="$min" -v b="$max" 'BEGIN { exit !(a >= -2 && a < -1.99 && b < 5 && b > 4.99) }'
    ssm-tensor rand --shape 10000 --name k --dtype i32 --low 3 --high 6 --seed 1 > k.ssm
    run ssm-tensor info k.ssm
    [[ "$output" == *"min 3  max 5 "* ]]
    ssm-tensor rand --shape 10000 --name b --dtype bool --seed 1 > b.ssm
    run ssm-tensor info b.ssm
    [[ "$output" == *"min 0  max 1 "* ]]
}

@test "rand, fill, arange: bad --shape, unknown dtype, missing and conflicting options (exit 2)" {
    for args in "--shape 2,x --name u" "--shape -3 --name u" "--shape 2,,3 --name u" "--shape 2, --name u" \
                "--shape 2 --name u --dtype f128" "--shape 2" "--name u" "--shape 2 --name u --dist poisson" \
                "--shape 2 --name u --dtype i32 --dist normal" "--shape 2 --name u --low 1" \
                "--shape 2 --name u --dist uniform --low 3 --high 1" "--shape 2 --name u --seed -1" \
                "--shape 2 --name u --seed abc" "--shape 2 --name u extra" "--shape 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17 --name u" \
                "--shape 99999999999,99999999999 --name u" "--shape 2 --name="; do
        run ssm-tensor rand $args
        echo "rand $args -> $status: $output"
        [ "$status" -eq 2 ]
        one_line_error
    done
    for args in "--shape 2 --name u" "--shape 2 --name u --value abc" "--shape 2 --name u --value 300 --dtype u8" \
                "--shape 2 --name u --value 1.5 --dtype i32" "--shape 2 --name u --value 2 --dtype bool" \
                "--shape 2 --name u --value 1,2" "--shape x --name u --value 1"; do
        run ssm-tensor fill $args
        echo "fill $args -> $status: $output"
        [ "$status" -eq 2 ]
        one_line_error
    done
    for args in "--name u" "--stop 5" "--name u --stop 5 --step 0" "--name u --stop 5 --shape 2,3" \
                "--name u --stop abc" "--name u --stop 1e300"; do
        run ssm-tensor arange $args
        echo "arange $args -> $status: $output"
        [ "$status" -eq 2 ]
        one_line_error
    done
}

@test "fill: real, complex, integer, bool, NaN; scalar and empty shapes" {
    ssm-tensor fill --shape 2,2 --name f --value -1.25 > f.ssm
    run ssm-tensor export --format text f.ssm
    [ "${lines[1]}" = "-1.25 -1.25" ]
    ssm-tensor fill --shape 3 --name z --value 1.5,-2 --dtype c128 > z.ssm
    run ssm-tensor export --format text z.ssm
    [ "${lines[1]}" = "1.5-2j 1.5-2j 1.5-2j" ]
    ssm-tensor fill --shape 2 --name big --value 9007199254740993 --dtype i64 > big.ssm
    run ssm-tensor export --format text big.ssm
    [ "${lines[1]}" = "9007199254740993 9007199254740993" ]
    ssm-tensor fill --shape 2 --name big --value 18446744073709551615 --dtype u64 > ubig.ssm
    run ssm-tensor export --format text ubig.ssm
    [ "${lines[1]}" = "18446744073709551615 18446744073709551615" ]
    ssm-tensor fill --shape 3 --name b --value 1 --dtype bool > b.ssm
    run ssm-tensor export --format text b.ssm
    [ "${lines[1]}" = "1 1 1" ]
    ssm-tensor fill --shape scalar --name s --value 7 > s.ssm
    run ssm-tensor info s.ssm
    [[ "${lines[0]}" == "s "*"f32 []  1 elements, 4 bytes" ]]
    ssm-tensor fill --shape 0,5 --name e --value 7 > e.ssm
    run ssm-tensor info e.ssm
    [[ "${lines[0]}" == "e "*"f32 [0, 5]  0 elements, 0 bytes" ]]
}

@test "arange: --stop, --shape, negative steps, integer dtypes" {
    ssm-tensor arange --name a --stop 5 > a.ssm
    run ssm-tensor export --format text a.ssm
    [ "${lines[1]}" = "0 1 2 3 4" ]
    ssm-tensor arange --name a --start 1 --step 0.5 --stop 3 --dtype f64 > b.ssm
    run ssm-tensor export --format text b.ssm
    [ "${lines[1]}" = "1 1.5 2 2.5" ]
    ssm-tensor arange --name a --start 10 --step -3 --stop 0 --dtype i8 > c.ssm
    run ssm-tensor export --format text c.ssm
    [ "${lines[0]}" = "# a i8 [4]" ]
    [ "${lines[1]}" = "10 7 4 1" ]
    ssm-tensor arange --name a --shape 2,3 --dtype i64 > d.ssm
    run ssm-tensor export --format text d.ssm
    [ "${lines[1]}" = "0 1 2" ]
    [ "${lines[2]}" = "3 4 5" ]
    ssm-tensor arange --name a --stop 0 > e.ssm
    run ssm-tensor info e.ssm
    [[ "${lines[0]}" == *"[0]  0 elements"* ]]
    # values that do not fit the dtype are a data error
    run ssm-tensor arange --name a --stop 300 --dtype u8 -o f.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"does not fit dtype u8"* ]]
    [ ! -e f.ssm ]
}

@test "generators: --append copies stdin or FILE first, and a tensor of the same name is replaced" {
    ssm-tensor fill --shape 3 --name D --value 1 > p.ssm
    ssm-tensor rand --shape 1,4,10 --name u --seed 1 --append < p.ssm > pu.ssm
    run names pu.ssm
    [ "$output" = "D u " ]
    ssm-tensor fill --shape 2 --name D --value 5 --append=pu.ssm > pud.ssm
    run names pud.ssm
    [ "$output" = "u D " ]
    run ssm-tensor info pud.ssm
    [[ "$output" == *"D "*"f32 [2]"* ]]
    # the pipeline of the man page: something | rand --append | something
    run sh -c "ssm-tensor fill --shape 3 --name D --value 1 | ssm-tensor rand --shape 1,64,100 --name u --append | ssm-tensor arange --name t --stop 4 --append | ssm-tensor info"
    [ "$status" -eq 0 ]
    [[ "$output" == *"D "*"u "*"t "* ]] || [[ "$(echo "$output" | grep -c elements)" -eq 3 ]]
    run ssm-tensor rand --shape 2 --name u --append=nope.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"nope.ssm: No such file or directory"* ]]
    run sh -c "echo garbage | ssm-tensor rand --shape 2 --name u --append > out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not a tensor stream"* ]]
}

# ---- export text ------------------------------------------------------------------------------
@test "export text: header, attributes, one line per row, exact digits" {
    ssm-tensor arange --name m --shape 2,3 --start 0.1 --step 0.1 --dtype f64 > m.ssm
    ssm-tensor rename m=m2 < m.ssm | ssm-tensor rand --shape 1 --name r --seed 3 --append > mr.ssm
    run ssm-tensor export --format text mr.ssm
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "# m2 f64 [2, 3]" ]
    [ "${lines[1]}" = "0.10000000000000001 0.20000000000000001 0.29999999999999999" ]
    [ "${#lines[@]}" -eq 7 ]
    [ "${lines[3]}" = "# r f32 [1]" ]
    [ "${lines[4]}" = "#   dist=normal" ]
    [ "${lines[5]}" = "#   seed=3" ]
    ssm-tensor export --format text -o m.txt m.ssm
    [ "$(head -n 1 m.txt)" = "# m f64 [2, 3]" ]
    run ssm-tensor export --format text --dir x m.ssm
    [ "$status" -eq 2 ]
}

# ---- round trips ------------------------------------------------------------------------------
@test "round trip stream -> npy -> stream is bit-exact for every dtype" {
    make_all_dtypes
    ssm-tensor export --format npy --dir npy all.ssm
    for d in $ALL_DTYPES; do [ -f "npy/t.$d.npy" ]; done
    ssm-tensor import npy/*.npy > back.ssm
    # npy keeps no attributes: compare values bit for bit, and the text without attribute lines
    ssm-tensor diff --exact all.ssm back.ssm
    ssm-tensor export --format text all.ssm | grep -v '^#   ' > a.txt
    for d in $ALL_DTYPES; do ssm-tensor pick "t.$d" -i back.ssm; done | ssm-tensor export --format text > b.txt
    cmp a.txt b.txt
}

@test "round trip stream -> safetensors -> stream is bit-exact, attributes kept (c128 refused)" {
    make_all_dtypes
    ssm-tensor drop t.c128 < all.ssm > st.ssm
    ssm-tensor export --format safetensors -o m.safetensors st.ssm
    ssm-tensor import m.safetensors > back.ssm
    ssm-tensor diff --exact st.ssm back.ssm
    ssm-tensor export --format text st.ssm > a.txt
    ssm-tensor export --format text back.ssm > b.txt
    cmp a.txt b.txt
    # --dir names the file DIR/tensors.safetensors
    ssm-tensor export --format safetensors --dir outdir st.ssm
    cmp outdir/tensors.safetensors m.safetensors
    run ssm-tensor export --format safetensors -o c.safetensors all.ssm
    [ "$status" -eq 1 ]
    one_line_error
    [[ "$output" == *"tensor 't.c128': safetensors has no c128 dtype"* ]]
    [ ! -e c.safetensors ]
    [ -z "$(ls -A | grep -e '\.tmp\.' -e ssm-spool || true)" ]
}

@test "round trips of odd shapes: scalar, empty, rank 1, large last dim, names with '/'" {
    ssm-tensor fill --shape scalar --name s --value 2.5 --dtype f64 > x.ssm
    ssm-tensor fill --shape 0,3 --name e --value 1 --dtype i32 --append=x.ssm > y.ssm
    ssm-tensor rand --shape 1,3,70000 --name 'blocks/0.w' --seed 2 --append=y.ssm > z.ssm
    ssm-tensor export --format npy --dir n z.ssm
    [ -f "n/blocks%2F0.w.npy" ]
    ssm-tensor import n/s.npy n/e.npy "n/blocks%2F0.w.npy" | ssm-tensor diff --exact z.ssm -
    ssm-tensor export --format safetensors -o z.safetensors z.ssm
    ssm-tensor import z.safetensors | ssm-tensor diff --exact z.ssm -
}

# ---- interop with numpy itself -----------------------------------------------------------------
@test "numpy writes .npy (dtypes, byte orders, Fortran order, v3), ssm-tensor imports and exports, numpy compares" {
    need_numpy
    mkdir in out
    "$PY" "$INTEROP" npy-write in
    ssm-tensor import in/*.npy > all.ssm
    run ssm-tensor info all.ssm
    [[ "$output" == *"x_be_f4 "*"f32 [3, 5, 7]"* ]]
    [[ "$output" == *"fortran_f4 "*"f32 [4, 3, 5]"* ]]
    [[ "$output" == *"x_b1 "*"bool [3, 5, 7]"* ]]
    ssm-tensor export --format npy --dir out all.ssm
    run "$PY" "$INTEROP" npy-check in out
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "safetensors written by an independent writer imports (metadata as attributes) and exports back" {
    need_numpy
    mkdir s
    "$PY" "$INTEROP" st-write s/m.safetensors
    ssm-tensor import s/m.safetensors > m.ssm
    run ssm-tensor info m.ssm
    [[ "$output" == *"model.bf16 "*"bf16 [7]"* ]]
    [[ "$output" == *"model.i8.weight "*"i8 [2, 3]"* ]]
    [[ "$output" == *"    format=pt"* ]]
    [[ "$output" == *"    note=two lines"* ]]
    ssm-tensor export --format npy --dir s/npy m.ssm
    run "$PY" "$INTEROP" npy-compare s/npy s/st_expect
    echo "$output"
    [ "$status" -eq 0 ]
    ssm-tensor export --format safetensors -o s/back.safetensors m.ssm
    run "$PY" "$INTEROP" st-check s/back.safetensors s/st_expect
    echo "$output"
    [ "$status" -eq 0 ]
    # stdin works when it is a file; --prefix and --name
    ssm-tensor import --prefix hf. - < s/m.safetensors > p.ssm
    run names p.ssm
    [[ "$output" == "hf.model."* ]]
    ssm-tensor fill --shape 2 --name a --value 1 | ssm-tensor export --format npy --dir one
    ssm-tensor import --name b one/a.npy | ssm-tensor info | grep -q '^b '
    run ssm-tensor import --name b one/a.npy s/m.safetensors
    [ "$status" -eq 2 ]
}

# ---- import: bad input ------------------------------------------------------------------------
@test "import: missing file, not npy/safetensors, no FILE, pipe of safetensors" {
    run ssm-tensor import nope.npy
    [ "$status" -eq 1 ]
    one_line_error
    [[ "$output" == *"nope.npy: No such file or directory"* ]]
    echo "not numpy at all" > junk.npy
    run ssm-tensor import junk.npy
    [ "$status" -eq 1 ]
    [[ "$output" == *"junk.npy: not a .npy or .safetensors file"* ]]
    run ssm-tensor import
    [ "$status" -eq 2 ]
    ssm-tensor fill --shape 2 --name a --value 1 | ssm-tensor export --format safetensors -o a.safetensors
    run sh -c "cat a.safetensors | ssm-tensor import - > out.ssm"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not a regular file"* ]]
}

@test "import: damaged .npy files (truncated header and payload, trailing data, bad dtype, version, shape)" {
    ssm-tensor rand --shape 10,10 --name a --seed 1 | ssm-tensor export --format npy --dir d
    good=d/a.npy
    head -c 50 $good > t1.npy
    head -c 300 $good > t2.npy
    cat $good $good > t3.npy
    sed 's/<f4/<U4/' $good > t4.npy
    sed 's/<f4/<f3/' $good > t5.npy
    printf '\x93NUMPY\x09\x00' > t6.npy; tail -c +9 $good >> t6.npy
    sed "s/'shape': (10, 10)/'shape': (10, 11)/" $good > t7.npy
    sed "s/'descr'/'dascr'/" $good > t8.npy
    for f in t1 t2 t3 t4 t5 t6 t7 t8; do
        run ssm-tensor import $f.npy -o out.ssm
        echo "$f: $status $output"
        [ "$status" -eq 1 ]
        one_line_error
        [[ "$output" == "ssm-tensor: $f.npy: "* ]]
        [ ! -e out.ssm ]
    done
    run ssm-tensor import t2.npy -o out.ssm
    [[ "$output" == *"truncated payload"* ]]
    run ssm-tensor import t3.npy
    [[ "$output" == *"unexpected data after the array"* ]]
    run ssm-tensor import t4.npy
    [[ "$output" == *"unsupported dtype '<U4'"* ]]
    run ssm-tensor import t6.npy
    [[ "$output" == *"unsupported .npy format version 9.0"* ]]
}

# Writes a safetensors file whose JSON header is $2 and whose data area is $3 bytes of zeros.
write_st() {
    local n=${#2}
    printf "$(printf '\\x%02x\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8)))" > "$1"
    printf '%s' "$2" >> "$1"
    head -c "$3" /dev/zero >> "$1"
}

@test "import: damaged safetensors headers (lying sizes, overlaps, bad JSON, unsupported dtype)" {
    write_st ok.safetensors '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8
    ssm-tensor import ok.safetensors > ok.ssm
    run ssm-tensor info ok.ssm
    [[ "$output" == "a "*"f32 [2]"* ]]
    write_st b1.safetensors '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 4
    write_st b2.safetensors '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}' 8
    write_st b3.safetensors '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' 12
    write_st b4.safetensors '{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}' 2
    write_st b5.safetensors '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}' 8
    write_st b6.safetensors '{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}' 8
    write_st b7.safetensors '{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}' 8
    write_st b8.safetensors '{"a":{"dtype":"F32","shape":[2]}}' 8
    write_st b9.safetensors '{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}' 8
    write_st b10.safetensors '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8
    printf '\xff\xff\xff\xff\x00\x00\x00\x00{"a":1}' > b11.safetensors
    for f in b1 b2 b3 b4 b5 b6 b7 b8 b9 b10 b11; do
        run ssm-tensor import $f.safetensors -o out.ssm
        echo "$f: $status $output"
        [ "$status" -eq 1 ]
        one_line_error
        [[ "$output" == "ssm-tensor: $f.safetensors: "* ]]
        [ ! -e out.ssm ]
    done
    run ssm-tensor import b1.safetensors
    [[ "$output" == *"past the end of the data"* ]]
    run ssm-tensor import b3.safetensors
    [[ "$output" == *"overlap"* ]]
    run ssm-tensor import b4.safetensors
    [[ "$output" == *"unsupported dtype 'F8_E4M3'"* ]]
    run ssm-tensor import b10.safetensors
    [[ "$output" == *"duplicate tensor 'a'"* ]]
}

# ---- export: bad input ------------------------------------------------------------------------
@test "export: missing --format or --dir, unknown format, unwritable dir, duplicate names, bad input" {
    ssm-tensor fill --shape 2 --name a --value 1 > a.ssm
    run ssm-tensor export a.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor export --format npy a.ssm
    [ "$status" -eq 2 ]
    [[ "$output" == *"--dir"* ]]
    run ssm-tensor export --format hdf5 --dir d a.ssm
    [ "$status" -eq 2 ]
    [[ "$output" == *"expected npy, safetensors or text, got 'hdf5'"* ]]
    run ssm-tensor export --format npy --dir a.ssm/sub a.ssm
    [ "$status" -eq 1 ]
    one_line_error
    [[ "$output" == *"cannot create directory 'a.ssm/sub'"* ]]
    run ssm-tensor export --format safetensors -o /nonexistent/dir/m.safetensors a.ssm
    [ "$status" -eq 1 ]
    one_line_error
    run ssm-tensor export --format safetensors -o a.ssm/x.safetensors a.ssm
    [ "$status" -eq 1 ]
    cat a.ssm a.ssm > aa.ssm
    run ssm-tensor export --format npy --dir dup aa.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"two tensors named 'a'"* ]]
    run ssm-tensor export --format safetensors -o dup.safetensors aa.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"duplicate tensor name 'a'"* ]]
    [ ! -e dup.safetensors ]
    run ssm-tensor export --format npy --dir d nope.ssm
    [ "$status" -eq 1 ]
    # a stream cut short: the error names it and no temporary file is left behind
    ssm-tensor rand --shape 100000 --name big --seed 1 --level 0 > big.ssm
    head -c 200000 big.ssm > cut.ssm
    run ssm-tensor export --format npy --dir cut cut.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"truncated"* ]]
    [ -z "$(ls -A cut)" ]
    run ssm-tensor export --format safetensors -o cut.safetensors cut.ssm
    [ "$status" -eq 1 ]
    [ ! -e cut.safetensors ]
    [ -z "$(ls -A | grep -e '\.tmp\.' -e ssm-spool || true)" ]
}

# ---- diff -------------------------------------------------------------------------------------
@test "diff: equal streams exit 0, in any order, with -v reporting each tensor" {
    ssm-tensor rand --shape 4,5 --name a --seed 1 > a.ssm
    ssm-tensor rand --shape 3 --name b --seed 2 --dtype c64 --append=a.ssm > ab.ssm
    ssm-tensor rand --shape 3 --name b --seed 2 --dtype c64 | ssm-tensor cat - a.ssm > ba.ssm
    run ssm-tensor diff ab.ssm ba.ssm
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    run ssm-tensor diff -v ab.ssm ba.ssm
    [ "$status" -eq 0 ]
    [[ "$output" == *"a: close"* ]]
    [[ "$output" == *"2 tensors compared, 0 differ"* ]]
    run sh -c "ssm-tensor diff --exact ab.ssm - < ab.ssm"
    [ "$status" -eq 0 ]
}

@test "diff: a difference exits 1 and names the worst element, both values and the relative error" {
    ssm-tensor arange --name x --shape 2,3 --dtype f64 > a.ssm
    ssm-tensor arange --name x --shape 2,3 --dtype f64 | ssm-tensor export --format npy --dir n
    "${PY:-false}" -c "import numpy as np; a = np.load('n/x.npy'); a[1, 2] = 5.5; a[0, 1] = 1.0000001; np.save('n/x.npy', a)" 2>/dev/null ||
        skip "numpy needed to edit one element"
    ssm-tensor import n/x.npy > b.ssm
    run ssm-tensor diff a.ssm b.ssm
    [ "$status" -eq 1 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "x: 1 of 6 elements differ; worst at [1, 2]: 5 vs 5.5 (abs err 0.5, rel err 0.0909)" ]]
    run ssm-tensor diff --rtol 0 --atol 0 a.ssm b.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == "x: 2 of 6 elements differ; worst at [1, 2]: "* ]]
    run ssm-tensor diff --rtol 0.1 a.ssm b.ssm
    [ "$status" -eq 0 ]
    run ssm-tensor diff --atol 0.6 --rtol 0 a.ssm b.ssm
    [ "$status" -eq 0 ]
    run ssm-tensor diff -q a.ssm b.ssm
    [ "$status" -eq 1 ]
    [ -z "$output" ]
}

@test "diff: dtype, shape and name differences; NaN, Inf and -0 handling" {
    ssm-tensor fill --shape 3 --name a --value 1 > f32.ssm
    ssm-tensor fill --shape 3 --name a --value 1 --dtype f64 > f64.ssm
    ssm-tensor fill --shape 4 --name a --value 1 > f32b.ssm
    ssm-tensor fill --shape 3 --name b --value 1 > b.ssm
    run ssm-tensor diff f32.ssm f64.ssm
    [ "$status" -eq 1 ]
    [ "$output" = "a: f32 [3] vs f64 [3]" ]
    run ssm-tensor diff f32.ssm f32b.ssm
    [ "$status" -eq 1 ]
    [ "$output" = "a: f32 [3] vs f32 [4]" ]
    run ssm-tensor diff f32.ssm b.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"a: only in f32.ssm"* ]]
    [[ "$output" == *"b: only in b.ssm"* ]]
    ssm-tensor fill --shape 3 --name n --value nan > nan.ssm
    ssm-tensor fill --shape 3 --name n --value 0 > zero.ssm
    ssm-tensor fill --shape 3 --name n --value -0 > mzero.ssm
    ssm-tensor fill --shape 3 --name n --value inf > inf.ssm
    run ssm-tensor diff nan.ssm nan.ssm
    [ "$status" -eq 0 ]
    run ssm-tensor diff nan.ssm zero.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"nan vs 0"* ]]
    run ssm-tensor diff inf.ssm inf.ssm
    [ "$status" -eq 0 ]
    run ssm-tensor diff inf.ssm zero.ssm
    [ "$status" -eq 1 ]
    run ssm-tensor diff zero.ssm mzero.ssm
    [ "$status" -eq 0 ]
    run ssm-tensor diff --exact zero.ssm mzero.ssm
    [ "$status" -eq 1 ]
    ssm-tensor fill --shape 2 --name i --value 9007199254740993 --dtype i64 > i1.ssm
    ssm-tensor fill --shape 2 --name i --value 9007199254740992 --dtype i64 > i2.ssm
    run ssm-tensor diff --rtol 0 --atol 0 i1.ssm i2.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"9007199254740993 vs 9007199254740992"* ]]
}

@test "diff: usage errors exit 2, unreadable input exits 1" {
    ssm-tensor fill --shape 3 --name a --value 1 > a.ssm
    run ssm-tensor diff a.ssm
    [ "$status" -eq 2 ]
    one_line_error
    run ssm-tensor diff a.ssm a.ssm a.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor diff --rtol -1 a.ssm a.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor diff --atol abc a.ssm a.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor diff --exact --atol 0 a.ssm a.ssm
    [ "$status" -eq 2 ]
    run ssm-tensor diff - -
    [ "$status" -eq 2 ]
    run ssm-tensor diff a.ssm nope.ssm
    [ "$status" -eq 1 ]
    [[ "$output" == *"nope.ssm: No such file or directory"* ]]
    run ssm-tensor diff a.ssm "$INTEROP"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not a tensor stream"* ]]
}
