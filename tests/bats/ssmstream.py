#!/usr/bin/env python3
"""ssmstream.py - a minimal reader/writer of tensor streams (ssm-stream(5)) for tool tests that need
hand-made, possibly bad, inputs, or an independent look at a tool's output.  Written from the
format comment at the top of libcommon/stream.c; standard library only (numpy optional for read).

As a program:  ssmstream.py SPEC...   writes a stream to stdout, one frame per SPEC:
    SPEC   = NAME:DTYPE:SHAPE:VALUES[:key=value,key=value]
    DTYPE  f32 f64 c64 c128
    SHAPE  2x8x8 (empty for a scalar)
    VALUES randn | const=V | list=v1,v2,... | randn+nan | randn+inf | negexp (-exp(randn))
           (complex dtypes: values fill (re, im) components in turn)
"""
import math
import random
import struct
import sys
import zlib

DTYPES = {1: ("f32", "f", 1), 2: ("f64", "d", 1), 3: ("c64", "f", 2), 4: ("c128", "d", 2)}
CODES = {v[0]: k for k, v in DTYPES.items()}


def frame(name, dtype, dims, comps_values, attrs=None):
    """One frame with a single stored block.  comps_values: flat list of scalar components."""
    code = CODES[dtype]
    _, fmt, _ = DTYPES[code]
    payload = struct.pack("<%d%s" % (len(comps_values), fmt), *comps_values)
    nameb = name.encode()
    attrb = "".join("%s=%s\n" % kv for kv in (attrs or {}).items()).encode()
    hdr = b"SSMT" + struct.pack("<BBBBII", 1, 0, code, len(dims), len(nameb), len(attrb))
    hdr += b"".join(struct.pack("<q", d) for d in dims) + nameb + attrb
    hdr += struct.pack("<I", zlib.crc32(hdr))
    out = hdr
    for chunk in ([payload] if payload else []) + [b""]:
        bh = struct.pack("<IIBBH", len(chunk), len(chunk), 0, 0, 0)
        out += bh + struct.pack("<I", zlib.crc32(bh + chunk)) + chunk
    return out


def read_stream(data):
    """Returns a dict name -> (dtype, dims, attrs, flat list of values (complex as complex))."""
    out, pos = {}, 0
    while pos < len(data):
        if data[pos:pos + 4] != b"SSMT":
            raise ValueError("bad magic at %d" % pos)
        _, flags, code, rank, nlen, alen = struct.unpack_from("<BBBBII", data, pos + 4)
        p = pos + 16
        dims = list(struct.unpack_from("<%dq" % rank, data, p)); p += 8 * rank
        name = data[p:p + nlen].decode(); p += nlen
        attrs = dict(l.split("=", 1) for l in data[p:p + alen].decode().splitlines() if l); p += alen
        if zlib.crc32(data[pos:p]) != struct.unpack_from("<I", data, p)[0]:
            raise ValueError("header crc of %s" % name)
        p += 4
        if flags & 1:
            raise ValueError("abort frame: %s" % name)
        dname, fmt, comps = DTYPES[code]
        csize = struct.calcsize(fmt)
        raw = b""
        while True:
            raw_len, stored_len, codec = struct.unpack_from("<IIB", data, p)
            crc = struct.unpack_from("<I", data, p + 12)[0]
            stored = data[p + 16:p + 16 + stored_len]
            if zlib.crc32(data[p:p + 12] + stored) != crc:
                raise ValueError("block crc of %s" % name)
            p += 16 + stored_len
            if raw_len == 0:
                break
            if codec == 0:
                block = stored
            else:
                block = zlib.decompress(stored, -15)
                if codec == 2:  # unshuffle: byte j of every component is stored contiguously
                    n = len(block) // csize
                    block = bytes(block[j * n + i] for i in range(n) for j in range(csize))
            raw += block
        vals = struct.unpack("<%d%s" % (len(raw) // csize, fmt), raw)
        if comps == 2:
            vals = [complex(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)]
        out[name] = (dname, dims, attrs, list(vals))
        pos = p
    return out


def values(spec, n, rng):
    if spec.startswith("const="):
        return [float(spec[6:])] * n
    if spec.startswith("list="):
        v = [float(x) for x in spec[5:].split(",")]
        if len(v) != n:
            sys.exit("ssmstream: list has %d values, shape needs %d" % (len(v), n))
        return v
    base, _, bad = spec.partition("+")
    if base == "randn":
        v = [rng.gauss(0, 1) for _ in range(n)]
    elif base == "negexp":
        v = [-math.exp(rng.gauss(0, 1)) for _ in range(n)]
    else:
        sys.exit("ssmstream: unknown values '%s'" % spec)
    if bad == "nan":
        v[n // 2] = float("nan")
    elif bad == "inf":
        v[n // 2] = float("inf")
    return v


def main():
    rng = random.Random(1)
    out = b""
    for spec in sys.argv[1:]:
        parts = spec.split(":")
        name, dtype, shape, vals = parts[:4]
        attrs = dict(kv.split("=", 1) for kv in parts[4].split(",") if kv) if len(parts) > 4 else {}
        dims = [int(d) for d in shape.split("x")] if shape else []
        n = 1
        for d in dims:
            n *= d
        out += frame(name, dtype, dims, values(vals, n * DTYPES[CODES[dtype]][2], rng), attrs)
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
