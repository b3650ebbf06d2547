"""NWB ElectricalSeries: conversion cost, then shuffled 4 s windows, neurodata vs pynwb.

Writes a 64-channel int16 NWB file at 1 kHz (``--minutes`` long, written chunkwise with
``GenericDataChunkIterator``, HDF5 chunks of 4096 x 64, ``conversion`` 0.5e-6), then:

- convert: ``neurodata.convert`` into a ``timeseries/1`` store (time, peak RSS);
- pynwb load: ``ElectricalSeries.get_data_in_units()`` -- pynwb's way to volts (whole array);
- windows, neurodata: ``WindowSource.read`` on batches of 64 shuffled 4 s windows;
- windows, pynwb lazy: ``es.data[s:e] * conversion`` per window on an open ``NWBHDF5IO``.

Each method runs in its own process (peak RSS = ``ru_maxrss``, imports included); times
are medians of ``--repeats`` passes.

Run: python benchmarks/bench_eeg_nwb.py [--minutes 30] [--windows 1000]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SF, C, WIN_S, BATCH, CONV = 1000, 64, 4.0, 64, 0.5e-6


def make_nwb(path: Path, minutes: float) -> None:
    import datetime as dt

    from hdmf.data_utils import GenericDataChunkIterator
    from pynwb import H5DataIO, NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries

    n = int(minutes * 60 * SF)

    class Blocks(GenericDataChunkIterator):
        def _get_data(self, selection):
            t = np.arange(n)[selection[0]][:, None]
            ch = np.arange(C)[selection[1]]
            x = 800 * np.sin(2 * np.pi * 10 * t / SF + ch) + (t * 7 + ch) % 401
            return x.astype(np.int16)

        def _get_maxshape(self):
            return (n, C)

        def _get_dtype(self):
            return np.dtype(np.int16)

    f = NWBFile(session_description="bench", identifier="bench",
                session_start_time=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    dev = f.create_device("amp")
    g = f.create_electrode_group("scalp", "EEG cap", "scalp", dev)
    for _ in range(C):
        f.add_electrode(group=g, location="scalp")
    region = f.create_electrode_table_region(list(range(C)), "all")
    data = H5DataIO(Blocks(buffer_shape=(65536, C), chunk_shape=(4096, C)))
    f.add_acquisition(ElectricalSeries(name="eeg", data=data, electrodes=region, rate=float(SF),
                                       conversion=CONV))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_method(method: str, nwb: str, store: str, n_windows: int, repeats: int) -> dict:
    times = []
    if method == "convert":
        from neurodata.conversion import convert

        for k in range(repeats):
            t = time.perf_counter()
            convert(nwb, store, overwrite=True)
            times.append(time.perf_counter() - t)
        return {"s": statistics.median(times), "rss": peak_rss_mb()}
    if method == "pynwb_load":
        from pynwb import NWBHDF5IO

        for _ in range(repeats):
            t = time.perf_counter()
            with NWBHDF5IO(nwb, "r") as io:
                x = io.read().acquisition["eeg"].get_data_in_units()
            times.append(time.perf_counter() - t)
            del x
        return {"s": statistics.median(times), "rss": peak_rss_mb()}
    rng = np.random.default_rng(0)
    if method == "nd_windows":
        from neurodata.dataset import open as nd_open

        ws = nd_open(store).windows(length=WIN_S)
        order = rng.permutation(len(ws))[:n_windows]
        for _ in range(repeats):
            t = time.perf_counter()
            for b in range(0, len(order), BATCH):
                ws.read(order[b:b + BATCH])
            times.append(time.perf_counter() - t)
    else:  # pynwb lazy windows
        from pynwb import NWBHDF5IO

        io = NWBHDF5IO(nwb, "r")
        es = io.read().acquisition["eeg"]
        L = int(WIN_S * SF)
        starts = np.arange(0, es.data.shape[0] - L + 1, L)
        order = starts[rng.permutation(len(starts))[:n_windows]]
        for _ in range(repeats):
            t = time.perf_counter()
            for s in order:
                (np.asarray(es.data[s:s + L], np.float64) * es.conversion + es.offset).T
            times.append(time.perf_counter() - t)
        io.close()
    med = statistics.median(times)
    return {"s": med, "windows_per_s": n_windows / med, "rss": peak_rss_mb()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--windows", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method")
    ap.add_argument("--nwb")
    ap.add_argument("--store")
    a = ap.parse_args()
    if a.method:
        print(json.dumps(run_method(a.method, a.nwb, a.store, a.windows, a.repeats)))
        return
    with tempfile.TemporaryDirectory() as d:
        nwb, store = Path(d) / "bench.nwb", Path(d) / "bench.zarr"
        make_nwb(nwb, a.minutes)
        mb = nwb.stat().st_size / 1e6
        res = {}
        for m in ("convert", "pynwb_load", "nd_windows", "pynwb_windows"):
            out = subprocess.run([sys.executable, __file__, "--method", m, "--nwb", str(nwb),
                                  "--store", str(store), "--windows", str(a.windows),
                                  "--repeats", str(a.repeats)],
                                 capture_output=True, text=True, check=True)
            res[m] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"NWB file: {C} ch x {a.minutes:g} min at {SF} Hz int16, {mb:.0f} MB; "
          f"medians of {a.repeats}")
    print(f"{'task':<34}{'neurodata':>14}{'pynwb':>14}{'ratio':>9}")
    c, p = res["convert"], res["pynwb_load"]
    print(f"{'to volts, whole file (s)':<34}{c['s']:>14.2f}{p['s']:>14.2f}"
          f"{p['s'] / c['s']:>8.2f}x")
    print(f"{'  peak RSS (MB)':<34}{c['rss']:>14.0f}{p['rss']:>14.0f}"
          f"{p['rss'] / c['rss']:>8.2f}x")
    n, q = res["nd_windows"], res["pynwb_windows"]
    print(f"{'shuffled 4 s windows/s':<34}{n['windows_per_s']:>14.0f}{q['windows_per_s']:>14.0f}"
          f"{n['windows_per_s'] / q['windows_per_s']:>8.2f}x")
    print(f"{'  peak RSS (MB)':<34}{n['rss']:>14.0f}{q['rss']:>14.0f}"
          f"{q['rss'] / n['rss']:>8.2f}x")


if __name__ == "__main__":
    main()
