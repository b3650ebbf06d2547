"""AEDAT 4.0 decode speed: neurodata vs the ``aedat`` package (Rust) vs tonic.

Builds a large AEDAT 4.0 file from the real DAVIS/DVXplorer sample in
../shared/data/events/sample.aedat4: its event packets (and IMU packets) are
repeated ``copies`` times with timestamps shifted past the previous copy and
LZ4-compressed again, under a fresh IOHeader (no data table). Then each reader
decodes the whole file to x, y, t, p; the table prints the median of
``repeats`` runs, events/s and the ratio against neurodata.

- neurodata: ``neurodata.loaders.aedat4.read`` (hand-parsed FlatBuffers, numpy),
  and the same with ``workers=2`` (packets decoded on a 2-thread pool)
- aedat: ``aedat.Decoder`` iterated, event arrays concatenated
- tonic: ``tonic.io.read_aedat4`` (aedat.Decoder underneath, plus its concatenation)

Run: python benchmarks/bench_aedat.py [copies] [repeats]
``bench_aedat4()`` is importable (benchmarks/bench_decode.py calls it).
"""
from __future__ import annotations

import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "events" / "sample.aedat4"


def _io_header(compression: int, info_xml: str) -> bytes:
    """An IOHeader FlatBuffer (compression, dataTablePosition=-1, infoNode)."""
    s = info_xml.encode()
    buf = struct.pack("<I", 24) + b"IOHE" + struct.pack("<HHHHH", 10, 20, 4, 8, 16) + b"\0" * 6
    buf += struct.pack("<iiqI", 16, compression, -1, 4) + struct.pack("<I", len(s)) + s + b"\0"
    return buf + b"\0" * (-len(buf) % 8)


def make_big_aedat4(out: Path, copies: int = 60, sample: Path = SAMPLE) -> int:
    """Write ``copies`` time-shifted replicas of the sample's packets; return the event count."""
    import lz4.frame

    from neurodata.loaders import aedat4
    from neurodata.loaders._io import read_bytes

    data = read_bytes(sample)
    hdr = aedat4.read_header(data, sample)
    sid = aedat4.event_stream_id(hdr["streams"], sample)
    end = hdr["data_table_position"] if hdr["data_table_position"] > 0 else len(data)
    packets = []  # (stream id, decompressed bytes, event view or None)
    for psid, off, size in aedat4.iter_packets(data, hdr["data_start"], end, sample):
        raw = lz4.frame.decompress(data[off:off + size])
        packets.append((psid, raw, aedat4.event_packet_array(raw, sample) if psid == sid else None))
    t_all = np.concatenate([p[2]["t"] for p in packets if p[2] is not None])
    span = int(t_all.max() - t_all.min()) + 1
    n = 0
    with open(out, "wb") as fh:
        h = _io_header(1, hdr["info_xml"])
        fh.write(b"#!AER-DAT4.0\r\n" + struct.pack("<i", len(h)) + h)
        for k in range(copies):
            for psid, raw, ev in packets:
                if ev is not None:
                    buf = bytearray(raw)  # frombuffer on a bytearray is a writable view
                    aedat4.event_packet_array(buf, sample)["t"] += k * span
                    raw_k = bytes(buf)
                    n += len(ev)
                else:
                    raw_k = raw
                comp = lz4.frame.compress(raw_k, store_size=False)  # as DV writes them
                fh.write(struct.pack("<ii", psid, len(comp)) + comp)
    return n


def _neurodata(path):
    from neurodata.loaders import aedat4

    r = aedat4.read(path)
    return len(r.t)


def _neurodata_2threads(path):
    from neurodata.loaders import aedat4

    return len(aedat4.read(path, workers=2).t)


def _aedat(path):
    import aedat

    dec = aedat.Decoder(str(path))
    sid = min(i for i, s in dec.id_to_stream().items() if s["type"] == "events")
    ev = np.concatenate([p["events"] for p in dec if p["stream_id"] == sid])
    x, y, t, p = ev["x"], ev["y"], ev["t"], ev["on"]  # column access, as a user would
    return len(t)


def _tonic(path):
    import tonic.io

    return len(tonic.io.read_aedat4(str(path))["t"])


def _interleaved_medians(readers, path, repeats):
    """Run every reader once per round, ``repeats`` rounds; median seconds per reader.

    Interleaving keeps the comparison fair when the machine's load changes.
    """
    times = {name: [] for name in readers}
    counts = {}
    for _ in range(repeats):
        for name, fn in readers.items():
            t0 = time.perf_counter()
            counts[name] = fn(path)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}, counts


def bench_aedat4(copies: int = 60, repeats: int = 5, sample: Path = SAMPLE) -> dict:
    """Decode a synthetic large AEDAT 4.0 file with each reader; print and return the table.

    Returns ``{tool: {"seconds": median, "events_per_s": ..., "ratio_vs_neurodata": ...}}``;
    tools whose package is missing are left out.
    """
    if not sample.exists():
        print(f"sample {sample} is absent; AEDAT 4.0 benchmark skipped")
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.aedat4"
        n_events = make_big_aedat4(path, copies, sample)
        size_mb = path.stat().st_size / 1e6
        readers = {}
        for name, fn in {"neurodata": _neurodata, "neurodata 2 threads": _neurodata_2threads,
                         "aedat": _aedat, "tonic": _tonic}.items():
            try:
                fn(path)  # warm-up: imports, page cache
            except ImportError:
                continue
            readers[name] = fn
        medians, counts = _interleaved_medians(readers, path, repeats)
        results = {}
        for name, sec in medians.items():
            if counts[name] != n_events:
                raise AssertionError(f"{name} decoded {counts[name]} events, expected {n_events}")
            results[name] = {"seconds": sec, "events_per_s": n_events / sec}
    base = results["neurodata"]["seconds"]
    for r in results.values():
        r["ratio_vs_neurodata"] = r["seconds"] / base
    print(f"AEDAT 4.0 decode: {n_events:,} events, {size_mb:.1f} MB LZ4 "
          f"({copies} copies of sample.aedat4), median of {repeats} interleaved rounds")
    print(f"{'reader':<20}{'median s':>10}{'Mev/s':>10}{'time / neurodata':>18}")
    for name, r in results.items():
        print(f"{name:<20}{r['seconds']:>10.3f}{r['events_per_s'] / 1e6:>10.1f}"
              f"{r['ratio_vs_neurodata']:>18.2f}")
    return results


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    bench_aedat4(*args)
