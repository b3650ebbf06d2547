"""Address-event representation (AER) words with a configurable layout.

A layout names the fields of a 32- or 64-bit word from the most to the least
significant bit, e.g. ``AERLayout([("p", 1), ("y", 10), ("x", 11), ("t", 10)])``.
The time field is either ``"t"`` (low bits of the absolute time, relative to
the stream's ``t_base``) or ``"dt"`` (time since the previous word).

Time beyond the field's width travels in *time-extension words*: a word whose
address bits (every field but time) are all ones carries, in its time field,
a number ``H`` of whole periods (``2**bits``) by which time advances. The
encoder writes as few as needed (none while time fits), so round trips are
exact for any gap; that all-ones address is therefore reserved and refused
as an event address.

Files: ``write_aer``/``read_aer`` use a small container -- magic
``b"NDAER1\\n"``, a uint32 little-endian header length, a JSON header
(layout, byte order, ``t_base``, word count) and the words -- read back in
bounded chunks.
"""
from __future__ import annotations

import io
import json
import os
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, TruncatedFileError

TIME_FIELDS = ("t", "dt")
ADDRESS_FIELDS = ("x", "y", "p")
MAGIC = b"NDAER1\n"


@dataclass(frozen=True)
class AERLayout:
    """Bit layout of an AER word.

    Parameters
    ----------
    fields : sequence of (name, bits)
        From the most significant bit down. Names: ``x``, ``y``, ``p``, one
        of ``t``/``dt``, and ``pad`` (unused bits, written as 0).
    word_bits : {32, 64}
    byteorder : {"<", ">"}
        Byte order of words in buffers and files.
    """

    fields: tuple
    word_bits: int = 32
    byteorder: str = "<"

    def __post_init__(self):
        fields = tuple((str(n), int(b)) for n, b in self.fields)
        object.__setattr__(self, "fields", fields)
        if self.word_bits not in (32, 64):
            raise ValueError("word_bits must be 32 or 64")
        if self.byteorder not in ("<", ">"):
            raise ValueError("byteorder must be '<' or '>'")
        names = [n for n, _ in fields]
        for n in names:
            if n not in TIME_FIELDS + ADDRESS_FIELDS + ("pad",):
                raise ValueError(f"unknown field {n!r}")
        if sum(n in TIME_FIELDS for n in names) != 1:
            raise ValueError("a layout needs exactly one time field, 't' or 'dt'")
        if len({n for n in names if n != "pad"}) != len([n for n in names if n != "pad"]):
            raise ValueError("duplicate field")
        if sum(b for _, b in fields) > self.word_bits:
            raise ValueError(f"fields use {sum(b for _, b in fields)} bits, word has {self.word_bits}")
        if any(b <= 0 for _, b in fields):
            raise ValueError("field widths must be positive")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"{self.byteorder}u{self.word_bits // 8}")

    @property
    def time_field(self) -> str:
        return next(n for n, _ in self.fields if n in TIME_FIELDS)

    def shifts(self) -> dict[str, tuple[int, int]]:
        """``name -> (shift, bits)`` for every non-pad field."""
        out, pos = {}, sum(b for _, b in self.fields)
        for name, bits in self.fields:
            pos -= bits
            if name != "pad":
                out[name] = (pos, bits)
        return out

    def to_dict(self) -> dict:
        return {"fields": [list(f) for f in self.fields], "word_bits": self.word_bits,
                "byteorder": self.byteorder}

    @classmethod
    def from_dict(cls, d: dict) -> "AERLayout":
        return cls([tuple(f) for f in d["fields"]], int(d["word_bits"]), d.get("byteorder", "<"))


#: common layouts: a DVS 32-bit word with 10-bit delta time; a 64-bit word
#: with 32-bit absolute time (large sensors)
DVS32 = AERLayout([("p", 1), ("y", 10), ("x", 11), ("dt", 10)], 32)
WIDE64 = AERLayout([("p", 1), ("y", 15), ("x", 16), ("t", 32)], 64)


def _address_mask(layout: AERLayout) -> int:
    sh = layout.shifts()
    mask = 0
    for name in ADDRESS_FIELDS:
        if name in sh:
            s, b = sh[name]
            mask |= ((1 << b) - 1) << s
    return mask


def encode_aer(x, y, t, p, layout: AERLayout, t_base: int = 0, t_prev: int | None = None) -> np.ndarray:
    """Encode events (sorted by time) as AER words.

    Parameters
    ----------
    x, y, t, p : arrays
        Event columns; fields the layout lacks are ignored (their values
        are not stored).
    layout : AERLayout
    t_base : int
        Time origin of the stream (absolute ``t`` layouts store ``t - t_base``).
    t_prev : int, optional
        Time of the previous word when continuing a stream (default ``t_base``).

    Returns
    -------
    ndarray of layout.dtype
    """
    t = np.asarray(t, np.int64)
    n = len(t)
    sh = layout.shifts()
    tname = layout.time_field
    tshift, tbits = sh[tname]
    period = 1 << tbits
    max_h = period - 1
    start = int(t_base if t_prev is None else t_prev)
    if n and (t[0] < start or np.any(np.diff(t) < 0)):
        raise ValueError("events must be sorted in time and not before the stream's time")
    cols = {"x": x, "y": y, "p": p}
    wt = np.uint32 if layout.word_bits == 32 else np.uint64
    word = np.zeros(n, wt)
    for name in ADDRESS_FIELDS:
        if name not in sh:
            continue
        s, b = sh[name]
        v = np.asarray(cols[name])
        if n and int(v.max()) >= (1 << b):
            raise ValueError(f"field {name!r} has {b} bits but holds values up to {int(v.max())}")
        word |= v.astype(wt) << wt(s)
    amask = wt(_address_mask(layout))
    if amask and n and np.any((word & amask) == amask):
        raise ValueError("the all-ones address is reserved for time-extension words")
    if tname == "t":
        rel = t - int(t_base)
        hi = rel >> tbits
        prev_hi = (start - int(t_base)) >> tbits
        q = np.diff(hi, prepend=prev_hi)
        low = rel & (period - 1)
    else:
        delta = np.diff(t, prepend=start)
        q = delta >> tbits
        low = delta & (period - 1)
    word |= low.astype(wt) << wt(tshift)
    m = np.zeros(n, np.int64)
    gap = np.flatnonzero(q > 0)
    m[gap] = -(-q[gap] // max_h)  # extension words before each event
    n_ext = int(m.sum())
    if n_ext > 16 * n + (1 << 20):
        raise ValueError(f"time gaps need {n_ext} extension words for {n} events: the "
                         f"{tbits}-bit time field is too narrow (or t_base too early)")
    if n_ext == 0:
        return word.astype(layout.dtype, copy=False)
    out = np.empty(n + n_ext, wt)
    pos = np.arange(n) + np.cumsum(m)
    is_event = np.zeros(n + n_ext, bool)
    is_event[pos] = True
    out[pos] = word
    owner = np.repeat(np.arange(n), m)
    rank = np.arange(n_ext) - np.repeat(np.cumsum(m) - m, m)
    h = np.where(rank < m[owner] - 1, max_h, q[owner] - (m[owner] - 1) * max_h)
    out[~is_event] = amask | (h.astype(wt) << wt(tshift))
    return out.astype(layout.dtype, copy=False)


class AERDecoder:
    """Stateful decoder: feed word chunks of one stream, get event columns."""

    def __init__(self, layout: AERLayout, t_base: int = 0):
        self.layout = layout
        self.t_base = int(t_base)
        self._hi = 0  # absolute layouts: periods so far
        self._t = int(t_base)  # delta layouts: running time

    def feed(self, words) -> dict:
        lay = self.layout
        wt = np.uint32 if lay.word_bits == 32 else np.uint64
        w = np.asarray(words).astype(wt, copy=False)
        sh = lay.shifts()
        tname = lay.time_field
        tshift, tbits = sh[tname]
        mask = wt(_address_mask(lay))
        tfield = ((w >> wt(tshift)) & wt((1 << tbits) - 1)).astype(np.int64)
        has_addr = any(a in sh for a in ADDRESS_FIELDS)
        is_ext = ((w & mask) == mask) if has_addr else np.zeros(len(w), bool)
        any_ext = bool(is_ext.any())
        ev = ~is_ext
        if not any_ext and tname == "t":
            t = self.t_base + (self._hi << tbits) + tfield
        elif not any_ext:
            t = self._t + np.cumsum(tfield)
            if len(t):
                self._t = int(t[-1])
        elif tname == "t":
            hi = self._hi + np.cumsum(np.where(is_ext, tfield, 0))
            t = self.t_base + (hi << tbits) + tfield
            if len(hi):
                self._hi = int(hi[-1])
        else:
            inc = np.where(is_ext, tfield << tbits, tfield)
            t = self._t + np.cumsum(inc)
            if len(t):
                self._t = int(t[-1])
        we = w[ev] if any_ext else w
        out = {"t": t[ev] if any_ext else t}
        for name in ADDRESS_FIELDS:
            if name in sh:
                s, b = sh[name]
                v = (we >> wt(s)) & wt((1 << b) - 1)
                out[name] = v.astype(np.uint16 if name != "p" else np.uint8)
            else:
                out[name] = np.zeros(len(we), np.uint16 if name != "p" else np.uint8)
        return out


def decode_aer(words, layout: AERLayout, t_base: int = 0) -> dict:
    """Decode a whole stream of words into ``x, y, t, p`` columns."""
    return AERDecoder(layout, t_base).feed(words)


def write_aer(dest, x, y, t, p, layout: AERLayout, t_base: int | None = None,
              chunk: int = 1 << 20) -> int:
    """Write events as an AER stream to a path or binary file object.

    Encodes ``chunk`` events at a time (bounded memory); returns the number
    of words written.
    """
    t = np.asarray(t, np.int64)
    if t_base is None:
        t_base = int(t[0]) if len(t) else 0
    own = isinstance(dest, (str, os.PathLike))
    fh = open(dest, "wb") if own else dest
    try:
        fh.write(MAGIC)
        header_pos = fh.tell() if fh.seekable() else None
        header = json.dumps({"layout": layout.to_dict(), "t_base": int(t_base),
                             "n_words": 0}).encode()
        header = header.ljust(len(header) + 32)  # room to fill in the count
        fh.write(struct.pack("<I", len(header)))
        fh.write(header)
        total, prev = 0, None
        for a in range(0, max(len(t), 1), chunk):
            b = min(a + chunk, len(t))
            if a >= b:
                break
            words = encode_aer(x[a:b], y[a:b], t[a:b], p[a:b], layout, t_base, prev)
            fh.write(words.tobytes())
            total += len(words)
            prev = int(t[b - 1])
        if header_pos is not None:
            end = fh.tell()
            final = json.dumps({"layout": layout.to_dict(), "t_base": int(t_base),
                                "n_words": total}).encode().ljust(len(header))
            fh.seek(header_pos + 4)
            fh.write(final)
            fh.seek(end)
        return total
    finally:
        if own:
            fh.close()


def _read_header(fh, name) -> tuple[AERLayout, int, int]:
    magic = fh.read(len(MAGIC))
    if magic != MAGIC:
        raise FormatError("not a neurodata AER stream (bad magic)", name)
    raw = fh.read(4)
    if len(raw) < 4:
        raise TruncatedFileError("truncated AER header", name)
    (hlen,) = struct.unpack("<I", raw)
    if hlen > 1 << 20:
        raise CorruptFileError(f"AER header claims {hlen} bytes", name)
    blob = fh.read(hlen)
    if len(blob) < hlen:
        raise TruncatedFileError("truncated AER header", name)
    try:
        h = json.loads(blob)
        layout = AERLayout.from_dict(h["layout"])
        return layout, int(h["t_base"]), int(h.get("n_words", 0))
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptFileError(f"bad AER header ({e})", name) from None


def iter_aer(src, chunk: int = 1 << 20) -> Iterator[dict]:
    """Yield event columns from an AER stream file, ``chunk`` words at a time."""
    own = isinstance(src, (str, os.PathLike))
    name = os.fspath(src) if own else getattr(src, "name", "<buffer>")
    fh = open(src, "rb") if own else src
    try:
        layout, t_base, _ = _read_header(fh, name)
        dec = AERDecoder(layout, t_base)
        size = layout.dtype.itemsize
        while True:
            buf = fh.read(chunk * size)
            if not buf:
                break
            if len(buf) % size:
                raise TruncatedFileError(f"stream ends inside a {size}-byte word", name)
            yield dec.feed(np.frombuffer(buf, layout.dtype))
    finally:
        if own:
            fh.close()


def read_aer(src) -> dict:
    """Read a whole AER stream file (path or file object) into event columns."""
    parts = list(iter_aer(src))
    if not parts:
        return {"x": np.zeros(0, np.uint16), "y": np.zeros(0, np.uint16),
                "t": np.zeros(0, np.int64), "p": np.zeros(0, np.uint8)}
    return {k: np.concatenate([pt[k] for pt in parts]) for k in ("x", "y", "t", "p")}


def to_bytes(x, y, t, p, layout: AERLayout, t_base: int | None = None) -> bytes:
    """The AER stream (with header) as bytes."""
    buf = io.BytesIO()
    write_aer(buf, x, y, t, p, layout, t_base)
    return buf.getvalue()
