"""Calcium imaging benchmark: TIFF movie conversion and dF/F + deconvolution throughput.

Compares, in one run (medians of ``--repeats``):

1. converting a multi-page TIFF movie: ``neurodata.convert`` (blocked, chunked,
   compressed zarr) against what a user would otherwise do,
   ``tifffile.imread`` + ``np.save`` (whole movie in memory, uncompressed), for
   an uncompressed and a zlib-compressed TIFF;
   plus reading a 64-frame range back from each;
2. dF/F + deconvolution of many traces: ``neurodata.transforms.calcium``
   (vectorised rolling percentile, numba OASIS over all traces) against
   ``scipy.ndimage.percentile_filter`` + ``oasis.oasisAR1`` per trace (same
   problem, same parameters), and against ``oasis.functions.deconvolve`` (OASIS'
   turnkey per-trace call that also estimates parameters); the same for AR(2)
   (rise + decay) traces against ``oasis.oasisAR2``.

Usage: python benchmarks/bench_calcium.py [--frames 2000] [--size 256] [--traces 200]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _median_time(fn, repeats: int, setup=None) -> float:
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_tiff(work: Path, frames: int, size: int, repeats: int) -> list[tuple]:
    import tifffile

    from neurodata.conversion import convert
    import neurodata

    rng = np.random.default_rng(0)
    # a realistic-ish movie: smooth background + Poisson shot noise (compresses like real data)
    yy, xx = np.mgrid[:size, :size]
    base = (200 + 100 * np.sin(yy / 17.0) * np.cos(xx / 23.0)).astype(np.float32)
    tif = work / "movie.tif"
    movie = rng.poisson(base, (frames, size, size)).astype(np.uint16)
    tifffile.imwrite(tif, movie, imagej=True, metadata={"axes": "TYX", "fps": 30.0})
    del movie
    tif_bytes = tif.stat().st_size
    store = work / "movie.zarr"
    npy = work / "movie.npy"

    def run_nd():
        convert(tif, store)

    def run_base():
        np.save(npy, tifffile.imread(tif))

    def clean():  # outputs are removed outside the timing, for both sides
        shutil.rmtree(store, ignore_errors=True)
        npy.unlink(missing_ok=True)

    t_nd = _median_time(run_nd, repeats, setup=clean)
    t_base = _median_time(run_base, repeats, setup=clean)
    run_nd()
    store_bytes = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    ds = neurodata.open(store)
    a, b = frames // 3, frames // 3 + 64
    t_read_nd = _median_time(lambda: ds.frames(a, b), repeats * 3)
    t_read_npy = _median_time(lambda: np.array(np.load(npy, mmap_mode="r")[a:b]), repeats * 3)
    t_read_tif = _median_time(lambda: tifffile.imread(tif, key=range(a, b)), repeats * 3)
    npy_bytes = npy.stat().st_size
    del ds
    # a zlib-compressed TIFF (pages decoded by tifffile) on the first quarter of the movie
    ztif = work / "movie_zlib.tif"
    part = tifffile.imread(tif, key=range(frames // 4))
    tifffile.imwrite(ztif, part, imagej=True, metadata={"axes": "TYX", "fps": 30.0}, compression="zlib")
    nz = len(part)
    del part
    t_z = _median_time(lambda: convert(ztif, store), repeats, setup=clean)
    t_zb = _median_time(lambda: np.save(npy, tifffile.imread(ztif)), repeats, setup=clean)
    mb = tif_bytes / 1e6
    return [
        ("TIFF -> store (frames/s)", frames / t_nd, "imread + np.save", frames / t_base,
         f"{mb:.0f} MB movie; store {store_bytes / 1e6:.0f} MB vs npy {npy_bytes / 1e6:.0f} MB"),
        ("zlib TIFF -> store (frames/s)", nz / t_z, "imread + np.save", nz / t_zb,
         f"{nz} frames, zlib-compressed pages"),
        ("read 64 frames (frames/s)", 64 / t_read_nd, "np.load mmap slice", 64 / t_read_npy,
         f"tifffile.imread(key=range): {64 / t_read_tif:.0f} frames/s"),
    ]


def bench_traces(n: int, T: int, repeats: int) -> list[tuple]:
    from scipy.ndimage import percentile_filter
    from scipy.signal import lfilter

    from neurodata.transforms import calcium as ca

    fs, tau = 30.0, 1.0
    g = float(np.exp(-1 / (tau * fs)))
    rng = np.random.default_rng(1)
    spikes = (rng.random((n, T)) < 0.3 / fs).astype(np.float64)
    drift = 1.0 + 0.1 * np.sin(np.arange(T) / (fs * 120.0))
    F = (100 * drift * (1 + 0.5 * lfilter([1.0], [1.0, -g], spikes, axis=-1))
         + 3 * rng.standard_normal((n, T))).astype(np.float32)
    Fneu = (30 + 2 * rng.standard_normal((n, T))).astype(np.float32)
    window = int(60 * fs)
    rows = []

    def ours():
        d, _ = ca.dff(F, fs, Fneu=Fneu, window_s=60.0, percentile=8.0)
        ca.deconvolve(d, fs=fs, tau=tau, s_min_sn=2.0)

    ours()  # compile numba kernels outside the timing
    t_ours = _median_time(ours, repeats)

    try:
        from oasis.functions import deconvolve as oasis_deconvolve
        from oasis.oasis_methods import oasisAR1 as oasis_ar1_ref
    except ImportError:
        oasis_ar1_ref = oasis_deconvolve = None
    if oasis_ar1_ref is not None:
        sub = max(1, n // 10)  # the exact rolling percentile is slow: time a tenth, scale up
        Fs, Fns = F[:sub], Fneu[:sub]

        def reference_sub():
            Fc = Fs - 0.7 * Fns
            F0 = percentile_filter(Fc, 8, size=(1, window), mode="reflect")
            d = (Fc - F0) / F0
            sn = ca.noise_level(d)
            b = np.percentile(d, 10, axis=-1) + 1.2816 * sn
            for i in range(sub):
                oasis_ar1_ref(d[i].astype(np.float64) - b[i], g, 0.0, 2.0 * sn[i])

        t_ref = _median_time(reference_sub, max(1, repeats // 2)) * n / sub
        rows.append(("dF/F + deconvolve (traces/s)", n / t_ours,
                     "percentile_filter + oasisAR1 loop", n / t_ref,
                     f"{n} traces x {T} frames; reference timed on {sub} traces"))
        d, _ = ca.dff(F, fs, Fneu=Fneu, window_s=60.0)
        sn = ca.noise_level(d)
        b = np.percentile(d, 10, axis=-1) + 1.2816 * sn
        D = d.astype(np.float64) - b[:, None]
        smin = 2.0 * sn
        t_dec = _median_time(lambda: ca.oasis_ar1(D, g, 0.0, smin), repeats)
        t_dec_ref = _median_time(lambda: [oasis_ar1_ref(D[i], g, 0.0, smin[i]) for i in range(n)], repeats)
        C, _ = ca.oasis_ar1(D, g, 0.0, smin)
        err = max(float(np.abs(C[i] - oasis_ar1_ref(D[i], g, 0.0, smin[i])[0]).max()) for i in range(n))
        rows.append(("OASIS AR(1) only (traces/s)", n / t_dec, "oasis.oasisAR1 loop", n / t_dec_ref,
                     f"max |c - c_oasis| = {err:.1e}"))
        auto_n = max(1, n // 10)
        t_auto = _median_time(lambda: [oasis_deconvolve(D[i], penalty=1) for i in range(auto_n)],
                              max(1, repeats // 2)) * n / auto_n
        t_ours_auto = _median_time(lambda: ca.deconvolve(d), repeats)
        rows.append(("deconvolve, params estimated (traces/s)", n / t_ours_auto,
                     "oasis.functions.deconvolve loop", n / t_auto,
                     "oasis: constrained AR(1), noise-optimised lambda"))
        rows += bench_ar2(n, T, repeats, oasis_deconvolve)
    else:
        rows.append(("dF/F + deconvolve (traces/s)", n / t_ours, "oasis-deconv not installed",
                     float("nan"), ""))
    return rows


def bench_ar2(n: int, T: int, repeats: int, oasis_deconvolve) -> list[tuple]:
    """AR(2) (rise + decay) traces: the exact solver alone, then with (g1, g2) estimated."""
    from scipy.signal import lfilter
    from oasis.oasis_methods import oasisAR2

    from neurodata.transforms import calcium as ca

    fs = 30.0
    g1, g2 = ca.ar2_from_tau(1.0, 0.1, fs)
    rng = np.random.default_rng(2)
    spikes = (rng.random((n, T)) < 0.3 / fs).astype(np.float64)
    Y = lfilter([1.0], [1.0, -g1, -g2], spikes, axis=-1) + 0.3 * rng.standard_normal((n, T))
    smin = 0.6
    ca.oasis_ar2(Y[:2], (g1, g2), 0.0, smin)  # compile outside the timing
    t_ours = _median_time(lambda: ca.oasis_ar2(Y, (g1, g2), 0.0, smin), repeats)
    t_ref = _median_time(lambda: [oasisAR2(Y[i], g1, g2, 0.0, smin) for i in range(n)], repeats)
    C, _ = ca.oasis_ar2(Y, (g1, g2), 0.0, smin)
    err = max(float(np.abs(C[i] - oasisAR2(Y[i], g1, g2, 0.0, smin)[0]).max()) for i in range(n))
    rows = [("OASIS AR(2) only (traces/s)", n / t_ours, "oasis.oasisAR2 loop", n / t_ref,
             f"max |c - c_oasis| = {err:.1e}")]
    t_auto_ours = _median_time(lambda: ca.deconvolve(Y, p=2, s_min_sn=2.0), repeats)
    auto_n = max(1, n // 10)
    with warnings.catch_warnings():  # g=(None, None) (estimate AR(2)) is deprecated in oasis 0.3
        warnings.simplefilter("ignore", DeprecationWarning)
        t_auto = _median_time(lambda: [oasis_deconvolve(Y[i], g=(None, None), penalty=1)
                                       for i in range(auto_n)], max(1, repeats // 2)) * n / auto_n
    rows.append(("deconvolve AR(2), g estimated (traces/s)", n / t_auto_ours,
                 "oasis.functions.deconvolve loop", n / t_auto,
                 "oasis: constrained AR(2), noise-optimised lambda"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--traces", type=int, default=200)
    ap.add_argument("--samples", type=int, default=18000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_calcium_"))
    try:
        rows = bench_tiff(work, args.frames, args.size, args.repeats)
        rows += bench_traces(args.traces, args.samples, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'measure':42s} {'neurodata':>12s}   {'baseline':34s} {'baseline':>12s} {'ratio':>7s}  note")
    for name, ours, base_name, base, note in rows:
        ratio = ours / base if base == base and base else float("nan")
        print(f"{name:42s} {ours:12.1f}   {base_name:34s} {base:12.1f} {ratio:7.2f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
