"""Decode speed of neurodata's event-file readers beside the readers users would otherwise pick.

For each event format neurodata reads, a large input (about 10 M events) is
built in a temp dir from the real samples in ../shared/data/events (the body
repeated with shifted timestamps) or, for EVT 3.0 which has no real sample,
written with a vectorised spec encoder (address, vector and time words).
Each reader decodes the whole file into x, y, t, p arrays; the table gives
the median of several runs in million events per second (Mev/s):

- ATIS .bin (N-MNIST): tonic.io.read_mnist_file
- Prophesee .dat, EVT 2.0, EVT 3.0: expelliarmus (C)
- AEDAT 4.0: the ``aedat`` package (Rust) and tonic.io.read_aedat4
- AEDAT 2.0: tonic.io.read_davis_346

AEDAT rows appear when neurodata.loaders.aedat / aedat4 exist. The numba
kernels are compiled (and cached) before timing; the numpy fallback of the
Prophesee decoders is timed as its own row.

Run: python benchmarks/bench_decode.py [--events 10_000_000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "events"


# --------------------------------------------------------------------------- inputs

def _header_end(data: bytes, prefix: bytes = b"%") -> int:
    pos = 0
    while data.startswith(prefix, pos):
        pos = data.index(b"\n", pos) + 1
    return pos


def make_atis(tmp: Path, n_events: int) -> Path:
    body = (SHARED / "sample_nmnist.bin").read_bytes()
    reps = max(1, n_events // (len(body) // 5))
    out = tmp / "big_nmnist.bin"
    out.write_bytes(body * reps)  # times restart per copy: decode speed is what is measured
    return out


def make_dat(tmp: Path, n_events: int) -> Path:
    data = (SHARED / "sample_ncars.dat").read_bytes()
    start = _header_end(data) + 2
    rec = np.frombuffer(data, np.dtype([("t", "<u4"), ("w", "<u4")]), offset=start)
    reps = max(1, n_events // len(rec))
    span = int(rec["t"].max()) + 1
    big = np.tile(rec, reps)
    big["t"] += (np.repeat(np.arange(reps, dtype=np.uint32), len(rec)) * span).astype(np.uint32)
    out = tmp / "big_ncars.dat"
    out.write_bytes(data[:start] + big.tobytes())
    return out


def make_evt2(tmp: Path, n_events: int) -> Path:
    data = (SHARED / "evt2_sample.raw").read_bytes()
    start = _header_end(data)
    words = np.frombuffer(data, "<u4", offset=start)
    is_high = (words >> 28) == 8
    n_cd = int(np.count_nonzero((words >> 28) <= 1))
    reps = max(1, n_events // n_cd)
    high = words[is_high] & 0x0FFFFFFF
    span = int(high.max() - high.min()) + 1
    parts = []
    for k in range(reps):
        w = words.copy()
        w[is_high] = (8 << 28) | ((high + k * span) & 0x0FFFFFFF)
        parts.append(w)
    out = tmp / "big_evt2.raw"
    out.write_bytes(data[:start] + np.concatenate(parts).tobytes())
    return out


def make_evt3(tmp: Path, n_events: int, seed: int = 0) -> Path:
    """Packets of [TIME_LOW, ADDR_Y, ADDR_X, ADDR_X, VECT_BASE_X, VECT_12, VECT_8],
    one per microsecond, with a TIME_HIGH word wherever the high bits change."""
    rng = np.random.default_rng(seed)
    per_packet = 2 + 6 + 4  # expected events per packet (masks about half full)
    n_pk = max(1, n_events // per_packet)
    t = np.arange(n_pk, dtype=np.int64) + 1_000_000
    y = rng.integers(0, 720, n_pk)
    pk = np.empty((n_pk, 7), np.uint16)
    pk[:, 0] = 0x6000 | (t & 0xFFF)
    pk[:, 1] = 0x0000 | y
    pk[:, 2] = 0x2000 | (rng.integers(0, 2, n_pk) << 11) | rng.integers(0, 1280, n_pk)
    pk[:, 3] = 0x2000 | (rng.integers(0, 2, n_pk) << 11) | rng.integers(0, 1280, n_pk)
    pk[:, 4] = 0x3000 | (rng.integers(0, 2, n_pk) << 11) | rng.integers(0, 1260, n_pk)
    pk[:, 5] = 0x4000 | rng.integers(0, 1 << 12, n_pk)
    pk[:, 6] = 0x5000 | rng.integers(0, 1 << 8, n_pk)
    high = (t >> 12) & 0xFFF
    change = np.flatnonzero(np.r_[True, np.diff(t >> 12) != 0])
    flat = pk.reshape(-1)
    words = np.insert(flat, change * 7, (0x8000 | high[change]).astype(np.uint16))
    out = tmp / "big_evt3.raw"
    out.write_bytes(b"% format EVT3;height=720;width=1280\n% end\n" + words.astype("<u2").tobytes())
    return out


def make_aedat4(tmp: Path, n_events: int) -> Path | None:
    """The real sample's packets repeated, the data table dropped (position -1)."""
    src = SHARED / "sample.aedat4"
    if not src.exists():
        return None
    from neurodata.loaders.aedat4 import read_header

    data = src.read_bytes()
    hdr = read_header(data, src)
    start, table = hdr["data_start"], hdr["data_table_position"]
    end = table if table > 0 else len(data)
    head = data[:start]
    if table > 0:  # the IOHeader holds the table position as one int64
        packed = struct.pack("<q", table)
        assert head.count(packed) == 1
        head = head.replace(packed, struct.pack("<q", -1))
    reps = max(1, n_events // 111_954)
    out = tmp / "big.aedat4"
    out.write_bytes(head + data[start:end] * reps)
    return out


def make_aedat2(tmp: Path, n_events: int) -> Path:
    """DAVIS346 polarity events, big-endian (address, timestamp) int32 pairs."""
    rng = np.random.default_rng(1)
    n = n_events
    x = rng.integers(0, 346, n).astype(np.uint32)
    y = rng.integers(0, 260, n).astype(np.uint32)
    p = rng.integers(0, 2, n).astype(np.uint32)
    addr = (y << 22) | (x << 12) | (p << 11)
    rec = np.empty(n, np.dtype([("a", ">u4"), ("t", ">u4")]))
    rec["a"], rec["t"] = addr, np.arange(n, dtype=np.uint32)
    header = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
              b"# AEChip: eu.seebetter.ini.chips.davis.Davis346red\r\n")
    out = tmp / "big_davis.aedat"
    out.write_bytes(header + rec.tobytes())
    return out


# --------------------------------------------------------------------------- readers

def nd_reader(module: str, **kw):
    mod = importlib.import_module(f"neurodata.loaders.{module}")
    return lambda path: len(mod.read(Path(path), **kw).t)


def tonic_mnist(path):
    import tonic

    dt = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
    return len(tonic.io.read_mnist_file(str(path), dtype=dt))


def expelliarmus_reader(encoding):
    def run(path):
        import expelliarmus

        return len(expelliarmus.Wizard(encoding=encoding).read(path))
    return run


def aedat_package(path):
    import aedat

    n = 0
    for packet in aedat.Decoder(str(path)):
        if "events" in packet:
            n += len(packet["events"])
    return n


def tonic_aedat4(path):
    import tonic

    return len(tonic.io.read_aedat4(str(path)))


def tonic_davis346(path):
    import tonic

    return len(tonic.io.read_davis_346(str(path))[-1])


def timed_interleaved(readers: dict, path, repeats: int) -> dict:
    """Per reader: median CPU seconds, median wall seconds and the event count.

    The readers take turns in each round, so a load change on the machine hits
    them alike; CPU time (``time.process_time``, all threads of this process)
    is the headline figure because it holds on a shared machine. A reader that
    fails is reported and left out."""
    counts, times = {}, {}
    for name, fn in readers.items():
        try:
            counts[name] = fn(path)  # warm-up (numba kernels compile/load here)
            times[name] = []
        except Exception as e:
            print(f"  {name} failed on {Path(path).name}: {e.__class__.__name__}: {e}")
    walls = {name: [] for name in times}
    for _ in range(repeats):
        for name in times:
            c0, t0 = time.process_time(), time.perf_counter()
            readers[name](path)
            times[name].append(time.process_time() - c0)
            walls[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(ts), statistics.median(walls[name]), counts[name])
            for name, ts in times.items()}


def has_module(name: str) -> bool:
    try:
        importlib.import_module(f"neurodata.loaders.{name}")
        return True
    except ImportError:
        return False


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=float, default=10e6, help="events per input file")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per reader (median)")
    args = ap.parse_args(argv)
    n_events = int(args.events)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cases = [  # format, input maker, neurodata reader, [(other name, other reader)]
            ("ATIS .bin (N-MNIST)", make_atis, nd_reader("atis_bin"),
             [("tonic read_mnist_file", tonic_mnist)]),
            ("Prophesee .dat", make_dat, nd_reader("prophesee_dat"),
             [("expelliarmus", expelliarmus_reader("dat"))]),
            ("EVT 2.0 .raw", make_evt2, nd_reader("prophesee_raw"),
             [("expelliarmus", expelliarmus_reader("evt2"))]),
            ("EVT 2.0 .raw (numpy)", make_evt2, nd_reader("prophesee_raw", use_numba=False),
             [("expelliarmus", expelliarmus_reader("evt2"))]),
            ("EVT 3.0 .raw", make_evt3, nd_reader("prophesee_raw"),
             [("expelliarmus", expelliarmus_reader("evt3"))]),
            ("EVT 3.0 .raw (numpy)", make_evt3, nd_reader("prophesee_raw", use_numba=False),
             [("expelliarmus", expelliarmus_reader("evt3"))]),
        ]
        if has_module("aedat4"):
            cases.append(("AEDAT 4.0", make_aedat4, nd_reader("aedat4"),
                          [("aedat (Rust)", aedat_package), ("tonic read_aedat4", tonic_aedat4)]))
        if has_module("aedat"):
            cases.append(("AEDAT 2.0 (DAVIS346)", make_aedat2, nd_reader("aedat"),
                          [("tonic read_davis_346", tonic_davis346)]))

        inputs: dict = {}
        rows = []
        for name, maker, nd_fn, others in cases:
            if maker not in inputs:
                inputs[maker] = maker(tmp, n_events)
            path = inputs[maker]
            if path is None:
                continue
            print(f"timing {name} ...", flush=True)
            res = timed_interleaved({"neurodata": nd_fn, **dict(others)}, path, args.repeats)
            if "neurodata" not in res:
                continue
            nd_s, nd_w, nd_n = res["neurodata"]
            for other_name, _ in others:
                o_s, o_w, o_n = res.get(other_name, (float("nan"), float("nan"), 0))
                rows.append((name, nd_n, nd_n / nd_s / 1e6, other_name, o_n,
                             o_n / o_s / 1e6 if o_n else float("nan"),
                             (o_w / o_n) / (nd_w / nd_n) if o_n else float("nan")))

    print(f"\nDecode speed, median of {args.repeats} runs; Mev/s = million events per CPU "
          "second (process time)\n")
    head = (f"{'format':<22} {'events':>11} {'neurodata':>10}  {'other reader':<22} "
            f"{'events':>11} {'other':>8} {'ratio':>6} {'wall ratio':>10}")
    print(head)
    print("-" * len(head))
    for name, nd_n, nd_r, other, o_n, o_r, wall_ratio in rows:
        ratio = nd_r / o_r if o_r == o_r and o_r > 0 else float("nan")
        print(f"{name:<22} {nd_n:>11,} {nd_r:>10.1f}  {other:<22} {o_n:>11,} {o_r:>8.1f} "
              f"{ratio:>5.1f}x {wall_ratio:>9.1f}x")
    print("\nratio = neurodata Mev/s / other Mev/s (> 1: neurodata faster); wall ratio: the "
          "same from wall-clock medians. Event counts differ where a reader keeps events the "
          "other drops.")


if __name__ == "__main__":
    main()
