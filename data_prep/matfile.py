"""The ILSVRC devkit's data/meta.mat (MATLAB level-5 MAT-file), read with numpy alone.

Only what meta.mat uses is supported: zlib-compressed or plain variables, struct arrays, cell
arrays, character arrays and numeric arrays (real). Anything else raises MatError, and prep asks
for --val-labels instead. Format: "MATLAB MAT-File Format", MathWorks,
chapter 1 (level 5): a 128-byte header, then tagged data elements padded to 8 bytes.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

MI_MATRIX, MI_COMPRESSED = 14, 15
NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
           13: "u8", 16: "u1", 17: "u2", 18: "u4"}
MX_CELL, MX_STRUCT, MX_CHAR = 1, 2, 4
MX_NUMERIC = set(range(6, 16))


class MatError(Exception):
    """The file is not a level-5 MAT-file of the kind this reader supports."""


class _Reader:
    def __init__(self, data: bytes, endian: str):
        self.data, self.pos, self.e = data, 0, endian

    def tag(self):
        first, second = struct.unpack_from(self.e + "II", self.data, self.pos)
        if first >> 16:  # small data element: type and size in 4 bytes, data in the next 4
            self.pos += 8
            return first & 0xFFFF, first >> 16, self.pos - 4, True
        self.pos += 8
        return first, second, self.pos, False

    def element(self):
        """-> (type, raw bytes); advances past padding."""
        kind, n, start, small = self.tag()
        if not small:
            self.pos = start + n + (-n % 8)
        if start + n > len(self.data):
            raise MatError("data element runs past the end of the file")
        return kind, self.data[start:start + n]

    def array(self, kind: int, raw: bytes) -> np.ndarray:
        if kind not in NUMERIC:
            raise MatError(f"unsupported data type {kind}")
        return np.frombuffer(raw, dtype=np.dtype(NUMERIC[kind]).newbyteorder(self.e))


def _matrix(raw: bytes, endian: str):
    """Content of one miMATRIX element -> python value."""
    if not raw:
        return np.zeros((0, 0))
    r = _Reader(raw, endian)
    flags = r.array(*r.element())
    cls = int(flags[0]) & 0xFF
    dims = [int(d) for d in r.array(*r.element())]
    r.element()  # name (empty inside structs and cells)
    count = int(np.prod(dims))
    if cls == MX_STRUCT:
        width = int(r.array(*r.element())[0])
        names_raw = r.element()[1]
        names = [names_raw[i:i + width].split(b"\0", 1)[0].decode("ascii")
                 for i in range(0, len(names_raw), width)]
        out = []
        for _ in range(count):  # column-major order, as MATLAB stores them
            item = {}
            for name in names:
                kind, sub = r.element()
                if kind != MI_MATRIX:
                    raise MatError(f"struct field {name!r} is not a matrix element")
                item[name] = _matrix(sub, endian)
            out.append(item)
        return out
    if cls == MX_CELL:
        return [_matrix(r.element()[1], endian) for _ in range(count)]
    if cls == MX_CHAR:
        kind, data = r.element()
        codes = r.array(kind, data)
        if kind == 16:
            return bytes(codes).decode("utf-8")
        return "".join(map(chr, codes.reshape(dims, order="F").T.ravel()
                           if len(dims) == 2 and dims[0] > 1 else codes))
    if cls in MX_NUMERIC:
        if int(flags[0]) & 0x800:
            raise MatError("complex arrays are not supported")
        return r.array(*r.element()).astype(np.float64).reshape(dims, order="F")
    raise MatError(f"unsupported MATLAB class {cls}")


def loadmat(data: bytes) -> dict:
    """Bytes of a level-5 MAT-file -> {variable name: value}. Struct arrays become lists of dicts,
    char arrays str, numeric arrays float64 numpy arrays (MATLAB shape)."""
    if len(data) < 128 or data[:6] != b"MATLAB":
        raise MatError("not a MATLAB level-5 MAT-file (no 'MATLAB' header)")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise MatError("bad endian indicator in the MAT-file header")
    out, pos = {}, 128
    while pos + 8 <= len(data):
        kind, n = struct.unpack_from(endian + "II", data, pos)
        body = data[pos + 8:pos + 8 + n]
        pos += 8 + n + (0 if kind == MI_COMPRESSED else -n % 8)
        if kind == MI_COMPRESSED:
            try:
                body = zlib.decompress(body)
            except zlib.error as e:
                raise MatError(f"corrupt compressed variable: {e}") from e
            kind, n = struct.unpack_from(endian + "II", body, 0)
            body = body[8:8 + n]
        if kind != MI_MATRIX:
            continue
        r = _Reader(body, endian)
        r.element()
        r.element()
        name = r.element()[1].decode("ascii")
        out[name] = _matrix(body, endian)
    return out
