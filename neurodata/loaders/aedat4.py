"""iniVation DV AEDAT 4.0 files (``.aedat4``): polarity events.

Layout (iniVation, "AEDAT 4.0" file-format page; schemas of dv-processing):

- the line ``#!AER-DAT4.0\\r\\n`` (14 bytes);
- an int32 (little-endian) byte count, then that many bytes of an ``IOHeader``
  FlatBuffer (file identifier ``IOHE``): field 0 ``compression`` (int32 enum:
  0 none, 1 LZ4, 2 LZ4 high, 3 Zstd, 4 Zstd high), field 1
  ``dataTablePosition`` (int64, -1 when there is no table), field 2
  ``infoNode`` (an XML string describing each output stream: its
  ``typeIdentifier``, ``EVTS`` for polarity events, and ``sizeX``/``sizeY``);
- packets, up to ``dataTablePosition`` (or the end): int32 stream id, int32
  byte count, then that many bytes: one LZ4 or Zstd frame (or raw bytes) that
  decompresses to a size-prefixed FlatBuffer. For ``EVTS`` the root table's
  field 0 is a vector of ``Event`` structs of 16 bytes: int64 timestamp (Unix
  microseconds), int16 x, int16 y, bool polarity, 3 bytes padding.

The FlatBuffers are read here by hand (root offset, vtable, vector length):
only three tiny schemas are needed, and every offset is checked against the
buffer so a corrupt file raises a :class:`~neurodata.errors.CorruptFileError`
instead of reading garbage. Events are decoded per packet with
``np.frombuffer`` straight into preallocated columns; the only Python loop
runs over packet headers. Frames, IMU samples and triggers are skipped.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import struct
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from neurodata.errors import CorruptFileError, FormatError, TruncatedFileError
from neurodata.events import EventRecording

VERSION = "AEDAT 4.0"
MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSION = {0: "none", 1: "lz4", 2: "lz4_high", 3: "zstd", 4: "zstd_high"}
#: one DV polarity event as stored in an EventPacket's element vector
EVENT4_DTYPE = np.dtype({"names": ["t", "x", "y", "p"],
                         "formats": ["<i8", "<i2", "<i2", "u1"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})


def sniff(path: Path, head: bytes) -> bool:
    """The version line is the magic."""
    return head.startswith(MAGIC[:12])


# -- FlatBuffers ---------------------------------------------------------------

class _Table:
    """A FlatBuffers table inside ``buf`` at ``pos``, with bounds checks."""

    def __init__(self, buf, pos: int, path, what: str):
        self.buf, self.pos, self.path, self.what = buf, pos, path, what
        n = len(buf)
        if pos < 0 or pos + 4 > n:
            self._bad("table offset out of range")
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        if vt < 0 or vt + 4 > n:
            self._bad("vtable offset out of range")
        vt_size, _ = struct.unpack_from("<HH", buf, vt)
        if vt_size < 4 or vt + vt_size > n:
            self._bad("vtable size out of range")
        self.fields = struct.unpack_from(f"<{(vt_size - 4) // 2}H", buf, vt + 4)

    def _bad(self, msg):
        raise CorruptFileError(f"{self.what}: {msg}", self.path)

    def _field_pos(self, i: int, size: int):
        if i >= len(self.fields) or self.fields[i] == 0:
            return None
        p = self.pos + self.fields[i]
        if p + size > len(self.buf):
            self._bad(f"field {i} out of range")
        return p

    def scalar(self, i: int, fmt: str, default):
        p = self._field_pos(i, struct.calcsize(fmt))
        return default if p is None else struct.unpack_from(fmt, self.buf, p)[0]

    def indirect(self, i: int):
        """Position of the object (string, vector, table) that field ``i`` points to."""
        p = self._field_pos(i, 4)
        if p is None:
            return None
        target = p + struct.unpack_from("<I", self.buf, p)[0]
        if target + 4 > len(self.buf):
            self._bad(f"field {i} points past the end")
        return target

    def vector(self, i: int, itemsize: int):
        """``(start, length)`` of the vector in field ``i`` (``(0, 0)`` if absent)."""
        p = self.indirect(i)
        if p is None:
            return 0, 0
        n = struct.unpack_from("<I", self.buf, p)[0]
        if p + 4 + n * itemsize > len(self.buf):
            self._bad(f"vector of {n} elements runs past the end of the buffer")
        return p + 4, n

    def string(self, i: int) -> str | None:
        start, n = self.vector(i, 1)
        if start == 0:
            return None
        return bytes(self.buf[start:start + n]).decode("utf-8", "replace")


def _root(buf, offset: int, path, what: str, identifier: bytes | None) -> _Table:
    if offset + 8 > len(buf):
        raise CorruptFileError(f"{what}: too short for a FlatBuffer", path)
    if identifier is not None and bytes(buf[offset + 4:offset + 8]) != identifier:
        got = bytes(buf[offset + 4:offset + 8])
        raise CorruptFileError(f"{what}: FlatBuffer identifier {got!r}, expected {identifier!r}",
                               path)
    # offsets inside the FlatBuffer are relative to its own start
    view = memoryview(buf)[offset:]
    return _Table(view, struct.unpack_from("<I", view, 0)[0], path, what)


# -- header ---------------------------------------------------------------------

def read_header(data: bytes, path) -> dict:
    """Parse the version line and the IOHeader.

    Returns a dict with ``compression`` (name), ``data_table_position``,
    ``streams`` (id -> dict of ``type``, ``size_x``, ``size_y``, ``source``,
    ...), ``info_xml`` and ``data_start`` (byte offset of the first packet).
    """
    if bytes(data[:len(MAGIC)]) != MAGIC:
        raise FormatError(f"not an AEDAT 4.0 file: starts with {bytes(data[:14])!r}, "
                          f"expected {MAGIC!r}", path)
    if len(data) < len(MAGIC) + 4:
        raise TruncatedFileError("ends inside the header size field", path)
    size = struct.unpack_from("<i", data, len(MAGIC))[0]
    start = len(MAGIC) + 4
    if size <= 0 or start + size > len(data):
        raise TruncatedFileError(f"header claims {size} bytes but the file holds "
                                 f"{len(data) - start} after the size field", path)
    hdr = _root(bytes(data[start:start + size]), 0, path, "IOHeader", None)
    code = hdr.scalar(0, "<i", 0)
    if code not in COMPRESSION:
        raise CorruptFileError(f"IOHeader: unknown compression type {code}", path)
    table_pos = hdr.scalar(1, "<q", -1)
    info = hdr.string(2) or ""
    return {
        "compression": COMPRESSION[code],
        "data_table_position": int(table_pos),
        "streams": parse_info_node(info, path),
        "info_xml": info,
        "data_start": start + size,
    }


def parse_info_node(xml: str, path=None) -> dict[int, dict]:
    """Streams described by the IOHeader's XML ``infoNode``.

    Each ``<node name="ID">`` under ``outInfo`` is one stream; its attributes
    (``typeIdentifier``, ``compression``, ...) and those of its ``info`` child
    (``sizeX``, ``sizeY``, ``source``) are returned with numeric values cast.
    """
    if not xml.strip():
        return {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise CorruptFileError(f"IOHeader infoNode is not valid XML ({e})", path) from None
    out_info = root if root.get("name") == "outInfo" else root.find(".//node[@name='outInfo']")
    if out_info is None:
        out_info = root
    streams = {}
    for node in out_info.findall("node"):
        name = node.get("name", "")
        if not name.lstrip("-").isdigit():
            continue
        info = {}
        for elem in [node, *node.findall("node[@name='info']")]:
            for attr in elem.findall("attr"):
                info[attr.get("key", "")] = _attr_value(attr)
        streams[int(name)] = info
    return streams


def _attr_value(attr):
    text = attr.text or ""
    if attr.get("type") in ("int", "long", "short", "byte"):
        try:
            return int(text)
        except ValueError:
            return text
    return text


def event_stream_id(streams: dict[int, dict], path, stream: int | None = None) -> int:
    """The polarity event stream to read: ``stream`` if given, else the lowest EVTS id."""
    evts = sorted(i for i, s in streams.items() if s.get("typeIdentifier") == "EVTS")
    if stream is not None:
        if stream not in streams:
            raise FormatError(f"no stream {stream}; streams are {sorted(streams)}", path)
        if streams[stream].get("typeIdentifier") != "EVTS":
            raise FormatError(f"stream {stream} holds {streams[stream].get('typeIdentifier')!r}, "
                              "not polarity events (EVTS)", path)
        return stream
    if not evts:
        kinds = {i: s.get("typeIdentifier") for i, s in streams.items()}
        raise FormatError(f"no polarity event stream (EVTS) in the file; streams: {kinds}", path)
    return evts[0]


# -- packets ----------------------------------------------------------------------

_LZ4_MAGIC = 0x184D2204
_LZ4_BLOCK_MAX = {4: 1 << 16, 5: 1 << 18, 6: 1 << 20, 7: 1 << 22}


def lz4_frame_decompress(buf, path=None) -> bytes:
    """Decompress one LZ4 frame (LZ4 frame format 1.6) block by block.

    Parsing the frame here and handing each block to ``lz4.block`` is faster
    than ``lz4.frame.decompress`` on DV's frames (no content size stored),
    and no block can produce more than the frame's declared block maximum
    (64 KiB to 4 MiB), so nothing is allocated from an unchecked claim.
    """
    import lz4.block

    n = len(buf)
    if n < 7 or struct.unpack_from("<I", buf, 0)[0] != _LZ4_MAGIC:
        raise CorruptFileError("packet is not an LZ4 frame (bad magic)", path)
    flg, bd = buf[4], buf[5]
    if flg >> 6 != 1 or (bd >> 4) & 7 not in _LZ4_BLOCK_MAX:
        raise CorruptFileError(f"unsupported LZ4 frame descriptor {flg:#x} {bd:#x}", path)
    linked = not flg & 0x20
    pos = 7 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)
    block_max = _LZ4_BLOCK_MAX[(bd >> 4) & 7]
    checksum = 4 if flg & 0x10 else 0
    out = []
    while True:
        if pos + 4 > n:
            raise CorruptFileError("LZ4 frame ends without an end mark", path)
        size = struct.unpack_from("<I", buf, pos)[0]
        pos += 4
        if size == 0:
            break
        raw, size = size >> 31, size & 0x7FFFFFFF
        if size > block_max or pos + size > n:
            raise CorruptFileError(f"LZ4 block of {size} bytes exceeds the frame", path)
        block = buf[pos:pos + size]
        if raw:
            out.append(bytes(block))
        elif linked and out:
            # a linked block may refer to the previous 64 KiB of output; every block
            # but the last is full (>= 64 KiB), so the previous one holds them
            out.append(lz4.block.decompress(block, uncompressed_size=block_max,
                                            dict=out[-1][-65536:]))
        else:
            out.append(lz4.block.decompress(block, uncompressed_size=block_max))
        pos += size + checksum
    return out[0] if len(out) == 1 else b"".join(out)


def _decompressor(kind: str, path):
    if kind == "none":
        return lambda b: b
    if kind.startswith("lz4"):
        return lambda b: lz4_frame_decompress(b, path)
    import zstandard

    def zstd_frame(b):
        # a streaming decompressor grows its output as it goes: it never allocates
        # from the size a (possibly corrupt) frame header claims. One per packet:
        # zstandard's decompressors must not be shared between threads.
        return zstandard.ZstdDecompressor().decompressobj().decompress(b)
    return zstd_frame


def iter_packets(data: bytes, start: int, end: int, path):
    """Yield ``(stream_id, offset, size)`` for every packet between ``start`` and ``end``."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise TruncatedFileError(f"{end - pos} stray bytes at byte {pos}, too few for "
                                     "a packet header", path)
        sid, size = struct.unpack_from("<ii", data, pos)
        if size < 0 or pos + 8 + size > end:
            raise TruncatedFileError(f"packet at byte {pos} (stream {sid}) claims {size} bytes "
                                     f"but only {end - pos - 8} remain", path)
        yield sid, pos + 8, size
        pos += 8 + size


def event_packet_array(payload, path) -> np.ndarray:
    """The Event structs of one decompressed EVTS packet, as a zero-copy view."""
    n = len(payload)
    if n < 12:
        raise CorruptFileError(f"event packet of {n} bytes is too short", path)
    size = struct.unpack_from("<I", payload, 0)[0]
    if size + 4 > n:
        raise CorruptFileError(f"event packet claims {size} bytes but holds {n - 4}", path)
    table = _root(payload, 4, path, "EventPacket", None)
    start, count = table.vector(0, EVENT4_DTYPE.itemsize)
    if count == 0:
        return np.empty(0, EVENT4_DTYPE)
    return np.frombuffer(payload, EVENT4_DTYPE, count=count, offset=4 + start)


@contextlib.contextmanager
def _mapped(path: Path):
    """The file as a read-only memory map (no copy into process memory)."""
    if not path.exists():
        raise FormatError("no such file", path)
    if path.is_dir():
        raise FormatError("is a folder, expected a file", path)
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise FormatError("empty file", path)
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield mm
    finally:
        try:
            mm.close()
        except BufferError:  # a caller still holds a view; the map closes when it is freed
            pass


def decode_event_packets(data, packets, compression: str, path, workers: int | None = None):
    """Decode EVTS packets ``[(offset, size), ...]`` of ``data`` into x, y, t, p columns.

    By default packets are decoded one after the other straight into the
    output columns, which touches every output page once. With ``workers > 1``
    contiguous batches are decoded on a thread pool (LZ4, Zstd and numpy's
    copies release the GIL) into per-batch columns joined in file order; that
    touches the output memory twice, and on the 2-core benchmark VM, where
    first-touch page faults dominate, it was slower than one thread
    (benchmarks/bench_aedat.py), hence the default.
    """
    workers = 1 if workers is None else workers
    decompress = _decompressor(compression, path)
    view = memoryview(data)

    # events per compressed byte: exact for raw packets, a generous 4:1 guess
    # otherwise (pages of np.empty never written cost no memory; short -> grow)
    per_byte = 16 if compression == "none" else 4

    def decode_batch(batch):
        cols = _ColumnBuffer(sum(size for _, size in batch) // per_byte + 1024)
        for off, size in batch:
            try:
                payload = decompress(view[off:off + size])
            except CorruptFileError:
                raise
            except Exception as e:  # lz4/zstd raise their own error types
                raise CorruptFileError(f"packet at byte {off - 8} does not decompress as "
                                       f"{compression} ({e})", path) from None
            cols.append(event_packet_array(payload, path))
        return cols.finish()

    if workers <= 1 or len(packets) < 2 * workers:
        return decode_batch(packets)
    n_batches = min(len(packets), 8 * workers)
    bounds = np.linspace(0, len(packets), n_batches + 1).astype(int)
    batches = [packets[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(decode_batch, batches))
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(4))


def read(path: Path, stream: int | None = None, workers: int | None = None,
         **kw) -> EventRecording:
    """Read the polarity events of an AEDAT 4.0 file.

    Parameters
    ----------
    path : path-like
        The ``.aedat4`` file.
    stream : int, optional
        Stream id to read; default the lowest-numbered ``EVTS`` stream.
    workers : int, optional
        Threads decoding packets (default 1: see :func:`decode_event_packets`).

    Returns
    -------
    EventRecording
        ``t`` in microseconds as recorded (Unix time), ``sensor_size`` from
        the stream's ``sizeX``/``sizeY``, ``meta`` with compression, stream
        id and the stream description.
    """
    path = Path(path)
    with _mapped(path) as data:
        hdr = read_header(data, path)
        sid = event_stream_id(hdr["streams"], path, stream)
        end = hdr["data_table_position"]
        if end < 0 or end > len(data) or end < hdr["data_start"]:
            end = len(data)
        # walk every packet header first: a truncated or lying file fails before decoding
        packets = list(iter_packets(data, hdr["data_start"], end, path))
        mine = [(off, size) for psid, off, size in packets if psid == sid]
        x, y, t, p = decode_event_packets(data, mine, hdr["compression"], path, workers)
    info = hdr["streams"][sid]
    w, h = info.get("sizeX"), info.get("sizeY")
    sensor = (int(w), int(h), 2) if isinstance(w, int) and isinstance(h, int) else None
    if sensor and len(t) and (int(x.max()) >= sensor[0] or int(y.max()) >= sensor[1]):
        raise CorruptFileError(f"events at x<={int(x.max())}, y<={int(y.max())} lie outside "
                               f"the {sensor[0]}x{sensor[1]} sensor the header states", path)
    meta = {"compression": hdr["compression"], "stream_id": sid, "n_packets": len(packets),
            "source": info.get("source", ""), "streams": {
                str(k): v.get("typeIdentifier", "") for k, v in hdr["streams"].items()}}
    return EventRecording(x, y, t, p, sensor_size=sensor, format=f"aedat4/{VERSION}", meta=meta)


class _ColumnBuffer:
    """Growable x, y, t, p columns filled packet by packet.

    Copying each packet into the columns right after it is decompressed keeps
    the payload in cache and lets its memory be reused for the next packet.
    The capacity is a guess from the compressed bytes; the columns double
    when it is short.
    """

    def __init__(self, capacity: int):
        self.n = 0
        self.cols = [np.empty(capacity, dt) for dt in (np.uint16, np.uint16, np.int64, np.uint8)]

    def append(self, ev: np.ndarray) -> None:
        k = len(ev)
        if not k:
            return
        if self.n + k > len(self.cols[0]):
            cap = max(2 * len(self.cols[0]), self.n + k)
            self.cols = [np.concatenate([c[:self.n], np.empty(cap - self.n, c.dtype)])
                         for c in self.cols]
        i, j = self.n, self.n + k
        x, y, t, p = self.cols
        x[i:j] = ev["x"]
        y[i:j] = ev["y"]
        t[i:j] = ev["t"]
        p[i:j] = ev["p"]
        self.n = j

    def finish(self):
        x, y, t, p = (c[:self.n] for c in self.cols)
        np.minimum(p, 1, out=p)  # bools stored as bytes: anything non-zero is ON
        return x, y, t, p
