"""Invariants of neurodata.transforms, checked with hypothesis on random event samples."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurodata.transforms as T
from neurodata.events import EVENT_DTYPE
from neurodata.transforms import _kernels

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def samples(draw, max_events=300, min_events=0):
    """A time-sorted sample on a random sensor: (events, sensor_size)."""
    w = draw(st.integers(1, 40))
    h = draw(st.integers(1, 40))
    n = draw(st.integers(min_events, max_events))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, w, n)
    ev["y"] = rng.integers(0, h, n)
    ev["t"] = np.sort(rng.integers(0, draw(st.integers(1, 200_000)), n)) + draw(st.integers(0, 10**9))
    ev["p"] = rng.integers(0, 2, n)
    return ev, (w, h, 2)


@st.composite
def batches(draw):
    w = draw(st.integers(2, 30))
    h = draw(st.integers(2, 30))
    k = draw(st.integers(1, 6))
    items = [draw(samples()) for _ in range(k)]
    evs = []
    for ev, (sw, sh, _) in items:
        ev = ev.copy()
        ev["x"] %= w
        ev["y"] %= h
        evs.append(ev)
    return evs, (w, h, 2)


def same_events(a, b):
    assert len(a) == len(b)
    for k in "xytp":
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---------------------------------------------------------------------------
# ToFrame conserves events
# ---------------------------------------------------------------------------
@SETTINGS
@given(samples(), st.integers(1, 50_000))
def test_to_frame_time_window_conserves_events(sample, tw):
    ev, sensor = sample
    frames = T.ToFrame(sensor, time_window=tw, include_incomplete=True)(ev)
    assert frames.ndim == 4 and frames.shape[1:] == (2, sensor[1], sensor[0])
    assert frames.dtype == np.int16
    if len(ev) == 0:
        assert frames.shape[0] == 1 and not frames.any()
        return
    t0 = ev["t"][0]
    k = (ev["t"] - t0) // tw
    n_frames = frames.shape[0]
    # every event of a window is counted once, in its window
    np.testing.assert_array_equal(frames.sum(axis=(1, 2, 3)),
                                  np.bincount(k[k < n_frames], minlength=n_frames))
    assert frames.sum() == int((ev["t"] < t0 + n_frames * tw).sum())


@SETTINGS
@given(samples(), st.integers(1, 9))
def test_to_frame_event_bins_and_image_conserve_events(sample, bins):
    ev, sensor = sample
    frames = T.ToFrame(sensor, n_event_bins=bins)(ev)
    assert frames.shape == (bins, 2, sensor[1], sensor[0])
    assert frames.sum() == bins * (len(ev) // bins)
    img = T.ToImage(sensor)(ev)
    assert img.shape == (2, sensor[1], sensor[0]) and img.sum() == len(ev)
    # counts land at (p, y, x)
    ref = np.zeros_like(img)
    np.add.at(ref, (ev["p"].astype(int), ev["y"].astype(int), ev["x"].astype(int)), 1)
    np.testing.assert_array_equal(img, ref)


@SETTINGS
@given(batches())
def test_batch_equals_per_sample(batch_samples):
    """Deterministic transforms on a packed batch equal the per-sample results."""
    evs, sensor = batch_samples
    batch = T.EventBatch.from_samples(evs)
    for tr in (T.Denoise(3000, sensor_size=sensor), T.RefractoryPeriod(500, sensor_size=sensor),
               T.Decimation(2, sensor_size=sensor), T.CenterCrop(sensor, size=(sensor[0] - 1, 3)),
               T.Downsample(time_factor=0.5, spatial_factor=0.5)):
        out = tr(batch)
        assert len(out) == len(evs)
        for i, ev in enumerate(evs):
            same_events(out.sample(i), tr(ev))
    for tr in (T.ToFrame(sensor, time_window=20_000), T.ToTimeSurface(sensor, dt=30_000, tau=1e4)):
        out = tr(batch)
        assert isinstance(out, list)
        for i, ev in enumerate(evs):
            np.testing.assert_array_equal(out[i], tr(ev))
    for tr in (T.ToFrame(sensor, n_time_bins=4), T.ToVoxelGrid(sensor, 3),
               T.ToAveragedTimeSurface(sensor, surface_size=3, cell_size=5)):
        out = tr(batch)
        assert isinstance(out, np.ndarray) and out.shape[0] == len(evs)
        for i, ev in enumerate(evs):
            np.testing.assert_array_equal(out[i], tr(ev))


@pytest.mark.skipif(_kernels._numba is None, reason="numba not installed")
@SETTINGS
@given(batches())
def test_numpy_fallback_equals_numba(batch_samples):
    evs, sensor = batch_samples
    batch = T.EventBatch.from_samples(evs)
    trs = [T.ToFrame(sensor, time_window=7_000, overlap=1_000), T.ToFrame(sensor, n_time_bins=3),
           T.ToVoxelGrid(sensor, 4), T.ToTimeSurface(sensor, dt=20_000, tau=5e3),
           T.ToAveragedTimeSurface(sensor, surface_size=3, cell_size=4, time_window=2e4, tau=5e3),
           T.Denoise(2_000), T.RefractoryPeriod(300), T.Decimation(3)]
    old = _kernels.get_backend()
    try:
        res = {}
        for be in ("numba", "numpy"):
            _kernels.set_backend(be)
            res[be] = [tr(batch) for tr in trs]
    finally:
        _kernels.set_backend(old)
    # float32 time surfaces summed in a different order by the two backends differ in the
    # last bits (1e-5 relative seen): compare at float32 precision
    for a, b in zip(res["numba"], res["numpy"]):
        if isinstance(a, T.EventBatch):
            np.testing.assert_array_equal(a.offsets, b.offsets)
            np.testing.assert_array_equal(a.t, b.t)
        elif isinstance(a, list):
            for u, v in zip(a, b):
                np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------
@SETTINGS
@given(samples())
def test_flips_are_involutions(sample):
    ev, sensor = sample
    for tr in (T.RandomFlipLR(sensor, p=1.0, seed=0), T.RandomFlipUD(sensor, p=1.0, seed=0),
               T.RandomFlipPolarity(p=1.0, seed=0)):
        once = tr(ev)
        same_events(tr(once), ev)
    rev = T.RandomTimeReversal(p=1.0, seed=0)
    twice = rev(rev(ev))
    if len(ev):
        expected = ev.copy()
        expected["t"] -= ev["t"].min()  # reversal measures time from the last event
        same_events(twice, expected)


@SETTINGS
@given(samples(), st.data())
def test_crops_keep_only_in_range_events(sample, data):
    ev, sensor = sample
    w = data.draw(st.integers(1, sensor[0]))
    h = data.draw(st.integers(1, sensor[1]))
    out = T.CenterCrop(sensor, size=(w, h))(ev)
    ox, oy = (sensor[0] - w) // 2, (sensor[1] - h) // 2
    inside = (ev["x"] >= ox) & (ev["x"] < ox + w) & (ev["y"] >= oy) & (ev["y"] < oy + h)
    assert len(out) == inside.sum()
    np.testing.assert_array_equal(out["x"], ev["x"][inside] - ox)
    np.testing.assert_array_equal(out["y"], ev["y"][inside] - oy)
    rc = T.RandomCrop(sensor, target_size=(w, h), seed=data.draw(st.integers(0, 100)))(ev)
    assert np.all(rc["x"] < w) and np.all(rc["y"] < h)
    assert len(rc) <= len(ev)
    lo = data.draw(st.integers(0, 10**9 + 200_000))
    hi = lo + data.draw(st.integers(0, 100_000))
    ct = T.CropTime(min=lo, max=hi)(ev)
    assert len(ct) == ((ev["t"] >= lo) & (ev["t"] <= hi)).sum()
    assert np.all((ct["t"] >= lo) & (ct["t"] <= hi))


# ---------------------------------------------------------------------------
# randomness
# ---------------------------------------------------------------------------
def _random_transforms(sensor):
    return [
        lambda s: T.RandomFlipLR(sensor, p=0.5, seed=s),
        lambda s: T.RandomFlipUD(sensor, p=0.5, seed=s),
        lambda s: T.RandomFlipPolarity(p=0.5, seed=s),
        lambda s: T.RandomTimeReversal(p=0.5, seed=s),
        lambda s: T.RandomCrop(sensor, target_size=(max(sensor[0] // 2, 1), max(sensor[1] // 2, 1)), seed=s),
        lambda s: T.DropEvent(p=(0.1, 0.6), seed=s),
        lambda s: T.DropByTime(duration_ratio=(0.1, 0.5), seed=s),
        lambda s: T.DropByArea(sensor, area_ratio=0.3, seed=s),
        lambda s: T.TimeJitter(std=500, seed=s, sort_timestamps=True),
        lambda s: T.SpatialJitter(sensor, var_x=2, var_y=1, sigma_xy=0.5, seed=s),
        lambda s: T.TimeSkew(coefficient=(0.8, 1.2), offset=(0, 1000), seed=s),
        lambda s: T.UniformNoise(sensor, n=(5, 50), seed=s),
        lambda s: T.RefractoryPeriod(delta=(100, 5000), seed=s),
    ]


@SETTINGS
@given(batches(), st.integers(0, 2**32 - 1))
def test_seeded_transforms_reproducible_and_inputs_untouched(batch_samples, seed):
    evs, sensor = batch_samples
    batch = T.EventBatch.from_samples(evs)
    cols = [c.copy() for c in (batch.x, batch.y, batch.t, batch.p, batch.offsets)]
    copies = [e.copy() for e in evs]
    for make in _random_transforms(sensor):
        a, b = make(seed)(batch), make(seed)(batch)
        assert not make(seed).deterministic
        for k in ("x", "y", "t", "p", "offsets"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        same_events(make(seed)(evs[0]), make(np.random.default_rng(seed))(evs[0]))
        # samples stay time-sorted (TimeSkew keeps order for positive coefficients)
        for i in range(len(a)):
            assert np.all(np.diff(a.sample(i)["t"]) >= 0) or isinstance(make(0), T.RandomTimeReversal)
        json.dumps(make(seed).params())
    for c, k in zip(cols, ("x", "y", "t", "p", "offsets")):
        np.testing.assert_array_equal(getattr(batch, k), c)
    for e, c in zip(evs, copies):
        same_events(e, c)


@SETTINGS
@given(samples(min_events=1))
def test_deterministic_transforms_never_modify_input(sample):
    ev, sensor = sample
    before = ev.copy()
    trs = [T.ToFrame(sensor, n_time_bins=3), T.ToImage(sensor), T.ToVoxelGrid(sensor, 4),
           T.ToTimeSurface(sensor, dt=10_000, tau=3e3), T.ToSparse(sensor, event_count=10),
           T.ToPointCloud(sensor), T.ToAveragedTimeSurface(sensor, 3, 4),
           T.Denoise(1000), T.RefractoryPeriod(100), T.Decimation(2), T.MergePolarities(),
           T.Downsample(0.5, 0.5), T.CenterCrop(sensor, 1), T.CropTime(0, None),
           T.DropPixel(coordinates=[(0, 0)]), T.DropPixel(hot_pixel_frequency=1.0),
           T.BinSpikes(n_channels=sensor[0], dt=1000, t_start="first")]
    for tr in trs:
        tr(ev)
        assert tr.deterministic
        json.dumps(tr.params())
    same_events(ev, before)


def test_compose_and_params_hashable():
    sensor = (34, 34, 2)
    pipe = T.Compose([T.Denoise(5000), T.CenterCrop(sensor, 32), T.ToFrame((32, 32, 2), n_time_bins=5)])
    assert pipe.deterministic
    p = pipe.params()
    assert p["transforms"][2] == {"name": "ToFrame", "sensor_size": [32, 32, 2], "time_window": None,
                                  "event_count": None, "n_time_bins": 5, "n_event_bins": None,
                                  "overlap": 0.0, "include_incomplete": False, "start_time": None,
                                  "end_time": None, "dtype": "int16"}
    assert not T.Compose([T.DropEvent(0.1, seed=1)]).deterministic
    ev = np.zeros(0, EVENT_DTYPE)
    assert pipe(ev).shape == (5, 2, 32, 32)


def test_event_mix_weights_and_labels():
    rng = np.random.default_rng(0)
    evs = []
    for _ in range(8):
        n = 500
        ev = np.empty(n, EVENT_DTYPE)
        ev["x"], ev["y"] = rng.integers(0, 34, n), rng.integers(0, 34, n)
        ev["t"], ev["p"] = np.sort(rng.integers(0, 10**5, n)), rng.integers(0, 2, n)
        evs.append(ev)
    batch = T.EventBatch.from_samples(evs, labels=np.arange(8))
    out = T.EventMix((34, 34, 2), alpha=1.0, n_classes=10, seed=4)(batch)
    w, partner = out.meta["mix_weight"], out.meta["mix_partner"]
    assert out.labels.shape == (8, 10)
    np.testing.assert_allclose(out.labels.sum(1), 1.0, rtol=1e-6)
    for i in range(8):
        s = out.sample(i)
        assert np.all(np.diff(s["t"]) >= 0)
        own = np.isin(s["t"], evs[i]["t"])  # timestamps identify the source (almost surely)
        if partner[i] != i:
            assert abs(own.mean() - w[i]) < 0.05
    with pytest.raises(TypeError):
        T.EventMix((34, 34, 2), seed=0)(evs[0])


# ---------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------
@SETTINGS
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20), st.integers(0, 1000))
def test_rate_encoder_matches_intensity(values, seed):
    x = np.array(values)
    T_steps = 4000
    spikes = T.RateEncoder(n_steps=T_steps, seed=seed)(x)
    assert spikes.shape == (T_steps, len(x)) and spikes.dtype == np.uint8
    rate = spikes.mean(0)
    tol = 5 * np.sqrt(x * (1 - x) / T_steps) + 4 / T_steps  # 5 sigma, and a few spikes for tiny rates
    assert np.all(np.abs(rate - x) <= tol)
    pois = T.RateEncoder(n_steps=T_steps, gain=2.0, mode="poisson", seed=seed)(x)
    assert np.all(np.abs(pois.mean(0) - 2 * x) <= 5 * np.sqrt(2 * x / T_steps) + 4 / T_steps)
    np.testing.assert_array_equal(spikes, T.RateEncoder(n_steps=T_steps, seed=seed)(x))


@SETTINGS
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_latency_encoder_orders_spikes(values):
    x = np.array(values)
    for method in ("linear", "log"):
        enc = T.LatencyEncoder(n_steps=50, threshold=0.05, method=method)
        s = enc(x)
        assert s.shape == (50, len(x))
        n = s.sum(0)
        fires = x >= 0.05 if method == "linear" else x > 0.05
        np.testing.assert_array_equal(n, fires.astype(int))
        when = np.where(n > 0, s.argmax(0), 99)
        order = np.argsort(-x[fires], kind="stable")
        assert np.all(np.diff(when[fires][order]) >= 0)  # brighter spikes earlier
        if (x == 1).any():
            assert np.all(when[x == 1] == 0)


def test_delta_encoder_counts_threshold_crossings():
    k = np.arange(1001)
    t = k / 1000
    # exact binary steps: +0.125 and -0.0625 per sample
    sig = np.stack([k * 0.125, -k * 0.0625, np.sin(2 * np.pi * 3 * t)], axis=1)
    s = T.DeltaEncoder(threshold=2.0, mode="threshold")(sig)
    assert s.shape == (1001, 2, 3)
    # the reference moves to the signal at each spike: every 16th / 32nd sample
    np.testing.assert_array_equal(np.flatnonzero(s[:, 0, 0]), np.arange(16, 1001, 16))
    assert s[:, 1, 0].sum() == 0 and s[:, 0, 1].sum() == 0
    np.testing.assert_array_equal(np.flatnonzero(s[:, 1, 1]), np.arange(32, 1001, 32))
    s3 = T.DeltaEncoder(threshold=0.1, mode="threshold")(sig[:, 2:])
    on, off = s3[:, 0, 0].sum(), s3[:, 1, 0].sum()
    assert abs(on - off) <= 1 and 100 <= on + off <= 120  # 3 periods: total variation 12
    d = T.DeltaEncoder(threshold=0.1, mode="delta", refractory=4)(sig[:, :1])
    gaps = np.diff(np.flatnonzero(d[:, 0, 0]))
    assert np.all(gaps == 5)  # every step exceeds the threshold, refractory 4 leaves every 5th


def test_repeat_and_bin_spikes():
    x = np.arange(6.0).reshape(2, 3)
    r = T.RepeatEncoder(n_steps=4)(x)
    assert r.shape == (4, 2, 3) and np.all(r == x)
    ev = np.zeros(5, EVENT_DTYPE)
    ev["x"] = [0, 3, 3, 699, 800]
    ev["t"] = [0, 999, 1000, 4500, 10]
    raster = T.BinSpikes(n_channels=700, dt=1000)(ev)
    assert raster.shape == (5, 700)
    assert raster[0, 0] == 1 and raster[0, 3] == 1 and raster[1, 3] == 1 and raster[4, 699] == 1
    assert raster.sum() == 4  # channel 800 is out of range
    batch = T.EventBatch.from_samples([ev, ev[:2]])
    fixed = T.BinSpikes(n_channels=700, dt=1000, n_steps=3)(batch)
    assert fixed.shape == (2, 3, 700) and fixed[0].sum() == 3 and fixed[1].sum() == 2


@SETTINGS
@given(batches(), st.integers(1, 40))
def test_sparse_and_point_cloud_agree_with_dense(batch_samples, count):
    evs, sensor = batch_samples
    batch = T.EventBatch.from_samples(evs)
    dense = T.ToFrame(sensor, event_count=count, include_incomplete=True)(batch)
    sparse = T.ToSparse(sensor, event_count=count, include_incomplete=True)(batch)
    for d, s in zip(dense, sparse):
        assert s.shape == d.shape
        np.testing.assert_array_equal(s.to_dense(), d)
    stacked = T.ToSparse(sensor, n_time_bins=3)(batch)
    np.testing.assert_array_equal(stacked.to_dense(), T.ToFrame(sensor, n_time_bins=3)(batch))
    clouds = T.ToPointCloud(sensor)(batch)
    for c, ev in zip(clouds, evs):
        assert c.shape == (len(ev), 4) and c.dtype == np.float32
        if len(ev):
            assert c.min() >= 0 and c.max() <= 1
            np.testing.assert_allclose(c[:, 0] * max(sensor[0] - 1, 1), ev["x"], atol=1e-3)
            np.testing.assert_array_equal(c[:, 3], ev["p"])


@SETTINGS
@given(samples(min_events=1), st.floats(0.05, 0.9), st.integers(0, 1000))
def test_drops_remove_only_their_region(sample, ratio, seed):
    ev, sensor = sample
    out = T.DropByArea(sensor, area_ratio=ratio, seed=seed)(ev)
    gone = ev[~np.isin(np.arange(len(ev)), _kept_index(ev, out))]
    if len(gone):  # dropped events fit in the box of int(W*r) x int(H*r)
        assert np.ptp(gone["x"]) < int(sensor[0] * ratio) and np.ptp(gone["y"]) < int(sensor[1] * ratio)
    out = T.DropByTime(duration_ratio=ratio, seed=seed)(ev)
    gone = ev[~np.isin(np.arange(len(ev)), _kept_index(ev, out))]
    if len(gone):  # dropped events lie in one interval of ratio * duration
        assert np.ptp(gone["t"]) <= ratio * (ev["t"][-1] - ev["t"][0])
        inside = (ev["t"] >= gone["t"].min()) & (ev["t"] <= gone["t"].max())
        assert inside.sum() == len(gone)


def _kept_index(ev, out):
    """Positions of ``out``'s events in ``ev`` (filters keep order: a greedy subsequence match)."""
    key_in = ev.tobytes()
    rec = ev.dtype.itemsize
    idx, j = [], 0
    for k in range(len(out)):
        target = out[k:k + 1].tobytes()
        while key_in[j * rec:(j + 1) * rec] != target:
            j += 1
        idx.append(j)
        j += 1
    return np.array(idx, np.int64)
