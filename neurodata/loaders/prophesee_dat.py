"""Prophesee / Chronocam ``.dat`` files of CD (contrast detection) events.

Format (Prophesee "DAT File Format", Metavision documentation): little-endian,

1. ASCII header lines ``% key value`` (``% Data file containing CD events``,
   ``% Date ...``, ``% Version 2``, optional ``% Width W`` and ``% Height H``);
2. two bytes: event type (``0`` Event2d, ``12`` EventCD, ``14``
   EventExtTrigger) and event size (``8``), present whenever there is a header;
3. 8-byte records: ``uint32`` timestamp in microseconds, then ``uint32``
   packing ``x`` in bits 0-13, ``y`` in bits 14-27 and polarity in bits 28-31
   (``% Version 2``). Files of earlier versions (no ``Version`` line, or a
   version below 2: the first ATIS recordings) pack ``x`` in bits 0-8, ``y`` in
   bits 9-16 and polarity in bit 17, as Prophesee's own MATLAB reader
   ``load_cd_events.m`` decodes them. A size byte above 8 means wider records
   whose first 8 bytes are these fields.

Files with no header at all have no type/size bytes either; they decode as
version-0 Event2d records when the format is forced.
The 32-bit timestamp wraps after ~71 minutes: a step backwards of more than
2**31 us is taken as a wrap and unwrapped into int64 microseconds.
The sensor size is what the header states (``Width``/``Height``), else None:
many dataset releases (N-CARS, the Gen1 automotive set) omit it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError
from neurodata.events import EventRecording
from neurodata.loaders._io import frombuffer_exact
from neurodata.loaders._prophesee_header import (
    HEADER_MAX, MappedFile, geometry, header_dict, split_header)

VERSION = "Prophesee DAT v2 (CD events, 8 bytes)"

#: event-type byte -> name, per the DAT specification
EVENT_TYPES = {0: "Event2d", 12: "EventCD", 14: "EventExtTrigger"}
CD_TYPES = (0, 12)
RECORD = np.dtype([("t", "<u4"), ("w", "<u4")])
_SNIFF_BYTES = 1 << 16


def sniff(path: Path, head: bytes) -> bool:
    """A ``%`` header followed by a known event-type byte and event size 8."""
    if not head.startswith(b"%") or path.suffix.lower() == ".raw":
        return False
    lines, offset, ended = split_header(head)
    if offset >= len(head) - 2 and len(head) >= 4096:  # header longer than the head
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        lines, offset, ended = split_header(head)
    fields = header_dict(lines)
    if "evt" in fields or "format" in fields or ended:  # a RAW header
        return False
    if len(head) < offset + 2:
        return False
    return head[offset] in EVENT_TYPES and 8 <= head[offset + 1] <= 64


def parse(data: bytes, path=None) -> tuple[dict, int, int, int]:
    """Header fields, event type, event size and the offset of the first record."""
    lines, offset, _ = split_header(data)
    if offset == len(data) == HEADER_MAX:
        raise FormatError(f"text header runs past {HEADER_MAX} bytes", path)
    fields = header_dict(lines)
    if not lines:  # headerless legacy file: no type/size bytes
        return fields, 0, 8, 0
    if len(data) < offset + 2:
        raise FormatError("file ends inside the header: no event type/size bytes", path)
    return fields, data[offset], data[offset + 1], offset + 2


def unwrap_u32(ts: np.ndarray) -> np.ndarray:
    """uint32 microsecond timestamps as int64, unwrapping counter overflows."""
    t = ts.astype(np.int64)
    if len(t) > 1 and (ts[1:] < ts[:-1]).any():  # cheap test first: time went back
        wraps = np.diff(t) < -(1 << 31)
        if wraps.any():
            t[1:] += np.cumsum(wraps, dtype=np.int64) << 32
    return t


#: (x mask, y shift, y mask, polarity shift, polarity mask) per layout
LAYOUTS = {2: (0x3FFF, 14, 0x3FFF, 28, 0xF), 1: (0x1FF, 9, 0xFF, 17, 0x1)}


def layout_of(fields: dict) -> int:
    """2 for ``% Version 2`` and later, 1 for earlier files (their bit layout)."""
    try:
        version = float(fields.get("version", "0").split()[0])
    except (ValueError, IndexError):
        version = 0.0
    return 2 if version >= 2 else 1


def decode_numpy(records: np.ndarray, layout: int = 2):
    """Decode structured records (``t``, ``w``) into x, y, t, p columns."""
    xm, ys, ym, ps, pm = LAYOUTS[layout]
    w = records["w"]
    x = (w & xm).astype(np.uint16)
    y = ((w >> ys) & ym).astype(np.uint16)
    p = (((w >> ps) & pm) != 0).view(np.uint8)
    return x, y, unwrap_u32(records["t"]), p


_KERNEL = None


def _numba_kernel():
    """The compiled single-pass decoder, or None without numba."""
    global _KERNEL
    if _KERNEL is None:
        try:
            _KERNEL = _build_kernel()
        except Exception:  # numba absent or unusable here: numpy takes over
            _KERNEL = False
    return _KERNEL or None


def _build_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(ts, w, x, y, t, p, xm, ys, ym, ps, pm):
        offset = 0
        prev = np.int64(ts[0]) if ts.shape[0] else 0
        for i in range(ts.shape[0]):
            cur = np.int64(ts[i])
            if cur - prev < -(1 << 31):
                offset += 1 << 32
            prev = cur
            t[i] = cur + offset
            wi = w[i]
            x[i] = wi & xm
            y[i] = (wi >> ys) & ym
            p[i] = 1 if (wi >> ps) & pm else 0

    return kernel


def decode(records: np.ndarray, use_numba: bool | None = None, layout: int = 2):
    """Decode records into x, y, t, p; numba kernel when available.

    ``layout`` is 2 (``% Version 2`` files) or 1 (earlier files), see :data:`LAYOUTS`.
    """
    kernel = _numba_kernel() if use_numba in (None, True) else None
    if use_numba and kernel is None:
        raise ImportError("numba is not installed")
    if kernel is None:
        return decode_numpy(records, layout)
    n = len(records)
    x, y = np.empty(n, np.uint16), np.empty(n, np.uint16)
    t, p = np.empty(n, np.int64), np.empty(n, np.uint8)
    kernel(records["t"], records["w"], x, y, t, p, *(np.uint32(v) for v in LAYOUTS[layout]))
    return x, y, t, p


def read(path: Path, use_numba: bool | None = None, **kw) -> EventRecording:
    """Read a ``.dat`` file of CD events.

    Parameters
    ----------
    path : Path
        The file.
    use_numba : bool, optional
        Force the numba kernel (True) or numpy (False); default: numba when installed.

    Returns
    -------
    EventRecording
        ``sensor_size`` is ``(Width, Height, 2)`` when the header states it, else None;
        ``meta`` holds the header fields.
    """
    with MappedFile(path) as mapped:
        fields, ev_type, ev_size, offset = parse(mapped.head(HEADER_MAX), path)
        if ev_type not in CD_TYPES:
            name = EVENT_TYPES.get(ev_type, f"unknown type {ev_type}")
            raise FormatError(f"holds {name} events, not CD events (event type byte {ev_type})",
                              path)
        if ev_size < RECORD.itemsize:
            raise CorruptFileError(f"event size byte says {ev_size} bytes; CD events take at "
                                   "least 8", path)
        dtype = RECORD if ev_size == RECORD.itemsize else np.dtype(
            {"names": ["t", "w"], "formats": ["<u4", "<u4"], "offsets": [0, 4],
             "itemsize": ev_size})
        layout = layout_of(fields)
        records = frombuffer_exact(mapped.data, dtype, offset, path)
        x, y, t, p = decode(records, use_numba, layout)
        del records
    geo = geometry(fields)
    if geo is not None and len(x) and (int(x.max()) >= geo[0] or int(y.max()) >= geo[1]):
        raise CorruptFileError(
            f"events at x up to {int(x.max())}, y up to {int(y.max())} lie outside the "
            f"{geo[0]}x{geo[1]} sensor the header states", path)
    meta = {"header": fields, "event_type": EVENT_TYPES[ev_type], "layout_version": layout}
    return EventRecording(x, y, t, p, sensor_size=None if geo is None else (*geo, 2),
                          format=f"prophesee_dat/{VERSION}", meta=meta)
