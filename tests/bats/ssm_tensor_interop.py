"""ssm_tensor_interop.py - the independent side of ssm-tensor's interop tests (tests/bats/ssm-tensor.bats).

NumPy writes and reads the .npy files itself; safetensors files are written and parsed here from the
format's definition (u64 LE header length, JSON header, raw little-endian data), with json + numpy
only, so the test does not depend on the safetensors package.

  npy-write DIR         writes DIR/<case>.npy for every case (dtypes, byte orders, Fortran order,
                        scalar, empty) with numpy.save
  npy-check DIR OUT     loads OUT/<case>.npy (exported by ssm-tensor) and compares with DIR's, bytes
                        and dtypes exactly; exit 1 on any difference
  st-write FILE         writes a safetensors file with metadata and several dtypes
  npy-compare GOT EXP   every GOT/<name>.npy equals EXP/<name>.npy, same file names
  st-check FILE OUTDIR  parses FILE (exported by ssm-tensor) and compares each tensor with OUTDIR/<name>.npy
"""
import json
import os
import struct
import sys

import numpy as np

rng = np.random.default_rng(12345)


def npy_cases():
    cases = {}
    for code in ['<f2', '<f4', '<f8', '<c8', '<c16', '|i1', '<i2', '<i4', '<i8', '|u1', '<u2', '<u4',
                 '<u8', '|b1', '>f4', '>f8', '>i2', '>i8', '>u4', '>c8', '>c16', '>f2']:
        dt = np.dtype(code)
        shape = (3, 5, 7)
        if dt.kind == 'b':
            a = rng.integers(0, 2, shape).astype(dt)
        elif dt.kind in 'iu':
            info = np.iinfo(dt)
            a = rng.integers(info.min, info.max, shape, dtype=dt.newbyteorder('=')).astype(dt)
        elif dt.kind == 'c':
            a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
        else:
            a = rng.standard_normal(shape).astype(dt)
            a.flat[0], a.flat[1], a.flat[2], a.flat[3] = np.nan, -0.0, np.inf, -np.inf
        name = 'x_' + code.replace('<', 'le_').replace('>', 'be_').replace('|', '')
        cases[name] = a
    cases['fortran_f4'] = np.asfortranarray(rng.standard_normal((4, 3, 5)).astype('<f4'))
    cases['fortran_i2'] = np.asfortranarray(np.arange(6, dtype='<i2').reshape(2, 3))
    cases['scalar_f8'] = np.array(3.25)
    cases['empty_i4'] = np.zeros((0, 4), dtype='<i4')
    cases['odd_u8'] = rng.integers(0, 255, (1, 1, 13), dtype=np.uint8)
    return cases


def same(a, b):
    """Exact equality of values, shape and dtype kind/size (byte order aside), NaNs included.
    bf16 comes back from ssm-tensor as the void dtype |V2 and is compared as its u2 bits."""
    if a.dtype.kind == 'V':
        a = a.view('<u2')
    if b.dtype.kind == 'V':
        b = b.view('<u2')
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind or a.dtype.itemsize != b.dtype.itemsize:
        return False
    le = a.dtype.newbyteorder('<')
    return np.ascontiguousarray(a.astype(le)).tobytes() == np.ascontiguousarray(b.astype(le)).tobytes()


def npy_write(d):
    for name, a in npy_cases().items():
        np.save(os.path.join(d, name + '.npy'), a)
    # a version 3.0 header (utf8): numpy writes it only when needed, so write one by hand
    a = np.arange(5, dtype='<f4')
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"
    header += ' ' * ((64 - (12 + len(header) + 1) % 64) % 64) + '\n'
    with open(os.path.join(d, 'v3_f4.npy'), 'wb') as f:
        f.write(b'\x93NUMPY\x03\x00' + struct.pack('<I', len(header)) + header.encode() + a.tobytes())


def npy_check(d, out):
    bad = 0
    cases = npy_cases()
    cases['v3_f4'] = np.arange(5, dtype='<f4')
    for name, want in cases.items():
        got = np.load(os.path.join(out, name + '.npy'))
        if not same(got, want):
            print('mismatch:', name, got.dtype, got.shape, 'want', want.dtype, want.shape)
            bad += 1
        elif not got.flags.c_contiguous:
            print('not C order:', name)
            bad += 1
    print('%d arrays compared, %d differ' % (len(cases), bad))
    return 1 if bad else 0


ST_DTYPES = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4', 'I16': '<i2',
             'I8': '|i1', 'U64': '<u8', 'U32': '<u4', 'U16': '<u2', 'U8': '|u1', 'BOOL': '|b1'}


def st_write(path):
    tensors = {}
    for st, code in ST_DTYPES.items():
        dt = np.dtype(code)
        if dt.kind == 'b':
            a = rng.integers(0, 2, (2, 3)).astype(dt)
        elif dt.kind in 'iu':
            info = np.iinfo(dt)
            a = rng.integers(info.min, info.max, (2, 3), dtype=dt)
        else:
            a = rng.standard_normal((2, 3)).astype(dt)
        tensors['model.%s.weight' % st.lower()] = (st, a)
    # bf16: the top half of float32 bit patterns
    bits = (rng.standard_normal(7).astype('<f4').view('<u4') >> 16).astype('<u2')
    tensors['model.bf16'] = ('BF16', bits)
    header, blobs, off = {'__metadata__': {'format': 'pt', 'note': 'two\nlines'}}, [], 0
    # write in reverse name order so the data order differs from the key order
    for name in sorted(tensors, reverse=True):
        st, a = tensors[name]
        raw = a.tobytes()
        header[name] = {'dtype': st, 'shape': list(a.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
    # the expected arrays, for the check after a round trip
    d = os.path.dirname(path) or '.'
    os.makedirs(os.path.join(d, 'st_expect'), exist_ok=True)
    for name, (st, a) in tensors.items():
        np.save(os.path.join(d, 'st_expect', name + '.npy'), a)


def npy_compare_dir(got_dir, expect_dir):
    """Every OUT/<name>.npy equals EXPECT/<name>.npy and the two directories hold the same names."""
    bad = 0
    got, want = sorted(os.listdir(got_dir)), sorted(os.listdir(expect_dir))
    if got != want:
        print('files differ:', sorted(set(got) ^ set(want)))
        bad += 1
    for f in set(got) & set(want):
        if not same(np.load(os.path.join(got_dir, f)), np.load(os.path.join(expect_dir, f))):
            print('mismatch:', f)
            bad += 1
    print('%d arrays compared, %d problems' % (len(want), bad))
    return 1 if bad else 0


def st_check(path, expect_dir):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop('__metadata__', {})
    bad = 0
    for name, e in header.items():
        b0, b1 = e['data_offsets']
        if e['dtype'] == 'BF16':
            a = np.frombuffer(body[b0:b1], dtype='<u2').reshape(e['shape'])
        else:
            a = np.frombuffer(body[b0:b1], dtype=ST_DTYPES[e['dtype']]).reshape(e['shape'])
        want = np.load(os.path.join(expect_dir, name + '.npy'))
        if not same(a, want):
            print('mismatch:', name)
            bad += 1
    names = set(header)
    expected = set(f[:-4] for f in os.listdir(expect_dir))
    if names != expected:
        print('names differ:', sorted(names ^ expected))
        bad += 1
    # ssm-tensor keeps attributes in __metadata__ under "ssm:NAME"
    for name in header:
        if 'format=pt' not in meta.get('ssm:' + name, ''):
            print('attributes lost:', name, meta.get('ssm:' + name))
            bad += 1
    print('%d tensors compared, %d problems' % (len(header), bad))
    return 1 if bad else 0


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'npy-write':
        npy_write(sys.argv[2])
    elif cmd == 'npy-check':
        sys.exit(npy_check(sys.argv[2], sys.argv[3]))
    elif cmd == 'st-write':
        st_write(sys.argv[2])
    elif cmd == 'npy-compare':
        sys.exit(npy_compare_dir(sys.argv[2], sys.argv[3]))
    elif cmd == 'st-check':
        sys.exit(st_check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit('unknown command ' + cmd)
