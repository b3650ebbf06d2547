"""Small helpers loaders share: reading bytes, header lines, clear errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, TruncatedFileError


def read_bytes(path: str | os.PathLike) -> bytes:
    """Whole file as bytes, with a FormatError for an empty file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise FormatError("is a folder, expected a file", p) from None
    if not data:
        raise FormatError("empty file", p)
    return data


def split_text_header(data: bytes, prefix: bytes) -> tuple[list[str], int]:
    """Split leading header lines that start with ``prefix``.

    Returns the decoded lines (without prefix and line ending) and the byte
    offset where the binary part begins.
    """
    lines = []
    pos = 0
    n = len(data)
    while pos < n and data.startswith(prefix, pos):
        end = data.find(b"\n", pos)
        if end < 0:
            end = n
        lines.append(data[pos + len(prefix):end].rstrip(b"\r").decode("latin-1").strip())
        pos = end + 1
    return lines, min(pos, n)


def frombuffer_exact(data: bytes, dtype, offset: int, path, what: str = "event",
                     allow_partial: bool = False) -> np.ndarray:
    """Records of ``dtype`` from ``data[offset:]``; a partial trailing record is an error.

    With ``allow_partial`` a trailing partial record is dropped (formats whose
    writers are known to stop mid-record).
    """
    dtype = np.dtype(dtype)
    nbytes = len(data) - offset
    rem = nbytes % dtype.itemsize
    if rem and not allow_partial:
        raise TruncatedFileError(
            f"truncated: {nbytes} bytes of {what} data is not a whole number of "
            f"{dtype.itemsize}-byte records ({rem} bytes left over)", path)
    return np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)


_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_MAX = 1 << 16  # numpy itself refuses headers over 10000 bytes by default


def read_npy_header(fh, available: int, path):
    """Parse a ``.npy`` header from ``fh`` (positioned at the magic) without trusting it.

    The version and header length are checked before anything is read, so a damaged
    length cannot make numpy allocate gigabytes for the header. Returns ``(shape,
    fortran_order, dtype, data_bytes_available)``; raises CorruptFileError.
    """
    import struct
    import tokenize

    head = fh.read(8)
    if len(head) < 8 or not head.startswith(_NPY_MAGIC):
        raise CorruptFileError("not a .npy file (bad magic)", path)
    version = (head[6], head[7])
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise CorruptFileError(f"unknown .npy version {version[0]}.{version[1]}", path)
    width = 2 if version == (1, 0) else 4
    raw = fh.read(width)
    if len(raw) < width:
        raise TruncatedFileError("truncated .npy header", path)
    hlen = struct.unpack("<H" if width == 2 else "<I", raw)[0]
    if hlen > _NPY_HEADER_MAX or 8 + width + hlen > available:
        raise CorruptFileError(f".npy header claims {hlen} bytes", path)
    text = fh.read(hlen)
    if len(text) < hlen:
        raise TruncatedFileError("truncated .npy header", path)
    import io

    buf = io.BytesIO(head + raw + text)
    buf.seek(8)
    try:
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:  # 3.0: utf-8 header, same layout as 2.0
            reader = getattr(np.lib.format, "_read_array_header")
            shape, fortran, dtype = reader(buf, version)
        else:
            shape, fortran, dtype = reader(buf)
    except (ValueError, SyntaxError, tokenize.TokenError, EOFError, TypeError,
            UnicodeDecodeError) as e:
        raise CorruptFileError(f"bad .npy header ({e})", path) from None
    return shape, fortran, dtype, available - (8 + width + hlen)
