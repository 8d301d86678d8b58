#!/usr/bin/env bats
# The tensor stream format itself (ssm-stream(5)): an independent Python reader/writer
# (tests/ref/ssm_stream.py) against the C implementation, the corpus of damaged streams, and
# streaming a tensor larger than 1 GiB through a tool in bounded memory.

setup() {
    T="$BATS_TEST_TMPDIR"
    REF="$BATS_TEST_DIRNAME/../ref/ssm_stream.py"
}

@test "a stream written by the Python writer is read by the tools, every dtype and codec" {
    python3 "$REF" write-demo "$T/demo.ssm"
    run ssm-tensor info "$T/demo.ssm"
    [ "$status" -eq 0 ]
    for d in f32 f64 c64 c128 i32 i64 u8 bf16 f16 i8 i16 u16 u32 u64 bool; do
        echo "$output" | grep -q "^t_$d "
    done
}

@test "the tools' output is read by the Python reader with identical contents, at every level" {
    python3 "$REF" write-demo "$T/demo.ssm"
    python3 "$REF" dump "$T/demo.ssm" > "$T/want"
    for level in 0 1 5 9; do
        # cat copies verified blocks unchanged whatever its --level: contents must not move
        ssm-tensor cat --level "$level" "$T/demo.ssm" > "$T/out.ssm"
        python3 "$REF" dump "$T/out.ssm" > "$T/got"
        cmp "$T/want" "$T/got"
    done
}

@test "concatenated streams are one stream; an empty file is an empty stream" {
    python3 "$REF" write-demo "$T/a.ssm"
    cat "$T/a.ssm" "$T/a.ssm" > "$T/ab.ssm"
    run ssm-tensor info "$T/ab.ssm"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | grep -c '^t_f32 ')" -eq 2 ]
    : > "$T/empty.ssm"
    run ssm-tensor info "$T/empty.ssm"
    [ "$status" -eq 0 ]
    ssm-tensor cat < "$T/empty.ssm" > "$T/out.ssm"
    [ ! -s "$T/out.ssm" ]
}

@test "every damaged stream of the corpus gives a one-line error naming the file, exit 1" {
    dir="$BATS_TEST_DIRNAME/../bad-streams"
    n=0
    while IFS="$(printf '\t')" read -r file phrase; do
        case "$file" in '#'*|'') continue ;; esac
        run ssm-tensor info "$dir/$file"
        echo "$file: status $status: $output"
        [ "$status" -eq 1 ]
        [ "${#lines[@]}" -ge 1 ]
        errline=$(echo "$output" | grep '^ssm-tensor: ')
        [ "$(echo "$errline" | wc -l)" -eq 1 ]
        echo "$errline" | grep -q "$file"
        echo "$errline" | grep -q -- "$phrase"
        n=$((n + 1))
    done < "$dir/EXPECTED"
    [ "$n" -ge 15 ]
}

@test "the corpus is what the Python generator makes (regenerated, byte for byte)" {
    python3 "$REF" bad "$T/bad"
    for f in "$BATS_TEST_DIRNAME"/../bad-streams/*; do
        cmp "$f" "$T/bad/$(basename "$f")"
    done
}

@test "a failed upstream tool is reported downstream, never a clean end" {
    python3 "$REF" write-demo "$T/demo.ssm"
    # a stream that breaks after its first frames: cat copies the good frames, then fails and
    # leaves an abort frame, which the next tool reports
    cat "$T/demo.ssm" "$BATS_TEST_DIRNAME/../bad-streams/block-crc.ssm" > "$T/broken.ssm"
    run sh -c "ssm-tensor cat '$T/broken.ssm' | ssm-tensor info"
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "the tool writing this stream failed"
}

@test "-o FILE leaves no file (and no temporary) when the tool fails" {
    run ssm-tensor cat -o "$T/out.ssm" "$BATS_TEST_DIRNAME/../bad-streams/block-crc.ssm"
    [ "$status" -eq 1 ]
    [ ! -e "$T/out.ssm" ]
    [ -z "$(ls "$T" | grep tmp)" ]
}

@test "a tensor larger than 1 GiB streams through ssm-tensor cat in under 100 MiB of memory" {
    if [ -n "${SSM_SANITIZE:-}" ]; then skip "memory is not comparable under ASan (run in the plain build)"; fi
    python3 "$REF" big 1100 | /usr/bin/time -f '%M' -o "$T/rss" ssm-tensor cat | ssm-tensor cat > /dev/null
    rss_kb=$(tail -n 1 "$T/rss")
    echo "peak RSS ${rss_kb} KiB"
    [ "$rss_kb" -lt 102400 ]
}
