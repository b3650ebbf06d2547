"""Kernels of the event representations: both backends against definitions written here.

The voxel grid, time surface and frame kernels take batches of packed samples
(offsets), chunk their events and pick fast paths (events inside the sensor,
bins inside the sample); these tests feed them the cases those paths must get
right: empty samples, one-event samples, samples whose events share one
timestamp, events on bin boundaries, events outside the sensor, windows without
events, and long samples spanning many chunks. The references below are
per-event Python loops over the published definitions (Zhu et al. 2019 for the
voxel grid, tonic's ``to_timesurface_numpy`` for time surfaces).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import neurodata.transforms as T
from neurodata.events import EVENT_DTYPE
from neurodata.transforms import _kernels

BACKENDS = ["numpy"] + (["numba"] if _kernels._numba is not None else [])


@pytest.fixture(params=BACKENDS)
def backend(request):
    old = _kernels.get_backend()
    _kernels.set_backend(request.param)
    yield request.param
    _kernels.set_backend(old)


def make_sample(rng, n, w, h, duration, t0=0, outside=0.0):
    ev = np.empty(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, w, n)
    ev["y"] = rng.integers(0, h, n)
    ev["t"] = np.sort(rng.integers(0, max(duration, 1), n)) + t0
    ev["p"] = rng.integers(0, 2, n)
    if outside and n:
        bad = rng.random(n) < outside
        ev["x"][bad] = w + rng.integers(0, 3, int(bad.sum()))
    return ev


def edge_batch(seed, w=13, h=9, long=0, outside=0.05):
    """Samples covering the kernels' special cases (in this order)."""
    rng = np.random.default_rng(seed)
    samples = [
        make_sample(rng, 0, w, h, 1),                     # empty
        make_sample(rng, 1, w, h, 1, t0=500),             # one event
        make_sample(rng, 40, w, h, 1, t0=7),              # one shared timestamp
        make_sample(rng, 300, w, h, 20_000, t0=10**6),
        make_sample(rng, 0, w, h, 1),                     # empty in the middle
        make_sample(rng, 900, w, h, 50_000, outside=outside),  # some events outside the sensor
    ]
    # events exactly on bin / window boundaries: times multiples of 1000 from 0 to 10000
    ev = np.empty(11 * 3, EVENT_DTYPE)
    ev["t"] = np.repeat(np.arange(11) * 1000, 3)
    ev["x"] = rng.integers(0, w, len(ev))
    ev["y"] = rng.integers(0, h, len(ev))
    ev["p"] = rng.integers(0, 2, len(ev))
    samples.append(ev)
    # a burst, a silence of many windows, a burst
    gap = make_sample(rng, 200, w, h, 3_000)
    gap["t"][100:] += 40_000
    samples.append(np.sort(gap, order="t", kind="stable"))
    if long:  # more events than a kernel chunk, on a sensor larger than a numpy group
        samples.append(make_sample(rng, long, w, h, 400_000, t0=5))
    return samples


# ---------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------
def voxel_reference(ev, w, h, n_bins):
    """Zhu et al. 2019: +-1 per event split linearly between the two nearest time bins."""
    out = np.zeros((n_bins, 1, h, w))
    if len(ev) == 0:
        return out
    t0, t1 = int(ev["t"][0]), int(ev["t"][-1])
    scale = n_bins / (t1 - t0) if t1 != t0 else 0.0
    for x, y, t, p in zip(ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist(), ev["p"].tolist()):
        if x >= w or y >= h:
            continue
        ts = (t - t0) * scale
        ti = int(ts)
        frac = ts - ti
        v = 1.0 if p > 0 else -1.0
        if 0 <= ti < n_bins:
            out[ti, 0, y, x] += v * (1 - frac)
        if 0 <= ti + 1 < n_bins:
            out[ti + 1, 0, y, x] += v * frac
    return out


def time_surface_reference(ev, w, h, n_pol, dt, tau, overlap=0.0, include_incomplete=False):
    """tonic's definition: windows of ``dt`` every ``dt - overlap`` from the first event;
    frame i holds exp(-(t_first + (i + 1) dt - t_last) / tau) of each pixel's latest event
    before the window's end (0 where none)."""
    if len(ev) == 0:
        return np.zeros((1, n_pol, h, w))
    t = ev["t"].astype(np.int64)
    stride = dt - overlap
    span = (int(t[-1]) - int(t[0]) - dt) / stride
    n = max(int(math.ceil(span) if include_incomplete else math.floor(span)) + 1, 1)
    out = np.zeros((n, n_pol, h, w))
    last = {}
    j = 0
    for i in range(n):
        end = math.ceil(t[0] + i * stride + dt)
        while j < len(t) and t[j] < end:
            x, y, p = int(ev["x"][j]), int(ev["y"][j]), int(ev["p"][j]) if n_pol > 1 else 0
            if x < w and y < h and p < n_pol:
                last[(p, y, x)] = int(t[j])
            j += 1
        ref = t[0] + (i + 1) * dt
        for (p, y, x), tl in last.items():
            out[i, p, y, x] = math.exp((tl - ref) / tau)
    return out


def frame_reference(ev, w, h, n_pol, time_window, overlap=0):
    """Counts per window of ``time_window`` every ``time_window - overlap`` from the first
    event (complete windows only); an event counts in every window holding it."""
    if len(ev) == 0:
        return np.zeros((1, n_pol, h, w), np.int64)
    t = ev["t"].astype(np.int64)
    stride = time_window - overlap
    n = max(int(math.floor((int(t[-1]) - int(t[0]) - time_window) / stride)) + 1, 1)
    out = np.zeros((n, n_pol, h, w), np.int64)
    for x, y, tt, p in zip(ev["x"].tolist(), ev["y"].tolist(), t.tolist(), ev["p"].tolist()):
        p = p if n_pol > 1 else 0
        if x >= w or y >= h or p >= n_pol:
            continue
        for i in range(n):
            start = int(t[0]) + i * stride
            if start <= tt < start + time_window:
                out[i, p, y, x] += 1
    return out


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed, outside", [(0, 0.05), (1, 0.0)])
def test_voxel_grid_matches_definition(backend, seed, outside):
    w, h = 13, 9
    samples = edge_batch(seed, w, h, long=3000, outside=outside)
    batch = T.EventBatch.from_samples(samples)
    ours = T.ToVoxelGrid((w, h, 2), n_time_bins=5)(batch)
    assert ours.shape == (len(samples), 5, 1, h, w) and ours.dtype == np.float32
    for i, ev in enumerate(samples):
        np.testing.assert_allclose(ours[i], voxel_reference(ev, w, h, 5), rtol=1e-5, atol=1e-5)
    assert not ours[0].any() and not ours[4].any()  # empty samples
    # one event, or events sharing one timestamp: everything in bin 0
    assert ours[1, 0].sum() == pytest.approx(1.0 if samples[1]["p"][0] else -1.0)
    assert ours[2, 1:].sum() == 0
    np.testing.assert_allclose(ours[2, 0].sum(), (2 * samples[2]["p"].astype(int) - 1).sum(), atol=1e-4)


def test_voxel_grid_unsorted_sample(backend):
    """Times out of order put events before the first or past the last bin: dropped, as
    in the definition (numpy takes its general path, numba its checked loop)."""
    rng = np.random.default_rng(5)
    ev = make_sample(rng, 500, 11, 7, 10_000)
    ev["t"] = rng.permutation(ev["t"])
    ours = T.ToVoxelGrid((11, 7, 2), n_time_bins=4)(ev)
    np.testing.assert_allclose(ours, voxel_reference(ev, 11, 7, 4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overlap, incomplete, n_pol", [(0.0, False, 2), (300.0, True, 2), (0.0, True, 1)])
def test_time_surface_matches_definition(backend, overlap, incomplete, n_pol):
    w, h = 13, 9
    samples = edge_batch(3, w, h, long=2500)
    batch = T.EventBatch.from_samples(samples)
    dt, tau = 1000.0, 1500.0
    ours = T.ToTimeSurface((w, h, n_pol), dt=dt, tau=tau, overlap=overlap,
                           include_incomplete=incomplete)(batch)
    assert len(ours) == len(samples)
    for i, ev in enumerate(samples):
        ref = time_surface_reference(ev, w, h, n_pol, dt, tau, overlap, incomplete)
        assert ours[i].shape == ref.shape and ours[i].dtype == np.float32
        np.testing.assert_allclose(ours[i], ref, rtol=2e-5, atol=1e-7)
    # the burst / silence / burst sample decays through the silent frames
    gap = ours[7]
    assert gap.shape[0] >= 40
    assert all((gap[k] > 0).any() for k in range(5, 38))
    active = gap[10] > 0
    np.testing.assert_allclose(gap[11][active], gap[10][active] * math.exp(-dt / tau), rtol=1e-5)


def test_time_surface_huge_tau(backend):
    """tau of ~3 years: surfaces ~1 where a pixel fired (float64 keys stay exact)."""
    samples = edge_batch(6, 13, 9)
    ours = T.ToTimeSurface((13, 9, 2), dt=1000.0, tau=1e14)(T.EventBatch.from_samples(samples))
    for i, ev in enumerate(samples):
        ref = time_surface_reference(ev, 13, 9, 2, 1000.0, 1e14)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-6, atol=0)


def test_time_surface_long_decay_underflows_to_zero(backend):
    """Times far from the frame give exp(...) below float32's range: exactly 0, never NaN."""
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"] = [0, 1, 2_000_000]
    ev["x"] = [0, 1, 2]
    out = T.ToTimeSurface((3, 1, 2), dt=1_000_000, tau=1000.0)(ev)
    assert out.shape == (2, 2, 1, 3) and np.isfinite(out).all()
    assert out[1, 0, 0, 0] == 0.0 and out[1, 0, 0, 1] == 0.0


def test_frames_time_window_match_definition(backend):
    """Uninitialised output: frames of windows without events must still be zero."""
    w, h = 13, 9
    samples = edge_batch(4, w, h, long=4000)
    batch = T.EventBatch.from_samples(samples)
    for n_pol, overlap in ((2, 0), (1, 0), (2, 250), (2, 600)):  # overlaps: 2 and 3 passes (numpy)
        ours = T.ToFrame((w, h, n_pol), time_window=1000, overlap=overlap)(batch)
        for i, ev in enumerate(samples):
            np.testing.assert_array_equal(ours[i], frame_reference(ev, w, h, n_pol, 1000, overlap))
    # groups of frames (numpy) without any event (a long silence)
    ev = make_sample(np.random.default_rng(9), 50, 40, 30, 2_000)
    ev["t"][25:] += 500_000
    ref = frame_reference(ev, 40, 30, 2, 1000)
    for _ in range(3):  # freed garbage of the output's size, which the allocator may hand back
        junk = np.full(ref.size, 0x5555, np.int16)
        del junk
    ours = T.ToFrame((40, 30, 2), time_window=1000)(ev)
    np.testing.assert_array_equal(ours, ref)
    assert ours.shape[0] > 500 and ours[10:500].sum() == 0 and ours.sum() == ref.sum() > 25


def test_backends_agree_on_random_batches():
    if "numba" not in BACKENDS:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(11)
    old = _kernels.get_backend()
    try:
        for trial in range(6):
            w, h = int(rng.integers(2, 50)), int(rng.integers(2, 50))
            sizes = rng.choice([0, 1, 2, 17, 1100, 5000], size=int(rng.integers(1, 7)))
            samples = [make_sample(rng, int(n), w, h, int(rng.integers(1, 10**6)),
                                   t0=int(rng.integers(0, 10**9)), outside=0.02 * (trial % 2))
                       for n in sizes]
            batch = T.EventBatch.from_samples(samples)
            dur = max(int(max((s["t"][-1] - s["t"][0]) if len(s) else 0 for s in samples)), 10)
            trs = [T.ToVoxelGrid((w, h, 2), int(rng.integers(1, 12))),
                   T.ToTimeSurface((w, h, 2), dt=dur / 7, tau=dur / 5, overlap=dur / 30),
                   T.ToFrame((w, h, 2), time_window=dur / 9),
                   T.ToFrame((w, h, 2), time_window=dur / 9, overlap=dur / 20),
                   T.ToFrame((w, h, 2), n_time_bins=5, overlap=0.3),
                   T.ToFrame((w, h, 2), n_time_bins=4),
                   T.ToFrame((w, h, 1), event_count=333, overlap=50, include_incomplete=True),
                   T.ToImage((w, h, 2))]
            res = {}
            for be in ("numba", "numpy"):
                _kernels.set_backend(be)
                res[be] = [tr(batch) for tr in trs]
            for tr, a, b in zip(trs, res["numba"], res["numpy"]):
                pairs = zip(a, b) if isinstance(a, list) else [(a, b)]
                for u, v in pairs:
                    assert u.shape == v.shape, type(tr).__name__
                    if u.dtype == np.float32:
                        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6, err_msg=type(tr).__name__)
                    else:
                        np.testing.assert_array_equal(u, v, err_msg=type(tr).__name__)
    finally:
        _kernels.set_backend(old)


def test_searchsorted_segments_matches_numpy(backend):
    rng = np.random.default_rng(2)
    for _ in range(50):
        counts = rng.integers(0, 80, int(rng.integers(1, 8)))
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        t = np.concatenate([np.sort(rng.integers(0, 50, c)) for c in counts]).astype(np.int64)
        qs = np.sort(rng.integers(0, len(counts), 40)).astype(np.int64)
        q = rng.integers(-5, 60, 40).astype(np.int64)
        ours = _kernels.searchsorted_segments(t, offsets, qs, q)
        ref = [offsets[s] + np.searchsorted(t[offsets[s]:offsets[s + 1]], v, "left") for s, v in zip(qs, q)]
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.skipif(_kernels._numba is None, reason="numba not installed")
def test_vectorised_exp_accuracy():
    """The float32 exp of the numba time surface: ~3e-7 relative, exactly 0 below -88."""
    arg = np.concatenate((-np.linspace(0, 87, 20_001), np.linspace(0, 30, 101),
                          [-88.5, -100.0, -1e6, -3e38, -np.inf, 0.0])).astype(np.float32)
    out = np.empty(len(arg), np.float32)
    scratch = np.empty(len(arg), np.float32)
    _kernels._exp_jit(arg, out, scratch, len(arg))
    ref = np.exp(arg.astype(np.float64))
    ok = arg > -87.0
    np.testing.assert_allclose(out[ok], ref[ok], rtol=5e-7)
    assert out[-1] == 1.0 and (out[-6:-1] == 0.0).all()
    assert np.isfinite(out).all() and (out >= 0).all()


@pytest.mark.parametrize("sorted_times", [True, False])
def test_voxel_grid_large_sensor_matches_definition(backend, sorted_times):
    """A large sensor (the numpy twin's steps cover part of a sample), with events
    outside the sensor, an empty sample, and (unsorted) times before the first or
    past the last bin."""
    w, h = 520, 300
    rng = np.random.default_rng(21)
    samples = [make_sample(rng, 2500, w, h, 80_000, t0=3, outside=0.03),
               make_sample(rng, 0, w, h, 1),
               make_sample(rng, 1, w, h, 1, t0=9),
               make_sample(rng, 1800, w, h, 5_000, t0=10**7)]
    if not sorted_times:
        samples[0]["t"] = rng.permutation(samples[0]["t"])
    batch = T.EventBatch.from_samples(samples)
    ours = T.ToVoxelGrid((w, h, 2), n_time_bins=4)(batch)
    assert ours.shape == (4, 4, 1, h, w)
    for i, ev in enumerate(samples):
        np.testing.assert_allclose(ours[i], voxel_reference(ev, w, h, 4), rtol=1e-5, atol=1e-5)
    assert not ours[1].any()


def test_voxel_grid_samples_across_groups(backend):
    """More events than one group of the numpy twin (32768 + samples straddling the
    boundary): per-group histograms start at the group's first bin."""
    rng = np.random.default_rng(22)
    samples = [make_sample(rng, n, 13, 9, 200_000, t0=int(rng.integers(0, 10**6)))
               for n in (20_000, 25_000, 3, 30_000)]
    ours = T.ToVoxelGrid((13, 9, 2), n_time_bins=7)(T.EventBatch.from_samples(samples))
    for i, ev in enumerate(samples):
        np.testing.assert_allclose(ours[i], voxel_reference(ev, 13, 9, 7), rtol=1e-5, atol=2e-5)


def test_time_surface_frames_longer_than_a_chunk(backend):
    """Frames of more events than a numpy scatter step (65536), several frames per
    group: whole steps inside one frame that is not the group's first, some events
    outside the sensor, a second sample after it."""
    rng = np.random.default_rng(23)
    w, h = 13, 9
    samples = [make_sample(rng, 300_000, w, h, 3_000, t0=77, outside=0.01),
               make_sample(rng, 2_000, w, h, 3_000, t0=10**6)]
    dt, tau = 1000.0, 700.0
    ours = T.ToTimeSurface((w, h, 2), dt=dt, tau=tau)(T.EventBatch.from_samples(samples))
    for i, ev in enumerate(samples):
        ref = time_surface_reference(ev, w, h, 2, dt, tau)
        assert ours[i].shape == ref.shape
        np.testing.assert_allclose(ours[i], ref, rtol=2e-5, atol=1e-7)


def test_voxel_grid_many_packed_groups(backend):
    """Many samples per numpy step, whose last bins' right weights (0) land on the next
    sample: empty, one-event and one-timestamp samples, an unsorted sample (per-event
    path), events off the sensor, one bin (every right weight is 0), and an output
    that starts as NaN (every cell must be written)."""
    w, h = 40, 40
    rng = np.random.default_rng(31)
    samples = []
    for i in range(45):
        kind = i % 9
        if kind == 0:
            ev = make_sample(rng, 0, w, h, 1)
        elif kind == 1:
            ev = make_sample(rng, 1, w, h, 1, t0=int(rng.integers(0, 10**6)))
        elif kind == 2:
            ev = make_sample(rng, 30, w, h, 1, t0=77)
        elif kind == 3:
            ev = make_sample(rng, 400, w, h, 50_000, outside=0.05)
        elif kind == 4:
            ev = make_sample(rng, 300, w, h, 30_000)
            ev["t"] = rng.permutation(ev["t"])
        else:
            ev = make_sample(rng, int(rng.integers(100, 900)), w, h, int(rng.integers(10, 10**6)),
                             t0=int(rng.integers(0, 10**9)))
        samples.append(ev)
    batch = T.EventBatch.from_samples(samples)
    for n_bins in (7, 1):
        ours = T.ToVoxelGrid((w, h, 2), n_time_bins=n_bins)(batch)
        for i, ev in enumerate(samples):
            np.testing.assert_allclose(ours[i], voxel_reference(ev, w, h, n_bins), rtol=1e-5, atol=1e-5)
        raw = np.full(len(samples) * n_bins * h * w, np.nan, np.float32)
        _kernels.voxel_grid(batch.x, batch.y, batch.t, batch.p, batch.offsets, n_bins, raw, w, h)
        np.testing.assert_array_equal(raw.reshape(ours.shape), ours)


def test_voxel_grid_epoch_timestamps(backend):
    """Microsecond epoch times (~1.7e15) and bins longer than float32's exact integers
    (2**24 us): the numpy twin's float32 weights come from exact integer differences."""
    rng = np.random.default_rng(32)
    samples = [make_sample(rng, 3000, 17, 11, 300_000, t0=1_700_000_000_000_000),
               make_sample(rng, 2000, 17, 11, 4_000_000_000, t0=1_700_000_123_456_789)]
    ours = T.ToVoxelGrid((17, 11, 2), n_time_bins=6)(T.EventBatch.from_samples(samples))
    for i, ev in enumerate(samples):
        np.testing.assert_allclose(ours[i], voxel_reference(ev, 17, 11, 6), rtol=1e-5, atol=1e-5)


def test_time_surface_large_frames(backend):
    """Frames of at least 2**15 pixels (the numpy twin builds them one at a time in the
    output, decaying the previous frame): several samples, an empty one, one event,
    events off the sensor, silent windows."""
    w, h = 200, 100
    rng = np.random.default_rng(33)
    gap = make_sample(rng, 600, w, h, 2_000, t0=10**8)
    gap["t"][300:] += 9_000
    samples = [make_sample(rng, 5000, w, h, 8_000, t0=3, outside=0.02),
               make_sample(rng, 0, w, h, 1),
               make_sample(rng, 1, w, h, 1, t0=10**6),
               np.sort(gap, order="t", kind="stable")]
    ours = T.ToTimeSurface((w, h, 2), dt=1000.0, tau=1500.0)(T.EventBatch.from_samples(samples))
    for i, ev in enumerate(samples):
        ref = time_surface_reference(ev, w, h, 2, 1000.0, 1500.0)
        assert ours[i].shape == ref.shape
        np.testing.assert_allclose(ours[i], ref, rtol=2e-5, atol=1e-7)


def test_time_surface_long_sample_among_short(backend):
    """A sample of more frames than the numpy twin's work buffer holds (worked in the
    output by blocks of pixels) between short samples that are packed together."""
    w, h = 13, 9
    rng = np.random.default_rng(34)
    samples = [make_sample(rng, 200, w, h, 5_000, t0=int(rng.integers(0, 10**6))) for _ in range(5)]
    n_frames = _kernels._TS_WORK // (2 * h * w) + 300  # more frames of 50 us than the buffer holds
    samples.insert(2, make_sample(rng, 20_000, w, h, n_frames * 50, t0=11))
    samples.insert(4, make_sample(rng, 0, w, h, 1))
    ours = T.ToTimeSurface((w, h, 2), dt=50.0, tau=400.0)(T.EventBatch.from_samples(samples))
    assert ours[2].shape[0] * 2 * h * w > _kernels._TS_WORK
    for i, ev in enumerate(samples):
        ref = time_surface_reference(ev, w, h, 2, 50.0, 400.0)
        assert ours[i].shape == ref.shape
        np.testing.assert_allclose(ours[i], ref, rtol=2e-5, atol=1e-7)


def test_time_surface_kernel_irregular_references(backend):
    """Frame references that are not evenly spaced (the kernel's contract allows any
    increasing ones): one decay per frame instead of one per group in the numpy twin."""
    rng = np.random.default_rng(35)
    w, h, P = 7, 5, 2
    samples = [make_sample(rng, n, w, h, 20_000, t0=int(rng.integers(0, 10**7))) for n in (400, 0, 250, 600)]
    batch = T.EventBatch.from_samples(samples)
    f_sample, f_end, f_ref = [], [], []
    for s, ev in enumerate(samples):
        t0 = int(ev["t"][0]) if len(ev) else 0
        refs = t0 + np.cumsum(rng.uniform(500, 4000, 8))
        f_sample += [s] * len(refs)
        f_ref += refs.tolist()
        f_end += (batch.offsets[s] + np.searchsorted(ev["t"], np.ceil(refs))).tolist()
    tau = 3000.0
    out = np.empty(len(f_sample) * P * h * w, np.float32)
    _kernels.time_surface(batch.x, batch.y, batch.t, batch.p, batch.offsets, np.array(f_sample),
                          np.array(f_end, np.int64), np.array(f_ref), tau, out, w, h, P)
    out = out.reshape(-1, P, h, w)
    for f, (s, end, ref) in enumerate(zip(f_sample, f_end, f_ref)):
        expect = np.zeros((P, h, w))
        a = batch.offsets[s]
        for j in range(a, end):  # events in time order: the last one per pixel wins
            expect[batch.p[j], batch.y[j], batch.x[j]] = math.exp((int(batch.t[j]) - ref) / tau)
        np.testing.assert_allclose(out[f], expect, rtol=2e-5, atol=1e-7)


def test_searchsorted_segments_many_samples(backend):
    """More samples than the numpy twin searches one by one (all queries bisected
    together): empty samples, queries before, between and after the events, in any order."""
    rng = np.random.default_rng(36)
    counts = rng.integers(0, 60, 300)
    counts[::7] = 0
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    t = np.concatenate([np.sort(rng.integers(0, 1000, c)) + int(rng.integers(-10**9, 10**9))
                        for c in counts]).astype(np.int64)
    qs = rng.integers(0, len(counts), 5000).astype(np.int64)
    first = np.where(counts[qs] > 0, t[np.minimum(offsets[qs], len(t) - 1)], 0)
    q = first + rng.integers(-20, 1020, len(qs))
    ours = _kernels.searchsorted_segments(t, offsets, qs, q)
    ref = [offsets[s] + np.searchsorted(t[offsets[s]:offsets[s + 1]], v, "left") for s, v in zip(qs, q)]
    np.testing.assert_array_equal(ours, ref)
    assert len(offsets) > _kernels._SEARCH_LOOP


@pytest.mark.parametrize("w, h, n_pol", [(13, 9, 2), (34, 34, 1), (300, 200, 2)])
def test_accumulate_windows_matches_definition(backend, w, h, n_pol):
    """Frames of windows with gaps between them, overlapping windows (several numpy
    passes, the later ones adding), empty windows, events off the sensor (x, y or
    polarity), int16 sums that wrap, and both numpy paths: sparse frames (add.at,
    many cells per event) and dense ones (bincount, few cells per event)."""
    rng = np.random.default_rng(w * h)
    n = 60_000
    x = rng.integers(0, w + 2, n).astype(np.uint16)
    y = rng.integers(0, h + 1, n).astype(np.uint16)
    p = rng.integers(0, 3, n).astype(np.uint8)
    x[:40_000] = 1  # 40,000 events at one pixel: the int16 count wraps
    y[:40_000] = 2
    p[:40_000] = 0
    perm = rng.permutation(n)
    x, y, p = x[perm], y[perm], p[perm]
    cases = {
        "gaps": (np.arange(0, n, 700), np.arange(0, n, 700) + 350),
        "tiles": (np.arange(0, n, 30), np.minimum(np.arange(0, n, 30) + 30, n)),
        "few dense": (np.array([0, 20_000, 20_000, 45_000]), np.array([20_000, 20_000, 41_000, n])),
        "whole": (np.array([0]), np.array([n])),
        "overlapping": (np.arange(0, n - 500, 200), np.arange(0, n - 500, 200) + 500),
    }
    for name, (starts, ends) in cases.items():
        starts, ends = starts.astype(np.int64), ends.astype(np.int64)
        slots = np.arange(len(starts), dtype=np.int64)
        out = _kernels.frames_buffer(len(starts) * n_pol * h * w, np.dtype(np.int16))
        _kernels.accumulate_windows(x, y, p, starts, ends, slots, out, w, h, n_pol, zero=True)
        ref = np.zeros((len(starts), n_pol, h, w), np.int64)
        for k, (a, b) in enumerate(zip(starts, ends)):
            xs, ys, ps = x[a:b].astype(np.int64), y[a:b].astype(np.int64), p[a:b].astype(np.int64)
            ps = np.zeros_like(ps) if n_pol == 1 else ps
            ok = (xs < w) & (ys < h) & (ps < n_pol)
            np.add.at(ref[k], (ps[ok], ys[ok], xs[ok]), 1)
        np.testing.assert_array_equal(out.reshape(ref.shape), ref.astype(np.int16), err_msg=name)


@pytest.mark.parametrize("step", [97, 1024])
def test_voxel_grid_numpy_steps_split_bins(monkeypatch, step):
    """The numpy twin's steps ending inside bins, inside a sample's last bin and right
    at sample ends (small steps), over samples of every kind."""
    monkeypatch.setattr(_kernels, "_VOX_STEP", step)
    monkeypatch.setattr(_kernels, "_BACKEND", "numpy")
    rng = np.random.default_rng(step)
    w, h = 11, 7
    samples = [make_sample(rng, int(n), w, h, int(rng.integers(1, 10**5)), t0=int(rng.integers(0, 10**9)))
               for n in (0, 300, 1, 97, 0, 2048, 5, 0)]
    batch = T.EventBatch.from_samples(samples)
    for n_bins in (1, 2, 5):
        raw = np.full(len(samples) * n_bins * h * w, np.nan, np.float32)
        _kernels.voxel_grid(batch.x, batch.y, batch.t, batch.p, batch.offsets, n_bins, raw, w, h)
        ours = raw.reshape(len(samples), n_bins, 1, h, w)
        for i, ev in enumerate(samples):
            np.testing.assert_allclose(ours[i], voxel_reference(ev, w, h, n_bins), rtol=1e-5, atol=1e-5)


def hats_reference(ev, w, h, n_pol, surface, cell, time_window, tau):
    """Per-event loop over Sironi et al. 2018's averaged time surfaces, as tonic defines
    them: earlier events (by position) of the same cell and polarity with a float32
    time at or after ``max(0, t - time_window)`` and within ``surface // 2`` pixels."""
    rho = surface // 2
    gw, gh = -(-w // cell), -(-h // cell)
    out = np.zeros((gw * gh, n_pol, surface, surface))
    count = np.zeros((gw * gh, n_pol))
    seen = {}
    for e in ev:
        x, y, p = int(e["x"]), int(e["y"]), int(e["p"]) if n_pol > 1 else 0
        if x >= w or y >= h or p >= n_pol:
            continue
        key = ((y // cell) * gw + x // cell, p)
        ti = np.float32(e["t"])
        start = max(np.float32(0), ti - np.float32(time_window))
        out[key][rho, rho] += 1
        count[key] += 1
        for xj, yj, tj in seen.get(key, []):
            if tj >= start and abs(xj - x) <= rho and abs(yj - y) <= rho:
                out[key][yj - y + rho, xj - x + rho] += math.exp(-(float(ti) - float(tj)) / tau)
        seen.setdefault(key, []).append((x, y, ti))
    return (out / np.maximum(count, 1)[:, :, None, None]).astype(np.float32)


def test_averaged_time_surface_matches_definition(backend):
    """Several samples (their times restart, so the batch is not time-sorted while
    each sample is: looking back stops at the window), an unsorted sample (every
    earlier event of the group is checked), events off the sensor, an empty sample."""
    rng = np.random.default_rng(41)
    w, h = 23, 17
    samples = [make_sample(rng, 1500, w, h, 40_000, t0=10**6, outside=0.03),
               make_sample(rng, 0, w, h, 1),
               make_sample(rng, 900, w, h, 30_000, t0=5),
               make_sample(rng, 700, w, h, 50_000, t0=10**5)]
    samples[3]["t"] = rng.permutation(samples[3]["t"])
    samples[2]["y"][:50] = h + 1
    batch = T.EventBatch.from_samples(samples)
    tr = T.ToAveragedTimeSurface((w, h, 2), surface_size=5, cell_size=6, time_window=4e3, tau=1.5e3)
    ours = tr(batch)
    for i, ev in enumerate(samples):
        np.testing.assert_allclose(ours[i], hats_reference(ev, w, h, 2, 5, 6, 4e3, 1.5e3),
                                   rtol=2e-5, atol=1e-6)
