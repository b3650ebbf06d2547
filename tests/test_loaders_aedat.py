"""AEDAT 2.0 / 3.1 / 4.0 loaders: real files, spec-following encoders, bad input.

Expected figures for the real AEDAT 4.0 sample were computed once with the
``aedat`` package (Rust decoder, through ``tonic.io.read_aedat4``) and are
written literally; the same comparison also runs live where those packages
are installed. AEDAT 2.0/3.1 files with events are written here by small
``struct.pack`` encoders that follow iniVation's format pages and jAER's
address constants, independently of the loader.
"""
from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest

from neurodata import loaders
from neurodata.conversion import convert
from neurodata.dataset import open as open_store
from neurodata.errors import (CorruptFileError, FormatError, NeurodataError,
                              TruncatedFileError)
from neurodata.loaders import aedat, aedat4

# --------------------------------------------------------------------------------------
# encoders (test-side, from the specifications)
# --------------------------------------------------------------------------------------


def write_aedat2(path, chip_class, records, header_extra=()):
    """AEDAT 2.0: '#' header lines (CRLF), then big-endian (uint32 address, uint32 ts)."""
    lines = [b"#!AER-DAT2.0", b"# This is a raw AE data file - do not edit",
             b"# AEChip: " + chip_class.encode(), *header_extra]
    body = b"".join(struct.pack(">II", a, t) for a, t in records)
    path.write_bytes(b"".join(ln + b"\r\n" for ln in lines) + body)
    return path


def davis_addr(xf, yf, p):
    """jAER DavisChip: y bits 22-30, x bits 12-21, polarity bit 11."""
    return (yf << 22) | (xf << 12) | (p << 11)


def write_aedat31(path, packets, source_line=b"#Source 1: DAVIS346"):
    """AEDAT 3.1: header lines ending in #!END-HEADER, then little-endian packets.

    ``packets``: list of (type, source, event_size, ts_offset, overflow, events_bytes,
    capacity or None).
    """
    head = [b"#!AER-DAT3.1", b"#Format: RAW", source_line,
            b"#Start-Time: 2026-11-21 10:00:00 (TZ+0000)", b"#!END-HEADER"]
    out = [ln + b"\r\n" for ln in head]
    for etype, src, esize, tsoff, ovf, body, cap in packets:
        n = len(body) // esize if esize > 0 else 0
        cap = n if cap is None else cap
        out.append(struct.pack("<hhiiiiii", etype, src, esize, tsoff, ovf, cap, n, n))
        out.append(body)
    path.write_bytes(b"".join(out))
    return path


def polarity31(events):
    """(x, y, p, ts, valid) -> 8-byte AEDAT 3.1 polarity events."""
    return b"".join(struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | v, ts)
                    for x, y, p, ts, v in events)


def _io_header(compression, info_xml, table_pos=-1):
    """An IOHeader FlatBuffer laid out by hand (aligned as flatc would)."""
    s = info_xml.encode()
    vtable = struct.pack("<HHHHH", 10, 20, 4, 8, 16)
    buf = struct.pack("<I", 24) + b"IOHE" + vtable + b"\0" * 6        # table at 24
    buf += struct.pack("<iiqI", 24 - 8, compression, table_pos, 4)    # string at 44
    buf += struct.pack("<I", len(s)) + s + b"\0"
    return buf + b"\0" * (-len(buf) % 8)


def _event_packet(t, x, y, p):
    """A size-prefixed EventPacket FlatBuffer ('EVTS') with 16-byte Event structs."""
    n = len(t)
    ev = np.zeros(n, aedat4.EVENT4_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    body = struct.pack("<I", 16) + b"EVTS" + struct.pack("<HHH", 6, 8, 4) + b"\0" * 2
    body += struct.pack("<iI", 16 - 8, 4) + struct.pack("<I", n) + ev.tobytes()
    return struct.pack("<I", len(body)) + body


def write_aedat4(path, packets, compression="lz4", width=346, height=260, extra_stream=True):
    """AEDAT 4.0 with EVTS packets on stream 0 and (optionally) opaque packets on stream 1."""
    code = {"none": 0, "lz4": 1, "zstd": 3}[compression]
    xml = ('<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
           '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
           f'<attr key="compression" type="string">{compression.upper()}</attr>'
           '<attr key="typeIdentifier" type="string">EVTS</attr>'
           '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
           f'<attr key="sizeX" type="int">{width}</attr>'
           f'<attr key="sizeY" type="int">{height}</attr>'
           '<attr key="source" type="string">DAVIS346_TEST</attr></node></node>'
           '<node name="1" path="/mainloop/Recorder/outInfo/1/">'
           '<attr key="typeIdentifier" type="string">IMUS</attr></node></node></dv>')
    hdr = _io_header(code, xml)
    out = [b"#!AER-DAT4.0\r\n", struct.pack("<i", len(hdr)), hdr]

    def pack(raw):
        if compression == "lz4":
            import lz4.frame
            return lz4.frame.compress(raw)
        if compression == "zstd":
            import zstandard
            return zstandard.ZstdCompressor().compress(raw)
        return raw

    for cols in packets:
        data = pack(_event_packet(*cols))
        out.append(struct.pack("<ii", 0, len(data)) + data)
        if extra_stream:  # an IMU-stream packet the reader must skip unread
            junk = pack(b"\x07" * 40)
            out.append(struct.pack("<ii", 1, len(junk)) + junk)
    path.write_bytes(b"".join(out))
    return path


def _assert_names_file(exc_info, path):
    assert str(path) in str(exc_info.value)


# --------------------------------------------------------------------------------------
# AEDAT 4.0: the real sample
# --------------------------------------------------------------------------------------

# computed once with aedat.Decoder (via tonic.io.read_aedat4) on sample.aedat4
SAMPLE4_N = 111954
SAMPLE4_FIRST = (1605537493718345, 154, 204, 0)  # t, x, y, p
SAMPLE4_LAST = (1605537494308262, 88, 237, 1)
SAMPLE4_ON = 55023


def test_aedat4_real_sample(real):
    path = real("events/sample.aedat4")
    assert loaders.detect(path).name == "aedat4"
    rec = loaders.read_events(path)
    assert len(rec) == SAMPLE4_N
    assert (int(rec.t[0]), int(rec.x[0]), int(rec.y[0]), int(rec.p[0])) == SAMPLE4_FIRST
    assert (int(rec.t[-1]), int(rec.x[-1]), int(rec.y[-1]), int(rec.p[-1])) == SAMPLE4_LAST
    assert int(rec.t.min()) == SAMPLE4_FIRST[0] and int(rec.t.max()) == SAMPLE4_LAST[0]
    assert int(rec.p.sum()) == SAMPLE4_ON and int((rec.p == 0).sum()) == SAMPLE4_N - SAMPLE4_ON
    assert rec.sensor_size == (320, 240, 2)
    assert rec.meta["compression"] == "lz4"
    assert rec.meta["streams"] == {"0": "EVTS", "2": "IMUS", "3": "TRIG"}
    assert rec.meta["source"] == "DVXplorer_DXB00010"
    assert (rec.x.dtype, rec.y.dtype, rec.t.dtype, rec.p.dtype) == (
        np.uint16, np.uint16, np.int64, np.uint8)


def test_aedat4_real_sample_matches_aedat_package_and_tonic(real):
    """Same events, field by field, as tonic.io.read_aedat4 (which uses aedat.Decoder)."""
    pytest.importorskip("aedat")
    tonic_io = pytest.importorskip("tonic.io")
    path = real("events/sample.aedat4")
    ref = tonic_io.read_aedat4(str(path))
    rec = aedat4.read(path)
    np.testing.assert_array_equal(rec.t, ref["t"].astype(np.int64))
    np.testing.assert_array_equal(rec.x, ref["x"])
    np.testing.assert_array_equal(rec.y, ref["y"])
    np.testing.assert_array_equal(rec.p, ref["p"].astype(np.uint8))
    import aedat as aedat_pkg
    streams = aedat_pkg.Decoder(str(path)).id_to_stream()
    assert (streams[0]["width"], streams[0]["height"]) == rec.sensor_size[:2]


def test_aedat4_round_trip_through_store(real, tmp_path):
    path = real("events/sample.aedat4")
    rec = aedat4.read(path)
    out = convert(path, tmp_path / "s.zarr")
    ds = open_store(out)
    assert len(ds) == 1 and ds.n_events == SAMPLE4_N
    assert tuple(ds.sensor_size) == (320, 240, 2)
    ev, label = ds[0]
    np.testing.assert_array_equal(ev["t"], rec.t)
    np.testing.assert_array_equal(ev["x"], rec.x)
    np.testing.assert_array_equal(ev["y"], rec.y)
    np.testing.assert_array_equal(ev["p"], rec.p)


# --------------------------------------------------------------------------------------
# AEDAT 4.0: written here (LZ4, Zstd, uncompressed), bad input
# --------------------------------------------------------------------------------------

def _synthetic_packets(seed=3, n_packets=4, per=250):
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000_000_000
    out = []
    for k in range(n_packets):
        t = t0 + k * 10_000 + np.sort(rng.integers(0, 10_000, per))
        out.append((t, rng.integers(0, 346, per), rng.integers(0, 260, per),
                    rng.integers(0, 2, per)))
    return out


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_aedat4_written_files_decode_exactly(tmp_path, compression):
    packets = _synthetic_packets()
    path = write_aedat4(tmp_path / f"{compression}.aedat4", packets, compression)
    rec = aedat4.read(path)
    t, x, y, p = (np.concatenate(c) for c in zip(*packets))
    np.testing.assert_array_equal(rec.t, t)
    np.testing.assert_array_equal(rec.x, x)
    np.testing.assert_array_equal(rec.y, y)
    np.testing.assert_array_equal(rec.p, p)
    assert rec.sensor_size == (346, 260, 2)
    assert rec.meta["compression"] == compression and rec.meta["n_packets"] == 8


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_aedat4_large_packets_and_threads(tmp_path, compression):
    """Packets of 12k events (LZ4: frames of several linked 64 KiB blocks), decoded on the
    calling thread, on a 2-thread pool, and by default: every path gives the same events."""
    packets = _synthetic_packets(seed=9, n_packets=30, per=12_000)
    path = write_aedat4(tmp_path / "big.aedat4", packets, compression, extra_stream=False)
    import lz4.frame
    if compression == "lz4":
        first = path.read_bytes()
        hsize = struct.unpack_from("<i", first, 14)[0]
        info = lz4.frame.get_frame_info(first[18 + hsize + 8:])
        assert info["block_linked"] and info["block_size"] == 65536
    t, x, y, p = (np.concatenate(c) for c in zip(*packets))
    for workers in (1, 2, None):
        rec = aedat4.read(path, workers=workers)
        np.testing.assert_array_equal(rec.t, t)
        np.testing.assert_array_equal(rec.x, x)
        np.testing.assert_array_equal(rec.y, y)
        np.testing.assert_array_equal(rec.p, p)


def test_aedat4_written_file_agrees_with_aedat_package(tmp_path):
    """The aedat package decodes the test encoder's file to the same events."""
    aedat_pkg = pytest.importorskip("aedat")
    packets = _synthetic_packets(seed=11, n_packets=3, per=100)
    path = write_aedat4(tmp_path / "a.aedat4", packets, "lz4", extra_stream=False)
    ref = np.concatenate([pk["events"] for pk in aedat_pkg.Decoder(str(path))
                          if pk["stream_id"] == 0])
    rec = aedat4.read(path)
    assert len(ref) == len(rec) == 300
    np.testing.assert_array_equal(rec.t, ref["t"].astype(np.int64))
    np.testing.assert_array_equal(rec.x, ref["x"])
    np.testing.assert_array_equal(rec.p, ref["on"].astype(np.uint8))


def test_aedat4_bad_input(tmp_path):
    good = write_aedat4(tmp_path / "good.aedat4", _synthetic_packets(n_packets=2))
    data = good.read_bytes()

    wrong = tmp_path / "wrong.aedat4"
    wrong.write_bytes(b"#!AER-DAT3.1\r\n" + data[14:])
    with pytest.raises(FormatError) as e:
        aedat4.read(wrong)
    _assert_names_file(e, wrong)

    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(data[:-30])
    with pytest.raises(TruncatedFileError) as e:
        aedat4.read(cut)
    _assert_names_file(e, cut)

    lying_header = tmp_path / "lying_header.aedat4"
    lying_header.write_bytes(data[:14] + struct.pack("<i", 10**9) + data[18:])
    with pytest.raises(TruncatedFileError):
        aedat4.read(lying_header)

    # first packet claims 2 GiB: refused before any allocation of that size
    hsize = struct.unpack_from("<i", data, 14)[0]
    p0 = 18 + hsize
    claim = tmp_path / "claim.aedat4"
    claim.write_bytes(data[:p0] + struct.pack("<ii", 0, 2**31 - 1) + data[p0 + 8:])
    tracemalloc.start()
    with pytest.raises(TruncatedFileError) as e:
        aedat4.read(claim)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * len(data) and "claims 2147483647 bytes" in str(e.value)

    garbled = bytearray(data)
    garbled[p0 + 8 + 12: p0 + 8 + 40] = b"\xff" * 28  # inside the first LZ4 frame's blocks
    bad = tmp_path / "garbled.aedat4"
    bad.write_bytes(bytes(garbled))
    with pytest.raises(CorruptFileError) as e:
        aedat4.read(bad)
    _assert_names_file(e, bad)

    empty = tmp_path / "empty.aedat4"
    empty.write_bytes(b"")
    with pytest.raises(NeurodataError) as e:
        aedat4.read(empty)
    _assert_names_file(e, empty)
    with pytest.raises(NeurodataError):
        loaders.read_events(empty)


def test_aedat4_event_vector_longer_than_packet(tmp_path):
    """An EventPacket whose vector length lies is corrupt, not an over-read."""
    raw = bytearray(_event_packet(np.arange(3), np.zeros(3), np.zeros(3), np.ones(3)))
    struct.pack_into("<I", raw, 4 + 24, 10**6)  # the vector length field
    import lz4.frame
    comp = lz4.frame.compress(bytes(raw))
    good = write_aedat4(tmp_path / "g.aedat4", [], extra_stream=False).read_bytes()
    path = tmp_path / "lie.aedat4"
    path.write_bytes(good + struct.pack("<ii", 0, len(comp)) + comp)
    with pytest.raises(CorruptFileError, match="runs past the end"):
        aedat4.read(path)


# --------------------------------------------------------------------------------------
# AEDAT 2.0
# --------------------------------------------------------------------------------------

def test_aedat2_real_header_only_sample(real):
    path = real("events/sample_aedat_header.aedat")
    assert loaders.detect(path).name == "aedat"
    rec = loaders.read_events(path)
    assert len(rec) == 0
    assert rec.sensor_size == (346, 260, 2)
    assert rec.meta["chip"] == "DAVIS346"
    assert rec.meta["aechip"] == "eu.seebetter.ini.chips.davis.Davis346red"
    assert rec.meta["creation_time_ms"] == 1695355587880  # tonic reads the same value
    assert rec.meta["header"][0] == "#!AER-DAT2.0"


def _davis_records(seed=5, n=400):
    """DVS events plus interleaved APS samples, IMU words and external-input events."""
    rng = np.random.default_rng(seed)
    xf = rng.integers(0, 346, n)
    yf = rng.integers(0, 260, n)
    p = rng.integers(0, 2, n)
    t = np.cumsum(rng.integers(0, 50, n)) + 1000
    kind = rng.choice(["dvs", "aps", "imu", "ext"], n, p=[0.7, 0.15, 0.1, 0.05])
    kind[0] = "dvs"
    xf[0], yf[0] = 0, 140  # address 0x23000000: its first byte is '#'
    records = []
    for i in range(n):
        if kind[i] == "dvs":
            a = davis_addr(int(xf[i]), int(yf[i]), int(p[i]))
        elif kind[i] == "aps":  # bit 31, readout type in bits 10-11, ADC sample in 0-9
            a = (1 << 31) | davis_addr(int(xf[i]), int(yf[i]), 0) | (1 << 10) | 517
        elif kind[i] == "imu":
            a = 0x80000C00 | (3 << 12) | 1234
        else:  # external input: DVS type with bit 10 set, edge code in bits 0-2
            a = (1 << 10) | 3
        records.append((a, int(t[i])))
    dvs = kind == "dvs"
    return records, dvs, xf, yf, p, t


def test_aedat2_davis346_skips_aps_imu_external(tmp_path):
    records, dvs, xf, yf, p, t = _davis_records()
    path = write_aedat2(tmp_path / "davis.aedat", "eu.seebetter.ini.chips.davis.Davis346B",
                        records)
    assert path.read_bytes()[path.read_bytes().index(b"Davis346B") + 11:][:1] == b"#"
    rec = loaders.read_events(path)
    assert rec.format == "aedat/AEDAT 2.0"
    assert len(rec) == int(dvs.sum()) and rec.meta["n_dropped"] == int((~dvs).sum())
    # top-left image coordinates: both fields mirrored about the sensor edge
    np.testing.assert_array_equal(rec.x, 345 - xf[dvs])
    np.testing.assert_array_equal(rec.y, 259 - yf[dvs])
    np.testing.assert_array_equal(rec.p, p[dvs])
    np.testing.assert_array_equal(rec.t, t[dvs])
    assert rec.sensor_size == (346, 260, 2)
    raw = aedat.read(path, raw_coordinates=True)
    np.testing.assert_array_equal(raw.x, xf[dvs])
    np.testing.assert_array_equal(raw.y, yf[dvs])


def test_aedat2_davis346_agrees_with_tonic_on_dvs_events(tmp_path):
    """tonic.io.read_davis_346 decodes every record (APS/IMU too); on DVS ones it agrees."""
    tonic_io = pytest.importorskip("tonic.io")
    records, dvs, *_ = _davis_records(seed=8, n=201)
    # tonic's header scan stops at the first byte that is not '#': a first event whose
    # address starts with 0x23 is swallowed as a header line, so leave that one out here
    records, dvs = records[1:], dvs[1:]
    path = write_aedat2(tmp_path / "davis.aedat", "eu.seebetter.ini.chips.davis.Davis346red",
                        records)
    _, _, ref = tonic_io.read_davis_346(str(path))
    assert len(ref) == 200  # tonic keeps APS/IMU/external words as events
    rec = aedat.read(path)
    np.testing.assert_array_equal(rec.x, ref["x"][dvs])
    np.testing.assert_array_equal(rec.y, ref["y"][dvs])
    np.testing.assert_array_equal(rec.t, ref["t"][dvs])
    np.testing.assert_array_equal(rec.p, ref["p"][dvs].astype(np.uint8))


def test_aedat2_dvs128_and_chip_override(tmp_path):
    rng = np.random.default_rng(2)
    n = 300
    xf, yf, on = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    t = np.arange(n) * 7 + 100
    # jAER DVS128: y bits 8-14, x bits 1-7, bit 0 clear = ON; bit 15 = external event
    records = [((int(yf[i]) << 8) | (int(xf[i]) << 1) | (1 - int(on[i])), int(t[i]))
               for i in range(n)]
    records.insert(10, (1 << 15, 777))  # external event word: not a pixel
    path = write_aedat2(tmp_path / "dvs128.aedat", "ch.unizh.ini.jaer.chip.retina.DVS128",
                        records)
    rec = aedat.read(path)
    assert len(rec) == n and rec.sensor_size == (128, 128, 2)
    np.testing.assert_array_equal(rec.x, 127 - xf)
    np.testing.assert_array_equal(rec.y, 127 - yf)
    np.testing.assert_array_equal(rec.p, on)
    np.testing.assert_array_equal(rec.t, t)
    # tonic 1.7's read_dvs_128 cannot run (it unpacks 2 of the 3 values its header reader
    # returns); its container reader gives the same raw words we wrote
    tonic_io = pytest.importorskip("tonic.io")
    version, start, _ = tonic_io.read_aedat_header_from_file(str(path))
    raw = tonic_io.get_aer_events_from_file(str(path), version, start)
    assert version == 2.0 and len(raw) == n + 1
    assert raw["address"].tolist() == [a for a, _ in records]

    # unknown chip in the header: refused unless chip= says what the addresses mean
    other = write_aedat2(tmp_path / "cochlea.aedat", "ch.unizh.ini.jaer.chip.cochlea.CochleaAMS1c",
                         records[:5])
    with pytest.raises(FormatError, match="chip="):
        aedat.read(other)
    forced = aedat.read(other, chip="DVS128")
    assert len(forced) == 5 and forced.sensor_size == (128, 128, 2)

    # no AEChip line at all (jAER before 2014): 15-bit addresses are read as a DVS128
    bare = tmp_path / "bare.aedat"
    bare.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n"
                     + b"".join(struct.pack(">II", a, t) for a, t in records[:10]))
    rec_bare = aedat.read(bare)
    assert rec_bare.meta["chip_assumed"] and len(rec_bare) == 10
    np.testing.assert_array_equal(rec_bare.x, rec.x[:10])
    np.testing.assert_array_equal(rec_bare.p, rec.p[:10])


def test_aedat2_timestamp_wrap(tmp_path):
    ts = [2**32 - 20, 2**32 - 5, 3, 40]
    records = [(davis_addr(10, 20, 1), t) for t in ts]
    path = write_aedat2(tmp_path / "wrap.aedat", "eu.seebetter.ini.chips.davis.DAVIS240C",
                        records)
    rec = aedat.read(path)
    assert rec.t.tolist() == [2**32 - 20, 2**32 - 5, 2**32 + 3, 2**32 + 40]
    assert rec.sensor_size == (240, 180, 2)
    assert rec.x.tolist() == [229] * 4 and rec.y.tolist() == [159] * 4


def test_aedat2_bad_input(tmp_path):
    records, *_ = _davis_records(n=20)
    good = write_aedat2(tmp_path / "g.aedat", "eu.seebetter.ini.chips.davis.Davis346red", records)
    cut = tmp_path / "cut.aedat"
    cut.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(TruncatedFileError) as e:
        aedat.read(cut)
    _assert_names_file(e, cut)
    # addresses beyond the stated chip: the header names the wrong chip
    wrong_chip = write_aedat2(tmp_path / "w.aedat", "eu.seebetter.ini.chips.davis.DAVIS240C",
                              [(davis_addr(300, 10, 1), 5)])
    with pytest.raises(CorruptFileError, match="outside the 240x180"):
        aedat.read(wrong_chip)
    magic = tmp_path / "magic.aedat"
    magic.write_bytes(b"#!AER-DAT9.9\r\n" + b"\0" * 16)
    with pytest.raises(FormatError) as e:
        aedat.read(magic)
    _assert_names_file(e, magic)
    assert not aedat.sniff(magic, magic.read_bytes())
    empty = tmp_path / "empty.aedat"
    empty.write_bytes(b"")
    with pytest.raises(NeurodataError) as e:
        aedat.read(empty)
    _assert_names_file(e, empty)


def test_aedat2_round_trip_through_store(tmp_path):
    records, dvs, xf, yf, p, t = _davis_records(seed=21, n=300)
    path = write_aedat2(tmp_path / "d.aedat", "eu.seebetter.ini.chips.davis.Davis346red", records)
    ds = open_store(convert(path, tmp_path / "d.zarr"))
    ev, _ = ds[0]
    assert tuple(ds.sensor_size) == (346, 260, 2)
    np.testing.assert_array_equal(ev["x"], 345 - xf[dvs])
    np.testing.assert_array_equal(ev["y"], 259 - yf[dvs])
    np.testing.assert_array_equal(ev["t"], t[dvs])
    np.testing.assert_array_equal(ev["p"], p[dvs])


# --------------------------------------------------------------------------------------
# AEDAT 3.1
# --------------------------------------------------------------------------------------

def _aedat31_file(tmp_path, name="f.aedat"):
    a = [(10, 20, 1, 100, 1), (11, 21, 0, 150, 1), (12, 22, 1, 160, 0), (345, 259, 0, 170, 1)]
    b = [(0, 0, 1, 5, 1), (7, 8, 0, 2**31 - 1, 1)]
    special = struct.pack("<Ii", (1 << 1) | 1, 50)  # a timestamp-wrap special event
    imu = b"\x01" + b"\x00" * 35  # one 36-byte IMU6 event
    packets = [
        (0, 1, 8, 4, 0, special, None),
        (1, 1, 8, 4, 0, polarity31(a), None),
        (3, 1, 36, 32, 0, imu, None),
        (1, 1, 8, 4, 1, polarity31(b), None),  # eventTSOverflow = 1
    ]
    return write_aedat31(tmp_path / name, packets)


def test_aedat31_polarity_overflow_validity(tmp_path):
    path = _aedat31_file(tmp_path)
    assert loaders.detect(path).name == "aedat"
    rec = loaders.read_events(path)
    assert rec.format == "aedat/AEDAT 3.1"
    assert rec.x.tolist() == [10, 11, 345, 0, 7]  # the invalid event is dropped
    assert rec.y.tolist() == [20, 21, 259, 0, 8]
    assert rec.p.tolist() == [1, 0, 0, 1, 0]
    assert rec.t.tolist() == [100, 150, 170, 2**31 + 5, 2**31 + 2**31 - 1]
    assert rec.sensor_size == (346, 260, 2)
    assert rec.meta["n_packets"] == 4 and rec.meta["source"] == "DAVIS346"


def test_aedat31_agrees_with_tonic_on_plain_polarity_packets(tmp_path):
    """tonic reads every packet as 8-byte events and ignores eventType, the valid bit and
    eventTSOverflow; on a file where those do not matter its raw words agree. (Its
    read_dvs_ibm, which would decode them, fails in tonic 1.7: see the DVS128 test.)"""
    tonic_io = pytest.importorskip("tonic.io")
    rng = np.random.default_rng(4)
    evs = [(int(x), int(y), int(p), int(t), 1) for x, y, p, t in zip(
        rng.integers(0, 128, 50), rng.integers(0, 128, 50), rng.integers(0, 2, 50),
        np.cumsum(rng.integers(1, 9, 50)))]
    path = write_aedat31(tmp_path / "dvs.aedat",
                         [(1, 1, 8, 4, 0, polarity31(evs[:20]), None),
                          (1, 1, 8, 4, 0, polarity31(evs[20:]), None)],
                         source_line=b"#Source 1: DVS128")
    version, start, _ = tonic_io.read_aedat_header_from_file(str(path))
    raw = tonic_io.get_aer_events_from_file(str(path), version, start)
    rec = aedat.read(path)
    assert rec.sensor_size == (128, 128, 2) and len(rec) == len(raw) == 50
    addr = raw["address"].astype(np.int64)  # libcaer polarity.h bit positions
    np.testing.assert_array_equal(rec.x, (addr >> 17) & 0x7FFF)
    np.testing.assert_array_equal(rec.y, (addr >> 2) & 0x7FFF)
    np.testing.assert_array_equal(rec.p, (addr >> 1) & 1)
    np.testing.assert_array_equal(rec.t, raw["timeStamp"])


def test_aedat31_bad_input(tmp_path):
    good = _aedat31_file(tmp_path, "good.aedat").read_bytes()
    cut = tmp_path / "cut.aedat"
    cut.write_bytes(good[:-5])
    with pytest.raises(TruncatedFileError) as e:
        aedat.read(cut)
    _assert_names_file(e, cut)

    # a packet header that claims 500 million events: refused without allocating them
    lie = tmp_path / "lie.aedat"
    write_aedat31(lie, [(1, 1, 8, 4, 0, polarity31([(1, 2, 1, 3, 1)]), 500_000_000)])
    tracemalloc.start()
    with pytest.raises(TruncatedFileError) as e:
        aedat.read(lie)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000 and "claims 500000000 events" in str(e.value)
    _assert_names_file(e, lie)

    no_end = tmp_path / "noend.aedat"
    no_end.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n")
    with pytest.raises(TruncatedFileError, match="END-HEADER"):
        aedat.read(no_end)

    half_header = tmp_path / "half.aedat"
    half_header.write_bytes(good[:good.index(b"#!END-HEADER") + 14 + 10])
    with pytest.raises(TruncatedFileError, match="28-byte packet header"):
        aedat.read(half_header)

    bad_size = tmp_path / "badsize.aedat"
    write_aedat31(bad_size, [(1, 1, 0, 4, 0, b"", 3)])
    with pytest.raises(CorruptFileError, match="impossible header"):
        aedat.read(bad_size)

    serialized = tmp_path / "ser.aedat"
    serialized.write_bytes(good.replace(b"#Format: RAW", b"#Format: SerializedTS"))
    with pytest.raises(FormatError, match="SerializedTS"):
        aedat.read(serialized)


def test_aedat31_round_trip_through_store(tmp_path):
    path = _aedat31_file(tmp_path)
    rec = aedat.read(path)
    ds = open_store(convert(path, tmp_path / "f.zarr"))
    ev, _ = ds[0]
    for name, col in zip("xytp", (rec.x, rec.y, rec.t, rec.p)):
        np.testing.assert_array_equal(ev[name], col)
    assert tuple(ds.sensor_size) == (346, 260, 2)


def test_chip_family_names():
    assert aedat.chip_family("eu.seebetter.ini.chips.davis.Davis346red") == "DAVIS346"
    assert aedat.chip_family("eu.seebetter.ini.chips.davis.DAVIS240C") == "DAVIS240"
    assert aedat.chip_family("eu.seebetter.ini.chips.davis.DavisRGBW640") == "DAVIS640"
    assert aedat.chip_family("ch.unizh.ini.jaer.chip.retina.DVS128") == "DVS128"
    assert aedat.chip_family("ch.unizh.ini.jaer.chip.retina.Tmpdiff128") == "DVS128"
    assert aedat.chip_family("DVXplorer Lite") == "DVXPLORER_LITE"
    assert aedat.chip_family("ch.unizh.ini.jaer.chip.cochlea.CochleaAMS1c") is None


@pytest.mark.parametrize("opts", [
    {}, {"store_size": False}, {"block_linked": False}, {"content_checksum": True},
    {"block_checksum": True, "block_size": 4}, {"block_size": 5, "store_size": False},
    {"compression_level": 9},
])
def test_lz4_frame_reader_matches_lz4_package(opts):
    """The block-wise frame reader gives what lz4.frame.decompress gives, for the frame
    options LZ4 writers use (checksums, content size, linked blocks, block sizes)."""
    import lz4.frame
    rng = np.random.default_rng(1)
    raw = (np.cumsum(rng.integers(0, 3, 150_000)) % 50_000).astype("<i8").tobytes()
    frame = lz4.frame.compress(raw, **{k: (lz4.frame.BLOCKSIZE_MAX64KB if v == 4 else
                                           lz4.frame.BLOCKSIZE_MAX256KB if v == 5 else v)
                                       if k == "block_size" else v for k, v in opts.items()})
    assert aedat4.lz4_frame_decompress(frame) == lz4.frame.decompress(frame) == raw
    with pytest.raises(CorruptFileError):
        aedat4.lz4_frame_decompress(frame[:len(frame) // 2])
