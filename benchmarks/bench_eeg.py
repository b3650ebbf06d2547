"""Windows/s and memory: 4 s windows over a multi-hour 64-channel EEG recording.

Builds a synthetic EDF (64 channels, 256 Hz, ``--hours`` long, 1/f-like noise
plus a 10 Hz rhythm, 16-bit like real EDF), converts it once into a neurodata
store, then serves 4 s windows in shuffled order (what a training loop asks
for), in batches of 64, with:

- neurodata: ``WindowSource.read`` on the lazy store, converted with the default
  ``data_codec`` (raw chunks); at 64 channels a chunk is 1024 samples, so these 4 s windows
  are whole chunks, read straight into the batch. ``neurodata_straddle``: the same
  windows moved by 2 s, so that each straddles two chunks; ``neurodata_seq``:
  consecutive windows; ``neurodata_lz4``: a store converted with ``data_codec="lz4"``;
- braindecode lazy / preloaded: ``create_fixed_length_windows`` over
  ``read_raw_edf`` and a torch ``DataLoader`` in the same shuffled order.
  braindecode imports torchaudio, whose registry build does not load beside
  the project's torch 2.13: its rows run in a separate venv given by
  ``--braindecode-python`` (or ``NEURODATA_BRAINDECODE_PYTHON``), made with
  ``pip install torch==2.9.1 torchvision==0.24.1 && pip install torch==2.9.1
  'torchaudio==2.9.*' braindecode psutil``; without one they are left out;
- MNE lazy: ``raw.get_data(start, stop)`` per window on ``read_raw_edf(preload=False)``;
- mne.Epochs lazy: ``epochs[i].get_data()`` on fixed-length epochs, ``preload=False``;
- MNE preloaded: ``preload=True`` then slicing the in-memory array.

Each method runs in its own process, after its imports; every loop drops its
previous batch before asking for the next (as a training loop that moved it
to the model does). Memory: "growth" is the process RSS sampled after every
batch minus the RSS after the imports; "high-water" is the kernel's high-water RSS
(``VmHWM``, reset after the imports through ``/proc/self/clear_refs``) at the end minus
that same RSS: the true peak, transients inside a batch included (elsewhere than Linux,
``ru_maxrss``, marked "<=" when the imports' own peak was higher). glibc raises its mmap threshold
after the first large free, so both also count memory the allocator keeps
from earlier batches (a partial last batch leaves the heap fragmented by one
batch); "live peak" is the high-water of a second run of each method with
``MALLOC_MMAP_THRESHOLD_`` fixed, where freed batches go back to the system:
the peak memory the method needs. Rates come from the runs with the default
allocator (a fixed threshold slows every method: fresh pages for each batch):
medians of ``--repeats`` timed passes per run; the whole method list runs
``--rounds`` times, interleaved, and ratios are taken within each round (the
load of a shared machine drifts between methods), then their median.

Run: python benchmarks/bench_eeg.py [--hours 3] [--windows 2000] [--rounds 3]
[--braindecode-python PY]
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


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water RSS of this process to its current RSS (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """High-water RSS: ``VmHWM`` (resettable, see :func:`reset_peak_rss`), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class _RssTrack:
    """Highest current RSS seen at the sampling points (after each batch)."""

    def __init__(self):
        self.peak = rss_mb()

    def __call__(self):
        self.peak = max(self.peak, rss_mb())


def run_method(method: str, edf: str, store: str, n_windows: int, repeats: int, seed: int):
    import mne
    import mne.io  # noqa: F401

    if method.startswith("braindecode"):  # runs in its own environment (see --braindecode-python)
        import torch  # noqa: F401
        from braindecode.datasets import BaseConcatDataset, RawDataset
        from braindecode.preprocessing import create_fixed_length_windows
    else:
        import numcodecs  # noqa: F401
        import zarr  # noqa: F401

        import neurodata.dataset  # noqa: F401
        import neurodata.format.timeseries  # noqa: F401
        import neurodata.signal_windows  # noqa: F401

    mne.set_log_level("ERROR")
    mne.io.read_raw_edf  # every method pays the same imports before the baseline
    L = int(WIN_S * SF)
    rng = np.random.default_rng(seed)
    # the imports' own peak is forgotten, so that the high-water mark is the method's
    out = {"method": method, "peak_reset": reset_peak_rss(), "rss0_mb": rss_mb()}
    out["maxrss0_mb"] = peak_rss_mb()
    track = _RssTrack()
    one_pass = None

    def read_batches(read_batch):
        """One pass over ``order`` in batches, the previous batch dropped before the next
        is asked for (a training loop has handed it on)."""
        acc = 0.0
        for s in range(0, len(order), BATCH):
            x = None
            x = read_batch(order[s:s + BATCH])
            acc += float(x[0, 0, 0])
            track()
        return acc

    if method.startswith("neurodata"):
        from neurodata.dataset import open as nd_open

        if method == "neurodata_lz4":
            store = store.replace("_none.zarr", "_lz4.zarr")
        ws = nd_open(store).windows(length=WIN_S)
        if method == "neurodata_straddle":  # every window across a chunk boundary
            ws.starts = ws.starts[:-1] + L // 2
            ws.rec_index, ws.labels = ws.rec_index[:-1], ws.labels[:-1]
        total = len(ws.starts)
        if method != "neurodata_seq":
            order = rng.permutation(total)[:n_windows]
        else:  # consecutive windows from a random start
            start = rng.integers(0, max(1, total - n_windows))
            order = np.arange(start, min(total, start + n_windows))

        def read_batch(b):
            return ws.read(b)[0]
    elif method == "mne_lazy":
        raw = mne.io.read_raw_edf(edf, preload=False)
        total = raw.n_times // L
        order = rng.permutation(total)[:n_windows]

        def read_batch(b):
            return np.stack([raw.get_data(start=int(i) * L, stop=int(i) * L + L)
                             for i in b]).astype(np.float32)
    elif method == "mne_epochs_lazy":
        raw = mne.io.read_raw_edf(edf, preload=False)
        events = mne.make_fixed_length_events(raw, duration=WIN_S)
        ep = mne.Epochs(raw, events, tmin=0, tmax=WIN_S - 1 / SF, baseline=None, preload=False)
        total = len(events)
        order = rng.permutation(total)[: max(1, n_windows // 10)]  # slow: a tenth of the windows

        def read_batch(b):
            return ep[b].get_data().astype(np.float32)
    elif method.startswith("braindecode"):
        import pandas as pd
        from torch.utils.data import DataLoader

        # one thread, like the other methods: torch's OpenMP pool spins against other
        # processes on a shared 2-core machine and made its rate swing 4x between runs
        torch.set_num_threads(1)

        t0 = time.perf_counter()
        raw = mne.io.read_raw_edf(edf, preload=method == "braindecode_preloaded")
        base = BaseConcatDataset([RawDataset(raw, pd.Series({"subject": 0}))])
        win = create_fixed_length_windows(
            base, window_size_samples=L, window_stride_samples=L, on_last_window="drop",
            preload=method == "braindecode_preloaded")
        out["load_s"] = time.perf_counter() - t0
        track()
        total = len(win)
        order = rng.permutation(total)[:n_windows]
        # what a training loop does: a DataLoader over the windows in a given order
        loader = DataLoader(win, batch_size=BATCH, sampler=order.tolist(), num_workers=0)

        def one_pass():
            acc = 0.0
            it, x = iter(loader), None
            while True:
                x = None
                try:
                    x, _, _ = next(it)
                except StopIteration:
                    return acc
                acc += float(x[0, 0, 0])
                track()
    elif method == "mne_preloaded":
        t0 = time.perf_counter()
        raw = mne.io.read_raw_edf(edf, preload=True)
        out["load_s"] = time.perf_counter() - t0
        track()
        data = raw._data
        total = raw.n_times // L
        order = rng.permutation(total)[:n_windows]

        def read_batch(b):
            return np.stack([data[:, int(i) * L:int(i) * L + L] for i in b]).astype(np.float32)
    else:
        raise SystemExit(f"unknown method {method}")
    if one_pass is None:
        def one_pass():
            return read_batches(read_batch)
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
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of the whole method list, interleaved (load drifts between "
                         "methods; ratios are taken per round, then their median)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--braindecode-python", default=None,
                    help="python of a venv with braindecode (torch==2.9.1, torchaudio==2.9.*)")
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
    stores = {codec: work / f"synthetic_{args.hours:g}h_{C}ch_{codec}.zarr"
              for codec in ("none", "lz4")}
    store = stores["none"]
    if not edf.exists():
        t0 = time.perf_counter()
        make_edf(edf, args.hours)
        print(f"wrote {edf.name}: {edf.stat().st_size / 1e6:.0f} MB in "
              f"{time.perf_counter() - t0:.1f} s")
    for codec, path in stores.items():
        if path.exists():
            continue
        from neurodata.conversion import convert

        t0 = time.perf_counter()
        convert(edf, path, data_codec=codec)
        dt = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"converted to {path.name}: {size / 1e6:.0f} MB on disk in {dt:.1f} s "
              f"({edf.stat().st_size / 1e6 / dt:.0f} MB/s of EDF)")
    rows = []
    bd_python = _braindecode_python(args.braindecode_python)
    methods = ["neurodata", "neurodata_straddle", "neurodata_seq", "neurodata_lz4", "mne_lazy",
               "mne_epochs_lazy", "mne_preloaded"]
    if bd_python:
        methods += ["braindecode_lazy", "braindecode_preloaded"]
    else:
        print("braindecode: not importable here and no --braindecode-python given; "
              "its rows are left out")
    def command(m):
        py = bd_python if m.startswith("braindecode") else sys.executable
        return [py, os.path.abspath(__file__), "--method", m, "--edf", str(edf),
                "--store", str(store), "--windows", str(args.windows)]

    rates: dict[str, list[float]] = {m: [] for m in methods}
    for rnd in range(args.rounds):
        for m in methods:
            row = _child(command(m) + ["--repeats", str(args.repeats)], m)
            rates[m].append(row["windows_per_s"])
            if rnd == 0:
                # the same again with glibc's mmap threshold fixed (no dynamic raise): large
                # buffers go back to the system when freed, so the high-water mark is the
                # live peak of the method, not what the allocator kept from earlier batches
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 << 10))
                mem = _child(command(m) + ["--repeats", "1"], m, env)
                row["live_peak_mb"] = mem["maxrss_mb"] - mem["rss0_mb"]
                row["live_peak_exact"] = mem["peak_reset"] or \
                    mem["maxrss_mb"] > mem["maxrss0_mb"] + 1
                rows.append(row)
    for row in rows:
        row["rates"] = rates[row["method"]]
        row["windows_per_s"] = statistics.median(row["rates"])
    lazy = next(r for r in rows if r["method"] == "mne_lazy")
    print(f"\n{args.hours:g} h x {C} channels at {SF} Hz ({edf.stat().st_size / 1e6:.0f} MB EDF), "
          f"{WIN_S:g} s windows in shuffled batches of {BATCH} (neurodata_seq: consecutive); "
          f"medians of {args.repeats} passes in each of {args.rounds} interleaved rounds "
          f"(the median round shown). Memory: RSS of the method's process sampled after "
          f"every batch (peak), and its growth over the RSS after the imports, before opening "
          f"the data")
    print(f"{'method':<22}{'windows':>8}{'windows/s':>12}{'vs mne lazy':>13}"
          f"{'RSS MiB':>9}{'growth':>8}{'high-water':>12}{'live peak':>11}")
    for r in rows:
        ratio = r["windows_per_s"] / lazy["windows_per_s"]
        extra = f"  (open {r['load_s']:.1f} s)" if "load_s" in r else ""
        print(f"{r['method']:<22}{r['windows']:>8}{r['windows_per_s']:>12.0f}{ratio:>12.1f}x"
              f"{r['rss_mb']:>9.0f}{r['rss_mb'] - r['rss0_mb']:>8.0f}{_high_water(r):>12s}"
              f"{_live(r):>11s}{extra}")
    for ours, ref in [(o, r) for o in ("neurodata", "neurodata_straddle", "neurodata_lz4")
                      for r in ("braindecode_lazy", "braindecode_preloaded", "mne_lazy")]:
        nd = next(r for r in rows if r["method"] == ours)
        r = next((r for r in rows if r["method"] == ref), None)
        if r is None:
            continue
        g_nd = nd["rss_mb"] - nd["rss0_mb"]
        g = r["rss_mb"] - r["rss0_mb"]
        per_round = sorted(a / b for a, b in zip(nd["rates"], r["rates"]))
        print(f"{ours} vs {ref}: {statistics.median(per_round):.1f}x windows/s (rounds: "
              f"{', '.join(f'{v:.1f}' for v in per_round)}); "
              f"live peak {_live(nd).strip()} vs {_live(r).strip()} MiB "
              f"({nd['live_peak_mb'] / max(r['live_peak_mb'], 1e-9):.2f}x); RSS growth {g_nd:.0f} "
              f"vs {g:.0f} MiB ({g_nd / max(g, 1e-9):.2f}x); RSS {nd['rss_mb']:.0f} vs "
              f"{r['rss_mb']:.0f} MiB (imports included)")


def _child(cmd, method, env=None) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(f"{method} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _high_water(r) -> str:
    grow = r["maxrss_mb"] - r["rss0_mb"]
    if not r.get("peak_reset") and r["maxrss_mb"] <= r["maxrss0_mb"] + 1:
        # the imports' peak (not reset here) was not exceeded
        return f"<={grow:.0f}"
    return f"{grow:.0f}"


def _live(r) -> str:
    return f"{'' if r['live_peak_exact'] else '<='}{r['live_peak_mb']:.0f}"


def _braindecode_python(given: str | None) -> str | None:
    """A Python that imports braindecode: ``given``, this one, or None.

    braindecode imports torchaudio, whose registry build does not load beside the
    project's torch 2.13; a separate venv (torch==2.9.1, torchaudio==2.9.*,
    braindecode, psutil) runs its rows.
    """
    for py in filter(None, (given, os.environ.get("NEURODATA_BRAINDECODE_PYTHON"), sys.executable)):
        ok = subprocess.run([py, "-c", "import braindecode, psutil"], capture_output=True)
        if ok.returncode == 0:
            return py
    return None

if __name__ == "__main__":
    main()
