"""Windows/s and peak memory: 4 s windows over a multi-hour 64-channel EEG recording.

Builds a synthetic EDF (64 channels, 256 Hz, ``--hours`` long, 1/f-like noise
plus a 10 Hz rhythm, 16-bit like real EDF), converts it once into a neurodata
store, then serves 4 s windows in shuffled order (what a training loop asks
for) with:

- neurodata: ``WindowSource.read`` on batches of 64 shuffled windows (lazy store);
- MNE lazy: ``raw.get_data(start, stop)`` per window on ``read_raw_edf(preload=False)``
  -- what braindecode's lazy windows do (braindecode itself does not import beside
  torch 2.13 here);
- mne.Epochs lazy: ``epochs[i].get_data()`` on fixed-length epochs, ``preload=False``;
- MNE preloaded: ``preload=True`` then slicing the in-memory array.

Each method runs in its own process: peak RSS (``ru_maxrss``) is that
process's, including the imports (the "baseline" row gives the import cost).
Figures are medians of ``--repeats`` timed passes.

Run: python benchmarks/bench_eeg.py [--hours 3] [--windows 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SF, C, WIN_S, BATCH = 256, 64, 4.0, 64


def make_edf(path: Path, hours: float, seed: int = 0) -> None:
    from scipy import signal

    from neurodata.format.edf_export import write_edf

    n = int(hours * 3600 * SF)
    rng = np.random.default_rng(seed)
    b, a = signal.butter(1, 2.0, fs=SF)  # reddened noise
    block = SF * 60
    t = np.arange(block) / SF
    alpha = np.sin(2 * np.pi * 10 * t)[None] * rng.uniform(5, 15, (C, 1))

    def blocks():
        zi = np.zeros((C, 1))
        for s in range(0, n, block):
            white = rng.standard_normal((C, block)) * 40
            red, zi = signal.lfilter(b, a, white, axis=-1, zi=zi)
            yield ((red * 4 + white * 0.3 + alpha) * 1e-6)[:, : n - s]

    write_edf(path, [f"EEG{i:03d}" for i in range(C)], SF, blocks(), n, -500.0, 500.0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


class _RssTrack:
    """Highest current RSS seen at the sampling points (after each batch)."""

    def __init__(self):
        self.peak = rss_mb()

    def __call__(self):
        self.peak = max(self.peak, rss_mb())


def run_method(method: str, edf: str, store: str, n_windows: int, repeats: int, seed: int):
    import mne
    import mne.io  # noqa: F401
    import numcodecs  # noqa: F401
    import zarr  # noqa: F401

    import neurodata.dataset  # noqa: F401
    import neurodata.format.timeseries  # noqa: F401
    import neurodata.signal_windows  # noqa: F401

    mne.set_log_level("ERROR")
    mne.io.read_raw_edf  # every method pays the same imports before the baseline
    L = int(WIN_S * SF)
    rng = np.random.default_rng(seed)
    out = {"method": method, "rss0_mb": rss_mb()}
    track = _RssTrack()
    if method == "neurodata":
        from neurodata.dataset import open as nd_open

        ws = nd_open(store).windows(length=WIN_S)
        total = len(ws)
        order = rng.permutation(total)[:n_windows]

        def one_pass():
            acc = 0.0
            for s in range(0, len(order), BATCH):
                x, _ = ws.read(order[s:s + BATCH])
                acc += float(x[0, 0, 0])
                track()
            return acc
    elif method == "neurodata_seq":
        from neurodata.dataset import open as nd_open

        ws = nd_open(store).windows(length=WIN_S)
        total = len(ws)
        start = rng.integers(0, max(1, total - n_windows))
        order = np.arange(start, min(total, start + n_windows))

        def one_pass():
            acc = 0.0
            for s in range(0, len(order), BATCH):
                x, _ = ws.read(order[s:s + BATCH])
                acc += float(x[0, 0, 0])
                track()
            return acc
    elif method == "mne_lazy":
        raw = mne.io.read_raw_edf(edf, preload=False)
        total = raw.n_times // L
        order = rng.permutation(total)[:n_windows]

        def one_pass():
            acc = 0.0
            for s in range(0, len(order), BATCH):
                x = np.stack([raw.get_data(start=int(i) * L, stop=int(i) * L + L)
                              for i in order[s:s + BATCH]]).astype(np.float32)
                acc += float(x[0, 0, 0])
                track()
            return acc
    elif method == "mne_epochs_lazy":
        raw = mne.io.read_raw_edf(edf, preload=False)
        events = mne.make_fixed_length_events(raw, duration=WIN_S)
        ep = mne.Epochs(raw, events, tmin=0, tmax=WIN_S - 1 / SF, baseline=None, preload=False)
        total = len(events)
        order = rng.permutation(total)[: max(1, n_windows // 10)]  # slow: a tenth of the windows

        def one_pass():
            acc = 0.0
            for s in range(0, len(order), BATCH):
                x = ep[order[s:s + BATCH]].get_data().astype(np.float32)
                acc += float(x[0, 0, 0])
                track()
            return acc
    elif method == "mne_preloaded":
        t0 = time.perf_counter()
        raw = mne.io.read_raw_edf(edf, preload=True)
        out["load_s"] = time.perf_counter() - t0
        track()
        data = raw._data
        total = raw.n_times // L
        order = rng.permutation(total)[:n_windows]

        def one_pass():
            acc = 0.0
            for s in range(0, len(order), BATCH):
                x = np.stack([data[:, int(i) * L:int(i) * L + L]
                              for i in order[s:s + BATCH]]).astype(np.float32)
                acc += float(x[0, 0, 0])
                track()
            return acc
    else:
        raise SystemExit(f"unknown method {method}")
    one_pass()  # warm-up (page cache, codecs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    out.update(windows=len(order), seconds=med, windows_per_s=len(order) / med,
               rss_mb=track.peak, maxrss_mb=peak_rss_mb())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--method", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--edf", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:  # child process: one method
        print(json.dumps(run_method(args.method, args.edf, args.store, args.windows,
                                    args.repeats, 0)))
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_eeg_"))
    work.mkdir(parents=True, exist_ok=True)
    edf = work / f"synthetic_{args.hours:g}h_{C}ch.edf"
    store = work / f"synthetic_{args.hours:g}h_{C}ch.zarr"
    if not edf.exists():
        t0 = time.perf_counter()
        make_edf(edf, args.hours)
        print(f"wrote {edf.name}: {edf.stat().st_size / 1e6:.0f} MB in "
              f"{time.perf_counter() - t0:.1f} s")
    if not store.exists():
        from neurodata.conversion import convert

        t0 = time.perf_counter()
        convert(edf, store)
        dt = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        print(f"converted to {store.name}: {size / 1e6:.0f} MB on disk in {dt:.1f} s "
              f"({edf.stat().st_size / 1e6 / dt:.0f} MB/s of EDF)")
    rows = []
    for m in ("neurodata", "neurodata_seq", "mne_lazy", "mne_epochs_lazy",
              "mne_preloaded"):
        cmd = [sys.executable, os.path.abspath(__file__), "--method", m, "--edf", str(edf),
               "--store", str(store), "--windows", str(args.windows),
               "--repeats", str(args.repeats)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    nd = rows[0]
    lazy = next(r for r in rows if r["method"] == "mne_lazy")
    print(f"\n{args.hours:g} h x {C} channels at {SF} Hz ({edf.stat().st_size / 1e6:.0f} MB EDF), "
          f"{WIN_S:g} s windows in shuffled batches of {BATCH} (neurodata_seq: consecutive); "
          f"medians of {args.repeats} passes. Memory: RSS of the method's process sampled after "
          f"every batch (peak), and its growth over the RSS before opening the data")
    print(f"{'method':<18}{'windows':>8}{'windows/s':>12}{'vs mne lazy':>13}"
          f"{'peak RSS MB':>13}{'growth MB':>11}")
    for r in rows:
        ratio = r["windows_per_s"] / lazy["windows_per_s"]
        extra = f"  (load {r['load_s']:.1f} s)" if "load_s" in r else ""
        print(f"{r['method']:<18}{r['windows']:>8}{r['windows_per_s']:>12.0f}{ratio:>12.1f}x"
              f"{r['rss_mb']:>13.0f}{r['rss_mb'] - r['rss0_mb']:>11.0f}{extra}")
    g_nd = nd["rss_mb"] - nd["rss0_mb"]
    g_lazy = lazy["rss_mb"] - lazy["rss0_mb"]
    print(f"\nneurodata vs MNE lazy: {nd['windows_per_s'] / lazy['windows_per_s']:.1f}x windows/s, "
          f"memory growth {g_nd:.0f} MB vs {g_lazy:.0f} MB")


if __name__ == "__main__":
    main()
