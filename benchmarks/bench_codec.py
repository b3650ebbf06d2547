"""Codec choice for event stores: bytes/event on disk and decode speed.

Writes the same events (simulated DVS shapes, plus the real Prophesee EVT2 and
N-MNIST samples when ../shared/data is present) into zarr v3 arrays with
several codecs, then reads them back. Prints bytes/event and decode Mev/s
(median of repeats) for each, beside a plain ``np.save`` of the packed
records (what a user would otherwise keep on disk).

Run: python benchmarks/bench_codec.py
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from neurodata.events import EVENT_DTYPE

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "events"
CODECS = {
    "blosc-lz4 shuffle": lambda: BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle),
    "blosc-lz4 bitshuffle": lambda: BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.bitshuffle),
    "blosc-zstd3 shuffle": lambda: BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle),
    "blosc-zstd5 bitshuffle": lambda: BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle),
    "zstd5 (no shuffle)": lambda: ZstdCodec(level=5),
}


def datasets():
    from neurodata.simulate import simulate_sample

    rng = np.random.default_rng(0)
    parts = [simulate_sample(i % 4, seed=rng) for i in range(40)]
    # samples concatenated as a store holds them (times restart per sample)
    yield "simulated shapes 64x64", np.concatenate(parts)
    try:
        from neurodata.loaders import read_events

        for name in ("evt2_sample.raw", "sample_nmnist.bin"):
            p = SHARED / name
            if p.exists():
                rec = read_events(p)
                yield f"real {name}", rec.events
    except Exception as e:  # loaders not available in this checkout
        print(f"(real samples skipped: {e})")


def measure(events, make_codec, repeats=5):
    tmp = Path(tempfile.mkdtemp())
    try:
        g = zarr.open_group(tmp / "s.zarr", mode="w", zarr_format=3)
        for name in ("x", "y", "t", "p"):
            col = np.ascontiguousarray(events[name])
            a = g.create_array(name, shape=col.shape, dtype=col.dtype, chunks=(1 << 18,),
                               shards=(1 << 22,), compressors=make_codec())
            a[:] = col
        nbytes = sum(f.stat().st_size for f in (tmp / "s.zarr").rglob("c/*") if f.is_file())
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for name in ("x", "y", "t", "p"):
                g[name][:]
            times.append(time.perf_counter() - t0)
        return nbytes / len(events), len(events) / statistics.median(times) / 1e6
    finally:
        shutil.rmtree(tmp)


def main():
    for label, ev in datasets():
        print(f"\n{label}: {len(ev):,} events  (np.save of packed records: "
              f"{EVENT_DTYPE.itemsize} bytes/event)")
        print(f"{'codec':<26}{'bytes/event':>12}{'decode Mev/s':>14}")
        for name, make in CODECS.items():
            bpe, rate = measure(ev, make)
            print(f"{name:<26}{bpe:>12.2f}{rate:>14.0f}")


if __name__ == "__main__":
    main()
