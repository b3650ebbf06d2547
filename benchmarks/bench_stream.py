"""Streaming an N-MNIST-sized store into torch: neurodata vs tonic vs in-memory numpy.

One epoch of ``ToFrame(n_time_bins=16)`` frames in shuffled batches of 128 as
torch tensors, three ways, on the same samples:

- neurodata: ``neurodata.stream(store, ToFrame(...), batch_size=128, as_="torch")``
  (shard-aligned partitions, dask threads, time-major ``[T, B, C, H, W]``);
- tonic: ``DiskCachedDataset`` (one HDF5 file of frames per sample, warm
  cache) + ``DataLoader(batch_size=128, shuffle=True, num_workers=2)``, what a
  tonic user runs today;
- neurodata with ``cache=True`` (warm), the like-for-like row for tonic's
  warm disk cache: transformed partitions are read back as ``.npy`` files;
- numpy in memory: every event already in RAM as columns, each shuffled batch
  gathered and binned with ``np.bincount``, then ``torch.from_numpy``: a
  hand-written vectorised loop with no I/O at all.

Each method runs in its own subprocess; peak memory is the summed PSS of that
process and its DataLoader workers. Figures are medians of ``--repeats``
epochs. tonic is run on a subset (``--tonic-samples``) because writing
60,000 HDF5 files takes too long on a shared 2-core machine; its samples/s is
extrapolated to the full epoch (6,000 small files stay in the page cache, so
if anything this favours tonic).

Run: python benchmarks/bench_stream.py [--samples 60000] [--tonic-samples 6000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SENSOR = (34, 34, 2)
N_BINS = 16
BATCH = 128


# -- data --------------------------------------------------------------------------
def synth_columns(n_samples: int, seed: int = 0):
    """N-MNIST-like samples: 34x34, 2 polarities, ~4,300 events over ~300 ms each (vectorised)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(2500, 6200, n_samples).astype(np.int64)
    offsets = np.zeros(n_samples + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    gaps = rng.integers(0, 140, n, dtype=np.int64)  # mean 70 us -> ~300 ms per sample
    t = np.cumsum(gaps)
    t -= np.repeat(t[offsets[:-1]], counts)  # each sample starts at t = 0
    x = rng.integers(0, SENSOR[0], n, dtype=np.uint16)
    y = rng.integers(0, SENSOR[1], n, dtype=np.uint16)
    p = rng.integers(0, 2, n, dtype=np.uint8)
    labels = rng.integers(0, 10, n_samples).astype(np.int64)
    return {"x": x, "y": y, "t": t, "p": p}, offsets, labels


def build_store(path: Path, n_samples: int) -> None:
    from neurodata.format.events import EventStoreWriter
    from neurodata.format.store import atomic_store

    cols, offsets, labels = synth_columns(n_samples)
    with atomic_store(path, overwrite=True) as tmp:
        w = EventStoreWriter(tmp, sensor_size=SENSOR, class_names=[str(i) for i in range(10)])
        for i in range(n_samples):
            a, b = offsets[i], offsets[i + 1]
            w.add((cols["x"][a:b], cols["y"][a:b], cols["t"][a:b], cols["p"][a:b]),
                  label=int(labels[i]))
        w.close()


def read_all(path: Path, n_samples: int | None = None):
    """The first ``n_samples`` samples (default all) as in-memory columns + offsets."""
    from neurodata.format.events import EventStoreReader

    r = EventStoreReader(str(path))
    n = len(r) if n_samples is None else min(n_samples, len(r))
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(r.count[:n], out=offsets[1:])
    cols = r.read_range(0, int(offsets[-1]))
    return cols, offsets, r.label[:n].copy()


def to_frame():
    from neurodata.transforms import ToFrame

    return ToFrame


# -- methods (each runs in a subprocess) ----------------------------------------------
def run_neurodata(store: Path, repeats: int, cache: bool = False) -> list[float]:
    import neurodata

    ToFrame = to_frame()
    tf = ToFrame(sensor_size=SENSOR, n_time_bins=N_BINS)
    s = neurodata.stream(store, transform=tf, batch_size=BATCH, as_="torch", seed=0, cache=cache)
    if cache:
        shutil.rmtree(s.cache.dir, ignore_errors=True)
        for _ in s:
            pass  # warm the cache (like tonic's), not timed
    for _ in neurodata.stream(store, transform=tf, batch_size=BATCH, as_="torch",
                              max_partition_samples=8):
        break  # compile numba kernels outside the timing
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = 0
        for frames, labels in s:
            n += frames.shape[1]
        rates.append(n / (time.perf_counter() - t0))
        assert n == len(s.source), n
    return rates


def run_numpy(store: Path, repeats: int) -> list[float]:
    import torch

    cols, offsets, labels = read_all(store)
    x, y, t, p = (cols[c] for c in ("x", "y", "t", "p"))
    n_samples = len(offsets) - 1
    W, H, P = SENSOR
    cell = P * H * W
    rates = []
    for rep in range(repeats):
        order = np.random.default_rng(rep).permutation(n_samples)
        t0 = time.perf_counter()
        n = 0
        for b0 in range(0, n_samples, BATCH):
            idx = order[b0:b0 + BATCH]
            a, c = offsets[idx], offsets[idx + 1] - offsets[idx]
            B = len(idx)
            new_off = np.zeros(B + 1, np.int64)
            np.cumsum(c, out=new_off[1:])
            src = np.repeat(a - new_off[:-1], c) + np.arange(new_off[-1])
            sample = np.repeat(np.arange(B), c)
            tt = t[src]
            t_first = tt[new_off[:-1]]
            dur = np.maximum(tt[new_off[1:] - 1] - t_first, 1)
            tb = np.minimum(((tt - t_first[sample]) * N_BINS) // dur[sample], N_BINS - 1)
            flat = (((tb * B + sample) * P + p[src]) * (H * W)
                    + y[src].astype(np.int64) * W + x[src])
            frames = np.bincount(flat, minlength=N_BINS * B * cell).astype(np.int16)
            frames = torch.from_numpy(frames.reshape(N_BINS, B, P, H, W))  # time-major
            _ = torch.from_numpy(labels[idx])
            n += B
        rates.append(n / (time.perf_counter() - t0))
    return rates


def run_tonic(store: Path, repeats: int, n_sub: int, cache_dir: Path) -> list[float]:
    import tonic
    import torch
    from torch.utils.data import DataLoader, Dataset

    cols, offsets, labels = read_all(store, n_sub)
    dtype = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i2")])

    class Samples(Dataset):
        """The same samples as tonic datasets hand them out: structured events + label."""

        def __init__(self, n, transform):
            self.n, self.transform = n, transform

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            a, b = offsets[i], offsets[i + 1]
            ev = np.empty(b - a, dtype)
            for c in ("x", "y", "t", "p"):
                ev[c] = cols[c][a:b]
            return self.transform(ev), int(labels[i])

    frame = tonic.transforms.ToFrame(sensor_size=SENSOR, n_time_bins=N_BINS)
    shutil.rmtree(cache_dir, ignore_errors=True)
    ds = tonic.DiskCachedDataset(Samples(n_sub, frame), cache_path=str(cache_dir))
    # warm the cache (writes one HDF5 file per sample), not timed
    for _ in DataLoader(ds, batch_size=BATCH, num_workers=2):
        pass
    rates = []
    for rep in range(repeats):
        loader = DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=2,
                            generator=torch.Generator().manual_seed(rep))
        t0 = time.perf_counter()
        n = 0
        for frames, lab in loader:
            n += frames.shape[0]
        rates.append(n / (time.perf_counter() - t0))
        assert n == n_sub
    return rates


class PeakMemory:
    """Peak of the summed PSS of this process and its children, sampled every 0.2 s.

    PSS splits pages shared by forked ``DataLoader`` workers, so the sum is
    what the method really holds (``ru_maxrss`` would also carry the parent's
    peak across ``exec``).
    """

    def __init__(self):
        import threading

        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> int:
        total = 0
        for p in [self.proc] + self.proc.children(recursive=True):
            try:
                total += p.memory_full_info().pss
            except Exception:  # a worker exiting between listing and reading
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(0.2)

    def stop_mb(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def child(args) -> None:
    store = Path(args.store)
    mem = PeakMemory()
    if args.run == "neurodata":
        rates = run_neurodata(store, args.repeats)
    elif args.run == "neurodata-cache":
        rates = run_neurodata(store, args.repeats, cache=True)
    elif args.run == "numpy":
        rates = run_numpy(store, args.repeats)
    else:
        rates = run_tonic(store, args.repeats, args.tonic_samples, Path(args.workdir) / "tonic-cache")
    print(json.dumps({"rates": rates, "peak_mb": mem.stop_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60_000)
    ap.add_argument("--tonic-samples", type=int, default=6_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                      "neurodata-bench-stream"))
    ap.add_argument("--run", choices=["neurodata", "neurodata-cache", "numpy", "tonic"], help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        return child(args)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    store = work / f"nmnist-like-{args.samples}.zarr"
    if not store.exists():
        t0 = time.perf_counter()
        build_store(store, args.samples)
        print(f"built {store} in {time.perf_counter() - t0:.1f} s")
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    from neurodata.format.events import EventStoreReader

    r = EventStoreReader(str(store))
    print(f"store: {len(r)} samples, {r.n_events / 1e6:.1f} M events "
          f"({r.n_events / len(r):.0f}/sample), {size / 1e6:.0f} MB on disk")

    results = {}
    tonic_n = min(args.tonic_samples, args.samples)
    for method in ("neurodata", "neurodata-cache", "numpy", "tonic"):
        cmd = [sys.executable, __file__, "--run", method, "--store", str(store),
               "--repeats", str(args.repeats), "--tonic-samples", str(tonic_n),
               "--workdir", str(work)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        rates = results[method]["rates"]
        print(f"  {method}: " + ", ".join(f"{v:,.0f}" for v in rates) + " samples/s")

    nd = statistics.median(results["neurodata"]["rates"])
    rows = [("neurodata.stream (dask threads)", "neurodata", args.samples),
            ("neurodata.stream, warm cache=True", "neurodata-cache", args.samples),
            ("numpy in memory (bincount loop)", "numpy", args.samples),
            ("tonic DiskCachedDataset + DataLoader(2)", "tonic", tonic_n)]
    print()
    print(f"One epoch of ToFrame(n_time_bins={N_BINS}) batches of {BATCH} as torch tensors "
          f"(median of {args.repeats})")
    ndc = statistics.median(results["neurodata-cache"]["rates"])
    print(f"{'method':<42}{'samples':>9}{'samples/s':>12}{'epoch (s)':>11}"
          f"{'neurodata x':>13}{'cached x':>10}{'peak MB':>9}")
    for name, key, n in rows:
        rate = statistics.median(results[key]["rates"])
        print(f"{name:<42}{n:>9,}{rate:>12,.0f}{args.samples / rate:>11.1f}"
              f"{nd / rate:>13.2f}{ndc / rate:>10.2f}{results[key]['peak_mb']:>9,.0f}")
    if tonic_n < args.samples:
        print(f"(tonic measured on {tonic_n:,} samples; its epoch time for {args.samples:,} "
              "is extrapolated from samples/s)")


if __name__ == "__main__":
    main()
