"""EventStoreReader.read_range: direct shard-file decoding vs reading through zarr.

Both read the same x, y, t, p ranges of a local events store (blosc-zstd-5
bitshuffle chunks of 2**20 events in shards of 2**22). "zarr" is
``array[e0:e1]`` per column (what the reader did before); "direct" is
``read_range`` (shard index parsed once, inner chunks blosc-decoded straight
into the output on two threads). Medians of ``--repeats``; also the
per-sample cost of reading a one-shard partition, the figure the streaming
pipeline pays per sample.

Run: python benchmarks/bench_read_range.py [--store PATH] [--events 16000000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def build_store(path: Path, n_events: int, per_sample: int = 4300) -> None:
    """N-MNIST-like events (34x34, 2 polarities, ~70 us apart) in samples of ``per_sample``."""
    from neurodata.format.events import EventStoreWriter
    from neurodata.format.store import atomic_store

    rng = np.random.default_rng(0)
    with atomic_store(path, overwrite=True) as tmp:
        w = EventStoreWriter(tmp, sensor_size=(34, 34, 2))
        for a in range(0, n_events, per_sample):
            k = min(per_sample, n_events - a)
            w.add((rng.integers(0, 34, k).astype(np.uint16), rng.integers(0, 34, k).astype(np.uint16),
                   np.cumsum(rng.integers(0, 140, k)), rng.integers(0, 2, k).astype(np.uint8)))
        w.close()


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="an existing events store (default: build one)")
    ap.add_argument("--events", type=int, default=16_000_000)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                      "neurodata-bench-read-range"))
    args = ap.parse_args()
    from neurodata.format.events import EventStoreReader

    store = Path(args.store) if args.store else Path(args.workdir) / f"events-{args.events}.zarr"
    if not store.exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        build_store(store, args.events)
    r = EventStoreReader(str(store))
    if r._direct_reader() is None:
        raise SystemExit(f"{store}: layout not read directly; nothing to compare")
    n = r.n_events
    shard = 1 << 22
    per_sample = n / max(len(r), 1)
    rng = np.random.default_rng(1)
    a = int(rng.integers(0, max(1, n - 5000)))
    cases = [("one shard (4.2 M events)", 0, min(n, shard)),
             ("1 M crossing a shard edge", max(0, min(n, shard) - 300_000), min(n, shard + 700_000)),
             (f"all ({n / 1e6:.1f} M events)", 0, n),
             ("one sample (5k events)", a, a + 5000)]

    def through_zarr(e0, e1):
        return {c: np.asarray(r.cols[c][e0:e1]) for c in ("x", "y", "t", "p")}

    print(f"store: {store} ({n / 1e6:.1f} M events, {len(r)} samples)")
    print(f"read_range of x, y, t, p, median of {args.repeats}")
    print(f"{'range':<28}{'zarr ms':>9}{'direct ms':>11}{'zarr Mev/s':>12}{'direct Mev/s':>14}{'speed-up':>10}")
    for name, e0, e1 in cases:
        through_zarr(e0, e1), r.read_range(e0, e1)  # warm the page cache and the shard indexes
        z = median_seconds(lambda: through_zarr(e0, e1), args.repeats)
        d = median_seconds(lambda: r.read_range(e0, e1), args.repeats)
        print(f"{name:<28}{z * 1e3:>9.1f}{d * 1e3:>11.1f}{(e1 - e0) / z / 1e6:>12.1f}"
              f"{(e1 - e0) / d / 1e6:>14.1f}{z / d:>10.2f}")
        if e0 == 0 and e1 == min(n, shard):
            shard_zarr, shard_direct = z, d
    k = min(n, shard) / per_sample
    print(f"one-shard partition per sample ({per_sample:.0f} events/sample): "
          f"zarr {shard_zarr / k * 1e3:.3f} ms, direct {shard_direct / k * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
