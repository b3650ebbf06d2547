"""A small, independent GDF writer for tests (GDF 1.25 and 2.x), numpy + struct only.

Written from Schlögl, "GDF - A general dataformat for biosignals" (1.25 and 2.x):

* header 1 (fixed, 256 bytes), header 2 (256 bytes per channel, stored field by
  field: all labels, then all transducers, ...), for 2.x an optional header 3
  (tag-length-value list ended by tag 0, padded to 256 bytes; header 1 counts
  it in the header length, in 256-byte blocks);
* data records: every record holds ``spr[c]`` samples of channel 0, then of
  channel 1, ... each in its own GDF data type (GDFTYP: 1 int8, 2 uint8,
  3 int16, 4 uint16, 5 int32, 6 uint32, 7 int64, 8 uint64, 16 float32,
  17 float64); physical = (digital - dmin) * (pmax - pmin) / (dmax - dmin) + pmin;
* event table after the last record: mode (1 or 3), then for 1.x the event
  sampling rate (uint24) and the number of events (uint32), for 2.x (>= 1.94)
  the number of events (uint24) and the event sampling rate (float32); then
  positions (uint32), types (uint16) and, for mode 3, channels (uint16) and
  durations (uint32, in samples). Positions are written 1-based (first sample
  = 1), the biosig convention that MNE's reader undoes.

Used only by tests: it writes what the test says, including lies (a record
count larger than the data, a channel count larger than the header) when asked.
"""
from __future__ import annotations

import datetime as _dt
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: GDF data type codes (GDFTYP) -> numpy little-endian dtype
GDFTYP = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<i8", 8: "<u8",
          16: "<f4", 17: "<f8"}
TYPECODE = {np.dtype(v).name: k for k, v in GDFTYP.items()}

#: GDF 2.x physical dimension codes (ISO 11073-10101 based, biosig units table)
DIM_CODE = {"": 0, "1": 512, "V": 4256, "mV": 4274, "uV": 4275, "nV": 4276}

_BIOSIG_EPOCH = _dt.datetime(1, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass
class GDFFile:
    """What was written: the fields a test compares a reader against."""

    path: Path
    version: str
    header_bytes: int
    record_bytes: int
    n_records: int
    digital: list            # per channel, the stored numbers
    physical: np.ndarray     # (n_channels, n_samples) float64 in each channel's unit
    #                          (a list of arrays when channels have different rates)
    events: dict = field(default_factory=dict)


def _pad(text: str | bytes, width: int) -> bytes:
    b = text.encode("latin-1") if isinstance(text, str) else bytes(text)
    return b[:width].ljust(width, b" ")


def quantise(x: np.ndarray, dtype: str, pmin: float, pmax: float, dmin: float,
             dmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Digital values for physical ``x`` and the physical values they stand for."""
    gain = (pmax - pmin) / (dmax - dmin)
    d = (np.asarray(x, np.float64) - pmin) / gain + dmin
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        d = np.clip(np.rint(d), dmin, dmax)
    d = d.astype(dt)
    return d, (d.astype(np.float64) - dmin) * gain + pmin


def header3(tags: list[tuple[int, bytes]]) -> bytes:
    """GDF 2.x header 3: ``tag (uint8), length (uint24), value`` entries, tag 0 ends it."""
    out = b"".join(struct.pack("<B", t) + len(v).to_bytes(3, "little") + v for t, v in tags)
    out += b"\x00"
    return out.ljust(-(-len(out) // 256) * 256, b"\x00")


def biosig_time(t: _dt.datetime) -> int:
    """GDF 2.x time stamp: days since year 0 (Matlab datenum) as uint64 fixed point 2^-32."""
    days = (t - _BIOSIG_EPOCH).total_seconds() / 86400 + 367
    return int(round(days * 2 ** 32))


def write_gdf(path, signals, sfreq: float, labels, *, version: str = "2.20",
              types=16, units="uV", pmin=None, pmax=None, dmin=None, dmax=None,
              spr=None, events: dict | None = None, event_mode: int = 3,
              event_sfreq: float | None = None, tags: list | None = None,
              start: _dt.datetime | None = None, patient: str = "P01 Anon_Subject",
              n_records_field: int | None = None, ns_field: int | None = None) -> GDFFile:
    """Write ``signals`` (channels x samples, physical values in ``units``) as GDF.

    ``signals`` may be a list of 1-D arrays of different lengths (channels at
    different rates, one ``spr`` per channel); ``sfreq`` is then the rate of the
    channel with the most samples per record.

    Parameters
    ----------
    version : {"1.25", "2.10", "2.20", ...}
        Written into the version string ``"GDF x.yy"``; picks the header layout.
    types : int or sequence of int
        GDFTYP per channel (3 int16, 16 float32, ...).
    units : str or sequence of str
        Physical dimension per channel (text in 1.x, code from :data:`DIM_CODE` in 2.x).
    pmin, pmax, dmin, dmax : sequences, optional
        Physical/digital ranges; default: the integer type's full range mapped onto
        a range slightly wider than the signal (float types: gain 1, offset 0).
    spr : int or sequence of int
        Samples per record (per channel); defaults to ``sfreq`` (1 s records), scaled
        down for shorter (slower) channels.
    events : dict with ``pos`` (0-based samples), ``typ``, optional ``chn``, ``dur``
        The event table; written 1-based.
    tags : list of (tag, bytes)
        GDF 2.x header 3 entries.
    n_records_field, ns_field : int, optional
        Values to write into the header instead of the true ones (bad-input tests).
    """
    x = [np.asarray(c, np.float64) for c in np.atleast_2d(signals)] \
        if isinstance(signals, np.ndarray) else [np.asarray(c, np.float64) for c in signals]
    ns, n = len(x), max(len(c) for c in x)
    major = int(version.split(".")[0])
    types = [types] * ns if np.isscalar(types) else list(types)
    units = [units] * ns if isinstance(units, str) else list(units)
    top = int(round(sfreq)) if spr is None else int(np.max(spr))
    if n % top:
        raise ValueError("signal length must be a whole number of records")
    n_rec = n // top
    spr = [len(c) // n_rec for c in x] if spr is None or np.isscalar(spr) else list(spr)
    if any(len(c) != n_rec * k for c, k in zip(x, spr)):
        raise ValueError("every channel must fill the same number of records")
    lo, hi = np.array([c.min() for c in x]), np.array([c.max() for c in x])
    span = np.maximum(hi - lo, 1e-9)
    if pmin is None:
        pmin = np.where([GDFTYP[t][1] == "f" for t in types], -1.0, lo - 0.01 * span)
        pmax = np.where([GDFTYP[t][1] == "f" for t in types], 1.0, hi + 0.01 * span)
    if dmin is None:
        info = [np.iinfo(GDFTYP[t]) if GDFTYP[t][1] != "f" else None for t in types]
        dmin = [float(i.min) if i else -1.0 for i in info]
        dmax = [float(i.max) if i else 1.0 for i in info]
    pmin, pmax = np.asarray(pmin, float), np.asarray(pmax, float)
    dmin, dmax = np.asarray(dmin, float), np.asarray(dmax, float)

    digital, physical = [], [np.empty_like(c) for c in x]
    for c in range(ns):
        d, p = quantise(x[c], GDFTYP[types[c]], pmin[c], pmax[c], dmin[c], dmax[c])
        digital.append(d)
        physical[c] = p
    # records: per record, channel after channel
    itemsz = [np.dtype(GDFTYP[t]).itemsize for t in types]
    record_bytes = int(np.dot(spr, itemsz))
    data = bytearray(n_rec * record_bytes)
    offs = np.concatenate([[0], np.cumsum(np.multiply(itemsz, spr))])
    rec = np.frombuffer(data, np.uint8).reshape(n_rec, record_bytes) if n_rec else None
    for c in range(ns):
        if n_rec:
            rec[:, offs[c]:offs[c + 1]] = digital[c].reshape(n_rec, spr[c]).view(np.uint8).reshape(
                n_rec, -1)

    h3 = header3(tags) if (tags and major >= 2) else b""
    header_bytes = 256 * (ns + 1) + len(h3)
    start = start or _dt.datetime(2024, 3, 5, 10, 20, 30, tzinfo=_dt.timezone.utc)
    n_rec_hdr = n_rec if n_records_field is None else n_records_field
    ns_hdr = ns if ns_field is None else ns_field
    dur = (top, int(round(sfreq)))  # rational record duration, seconds = num / den
    if abs(dur[1] - sfreq) > 1e-9:
        raise ValueError("sfreq must be an integer number of Hz for this writer")
    if major < 2:
        h1 = (_pad(f"GDF {version}", 8) + _pad(patient, 80) + _pad("REC test", 80)
              + _pad(start.strftime("%Y%m%d%H%M%S") + "00", 16)
              + struct.pack("<q", header_bytes) + struct.pack("<QQQ", 0, 0, 0) + b"\x00" * 20
              + struct.pack("<q", n_rec_hdr) + struct.pack("<II", *dur)
              + struct.pack("<I", ns_hdr))
    else:
        h1 = (_pad(f"GDF {version}", 8) + _pad(patient, 66) + b"\x00" * 10
              + bytes([0, 70, 175, 1 | (1 << 2)])  # smoking..., weight kg, height cm, male/right
              + _pad("REC test", 64) + b"\x00" * 16
              + struct.pack("<QQ", biosig_time(start), 0)
              + struct.pack("<H", header_bytes // 256) + b"\x00" * 6
              + b"\x00" * 8 + b"\x00" * 6 + b"\x00" * 6 + b"\x00" * 24
              + struct.pack("<q", n_rec_hdr) + struct.pack("<II", *dur)
              + struct.pack("<HH", ns_hdr, 0))
    assert len(h1) == 256, len(h1)

    def col(fmt: str, values) -> bytes:
        return b"".join(struct.pack("<" + fmt, v) for v in values)

    h2 = b"".join(_pad(lb, 16) for lb in labels) + _pad("", 80) * ns
    if major < 2:
        h2 += b"".join(_pad(u, 8) for u in units)
        h2 += col("d", pmin) + col("d", pmax) + col("q", dmin.astype(np.int64)) \
            + col("q", dmax.astype(np.int64))
        h2 += _pad("HP:0.1Hz LP:100Hz", 80) * ns
        h2 += col("I", spr) + col("I", types) + b"\x00" * 32 * ns
    else:
        h2 += b"\x00" * 6 * ns + col("H", [DIM_CODE[u] for u in units])
        h2 += col("d", pmin) + col("d", pmax) + col("d", dmin) + col("d", dmax)
        h2 += b"\x00" * 68 * ns + col("f", [100.0] * ns) + col("f", [0.1] * ns) \
            + col("f", [50.0] * ns)
        h2 += col("I", spr) + col("I", types) + b"\x00" * 12 * ns
        if float(version) < 2.19:  # impedance uint8 + 19 reserved
            h2 += b"\xff" * ns + b"\x00" * 19 * ns
        else:  # impedance / probe frequency float32 + 16 reserved
            h2 += b"\x00" * 20 * ns
    assert len(h2) == 256 * ns, len(h2)

    table = b""
    ev = {}
    if events is not None:
        pos = np.asarray(events["pos"], np.int64)
        typ = np.asarray(events["typ"], np.uint16)
        chn = np.asarray(events.get("chn", np.zeros(len(pos))), np.uint16)
        durs = np.asarray(events.get("dur", np.zeros(len(pos))), np.uint32)
        esr = float(event_sfreq or sfreq)
        if major < 2:
            head = (bytes([event_mode]) + int(esr).to_bytes(3, "little")
                    + struct.pack("<I", len(pos)))
        else:
            head = bytes([event_mode]) + len(pos).to_bytes(3, "little") + struct.pack("<f", esr)
        table = head + (pos + 1).astype("<u4").tobytes() + typ.astype("<u2").tobytes()
        if event_mode == 3:
            table += chn.astype("<u2").tobytes() + durs.astype("<u4").tobytes()
        ev = {"pos": pos, "typ": typ, "chn": chn, "dur": durs, "sfreq": esr}

    if len({len(c) for c in physical}) == 1:
        physical = np.stack(physical)
    p = Path(path)
    p.write_bytes(h1 + h2 + h3 + bytes(data) + table)
    return GDFFile(p, version, header_bytes, record_bytes, n_rec, digital, physical, ev)
