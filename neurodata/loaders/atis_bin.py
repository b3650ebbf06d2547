"""N-MNIST / N-Caltech101 ATIS binary events (``.bin``).

Format (Orchard et al. 2015, the N-MNIST/N-Caltech101 release): no header;
each event is 40 bits in 5 bytes, big-endian fields:

- byte 0: x address (8 bits)
- byte 1: y address (8 bits)
- byte 2: bit 7 polarity (1 = ON), bits 6..0 timestamp bits 22..16
- bytes 3-4: timestamp bits 15..0

Timestamps are microseconds in 23 bits. A record with ``y == 240`` is the
release's timestamp-overflow marker, not an event: every later timestamp
moves on by one period of the 23-bit counter (2**23 us). (The release's
MATLAB reader, and readers copied from it, add 2**13 instead; with 23-bit
timestamps that would put time backwards, so neurodata adds the counter
period. Samples shorter than 8.4 s, such as all of N-MNIST, carry no marker
and decode identically either way.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neurodata.events import EventRecording
from neurodata.loaders._io import frombuffer_exact, read_bytes

VERSION = "ATIS-40bit (N-MNIST 2015)"
_PERIOD = 1 << 23


def sniff(path: Path, head: bytes) -> bool:
    """No magic: decide by extension and a whole number of 5-byte records."""
    if path.suffix.lower() != ".bin" or path.is_dir():
        return False
    size = path.stat().st_size
    return size > 0 and size % 5 == 0


def decode(raw: np.ndarray, path=None):
    """Decode an ``(n, 5)`` uint8 array into x, y, t, p columns."""
    b = raw.astype(np.uint32)
    x = raw[:, 0].astype(np.uint16)
    y = raw[:, 1].astype(np.uint16)
    p = (raw[:, 2] >> 7).astype(np.uint8)
    ts = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    overflow = raw[:, 1] == 240
    t = ts.astype(np.int64)
    if overflow.any():
        t += np.cumsum(overflow, dtype=np.int64) * _PERIOD
    keep = ~overflow
    return x[keep], y[keep], t[keep], p[keep]


def read(path: Path, **kw) -> EventRecording:
    data = read_bytes(path)
    raw = frombuffer_exact(data, np.dtype((np.uint8, 5)), 0, path)
    x, y, t, p = decode(raw, path)
    return EventRecording(x, y, t, p, sensor_size=None, format=f"atis_bin/{VERSION}")


def encode(x, y, t, p) -> bytes:
    """Encode events as ATIS 40-bit records (the inverse of :func:`read`).

    Timestamps beyond the 23-bit counter get overflow marker records
    (``y == 240``) so that decoding restores them exactly. Coordinates must
    fit in 8 bits and must not use the marker row 240.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    t = np.asarray(t, np.int64)
    p = np.asarray(p)
    if len(t) and (x.max() > 255 or y.max() > 255 or np.any(y == 240)):
        raise ValueError("ATIS .bin holds x, y < 256 and reserves y == 240")
    if len(t) and (t.min() < 0 or np.any(np.diff(t) < 0)):
        raise ValueError("ATIS .bin needs sorted, non-negative timestamps")
    period = t // _PERIOD
    n_markers = np.diff(period, prepend=0) if len(t) else np.zeros(0, np.int64)
    total = len(t) + int(n_markers.sum())
    out = np.zeros((total, 5), np.uint8)
    # position of each event after the markers that precede it
    pos = np.arange(len(t)) + np.cumsum(n_markers)
    marker_rows = np.setdiff1d(np.arange(total), pos)
    out[marker_rows, 1] = 240
    ts = (t % _PERIOD).astype(np.uint32)
    out[pos, 0] = x
    out[pos, 1] = y
    out[pos, 2] = ((np.asarray(p, np.uint8) > 0).astype(np.uint8) << 7) | ((ts >> 16) & 0x7F).astype(np.uint8)
    out[pos, 3] = (ts >> 8) & 0xFF
    out[pos, 4] = ts & 0xFF
    return out.tobytes()
