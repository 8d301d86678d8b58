#!/usr/bin/env python3
"""ssm_stream.py - an independent reader and writer of the tensor stream format (ssm-stream(5)),
in plain Python + numpy, used by the tests to check the C implementation against the spec.

    python3 ssm_stream.py dump FILE          print name, dtype, shape, attrs, sha256 of each tensor
    python3 ssm_stream.py write-demo FILE    a stream with one tensor of every dtype (levels mixed)
    python3 ssm_stream.py big MIB            a level-0 stream of one f32 tensor of MIB MiB on stdout
    python3 ssm_stream.py bad DIR            the corpus of damaged streams (see make_bad)
    python3 ssm_stream.py make SPEC...       hand-made tensors on stdout, one frame per SPEC:
        SPEC   = NAME:DTYPE:SHAPE:VALUES[:key=value,key=value]
        DTYPE  f32 f64 c64 c128;  SHAPE 2x8x8 (empty for a scalar)
        VALUES randn | const=V | list=v1,v2,... | randn+nan | randn+inf | negexp (-exp(randn))
               (complex dtypes: values fill (re, im) components in turn)
As a module: frames(file), read_stream(bytes) -> {name: (dtype, dims, attrs, flat values)}.
"""
import hashlib, io, math, os, random, struct, sys, zlib
import numpy as np

DT = {1: '<f4', 2: '<f8', 3: '<c8', 4: '<c16', 5: '<i4', 6: '<i8', 7: 'u1', 8: '<u2', 9: '<f2',
      10: 'i1', 11: '<i2', 12: '<u2', 13: '<u4', 14: '<u8', 15: '?'}   # bf16 carried as raw u2
NAMES = {1: 'f32', 2: 'f64', 3: 'c64', 4: 'c128', 5: 'i32', 6: 'i64', 7: 'u8', 8: 'bf16', 9: 'f16',
         10: 'i8', 11: 'i16', 12: 'u16', 13: 'u32', 14: 'u64', 15: 'bool'}
WIDTH = {3: 4, 4: 8}

def width(code):
    return WIDTH.get(code, np.dtype(DT[code]).itemsize)

def frames(f):
    """Yields (name, dtype code, attrs, array) for every frame of a binary file object."""
    while (h := f.read(16)):
        if len(h) < 16: raise IOError('truncated frame header')
        magic, ver, flags, dt, rank, nl, al = struct.unpack('<4sBBBBII', h)
        if magic != b'SSMT' or ver != 1: raise IOError('not a tensor stream')
        rest = f.read(8 * rank + nl + al + 4)
        if zlib.crc32(h + rest[:-4]) != struct.unpack('<I', rest[-4:])[0]: raise IOError('header crc')
        if flags & 1: raise IOError('upstream failed: ' + rest[:nl].decode())
        dims = struct.unpack('<%dQ' % rank, rest[:8 * rank])
        name = rest[8 * rank:8 * rank + nl].decode()
        attrs = dict(l.split('=', 1) for l in rest[8 * rank + nl:-4].decode().splitlines())
        dtype, w = np.dtype(DT[dt]), width(dt)
        data = bytearray()
        while True:
            bh = f.read(16)
            raw, stored, codec = struct.unpack('<IIB', bh[:9])
            body = f.read(stored)
            if zlib.crc32(bh[:12] + body) != struct.unpack('<I', bh[12:])[0]: raise IOError('block crc')
            if raw == 0: break
            if codec: body = zlib.decompress(body, -15)
            if codec == 2: body = np.frombuffer(body, 'u1').reshape(w, -1).T.tobytes()
            data += body
        yield name, dt, attrs, np.frombuffer(bytes(data), dtype).reshape(dims)

def header(name, code, dims, attrs=None, flags=0, version=1):
    nb = name.encode()
    ab = ''.join('%s=%s\n' % kv for kv in (attrs or {}).items()).encode()
    h = struct.pack('<4sBBBBII', b'SSMT', version, flags, code, len(dims), len(nb), len(ab))
    h += struct.pack('<%dQ' % len(dims), *dims) + nb + ab
    return h + struct.pack('<I', zlib.crc32(h))

def block(raw_bytes, codec, w=1):
    body = raw_bytes
    if codec == 2: body = np.frombuffer(raw_bytes, 'u1').reshape(-1, w).T.tobytes()
    if codec:
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        body = c.compress(body) + c.flush()
        if len(body) >= len(raw_bytes): codec, body = 0, raw_bytes   # stored when not smaller
    bh = struct.pack('<IIBBH', len(raw_bytes), len(body), codec, 0, 0)
    return bh + struct.pack('<I', zlib.crc32(bh + body)) + body

def end_block():
    bh = struct.pack('<IIBBH', 0, 0, 0, 0, 0)
    return bh + struct.pack('<I', zlib.crc32(bh))

def frame(name, code, arr, attrs=None, codec=0, block_bytes=1 << 20):
    raw = np.ascontiguousarray(arr).tobytes()
    out = header(name, code, arr.shape, attrs)
    for off in range(0, len(raw), block_bytes):
        out += block(raw[off:off + block_bytes], codec, width(code))
    return out + end_block()

NUMPY_CODES = {'float32': 1, 'float64': 2, 'complex64': 3, 'complex128': 4, 'int32': 5, 'int64': 6,
               'uint8': 7, 'float16': 9, 'int8': 10, 'int16': 11, 'uint16': 12, 'uint32': 13,
               'uint64': 14, 'bool': 15}

def write(f, name, array, attrs=None, codec=0):
    """Writes one frame of a numpy array (its dtype picks the stream dtype) to a binary file."""
    a = np.ascontiguousarray(array)
    code = NUMPY_CODES[a.dtype.name]
    f.write(frame(name, code, a.astype(np.dtype(DT[code]), copy=False), attrs, codec))

def demo_tensors():
    rng = np.random.default_rng(7)
    out = []
    for code, dt in DT.items():
        shape = (3, 5, 7) if code % 2 else (11,)
        if code == 15: a = rng.integers(0, 2, shape).astype('?')
        elif np.dtype(dt).kind in 'iu': a = rng.integers(0, 100, shape).astype(dt)
        elif np.dtype(dt).kind == 'c': a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
        else: a = rng.standard_normal(shape).astype(dt)
        out.append(('t_' + NAMES[code], code, {'dtype': NAMES[code], 'k': 'v=1'}, a))
    return out

def make_bad(d):
    """Damaged streams, each with the phrase its error message must contain (tests/bad-streams)."""
    os.makedirs(d, exist_ok=True)
    a = np.arange(1000, dtype='<f4')
    good = frame('x', 1, a, {'init': 'legs'}, codec=2)
    hdr_len = len(header('x', 1, a.shape, {'init': 'legs'}))
    cases = {
        'not-a-stream': (b'hello, world\n', 'not a tensor stream'),
        'bad-version': (header('x', 1, a.shape, version=2) + good[hdr_len:], 'unsupported format version'),
        'unknown-dtype': (header('x', 99, a.shape) + good[hdr_len:], 'unknown dtype'),
        'truncated-header': (good[:hdr_len - 3], 'truncated'),
        'truncated-payload': (good[:-40], 'truncated'),
        'missing-end-block': (good[:-16], 'truncated'),
        'header-crc': (good[:hdr_len - 6] + bytes([good[hdr_len - 6] ^ 1]) + good[hdr_len - 5:], 'checksum'),
        'block-crc': (good[:hdr_len + 30] + bytes([good[hdr_len + 30] ^ 0x40]) + good[hdr_len + 31:], 'checksum'),
        'dims-overflow': (header('x', 1, (1 << 40, 1 << 40)) + end_block(), 'overflow'),
        'payload-short': (header('x', 1, (2000,)) + good[hdr_len:], 'shorter'),
        'payload-long': (header('x', 1, (500,)) + good[hdr_len:], 'longer'),
        'garbage-after-frame': (good + b'junk', 'garbage after frame'),
        'abort-frame': (good + header('upstream: tensor B: oops', 0, (), flags=1), 'failed: upstream'),
        'corrupt-deflate': (header('x', 1, a.shape) + (lambda bh: bh + struct.pack('<I', zlib.crc32(bh + b'\xff' * 100)) + b'\xff' * 100)(struct.pack('<IIBBH', 4000, 100, 1, 0, 0)) + end_block(), 'corrupt'),
        'huge-block': (header('x', 1, a.shape) + struct.pack('<IIBBHI', 1 << 30, 1 << 30, 0, 0, 0, 0), 'exceeds'),
        'lying-size': (header('x', 1, (1 << 37,)) + good[hdr_len:], 'shorter'),
    }
    with open(os.path.join(d, 'EXPECTED'), 'w') as ex:
        ex.write('# FILE<TAB>phrase the one-line error must contain (made by tests/ref/ssm_stream.py bad)\n')
        for name, (data, phrase) in sorted(cases.items()):
            with open(os.path.join(d, name + '.ssm'), 'wb') as f: f.write(data)
            ex.write('%s.ssm\t%s\n' % (name, phrase))

def read_stream(data):
    """Returns a dict name -> (dtype name, dims, attrs, flat list of values (complex as complex))."""
    return {name: (NAMES[code], list(a.shape), attrs, a.ravel().tolist())
            for name, code, attrs, a in frames(io.BytesIO(data))}

def spec_values(spec, n, rng):
    if spec.startswith('const='): return [float(spec[6:])] * n
    if spec.startswith('list='):
        v = [float(x) for x in spec[5:].split(',')]
        if len(v) != n: sys.exit('ssm_stream: list has %d values, shape needs %d' % (len(v), n))
        return v
    base, _, bad = spec.partition('+')
    if base == 'randn': v = [rng.gauss(0, 1) for _ in range(n)]
    elif base == 'negexp': v = [-math.exp(rng.gauss(0, 1)) for _ in range(n)]
    else: sys.exit("ssm_stream: unknown values '%s'" % spec)
    if bad == 'nan': v[n // 2] = float('nan')
    elif bad == 'inf': v[n // 2] = float('inf')
    return v

def make_from_specs(specs):
    rng, out = random.Random(1), b''
    codes = {v: k for k, v in NAMES.items()}
    for spec in specs:
        parts = spec.split(':')
        name, dtype, shape, vals = parts[:4]
        attrs = dict(kv.split('=', 1) for kv in parts[4].split(',') if kv) if len(parts) > 4 else {}
        dims = tuple(int(d) for d in shape.split('x')) if shape else ()
        code = codes[dtype]
        comps = 2 if code in (3, 4) else 1
        n = int(np.prod(dims, dtype=np.int64))
        flat = np.array(spec_values(vals, n * comps, rng), dtype='<f8' if code in (2, 4) else '<f4')
        out += frame(name, code, flat.view(DT[code]).reshape(dims), attrs)
    return out

def main():
    cmd = sys.argv[1]
    if cmd == 'dump':
        with open(sys.argv[2], 'rb') as f:
            for name, code, attrs, arr in frames(f):
                print(name, NAMES[code], list(arr.shape), sorted(attrs.items()),
                      hashlib.sha256(arr.tobytes()).hexdigest()[:16])
    elif cmd == 'write-demo':
        with open(sys.argv[2], 'wb') as f:
            for i, (name, code, attrs, a) in enumerate(demo_tensors()):
                f.write(frame(name, code, a, attrs, codec=i % 3))
    elif cmd == 'big':
        mib = int(sys.argv[2])
        blk = block(np.random.default_rng(1).standard_normal(1 << 18).astype('<f4').tobytes(), 0)
        out = sys.stdout.buffer
        out.write(header('big', 1, (mib << 18,)))
        for _ in range(mib): out.write(blk)
        out.write(end_block())
    elif cmd == 'bad':
        make_bad(sys.argv[2])
    elif cmd == 'make':
        sys.stdout.buffer.write(make_from_specs(sys.argv[2:]))
    else:
        sys.exit('unknown command ' + cmd)

if __name__ == '__main__':
    main()
