"""jAER AEDAT 2.0 and cAER AEDAT 3.1 files (``.aedat``): polarity (DVS) events.

AEDAT 2.0 (jAER, iniVation "AEDAT 2.0" page): header lines starting with
``#`` (the first is ``#!AER-DAT2.0``), then big-endian ``int32 address, int32
timestamp`` pairs (microseconds). What an address means depends on the chip,
named by the ``# AEChip: <java class>`` header line:

- DVS128 (``DVS128``, ``Tmpdiff128``; also assumed for files with no AEChip
  line whose addresses all fit in 15 bits, as jAER wrote before 2014): bit 0
  polarity, bits 1-7 x, bits 8-14 y; bits 15-31 are not a pixel (external
  events). jAER reads bit 0 *clear* as
  ON (``DVS128.java``; dv-processing's DVS128 parser agrees, "hardware is like
  this"), although iniVation's AEDAT 1.0 page says the opposite; neurodata
  follows the two parsers.
- DAVIS (DAVIS240/346/640/208/128, ``Davis346red``, ``DAVIS240C``, ...): bit 31
  set marks an APS (frame) sample or IMU word, dropped here; for DVS words
  bits 22-30 are y, 12-21 x, bit 11 the polarity (1 = ON) and bit 10 an
  external-input event (dropped).

jAER counts rows from the bottom and the chips' columns run mirrored, so jAER's
extractors return ``x = width - 1 - x_field``. neurodata returns image
coordinates with the origin at the top left, like AEDAT 3.1 and 4.0:
``x = width - 1 - x_field`` and ``y = height - 1 - y_field`` (what
dv-processing and tonic's ``read_davis_346`` return). ``raw_coordinates=True``
returns the address fields unchanged. The 32-bit timestamps wrap after
2**32 us (71 min); a backward jump of more than 2**31 us is unwrapped.

AEDAT 3.1 (cAER, iniVation "AEDAT 3.1" page): header lines ``#!AER-DAT3.1``,
``#Format: RAW``, ``#Source <id>: <device>``, ..., ``#!END-HEADER``, then
little-endian event packets: a 28-byte header (int16 eventType, int16
eventSource, int32 eventSize, eventTSOffset, eventTSOverflow, eventCapacity,
eventNumber, eventValid) followed by ``eventCapacity * eventSize`` bytes.
Polarity packets (type 1) hold 8-byte events: uint32 data (bit 0 valid, bit 1
polarity, bits 2-16 y, bits 17-31 x; origin top left) and an int32 timestamp
at ``eventTSOffset``; the full timestamp is ``eventTSOverflow << 31 | ts``.
Only valid polarity events are kept. The loop runs over packet headers; each
packet is decoded with one ``np.frombuffer``.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, TruncatedFileError
from neurodata.events import EventRecording
from neurodata.loaders._io import read_bytes

VERSION = "AEDAT 2.0 / 3.1"
MAGIC2 = b"#!AER-DAT2.0"
MAGIC3 = b"#!AER-DAT3.1"
END_HEADER = b"#!END-HEADER"
POLARITY_EVENT = 1
PACKET_HEADER = struct.Struct("<HhiiiiII")  # 28 bytes

#: chip family -> (width, height); jAER class / cAER source names map onto these
SENSOR_SIZES = {
    "DVS128": (128, 128),
    "DAVIS128": (128, 128),
    "DAVIS208": (208, 192),
    "DAVIS240": (240, 180),
    "DAVIS346": (346, 260),
    "DAVIS640": (640, 480),
    "DVXPLORER_LITE": (320, 240),
    "DVXPLORER": (640, 480),
}


def sniff(path: Path, head: bytes) -> bool:
    """The version line is the magic (2.0 or 3.1)."""
    return head.startswith(MAGIC2) or head.startswith(MAGIC3)


def chip_family(name: str) -> str | None:
    """Map a jAER AEChip class or cAER source description onto a SENSOR_SIZES key.

    ``eu.seebetter.ini.chips.davis.Davis346red`` -> ``DAVIS346``,
    ``ch.unizh.ini.jaer.chip.retina.DVS128`` -> ``DVS128``,
    ``DVXplorer Lite`` -> ``DVXPLORER_LITE``.
    """
    cls = name.strip().rsplit(".", 1)[-1].upper().replace(" ", "_")
    if "TMPDIFF128" in cls or cls.startswith("DVS128"):
        return "DVS128"
    if "DVXPLORER" in cls or "DVXP" in cls:
        return "DVXPLORER_LITE" if "LITE" in cls else "DVXPLORER"
    m = re.search(r"DAVIS\D{0,8}(128|208|240|346|640)", cls)
    if m:
        return "DAVIS" + m.group(1)
    return None


# -- header lines ----------------------------------------------------------------

_TEXT = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\r?$")


def header_lines(data: bytes, stop: bytes | None = None) -> tuple[list[str], int]:
    """Leading ``#`` lines and the byte offset where the binary part starts.

    A line counts as header only if it is text: binary event data whose first
    byte happens to be ``#`` (0x23) is not swallowed as long as a non-text byte
    follows before the next newline. With ``stop`` the header ends after the
    line that starts with it (AEDAT 3.1's ``#!END-HEADER``).
    """
    lines, pos, n = [], 0, len(data)
    while pos < n and data[pos:pos + 1] == b"#":
        end = data.find(b"\n", pos)
        end = n if end < 0 else end
        line = data[pos:end]
        if stop is None and not _TEXT.match(line):
            break
        lines.append(line.rstrip(b"\r").decode("latin-1"))
        pos = min(end + 1, n)
        if stop is not None and line.startswith(stop):
            return lines, pos
    if stop is not None:
        return lines, -1
    return lines, pos


# -- AEDAT 2.0 -------------------------------------------------------------------------

def decode_dvs128(addr: np.ndarray, raw_coordinates: bool = False):
    """DVS128 addresses -> ``(keep, x, y, p)``; ``keep`` drops non-pixel words."""
    keep = (addr & np.uint32(0xFFFF8000)) == 0
    a = addr[keep]
    xf = ((a >> 1) & 0x7F).astype(np.uint16)
    yf = ((a >> 8) & 0x7F).astype(np.uint16)
    p = (1 - (a & 1)).astype(np.uint8)  # jAER: raw bit 0 clear = ON
    if raw_coordinates:
        return keep, xf, yf, p
    return keep, 127 - xf, 127 - yf, p


def decode_davis(addr: np.ndarray, width: int, height: int, raw_coordinates: bool = False,
                 path=None):
    """DAVIS addresses -> ``(keep, x, y, p)``; APS, IMU and external-input words dropped."""
    keep = (addr & np.uint32(0x80000400)) == 0
    a = addr[keep]
    xf = ((a >> 12) & 0x3FF).astype(np.uint16)
    yf = ((a >> 22) & 0x1FF).astype(np.uint16)
    p = ((a >> 11) & 1).astype(np.uint8)
    if len(a) and (int(xf.max()) >= width or int(yf.max()) >= height):
        raise CorruptFileError(
            f"DVS addresses reach x={int(xf.max())}, y={int(yf.max())}, outside the "
            f"{width}x{height} sensor of the header's chip; pass chip= to override", path)
    if raw_coordinates:
        return keep, xf, yf, p
    return keep, (width - 1) - xf, (height - 1) - yf, p


def unwrap_timestamps(ts: np.ndarray) -> np.ndarray:
    """uint32 microsecond timestamps -> int64, adding 2**32 after every wrap."""
    t = ts.astype(np.int64)
    if len(t) > 1:
        wraps = np.diff(t) < -(1 << 31)
        if wraps.any():
            t[1:] += np.cumsum(wraps, dtype=np.int64) << 32
    return t


def read_aedat2(data: bytes, path, chip: str | None = None,
                raw_coordinates: bool = False) -> EventRecording:
    """Decode an AEDAT 2.0 byte string (see the module docstring)."""
    lines, start = header_lines(data)
    aechip = next((ln.split(":", 1)[1].strip() for ln in lines
                   if ln.lstrip("# ").startswith("AEChip:")), "")
    family = chip_family(chip) if chip else chip_family(aechip) if aechip else None
    if chip and family is None:
        raise FormatError(f"unknown chip {chip!r}; known: {', '.join(SENSOR_SIZES)}", path)
    nbytes = len(data) - start
    if nbytes % 8:
        raise TruncatedFileError(f"truncated: {nbytes} bytes of events is not a whole number "
                                 f"of 8-byte records ({nbytes % 8} left over)", path)
    rec = np.frombuffer(data, np.dtype([("a", ">u4"), ("t", ">u4")]), offset=start)
    assumed = False
    if len(rec) and family is None and not aechip and int(rec["a"].max()) < 0x8000:
        # files from jAER before 2014 carry no AEChip line; their chip was the
        # DVS128, and 15-bit addresses are all a DVS128 writes
        family, assumed = "DVS128", True
    if len(rec) and family is None:
        raise FormatError(f"AEChip {aechip or '(none)'!r} is not a DVS128 or DAVIS chip; "
                          "pass chip='DVS128' or chip='DAVIS346' etc.", path)
    width, height = SENSOR_SIZES[family] if family else (None, None)
    addr = rec["a"].astype(np.uint32)
    if family in ("DVS128", None):
        keep, x, y, p = decode_dvs128(addr, raw_coordinates)
    elif family.startswith("DAVIS"):
        keep, x, y, p = decode_davis(addr, width, height, raw_coordinates, path)
    else:
        raise FormatError(f"chip {family} does not write AEDAT 2.0 addresses", path)
    t = unwrap_timestamps(rec["t"].astype(np.uint32))[keep]
    created = next((re.search(r"currentTimeMillis\(\)\s*(\d+)", ln) for ln in lines
                    if "currentTimeMillis" in ln), None)
    meta = {"version": "2.0", "aechip": aechip, "chip": family or "", "chip_assumed": assumed,
            "creation_time_ms": int(created.group(1)) if created else None,
            "n_records": int(len(rec)), "n_dropped": int(len(rec) - len(t)),
            "header": [ln for ln in lines[:64] if not ln.startswith("#<") and len(ln) < 200]}
    sensor = (width, height, 2) if width else None
    return EventRecording(x, y, t, p, sensor_size=sensor, format="aedat/AEDAT 2.0", meta=meta)


# -- AEDAT 3.1 ---------------------------------------------------------------------------

def iter_packets31(data: bytes, start: int, path):
    """Yield ``(header tuple, data offset, data size)`` per packet, checking bounds."""
    pos, n = start, len(data)
    while pos < n:
        if n - pos < PACKET_HEADER.size:
            raise TruncatedFileError(f"{n - pos} bytes at byte {pos} are too few for a "
                                     "28-byte packet header", path)
        h = PACKET_HEADER.unpack_from(data, pos)
        etype, _src, esize, tsoff, _ovf, cap, number, _valid = h
        if etype & 0x8000:
            raise FormatError(f"packet at byte {pos} is compressed (eventType bit 15); only "
                              "the RAW format is supported", path)
        if esize <= 0 or cap < 0 or not 0 <= tsoff <= esize - 4 or number > cap:
            raise CorruptFileError(f"packet at byte {pos} has an impossible header "
                                   f"(eventSize={esize}, eventTSOffset={tsoff}, "
                                   f"eventCapacity={cap}, eventNumber={number})", path)
        size = cap * esize
        if pos + PACKET_HEADER.size + size > n:
            raise TruncatedFileError(f"packet at byte {pos} claims {cap} events of {esize} bytes "
                                     f"but only {n - pos - PACKET_HEADER.size} bytes remain", path)
        yield h, pos + PACKET_HEADER.size, size
        pos += PACKET_HEADER.size + size


def parse_sources(lines: list[str]) -> dict[int, str]:
    """``#Source <id>: <description>`` lines (current sources, not ``#-Source``)."""
    out = {}
    for ln in lines:
        m = re.match(r"#Source (\d+):\s*(.*)$", ln)
        if m:
            out[int(m.group(1))] = m.group(2).strip()
    return out


def _sensor_from_header(lines: list[str], description: str):
    text = "\n".join(lines)
    mx = re.search(r"sizeX\D{0,20}?(\d+)", text)
    my = re.search(r"sizeY\D{0,20}?(\d+)", text)
    if mx and my:
        return int(mx.group(1)), int(my.group(1))
    fam = chip_family(description)
    return SENSOR_SIZES.get(fam) if fam else None


def read_aedat31(data: bytes, path, source: int | None = None) -> EventRecording:
    """Decode an AEDAT 3.1 byte string (see the module docstring)."""
    lines, start = header_lines(data, stop=END_HEADER)
    if start < 0:
        raise TruncatedFileError("AEDAT 3.1 header has no #!END-HEADER line", path)
    fmt = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("#Format:")), "RAW")
    if fmt.upper() != "RAW":
        raise FormatError(f"AEDAT 3.1 format {fmt!r} is not supported (only RAW)", path)
    sources = parse_sources(lines)
    chunks = []
    n_packets = 0
    chosen = source
    for h, off, size in iter_packets31(data, start, path):
        n_packets += 1
        etype, src, esize, tsoff, overflow, cap = h[:6]
        if etype != POLARITY_EVENT:
            continue
        if chosen is None:
            chosen = src
        if src != chosen:
            continue
        if esize < 8:
            raise CorruptFileError(f"polarity packet at byte {off - 28} has {esize}-byte "
                                   "events; polarity events are 8 bytes", path)
        dt = np.dtype({"names": ["d", "t"], "formats": ["<u4", "<i4"],
                       "offsets": [0, tsoff], "itemsize": esize})
        ev = np.frombuffer(data, dt, count=cap, offset=off)
        chunks.append((ev, overflow))
    x, y, t, p = _polarity31(chunks)
    desc = sources.get(chosen, "") if chosen is not None else ""
    wh = _sensor_from_header(lines, desc)
    meta = {"version": "3.1", "source_id": -1 if chosen is None else int(chosen),
            "source": desc, "sources": {str(k): v for k, v in sources.items()},
            "n_packets": n_packets, "header": lines}
    return EventRecording(x, y, t, p, sensor_size=(wh[0], wh[1], 2) if wh else None,
                          format="aedat/AEDAT 3.1", meta=meta)


def _polarity31(chunks):
    cols = ([], [], [], [])
    for ev, overflow in chunks:
        d = ev["d"]
        valid = (d & 1).astype(bool)
        d = d[valid]
        cols[0].append(((d >> 17) & 0x7FFF).astype(np.uint16))
        cols[1].append(((d >> 2) & 0x7FFF).astype(np.uint16))
        cols[2].append(ev["t"][valid].astype(np.int64) | (np.int64(overflow) << 31))
        cols[3].append(((d >> 1) & 1).astype(np.uint8))
    dtypes = (np.uint16, np.uint16, np.int64, np.uint8)
    return tuple(np.concatenate(c) if c else np.empty(0, dt) for c, dt in zip(cols, dtypes))


def read(path: Path, chip: str | None = None, raw_coordinates: bool = False,
         source: int | None = None, **kw) -> EventRecording:
    """Read polarity events from an AEDAT 2.0 or 3.1 file.

    Parameters
    ----------
    path : path-like
        The ``.aedat`` file.
    chip : str, optional
        AEDAT 2.0: the chip whose address layout to use (``"DVS128"``,
        ``"DAVIS240"``, ``"DAVIS346"``, ...), overriding the ``# AEChip:``
        header line.
    raw_coordinates : bool
        AEDAT 2.0: return the address fields as stored instead of top-left
        image coordinates.
    source : int, optional
        AEDAT 3.1: the event source id to read (default: the first source
        with polarity packets).
    """
    path = Path(path)
    data = read_bytes(path)
    if data.startswith(MAGIC2):
        return read_aedat2(data, path, chip=chip, raw_coordinates=raw_coordinates)
    if data.startswith(MAGIC3):
        return read_aedat31(data, path, source=source)
    if data.startswith(b"#!AER-DAT"):
        version = data[9:data.find(b"\n")].strip()
        raise FormatError(f"AEDAT version {version.decode('latin-1')!r} is not supported "
                          "(2.0 and 3.1 are; AEDAT 4.0 has its own loader)", path)
    raise FormatError(f"not an AEDAT 2.0/3.1 file: starts with {data[:12]!r}", path)
