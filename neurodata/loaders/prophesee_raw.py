"""Prophesee ``.raw`` recordings in EVT 2.0 and EVT 3.0 (Metavision / OpenEB).

A ``.raw`` file is a text header of ``% key value`` lines (``% evt 2.0`` or
``% format EVT3;height=720;width=1280``, ``% geometry 1280x720``,
``% plugin_name ...``, closed by ``% end`` since Metavision 2) followed by the
sensor's little-endian word stream, decoded here from the Prophesee
specifications ("EVT 2.0 Format", "EVT 3.0 Format"):

EVT 2.0, 32-bit words, type in bits 31-28:

- ``0x0`` CD_OFF / ``0x1`` CD_ON: time low (6 bits) 27-22, x 21-11, y 10-0;
- ``0x8`` EVT_TIME_HIGH: bits 27-0 are timestamp bits 33-6;
- ``0xA`` EXT_TRIGGER, ``0xE`` OTHERS, ``0xF`` CONTINUED: not CD events.

EVT 3.0, 16-bit words, type in bits 15-12, decoded against a running state:

- ``0x0`` EVT_ADDR_Y: y (10-0) for the following events;
- ``0x2`` EVT_ADDR_X: one event at x (10-0), polarity bit 11;
- ``0x3`` VECT_BASE_X: base x (10-0) and polarity (bit 11) for vectors;
- ``0x4`` VECT_12 / ``0x5`` VECT_8: a validity mask of 12 / 8 pixels from
  the base x; the base then moves on by 12 / 8;
- ``0x6`` EVT_TIME_LOW / ``0x8`` EVT_TIME_HIGH: the low / high 12 bits of the
  24-bit time base (a time-high word clears the low bits, as in OpenEB);
- ``0xA`` EXT_TRIGGER, ``0xE`` OTHERS, ``0x7`` CONTINUED_4,
  ``0xF`` CONTINUED_12: not CD events.

Time counters wrap (EVT 3.0 every 2**24 us = 16.8 s, EVT 2.0 every 2**34 us);
a time-high value that steps back by more than half its range is a wrap and
timestamps are unwrapped into monotonic int64 microseconds. As in Metavision,
CD events that arrive before the first time-high word have no time base and
are dropped (their count is in ``meta``). External triggers are counted in
``meta`` and not returned as events.

Both decoders are vectorised numpy (forward-filled state, bit-unpacked
vectors); with numba installed a compiled single-pass kernel is used instead,
with identical output.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError
from neurodata.events import EventRecording
from neurodata.loaders._io import frombuffer_exact
from neurodata.loaders._prophesee_header import (
    HEADER_MAX, MappedFile, geometry, header_dict, split_header)

VERSION = "Prophesee EVT 2.0 / EVT 3.0"
ENCODINGS = ("evt2", "evt3")

# sensor generations whose geometry is fixed, for headers that only name the plugin
_PLUGIN_GEOMETRY = [
    (re.compile(r"gen31?_|gen3$|gen31$"), (640, 480)),
    (re.compile(r"gen41?|imx636|evk4|evk3_hd"), (1280, 720)),
    (re.compile(r"genx320"), (320, 320)),
]


# --------------------------------------------------------------------------- header

def sniff(path: Path, head: bytes) -> bool:
    """A ``%`` header naming an EVT encoding, or any ``%`` header on a ``.raw`` file."""
    if not head.startswith(b"%"):
        return False
    lines, _, ended = split_header(head)
    fields = header_dict(lines)
    if encoding_of(fields) is not None:
        return True
    return path.suffix.lower() == ".raw" and (ended or bool(lines))


def encoding_of(fields: dict[str, str]) -> str | None:
    """``"evt2"``, ``"evt3"``, another encoding's name, or None when not stated."""
    fmt = fields.get("format")
    if fmt:
        name = fmt.split(";")[0].strip().lower().replace(".", "").replace(" ", "")
        return {"evt2": "evt2", "evt20": "evt2", "evt3": "evt3", "evt30": "evt3"}.get(name, name)
    evt = fields.get("evt")
    if evt:
        v = evt.strip()
        return {"2.0": "evt2", "2": "evt2", "3.0": "evt3", "3": "evt3"}.get(v, f"evt {v}")
    return None


def _plugin_geometry(fields: dict[str, str]):
    plugin = fields.get("plugin_name", "").lower()
    for pattern, geo in _PLUGIN_GEOMETRY:
        if plugin and pattern.search(plugin):
            return geo
    return None


# --------------------------------------------------------------------------- helpers

def _unwrap_high(high: np.ndarray, bits: int) -> np.ndarray:
    """Time-high values as int64, adding one period at each backward wrap."""
    h = high.astype(np.int64)
    if len(h) > 1:
        wraps = np.diff(h) < -(1 << (bits - 1))
        if wraps.any():
            h[1:] += np.cumsum(wraps, dtype=np.int64) << bits
    return h


def _popcount16(a: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(a.astype(np.uint16)).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], np.int64)
    a = a.astype(np.uint16)
    return table[a & 0xFF] + table[a >> 8]


# --------------------------------------------------------------------------- EVT 2.0

def decode_evt2_numpy(words: np.ndarray):
    """Decode EVT 2.0 words (uint32) with numpy; returns x, y, t, p, info dict."""
    typ = (words >> 28).astype(np.uint8)
    is_high = typ == 0x8
    high = _unwrap_high(words[is_high] & 0x0FFFFFFF, 28)
    n_high = np.cumsum(is_high, dtype=np.int32 if len(words) < 2**31 else np.int64)
    cd = typ <= 0x1
    cw = words[cd]
    hi_idx = n_high[cd]
    based = hi_idx > 0
    dropped = int(len(cw) - np.count_nonzero(based))
    if dropped:
        cw, hi_idx = cw[based], hi_idx[based]
    t = (high[hi_idx - 1] << 6) | ((cw >> 22) & 0x3F).astype(np.int64)
    x = ((cw >> 11) & 0x7FF).astype(np.uint16)
    y = (cw & 0x7FF).astype(np.uint16)
    p = (cw >> 28).astype(np.uint8)
    info = {"n_triggers": int(np.count_nonzero(typ == 0xA)), "dropped_before_time_base": dropped}
    return x, y, t, p, info


# --------------------------------------------------------------------------- EVT 3.0

def _last_before(mask: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For each position in ``at``: index into ``flatnonzero(mask)`` of the last
    True at or before it, or -1 when there is none."""
    dtype = np.int32 if len(mask) < 2**31 else np.int64
    return np.cumsum(mask, dtype=dtype)[at] - 1


def decode_evt3_numpy(words: np.ndarray):
    """Decode EVT 3.0 words (uint16) with numpy; returns x, y, t, p, info dict."""
    typ = words >> 12
    # event-producing words: EVT_ADDR_X (one pixel) and VECT_12 / VECT_8 (a mask)
    ev = np.flatnonzero((typ == 0x2) | (typ == 0x4) | (typ == 0x5))
    ev_words = words[ev]
    ev_typ = ev_words >> 12
    single = ev_typ == 0x2

    # time: the last time-high word (unwrapped) and the last time-low word after it
    # (a time-high word clears the low bits, as OpenEB's decoder does)
    is_high = typ == 0x8
    high_pos = np.flatnonzero(is_high)
    high_val = _unwrap_high(words[high_pos] & 0xFFF, 12) << 12
    hi = _last_before(is_high, ev)
    is_low = typ == 0x6
    low_pos = np.flatnonzero(is_low)
    lo = _last_before(is_low, ev)
    has_high = hi >= 0
    low = np.zeros(len(ev), np.int64)
    if len(low_pos):
        lo_ok = (lo >= 0) & has_high
        lo_ok[lo_ok] = low_pos[lo[lo_ok]] > high_pos[hi[lo_ok]]
        low[lo_ok] = words[low_pos[lo[lo_ok]]] & 0xFFF
    t_ev = np.full(len(ev), -1, np.int64)
    if len(high_pos):
        t_ev[has_high] = high_val[hi[has_high]] | low[has_high]

    # y: the last EVT_ADDR_Y
    is_y = typ == 0x0
    y_pos = np.flatnonzero(is_y)
    yi = _last_before(is_y, ev)
    y_ev = np.zeros(len(ev), np.uint16)
    if len(y_pos):
        y_ev[yi >= 0] = words[y_pos[yi[yi >= 0]]] & 0x7FF

    # vectors, on the sub-stream of VECT_BASE_X / VECT_12 / VECT_8 words: the base
    # x of the last VECT_BASE_X, moved on by 12 / 8 per vector word since then
    vstream = np.flatnonzero((typ >= 0x3) & (typ <= 0x5))
    vw = words[vstream]
    vtyp = vw >> 12
    is_base = vtyp == 0x3
    stride = np.where(vtyp == 0x4, 12, np.where(vtyp == 0x5, 8, 0))
    walked = np.cumsum(stride, dtype=np.int64) - stride
    bi = _last_before(is_base, np.arange(len(vw)))
    base_pos = np.flatnonzero(is_base)
    has_base = bi >= 0
    src = base_pos[np.maximum(bi, 0)] if len(base_pos) else np.zeros(len(vw), np.int64)
    vbase = np.where(has_base, (vw[src] & 0x7FF) + walked - walked[src], walked)
    vpol = np.where(has_base, vw[src] >> 11 & 1, 0)
    is_vec = ~is_base
    vbase, vpol, vmask, vtyp = vbase[is_vec], vpol[is_vec], vw[is_vec], vtyp[is_vec]
    vmask = np.where(vtyp == 0x4, vmask & 0xFFF, vmask & 0xFF)

    # per event word: first x, polarity and number of pixels
    x0 = np.empty(len(ev), np.int64)
    pol = np.empty(len(ev), np.uint8)
    count = np.ones(len(ev), np.int64)
    x0[single] = ev_words[single] & 0x7FF
    pol[single] = (ev_words[single] >> 11) & 1
    vec = ~single
    x0[vec] = np.minimum(vbase, _X_SATURATE)
    pol[vec] = vpol
    count[vec] = _popcount16(vmask)
    # expand: one row per pixel, vector pixels offset by their bit index
    _, bit_cols = np.nonzero((vmask[:, None] >> np.arange(12, dtype=np.uint16)) & 1)
    offset = np.zeros(int(count.sum()), np.uint16)
    offset[np.repeat(vec, count)] = bit_cols
    x = np.repeat(x0.astype(np.uint16), count) + offset
    y = np.repeat(y_ev, count)
    t = np.repeat(t_ev, count)
    p = np.repeat(pol, count)
    based = t >= 0
    dropped = int(len(t) - np.count_nonzero(based))
    if dropped:
        x, y, t, p = x[based], y[based], t[based], p[based]
    info = {"n_triggers": int(np.count_nonzero(typ == 0xA)), "dropped_before_time_base": dropped}
    return x, y, t, p, info


#: vector base x saturates here (only corrupt data runs vectors past x = 2047)
_X_SATURATE = 0xFFFF - 12


# --------------------------------------------------------------------------- numba kernels

_NUMBA = None


def _numba_kernels():
    """Compile (once) and return the numba kernels, or None without numba."""
    global _NUMBA
    if _NUMBA is not None:
        return _NUMBA or None
    try:
        _NUMBA = _build_kernels()
    except Exception:  # numba absent or unusable here: the numpy decoders take over
        _NUMBA = False
    return _NUMBA or None


def _build_kernels() -> dict:
    import numba

    @numba.njit(cache=True, nogil=True)
    def evt2(words, x, y, t, p):
        period_bits = 28
        half = 1 << (period_bits - 1)
        k = 0
        high = -1
        last_raw = 0
        offset = 0
        dropped = 0
        triggers = 0
        for i in range(words.shape[0]):
            w = words[i]
            typ = w >> 28
            if typ <= 1:
                if high < 0:
                    dropped += 1
                    continue
                x[k] = (w >> 11) & 0x7FF
                y[k] = w & 0x7FF
                t[k] = (high << 6) | ((w >> 22) & 0x3F)
                p[k] = typ
                k += 1
            elif typ == 8:
                raw = np.int64(w & 0x0FFFFFFF)
                if high >= 0 and raw - last_raw < -half:
                    offset += np.int64(1) << period_bits
                last_raw = raw
                high = raw + offset
            elif typ == 0xA:
                triggers += 1
        return k, dropped, triggers

    @numba.njit(cache=True, nogil=True)
    def evt3(words, x, y, t, p):
        # vector words write all their 12 / 8 slots and advance k by the valid
        # bits only (branch-free); the outputs carry 12 slots of slack for this
        k = 0
        high = -1
        last_raw = 0
        offset = 0
        cur_y = 0
        base = 0
        bpol = 0
        ts = 0
        dropped = 0
        triggers = 0
        for i in range(words.shape[0]):
            w = np.int64(words[i])
            typ = w >> 12
            if typ == 0x2:
                if high < 0:
                    dropped += 1
                    continue
                x[k] = w & 0x7FF
                y[k] = cur_y
                t[k] = ts
                p[k] = (w >> 11) & 1
                k += 1
            elif typ == 0x4 or typ == 0x5:
                nbits = 12 if typ == 0x4 else 8
                m = w & ((1 << nbits) - 1)
                if high < 0:
                    while m:
                        m &= m - 1
                        dropped += 1
                else:
                    b0 = base if base < 0xFFFF - 12 else 0xFFFF - 12
                    for j in range(nbits):
                        x[k] = b0 + j
                        y[k] = cur_y
                        t[k] = ts
                        p[k] = bpol
                        k += (m >> j) & 1
                base += nbits
            elif typ == 0x6:
                ts = (high << 12) | (w & 0xFFF)
            elif typ == 0x0:
                cur_y = w & 0x7FF
            elif typ == 0x3:
                base = w & 0x7FF
                bpol = (w >> 11) & 1
            elif typ == 0x8:
                raw = w & 0xFFF
                if high >= 0 and raw - last_raw < -(1 << 11):
                    offset += 1 << 12
                last_raw = raw
                high = raw + offset
                ts = high << 12  # a time-high word clears the low bits
            elif typ == 0xA:
                triggers += 1
        return k, dropped, triggers

    @numba.njit(cache=True, nogil=True)
    def evt2_count(words):
        k = 0
        for i in range(words.shape[0]):
            if (words[i] >> 28) <= 1:
                k += 1
        return k

    @numba.njit(cache=True, nogil=True)
    def evt3_count(words):
        k = 0
        for i in range(words.shape[0]):
            w = words[i]
            typ = w >> 12
            if typ == 0x2:
                k += 1
            elif typ == 0x4 or typ == 0x5:
                m = w & (0xFFF if typ == 0x4 else 0xFF)
                while m:
                    m &= m - 1
                    k += 1
        return k

    return {"evt2": evt2, "evt3": evt3, "evt2_count": evt2_count, "evt3_count": evt3_count}


def _decode_numba(kernel, words: np.ndarray, capacity: int, slack: int = 0):
    n = capacity + slack
    x, y = np.empty(n, np.uint16), np.empty(n, np.uint16)
    t, p = np.empty(n, np.int64), np.empty(n, np.uint8)
    k, dropped, triggers = kernel(words, x, y, t, p)
    info = {"n_triggers": int(triggers), "dropped_before_time_base": int(dropped)}
    if n - k > 4096:  # many dropped events: do not keep the unused tail alive
        return x[:k].copy(), y[:k].copy(), t[:k].copy(), p[:k].copy(), info
    return x[:k], y[:k], t[:k], p[:k], info


def decode_evt2(words: np.ndarray, use_numba: bool | None = None):
    """Decode EVT 2.0 words; numba kernel when available (``use_numba=None``)."""
    kernels = _numba_kernels() if use_numba in (None, True) else None
    if use_numba and kernels is None:
        raise ImportError("numba is not installed")
    if kernels is None:
        return decode_evt2_numpy(words)
    return _decode_numba(kernels["evt2"], words, int(kernels["evt2_count"](words)))


def decode_evt3(words: np.ndarray, use_numba: bool | None = None):
    """Decode EVT 3.0 words; numba kernel when available (``use_numba=None``)."""
    kernels = _numba_kernels() if use_numba in (None, True) else None
    if use_numba and kernels is None:
        raise ImportError("numba is not installed")
    if kernels is None:
        return decode_evt3_numpy(words)
    return _decode_numba(kernels["evt3"], words, int(kernels["evt3_count"](words)), slack=12)


# --------------------------------------------------------------------------- read

def _encoding(forced: str | None, fields: dict, lines: list, path) -> str:
    enc = (forced or "").lower().replace(" ", "").replace(".", "") or encoding_of(fields)
    enc = {"evt20": "evt2", "evt30": "evt3"}.get(enc, enc)
    if enc is None:
        if not lines:
            raise FormatError("no '%' text header: not a Prophesee RAW file "
                              "(pass encoding='evt2' or 'evt3' for a headerless dump)", path)
        raise FormatError("the header names no event encoding (no '% evt' or '% format' line); "
                          "pass encoding='evt2' or 'evt3'", path)
    if enc not in ENCODINGS:
        raise FormatError(f"encoding {enc!r} is not supported (neurodata reads EVT 2.0 and "
                          "EVT 3.0)", path)
    return enc


def read(path: Path, encoding: str | None = None, use_numba: bool | None = None,
         **kw) -> EventRecording:
    """Read a Prophesee ``.raw`` file (EVT 2.0 or EVT 3.0).

    Parameters
    ----------
    path : Path
        The file.
    encoding : {"evt2", "evt3"}, optional
        Overrides the encoding the header names (needed for headerless dumps).
    use_numba : bool, optional
        Force the numba kernel (True) or the numpy decoder (False); default:
        numba when installed.

    Returns
    -------
    EventRecording
        ``sensor_size`` from the header's geometry, else from the sensor the
        ``plugin_name`` identifies, else None. ``meta`` holds the header fields,
        the encoding and the number of external-trigger words skipped.
    """
    with MappedFile(path) as mapped:
        head = mapped.head(HEADER_MAX)
        lines, offset, _ = split_header(head)
        if offset == len(head) == HEADER_MAX:
            raise FormatError(f"text header runs past {HEADER_MAX} bytes", path)
        fields = header_dict(lines)
        enc = _encoding(encoding, fields, lines, path)
        if enc == "evt2":
            words = frombuffer_exact(mapped.data, np.dtype("<u4"), offset, path, what="EVT 2.0")
            x, y, t, p, info = decode_evt2(words, use_numba)
        else:
            words = frombuffer_exact(mapped.data, np.dtype("<u2"), offset, path, what="EVT 3.0")
            x, y, t, p, info = decode_evt3(words, use_numba)
        del words
    geo = geometry(fields)
    source = "header"
    if geo is not None and len(x) and (int(x.max()) >= geo[0] or int(y.max()) >= geo[1]):
        raise CorruptFileError(
            f"decoded as {enc.upper()}, events reach x={int(x.max())}, y={int(y.max())}, "
            f"outside the {geo[0]}x{geo[1]} sensor the header states: the data is not "
            f"{enc.upper()} or is corrupt", path)
    if geo is None:
        geo, source = _plugin_geometry(fields), "plugin_name"
        if geo is not None and len(x) and (int(x.max()) >= geo[0] or int(y.max()) >= geo[1]):
            geo = None
    meta = {"header": fields, "encoding": enc, **info}
    if geo is not None:
        meta["sensor_size_from"] = source
    return EventRecording(x, y, t, p, sensor_size=None if geo is None else (*geo, 2),
                          format=f"prophesee_raw/{enc}", meta=meta)
