"""Events/s of neurodata.transforms vs tonic, per shared transform, side by side.

Two workloads:

- ``nmnist``: a batch of N-MNIST-sized samples (34x34, ~4k events each,
  variable lengths), made from the real N-MNIST sample in ../shared/data by
  random translation and subsetting (uniform random events if absent).
  neurodata gets one packed :class:`EventBatch`; tonic gets the list of
  structured arrays (int64 fields, as tonic's datasets give) and is called
  per sample, as in a tonic Dataset.
- ``large``: a 1280x720 recording of ``--large-events`` events (20 M by
  default) made by tiling the real Prophesee EVT2 sample (640x480) over the
  four quadrants and in time, so that it has a real recording's spatial
  locality (a clustered random walk if absent).

Columns: neurodata and tonic rates in M events/s (medians of ``--repeats``
rounds), their ratio and its range over the rounds, and neurodata's rate as %
of the memory-copy rate (numpy copy of the same x, y, t, p columns into
arrays already written, the ceiling for a one-pass transform). Each round times tonic and then each
backend back to back, and the ratio is the median of the rounds' ratios: the
machine's speed drifts with other jobs, and a ratio of two rates measured
minutes apart carries that drift. Transforms run single-threaded. tonic's
per-event Python loops (Denoise, RefractoryPeriod, Decimation,
ToAveragedTimesurface) are timed on the first ``--tonic-samples`` samples /
``--tonic-cap`` events (marked ``*``); their rate does not depend on length.

Usage::

    python benchmarks/bench_transforms.py                 # numba and numpy backends
    python benchmarks/bench_transforms.py --backend numpy # pure-numpy fallback only
    NEURODATA_NO_NUMBA=1 python benchmarks/bench_transforms.py  # same, via the env var
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("NEURODATA_SHARED_DATA", HERE.parents[1] / "shared" / "data"))


# ---------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------
def nmnist_batch(n_samples: int, seed: int = 0):
    from neurodata.events import EVENT_DTYPE

    rng = np.random.default_rng(seed)
    src = SHARED / "events" / "sample_nmnist.bin"
    base = None
    if src.exists():
        try:
            from neurodata.loaders import read_events

            base = read_events(src).events
        except Exception:
            base = None
    samples = []
    for _ in range(n_samples):
        if base is not None:
            keep = rng.random(len(base)) < rng.uniform(0.75, 1.0)
            ev = base[keep].copy()
            ev["x"] = (ev["x"] + rng.integers(0, 34)) % 34
            ev["y"] = (ev["y"] + rng.integers(0, 34)) % 34
        else:
            n = int(rng.integers(3000, 5000))
            ev = np.empty(n, EVENT_DTYPE)
            ev["x"], ev["y"] = rng.integers(0, 34, n), rng.integers(0, 34, n)
            ev["t"] = np.sort(rng.integers(0, 300_000, n))
            ev["p"] = rng.integers(0, 2, n)
        samples.append(ev)
    return samples, (34, 34, 2), "real N-MNIST sample, shifted + subsampled" if base is not None else "uniform random"


def large_recording(n_events: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    src = SHARED / "events" / "evt2_sample.raw"
    rec = None
    if src.exists():
        try:
            from neurodata.loaders import read_events

            rec = read_events(src)
        except Exception:
            rec = None
    if rec is not None and len(rec) > 1000:
        n0 = len(rec)
        reps = n_events // n0 + 1
        dur = int(rec.t[-1] - rec.t[0]) + 1
        k = np.repeat(np.arange(reps), n0)[:n_events]
        idx = np.tile(np.arange(n0), reps)[:n_events]
        x = (rec.x[idx] + (k % 2) * 640).astype(np.uint16)
        y = (rec.y[idx] + ((k // 2) % 2) * 240).astype(np.uint16)
        t = (rec.t[idx] - rec.t[0]) + k * dur
        p = rec.p[idx].copy()
        how = "real EVT2 sample tiled over 1280x720"
    else:  # a blob doing a random walk: events clustered in space and time
        cx = np.cumsum(rng.normal(0, 0.02, n_events)) % 1280
        cy = np.cumsum(rng.normal(0, 0.02, n_events)) % 720
        x = np.clip(cx + rng.normal(0, 20, n_events), 0, 1279).astype(np.uint16)
        y = np.clip(cy + rng.normal(0, 20, n_events), 0, 719).astype(np.uint16)
        t = np.sort(rng.integers(0, n_events // 10, n_events))
        p = rng.integers(0, 2, n_events).astype(np.uint8)
        how = "synthetic random-walk blob"
    return (x, y, t, p), (1280, 720, 2), how


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------
TONIC_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])  # tonic's N-MNIST dtype


def tonic_events(x, y, t, p):
    """Events as tonic's datasets hand them out (signed int64 fields)."""
    out = np.empty(len(t), TONIC_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def median_time(fn, repeats, setup=None):
    times = []
    for _ in range(repeats):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        fn(arg) if setup else fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cases(kind, sensor, duration, n_events):
    """(name, neurodata transform, tonic transform or None, tonic event cap?)"""
    import neurodata.transforms as T
    import tonic.transforms as TT

    s = sensor
    tw = max(duration // 20, 1)  # ~20 frames per sample/recording
    ts_dt = max(duration // 10, 1)
    ec = 500 if kind == "nmnist" else max(n_events // 20, 1)  # ~20 frames per recording
    per_event_loop = True  # tonic runs a Python loop per event: time it on a part
    rows = [
        ("ToFrame(n_time_bins=10)", T.ToFrame(s, n_time_bins=10), TT.ToFrame(s, n_time_bins=10), False),
        ("ToFrame(time_window) var-T", T.ToFrame(s, time_window=tw), TT.ToFrame(s, time_window=tw), False),
        ("ToFrame(event_count)", T.ToFrame(s, event_count=ec), TT.ToFrame(s, event_count=ec), False),
        ("ToImage", T.ToImage(s), TT.ToImage(s), False),
        ("ToVoxelGrid(10)", T.ToVoxelGrid(s, 10), TT.ToVoxelGrid(s, 10), False),
        ("ToTimeSurface", T.ToTimeSurface(s, dt=ts_dt, tau=ts_dt / 2), TT.ToTimesurface(s, dt=ts_dt, tau=ts_dt / 2), False),
        # HATS costs (events in a cell's time window) per event: N-MNIST only
        ("ToAveragedTimeSurface", T.ToAveragedTimeSurface(s, 5, 10, 5e3, 2e3),
         TT.ToAveragedTimesurface(s, 5, 10, 5e3, 2e3), per_event_loop) if kind == "nmnist" else None,
        ("Denoise", T.Denoise(10_000, sensor_size=s), TT.Denoise(10_000), per_event_loop),
        ("RefractoryPeriod", T.RefractoryPeriod(1_000, sensor_size=s), TT.RefractoryPeriod(1_000), per_event_loop),
        ("Decimation", T.Decimation(4, sensor_size=s), TT.Decimation(4), per_event_loop),
        ("CenterCrop", T.CenterCrop(s, (s[0] // 2, s[1] // 2)), TT.CenterCrop(s, (s[0] // 2, s[1] // 2)), False),
        ("CropTime", T.CropTime(tw, 5 * tw), TT.CropTime(tw, 5 * tw), False),
        ("Downsample", T.Downsample(0.001, 0.5), TT.Downsample(0.001, 0.5), False),
        ("MergePolarities", T.MergePolarities(), TT.MergePolarities(), False),
        ("RandomFlipLR", T.RandomFlipLR(s, p=1.0, seed=0), TT.RandomFlipLR(s, p=1.0), False),
        ("RandomFlipPolarity", T.RandomFlipPolarity(p=1.0, seed=0), TT.RandomFlipPolarity(p=1.0), False),
        ("RandomTimeReversal", T.RandomTimeReversal(p=1.0, seed=0), TT.RandomTimeReversal(p=1.0), False),
        ("DropEvent(0.2)", T.DropEvent(0.2, seed=0), TT.DropEvent(0.2), False),
        ("DropPixel(hot)", T.DropPixel(hot_pixel_frequency=1000), TT.DropPixel(hot_pixel_frequency=1000),
         kind == "large"),
        ("TimeJitter", T.TimeJitter(100, seed=0), TT.TimeJitter(100), False),
        ("TimeSkew", T.TimeSkew(1.1, 10, seed=0), TT.TimeSkew(1.1, 10), False),
        ("UniformNoise(1%)", T.UniformNoise(s, n=40 if kind == "nmnist" else 200_000, seed=0),
         TT.UniformNoise(s, n=40 if kind == "nmnist" else 200_000), False),
        ("RandomCrop", T.RandomCrop(s, (s[0] * 3 // 4, s[1] * 3 // 4), seed=0),
         TT.RandomCrop(s, (s[0] * 3 // 4, s[1] * 3 // 4)), False),
        ("DropByTime(0.2)", T.DropByTime(0.2, seed=0), TT.DropEventByTime(0.2), False),
        ("DropByArea(0.3)", T.DropByArea(s, 0.3, seed=0), TT.DropEventByArea(s, 0.3), False),
        ("SpatialJitter", T.SpatialJitter(s, 1.0, 1.0, 0.0, clip_outliers=True, seed=0),
         TT.SpatialJitter(s, 1.0, 1.0, 0.0, clip_outliers=True), False),
    ]
    return [r for r in rows if r is not None]


def run(args):
    import neurodata.transforms as T
    from neurodata.transforms import _kernels

    backends = ["numba", "numpy"] if args.backend == "both" else [args.backend]
    if _kernels._numba is None or os.environ.get("NEURODATA_NO_NUMBA", "") not in ("", "0"):
        backends = ["numpy"]
    print(f"neurodata.transforms vs tonic; backends: {', '.join(backends)}; "
          f"medians of {args.repeats} interleaved rounds; single-threaded; machine shared with "
          f"other jobs, figures noisy (compare ratios)\n")

    workloads = []
    if "nmnist" in args.workloads:
        samples, sensor, how = nmnist_batch(args.batch)
        batch = T.EventBatch.from_samples(samples, sensor_size=sensor)
        dur = int(np.median([s["t"][-1] - s["t"][0] for s in samples]))
        workloads.append(("nmnist", f"{len(samples)} N-MNIST-sized samples, {batch.n_events:,} events "
                          f"({how})", batch, samples, sensor, dur))
    if "large" in args.workloads:
        (x, y, t, p), sensor, how = large_recording(args.large_events)
        batch = T.EventBatch.from_columns(x, y, t, p, offsets=[0, len(t)], sensor_size=sensor)
        workloads.append(("large", f"1280x720 recording, {len(t):,} events ({how})", batch,
                          None, sensor, int(t[-1] - t[0])))

    for kind, title, batch, samples, sensor, dur in workloads:
        n = batch.n_events
        cols = (batch.x, batch.y, batch.t, batch.p)
        # into arrays written once before: memory bandwidth, not the page faults of fresh
        # allocations (260 MB of them for the large recording, which vary with the machine)
        dst = [np.ones_like(c) for c in cols]
        copy_s = median_time(lambda: [np.copyto(d, c) for d, c in zip(dst, cols)], max(args.repeats, 5))
        del dst
        copy_rate = n / copy_s
        print(f"== {title}\n   memory copy of the columns: {copy_rate / 1e6:,.0f} M events/s")
        if kind == "large":
            whole = tonic_events(*cols)
        else:
            tonic_samples = [tonic_events(s["x"], s["y"], s["t"], s["p"]) for s in samples]
        rows = cases(kind, sensor, dur, n)
        if args.only:
            rows = [r for r in rows if any(o.lower() in r[0].lower() for o in args.only)]
        print(f"   {'transform':28s} {'backend':>7s} {'neurodata':>10s} {'tonic':>11s} {'ratio':>7s} "
              f"{'ratios per round':>22s} {'% copy':>7s}")
        for name, nd, tt, capped in rows:
            if args.no_tonic or tt is None:
                tonic_call = None
            elif kind == "nmnist":
                part = tonic_samples[: args.tonic_samples] if capped else tonic_samples
                m = sum(len(e) for e in part)

                def tonic_call(part=part, tt=tt):
                    evs = [e.copy() for e in part]  # tonic transforms may write into their input
                    t0 = time.perf_counter()
                    for e in evs:
                        tt(e)
                    return time.perf_counter() - t0
            else:
                m = min(args.tonic_cap, n) if capped else n
                part = whole[:m]

                def tonic_call(part=part, tt=tt):
                    e = part.copy()
                    t0 = time.perf_counter()
                    tt(e)
                    return time.perf_counter() - t0
            for be in backends:  # compile / warm up
                _kernels.set_backend(be)
                nd(batch)
            # interleaved rounds: tonic, then each backend, so that the machine's drifting
            # speed (other jobs) falls on both sides of each ratio
            tonic_rounds = args.tonic_repeats if tonic_call is not None else 0
            rounds = max(args.repeats, tonic_rounds)
            nd_rates = {be: [] for be in backends}
            tonic_rates = []
            for r in range(rounds):
                if r < tonic_rounds:
                    tonic_rates.append(m / tonic_call())
                for be in backends:
                    _kernels.set_backend(be)
                    t0 = time.perf_counter()
                    nd(batch)
                    nd_rates[be].append(n / (time.perf_counter() - t0))
            for be in backends:
                rate = statistics.median(nd_rates[be])
                if tonic_rates:
                    tr = statistics.median(tonic_rates)
                    per_round = [a / b for a, b in zip(nd_rates[be], tonic_rates)]
                    ratio = f"{statistics.median(per_round):6.1f}x"
                    spread = f"{min(per_round):.1f}-{max(per_round):.1f}x"
                    tonic_s = f"{tr / 1e6:10.2f}{'*' if m < n else ' '}"
                else:
                    ratio, spread, tonic_s = f"{'-':>7s}", "-", f"{'-':>11s}"
                print(f"   {name:28s} {be:>7s} {rate / 1e6:10.1f} {tonic_s} {ratio} {spread:>22s} "
                      f"{100 * rate / copy_rate:6.0f}%")
                sys.stdout.flush()
        print()
    print("rates in M events/s; * tonic timed on the first "
          f"{args.tonic_samples} samples / {args.tonic_cap:,} events (per-event Python loop; "
          "its rate does not depend on length)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["numba", "numpy", "both"], default="both")
    ap.add_argument("--workloads", nargs="+", default=["nmnist", "large"], choices=["nmnist", "large"])
    ap.add_argument("--batch", type=int, default=256, help="N-MNIST-sized samples per batch")
    ap.add_argument("--large-events", type=int, default=20_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tonic-repeats", type=int, default=3)
    ap.add_argument("--tonic-cap", type=int, default=200_000,
                    help="events of the large recording for tonic's per-event loops")
    ap.add_argument("--tonic-samples", type=int, default=16,
                    help="N-MNIST samples for tonic's per-event loops")
    ap.add_argument("--only", nargs="*", help="substrings of transform names to run")
    ap.add_argument("--no-tonic", action="store_true")
    run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
