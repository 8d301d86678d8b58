"""ssm_stream.py - a minimal writer of the ssm tensor stream format (ssm-stream(5)), for tests,
benchmarks and the demo fallback.  Writes stored (uncompressed) blocks only; the tools read them
like any other stream.

    import ssm_stream
    with open("k.ssm", "wb") as f:
        ssm_stream.write(f, "K", numpy_array, {"L": "1024"})

Layout (little-endian):  "SSMT" u8 version=1 u8 flags=0 u8 dtype u8 rank u32 name_len u32 attrs_len
i64 dims[rank] name attrs u32 crc32(all before);  blocks: u32 raw_len u32 stored_len u8 codec=0 u8 0
u16 0 u32 crc32(first 12 header bytes + data) data;  end block: raw_len = stored_len = 0.
"""
import struct
import zlib

DTYPES = {"float32": 1, "float64": 2, "complex64": 3, "complex128": 4, "int32": 5, "int64": 6,
          "uint8": 7}
BLOCK = 1 << 20


def _block(data):
    head = struct.pack("<IIBBH", len(data), len(data), 0, 0, 0)
    crc = zlib.crc32(data, zlib.crc32(head)) & 0xffffffff
    return head + struct.pack("<I", crc) + data


def write(f, name, array, attrs=None):
    """Writes one tensor frame: array is a numpy array of a dtype listed in DTYPES."""
    import numpy as np
    a = np.ascontiguousarray(array)
    code = DTYPES[a.dtype.name]
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    name_b = name.encode()
    attrs_b = "".join("%s=%s\n" % (k, v) for k, v in (attrs or {}).items()).encode()
    head = b"SSMT" + struct.pack("<BBBBII", 1, 0, code, a.ndim, len(name_b), len(attrs_b))
    head += struct.pack("<%dq" % a.ndim, *a.shape) + name_b + attrs_b
    f.write(head + struct.pack("<I", zlib.crc32(head) & 0xffffffff))
    raw = a.tobytes()
    for i in range(0, len(raw), BLOCK):
        f.write(_block(raw[i:i + BLOCK]))
    f.write(_block(b""))
