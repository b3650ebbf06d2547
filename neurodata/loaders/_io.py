"""Small helpers loaders share: reading bytes, header lines, clear errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neurodata.errors import FormatError, TruncatedFileError


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
