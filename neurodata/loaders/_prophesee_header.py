"""The ``%`` text header that Prophesee ``.dat`` and ``.raw`` files start with.

Both formats open with ASCII lines ``% key value`` and switch to binary at the
first byte that does not start such a line (``.raw`` files written by
Metavision 2+ close the header with ``% end``). Binary data can begin with the
byte ``0x25`` (``%``) by chance, so a candidate line counts as header only if
it reads ``% `` then printable text of reasonable length up to a line feed;
otherwise the binary part starts there.
"""
from __future__ import annotations

import re

import numpy as np

#: the text header must end within this many bytes
HEADER_MAX = 1 << 20

#: longest header line accepted (longer "lines" are binary data)
MAX_LINE = 4096
#: bytes that may not appear in a header line (control characters but TAB/CR)
_CONTROL = np.array([b not in (9, 13) for b in range(32)] + [False] * 224, dtype=bool)
_CONTROL[127] = True


def _is_text(line: bytes) -> bool:
    if len(line) > MAX_LINE:
        return False
    return not _CONTROL[np.frombuffer(line, np.uint8)].any()


def split_header(data: bytes) -> tuple[list[str], int, bool]:
    """Split the ``%`` header lines off ``data``.

    Returns
    -------
    lines : list of str
        Header lines without the leading ``%`` and surrounding blanks.
    offset : int
        Where the binary part begins.
    ended : bool
        Whether an explicit ``% end`` line closed the header.
    """
    lines: list[str] = []
    pos, n = 0, len(data)
    while pos < n and data[pos] == 0x25:  # '%'
        end = data.find(b"\n", pos, pos + MAX_LINE + 2)
        if end < 0:
            if n - pos <= MAX_LINE and _is_text(data[pos:]):  # header-only file
                lines.append(data[pos + 1:].decode("latin-1").strip())
                return lines, n, False
            break
        raw = data[pos + 1:end]
        # a header line is "% key value" (or "% end"); anything else is binary data
        if not (raw.startswith(b" ") or raw.rstrip(b"\r") == b"end") or not _is_text(raw):
            break
        text = raw.decode("latin-1").strip()
        pos = end + 1
        if text == "end":
            return lines, pos, True
        lines.append(text)
    return lines, pos, False


def header_dict(lines: list[str]) -> dict[str, str]:
    """``key value`` lines as a dict (lower-case keys; later lines win)."""
    out: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if key:
            out[key.lower()] = value.strip()
    return out


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*", value)
    return int(m.group(1)) if m else None


def geometry(fields: dict[str, str]) -> tuple[int, int] | None:
    """``(width, height)`` stated by the header, or None.

    Understands ``% Width W`` / ``% Height H`` (DAT), ``% geometry WxH`` and the
    ``width=``/``height=`` options of ``% format EVT3;height=H;width=W`` (RAW).
    """
    w, h = _int(fields.get("width")), _int(fields.get("height"))
    if w and h:
        return w, h
    geo = fields.get("geometry")
    if geo:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", geo)
        if m and int(m.group(1)) and int(m.group(2)):
            return int(m.group(1)), int(m.group(2))
    fmt = fields.get("format")
    if fmt:
        opts = dict(part.split("=", 1) for part in fmt.split(";")[1:] if "=" in part)
        w, h = _int(opts.get("width")), _int(opts.get("height"))
        if w and h:
            return w, h
    return None


class MappedFile:
    """A file mapped read-only (no copy into memory), as a context manager.

    ``.data`` supports slicing and ``np.frombuffer``; arrays made from it must
    not outlive the ``with`` block (decoders return new arrays).
    """

    def __init__(self, path):
        import mmap
        import os

        from neurodata.errors import FormatError

        self.path = path
        if os.path.isdir(path):
            raise FormatError("is a folder, expected a file", path)
        self._fh = open(path, "rb")
        size = os.fstat(self._fh.fileno()).st_size
        if size == 0:
            self._fh.close()
            raise FormatError("empty file", path)
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.data = memoryview(self._mm)

    def __enter__(self):
        return self

    def head(self, size: int = 1 << 20) -> bytes:
        """The first ``size`` bytes (where the text header is)."""
        return bytes(self.data[:size])

    def __exit__(self, *exc):
        try:
            self.data.release()
            self._mm.close()
        except BufferError:  # an array still views the map: leave it to the GC
            pass
        self._fh.close()
        return False
