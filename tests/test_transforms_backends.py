"""The numba kernels of the filters and augmentations against their numpy twins and
against plain per-event reference loops written here.

Batches are random with empty and one-event samples mixed in; the numpy twins'
chunked paths (a batch cut into groups of samples, a long time-sorted sample cut
into pieces with a look-back) are forced by shrinking the chunk size.
"""
from __future__ import annotations

import numpy as np
import pytest

import neurodata.transforms as T
from neurodata.events import EVENT_DTYPE
from neurodata.transforms import _kernels as K

BACKENDS = ["numba", "numpy"] if K._numba is not None else ["numpy"]
COLS = ("x", "y", "t", "p", "offsets")


@pytest.fixture
def restore_backend():
    old = K.get_backend()
    yield
    K.set_backend(old)


def random_batch(rng, max_samples=7, max_events=400, sorted_t=True, sensor=None):
    """A packed batch with empty, one-event and longer samples on a random sensor."""
    W, H = sensor or (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
    B = int(rng.integers(1, max_samples + 1))
    counts = rng.integers(0, max_events, B)
    kinds = rng.random(B)
    counts[kinds < 0.2] = 0
    counts[(kinds >= 0.2) & (kinds < 0.35)] = 1
    samples = []
    for c in counts:
        ev = np.empty(c, EVENT_DTYPE)
        ev["x"] = rng.integers(0, W, c)
        ev["y"] = rng.integers(0, H, c)
        t = rng.integers(0, int(rng.integers(1, 50_000)), c) + int(rng.integers(0, 10**7))
        ev["t"] = np.sort(t) if sorted_t else t
        ev["p"] = rng.integers(0, 2, c)
        samples.append(ev)
    return T.EventBatch.from_samples(samples, sensor_size=(W, H, 2)), (W, H, 2)


def run_both(make, batch):
    """``make()`` applied to ``batch`` under each backend (a fresh transform each time)."""
    out = {}
    for be in BACKENDS:
        K.set_backend(be)
        out[be] = make()(batch)
    return out


def assert_same_batch(a, b, msg=""):
    for k in COLS:
        u, v = getattr(a, k), getattr(b, k)
        assert u.dtype == v.dtype, (msg, k)
        np.testing.assert_array_equal(u, v, err_msg=f"{msg} {k}")


def transforms(sensor, seed):
    W, H, _ = sensor
    return {
        "Denoise": lambda: T.Denoise(700, sensor_size=sensor),
        "RefractoryPeriod": lambda: T.RefractoryPeriod(300, sensor_size=sensor),
        "RefractoryPeriod-range": lambda: T.RefractoryPeriod((0, 2000), sensor_size=sensor, seed=seed),
        "Decimation": lambda: T.Decimation(3, sensor_size=sensor),
        "DropEvent": lambda: T.DropEvent(0.3, seed=seed),
        "DropEvent-range": lambda: T.DropEvent((0.0, 1.0), seed=seed),
        "RandomTimeReversal": lambda: T.RandomTimeReversal(p=0.6, seed=seed),
        "RandomTimeReversal-keep-p": lambda: T.RandomTimeReversal(p=1.0, flip_polarities=False, seed=seed),
        "TimeJitter": lambda: T.TimeJitter(2_000, seed=seed),
        "TimeJitter-sorted": lambda: T.TimeJitter(300, sort_timestamps=True, clip_negative=False, seed=seed),
        "SpatialJitter": lambda: T.SpatialJitter(sensor, 3.0, 1.5, 0.7, seed=seed),
        "SpatialJitter-clamp": lambda: T.SpatialJitter(sensor, 9.0, 2.0, 0.0, clip_outliers=False, seed=seed),
        "Downsample": lambda: T.Downsample(0.37, (0.5, 0.77)),
        "Downsample-up": lambda: T.Downsample(time_factor=3.3, spatial_factor=1.7),
        "TimeSkew": lambda: T.TimeSkew(1.13, -1234.5),
        "UniformNoise": lambda: T.UniformNoise(sensor, n=(0, 60), seed=seed),
        "RandomCrop": lambda: T.RandomCrop(sensor, (max(W // 2, 1), max(H // 3, 1)), seed=seed),
        "CenterCrop": lambda: T.CenterCrop(sensor, (max(W - 3, 1), H + 4)),
        "CropTime": lambda: T.CropTime(10**6, 9 * 10**6),
        "DropByTime": lambda: T.DropByTime((0.1, 0.6), seed=seed),
        "DropByArea": lambda: T.DropByArea(sensor, (0.1, 0.6), seed=seed),
        "DropPixel": lambda: T.DropPixel(coordinates=[(0, 0), (1, 2), (3, 1), (99, 99)],
                                         hot_pixel_frequency=400),
    }


@pytest.mark.skipif(K._numba is None, reason="numba not installed")
@pytest.mark.parametrize("sorted_t", [True, False], ids=["sorted", "unsorted"])
def test_backends_agree_on_random_batches(restore_backend, sorted_t):
    rng = np.random.default_rng(20 + sorted_t)
    for trial in range(60):
        batch, sensor = random_batch(rng, sorted_t=sorted_t)
        for name, make in transforms(sensor, trial).items():
            out = run_both(make, batch)
            assert_same_batch(out["numba"], out["numpy"], f"{name} trial {trial}")


@pytest.mark.skipif(K._numba is None, reason="numba not installed")
def test_backends_agree_on_long_batches(restore_backend):
    """Samples of thousands of events: RandomTimeReversal's slice path, DropEvent's bands."""
    rng = np.random.default_rng(5)
    for trial in range(4):
        batch, sensor = random_batch(rng, max_samples=5, max_events=20_000)
        for name in ("DropEvent", "DropEvent-range", "RandomTimeReversal", "Denoise", "UniformNoise"):
            out = run_both(transforms(sensor, trial)[name], batch)
            assert_same_batch(out["numba"], out["numpy"], f"{name} trial {trial}")


# ---------------------------------------------------------------------------
# per-pixel memories against per-event loops
# ---------------------------------------------------------------------------
def ref_denoise(ev_x, ev_y, ev_t, W, H, ft):
    last = {}
    keep = []
    for x, y, t in zip(ev_x.tolist(), ev_y.tolist(), ev_t.tolist()):
        last[(x, y)] = t
        near = [last.get(q) for q in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1))]
        keep.append(any(v is not None and v > t - ft for v in near))
    return np.array(keep, bool)


def ref_refractory(ev_x, ev_y, ev_t, period):
    last = {}
    keep = []
    for x, y, t in zip(ev_x.tolist(), ev_y.tolist(), ev_t.tolist()):
        prev = last.get((x, y))
        keep.append(prev is None or t - prev > period)
        last[(x, y)] = t
    return np.array(keep, bool)


def ref_decimate(ev_x, ev_y, n):
    seen = {}
    keep = []
    for x, y in zip(ev_x.tolist(), ev_y.tolist()):
        seen[(x, y)] = seen.get((x, y), 0) + 1
        keep.append(seen[(x, y)] % n == 0)
    return np.array(keep, bool)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", [5, 64, 1 << 16])
def test_pixel_memories_match_per_event_loops(restore_backend, monkeypatch, backend, chunk):
    """Denoise / RefractoryPeriod / Decimation equal a dict-per-pixel loop, sample by sample;
    small chunks force the numpy twin's chunked and look-back paths."""
    K.set_backend(backend)
    monkeypatch.setattr(K, "_CHUNK_EVENTS", chunk)
    rng = np.random.default_rng(chunk)
    for trial in range(12):
        long = trial % 2 == 0
        batch, (W, H, _) = random_batch(rng, max_samples=3 if long else 7, max_events=1500 if long else 120,
                                        sorted_t=trial % 3 != 2)
        period = rng.integers(0, 3000, len(batch))
        keep_d = K.denoise(batch.x, batch.y, batch.t, batch.offsets, W, H, 1500)
        keep_r = K.refractory(batch.x, batch.y, batch.t, batch.offsets, W, H, period)
        keep_n = K.decimate(batch.x, batch.y, batch.offsets, W, H, 3)
        for s in range(len(batch)):
            a, b = batch.offsets[s], batch.offsets[s + 1]
            x, y, t = batch.x[a:b], batch.y[a:b], batch.t[a:b]
            np.testing.assert_array_equal(keep_d[a:b], ref_denoise(x, y, t, W, H, 1500))
            np.testing.assert_array_equal(keep_r[a:b], ref_refractory(x, y, t, period[s]))
            np.testing.assert_array_equal(keep_n[a:b], ref_decimate(x, y, 3))


def test_denoise_on_real_nmnist_same_in_both_backends(real, restore_backend):
    from neurodata.loaders import read_events

    ev = read_events(real("events/sample_nmnist.bin")).events
    kept = {}
    for be in BACKENDS:
        K.set_backend(be)
        kept[be] = T.Denoise(5_000, sensor_size=(34, 34, 2))(ev)
    x, y, t = ev["x"], ev["y"], ev["t"]
    ref = ref_denoise(x, y, t, 34, 34, 5_000)
    for be in BACKENDS:
        np.testing.assert_array_equal(kept[be]["t"], t[ref])
        np.testing.assert_array_equal(kept[be]["x"], x[ref])


# ---------------------------------------------------------------------------
# DropEvent: the smallest keys, exactly round(p * n), uniformly
# ---------------------------------------------------------------------------
def ref_drop(key, offsets, n_drop):
    keep = np.ones(len(key), bool)
    for s in range(len(offsets) - 1):
        a, b = offsets[s], offsets[s + 1]
        k = min(max(int(n_drop[s]), 0), b - a)
        keep[a + np.argsort(key[a:b], kind="stable")[:k]] = False
    return keep


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_exact_drops_the_smallest_keys(restore_backend, backend):
    """Random keys, keys with many ties, and sorted keys (every band misses)."""
    K.set_backend(backend)
    rng = np.random.default_rng(3)
    for trial in range(150):
        B = int(rng.integers(1, 8))
        counts = rng.integers(0, 3000 if trial % 4 == 0 else 40, B)
        counts[rng.random(B) < 0.25] = rng.integers(0, 2)
        offsets = np.zeros(B + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        n = int(offsets[-1])
        if trial % 3 == 0:
            key = rng.integers(0, 50, n).astype(np.uint32)
        elif trial % 3 == 1:
            key = np.sort(rng.integers(0, 2**32, n, dtype=np.uint32))
        else:
            key = K.random_keys(rng, n)
        ratio = rng.random(B) if trial % 2 else np.full(B, 0.2)
        n_drop = (ratio * counts + 0.5).astype(np.int64)
        keep = K.drop_exact(key, offsets, n_drop)
        np.testing.assert_array_equal(keep, ref_drop(key, offsets, n_drop))


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_event_is_exact_and_uniform(restore_backend, backend):
    K.set_backend(backend)
    ev = np.zeros(50, EVENT_DTYPE)
    ev["t"] = np.arange(50)
    tr = T.DropEvent(0.2, seed=11)
    dropped = np.zeros(50)
    trials = 3000
    for _ in range(trials):
        out = tr(ev)
        assert len(out) == 40
        dropped[np.setdiff1d(ev["t"], out["t"])] += 1
    freq = dropped / trials  # each position dropped with probability 0.2 (sd 0.0073)
    assert np.all(np.abs(freq - 0.2) < 0.04), freq


def test_random_keys_use_the_generator():
    a = K.random_keys(np.random.default_rng(1), 7)
    b = K.random_keys(np.random.default_rng(1), 7)
    c = K.random_keys(np.random.Generator(np.random.MT19937(1)), 7)
    assert a.dtype == c.dtype == np.uint32 and len(a) == len(c) == 7
    np.testing.assert_array_equal(a, b)
    raw = np.random.default_rng(1).bit_generator.random_raw(4)
    np.testing.assert_array_equal(a, raw.view(np.uint32)[:7])  # both halves of each raw draw


# ---------------------------------------------------------------------------
# per-event arithmetic and merging against plain numpy
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_affine_truncates_like_astype(restore_backend, backend):
    K.set_backend(backend)
    rng = np.random.default_rng(0)
    t = rng.integers(-10**9, 10**12, 100_001)
    x = rng.integers(0, 65535, 100_001).astype(np.uint16)
    for f, o in ((0.001, 0.0), (1.37, -77.5), (-0.3, 5.0)):
        np.testing.assert_array_equal(K.affine(t, f, o, np.int64), (t * f + o).astype(np.int64))
    for f in (0.5, 1 / 3, 1.9):  # 1.9 overflows uint16: wraps as astype does
        np.testing.assert_array_equal(K.affine(x, f, 0, np.uint16), (x * f).astype(np.uint16))


@pytest.mark.parametrize("backend", BACKENDS)
def test_jitter_times_round_float32_noise(restore_backend, backend):
    K.set_backend(backend)
    rng = np.random.default_rng(1)
    t = rng.integers(0, 10**6, 70_000)
    noise = rng.standard_normal(70_000, dtype=np.float32)
    out, negative = K.jitter_times(t, noise, 3e5)
    np.testing.assert_array_equal(out, t + np.rint(noise * np.float32(3e5)).astype(np.int64))
    assert negative == bool((out < 0).any()) and negative
    assert not K.jitter_times(t + 10**7, noise, 3e5)[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_sorted_equals_stable_sort(restore_backend, backend):
    K.set_backend(backend)
    rng = np.random.default_rng(2)
    for trial in range(40):
        batch, _ = random_batch(rng, max_events=300 if trial % 2 else 5000)
        B = len(batch)
        n_new = rng.integers(0, 30, B)
        new_off = np.zeros(B + 1, np.int64)
        np.cumsum(n_new, out=new_off[1:])
        m = int(new_off[-1])
        seg_new = np.repeat(np.arange(B), n_new)
        nt = rng.integers(10**7 - 10, 10**7 + 50_010, m)  # some at the samples' own times
        same = rng.random(m) < 0.3
        if batch.n_events:
            nt[same] = rng.choice(batch.t, int(same.sum()))
        order = np.lexsort((nt, seg_new))
        new = (rng.integers(0, 9, m).astype(np.uint16)[order], rng.integers(0, 9, m).astype(np.uint16)[order],
               nt[order], rng.integers(0, 2, m).astype(np.uint8)[order])
        got = K.merge_sorted((batch.x, batch.y, batch.t, batch.p), batch.offsets, new, new_off)
        # reference: originals first, then new events, stably sorted by (sample, t)
        seg = np.concatenate([K.segment_ids(batch.offsets), seg_new[order]])
        t = np.concatenate([batch.t, new[2]])
        ref_order = np.lexsort((t, seg))
        for g, old, nw in zip(got, (batch.x, batch.y, batch.t, batch.p), new):
            np.testing.assert_array_equal(g, np.concatenate([old, nw])[ref_order])


@pytest.mark.parametrize("backend", BACKENDS)
def test_boxes_intervals_and_pixel_tables(restore_backend, backend):
    K.set_backend(backend)
    rng = np.random.default_rng(4)
    batch, (W, H, _) = random_batch(rng, max_samples=9, sensor=(40, 30))
    B, counts = len(batch), batch.counts
    x0, y0 = rng.integers(0, 20, B), rng.integers(0, 15, B)
    w, h = rng.integers(0, 21, B), rng.integers(0, 16, B)
    inside, dx, dy = K.in_boxes(batch.x, batch.y, batch.offsets, x0, y0, w, h)
    xi, yi = batch.x.astype(int), batch.y.astype(int)
    ex, ey = np.repeat(x0, counts), np.repeat(y0, counts)
    np.testing.assert_array_equal(inside, (xi >= ex) & (xi < ex + np.repeat(w, counts))
                                  & (yi >= ey) & (yi < ey + np.repeat(h, counts)))
    np.testing.assert_array_equal(dx[inside], (xi - ex)[inside])
    np.testing.assert_array_equal(dy[inside], (yi - ey)[inside])
    lo = rng.integers(10**7, 10**7 + 30_000, B)
    hi = lo + rng.integers(-10, 20_000, B)
    np.testing.assert_array_equal(K.in_intervals(batch.t, batch.offsets, lo, hi),
                                  (batch.t >= np.repeat(lo, counts)) & (batch.t <= np.repeat(hi, counts)))
    table = rng.random(W * H) < 0.1
    np.testing.assert_array_equal(K.pixel_lookup(batch.x, batch.y, table, W), table[yi * W + xi])
    limit = rng.uniform(0, 3, B)
    hot = K.hot_pixel_events(batch.x, batch.y, batch.offsets, W, H, limit)
    for s in range(B):
        a, b = batch.offsets[s], batch.offsets[s + 1]
        pix = yi[a:b] * W + xi[a:b]
        n_at = np.bincount(pix, minlength=W * H)
        np.testing.assert_array_equal(hot[a:b], n_at[pix] > limit[s])


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_reversal_reverses_each_picked_sample(restore_backend, backend):
    """Both numpy paths (a gather for many short samples, slices for long ones) and numba."""
    K.set_backend(backend)
    rng = np.random.default_rng(6)
    for max_events in (20, 3000):
        batch, _ = random_batch(rng, max_samples=8, max_events=max_events)
        pick = rng.random(len(batch)) < 0.5
        x, y, t, p = K.reverse_samples(batch.x, batch.y, batch.t, batch.p, batch.offsets, pick, True)
        for s in range(len(batch)):
            a, b = batch.offsets[s], batch.offsets[s + 1]
            if pick[s] and b > a:
                np.testing.assert_array_equal(x[a:b], batch.x[a:b][::-1])
                np.testing.assert_array_equal(t[a:b], batch.t[a:b].max() - batch.t[a:b][::-1])
                np.testing.assert_array_equal(p[a:b], (batch.p[a:b][::-1] == 0).astype(np.uint8))
            else:
                np.testing.assert_array_equal(y[a:b], batch.y[a:b])
                np.testing.assert_array_equal(t[a:b], batch.t[a:b])


@pytest.mark.parametrize("backend", BACKENDS)
def test_crop_time_bounds_compare_like_floats(restore_backend, backend):
    """Fractional, infinite, NaN and out-of-range bounds keep what ``lo <= t <= hi`` keeps."""
    K.set_backend(backend)
    t = np.sort(np.random.default_rng(0).integers(-50, 50, 200))
    zeros16 = np.zeros(200, np.uint16)
    batch = T.EventBatch.from_columns(zeros16, zeros16, t, np.zeros(200, np.uint8), offsets=[0, 77, 77, 200])
    for lo, hi in [(0, None), (None, 10.5), (-3.2, 7.9), (float("nan"), 5), (-np.inf, np.inf),
                   (1e30, None), (None, -1e30), (5, 5)]:
        out = T.CropTime(lo, hi)(batch)
        keep = np.ones(200, bool)
        if lo is not None:
            keep &= t >= lo
        if hi is not None:
            keep &= t <= hi
        np.testing.assert_array_equal(out.t, t[keep])
        np.testing.assert_array_equal(out.offsets, [0, keep[:77].sum(), keep[:77].sum(), keep.sum()])


@pytest.mark.parametrize("block", [1, 7, 1 << 16])
def test_compact_block_by_block(monkeypatch, block):
    """The kept events and new offsets whatever the block size (empty samples, all or none kept)."""
    monkeypatch.setattr(K, "_TAKE_BLOCK", block)
    rng = np.random.default_rng(block)
    for trial in range(30):
        batch, _ = random_batch(rng, max_samples=9, max_events=300)
        keep = rng.random(batch.n_events) < (0.0, 1.0, rng.random())[trial % 3]
        x, y, t, p, offsets = K.compact(batch.x, batch.y, batch.t, batch.p, keep, batch.offsets)
        idx = np.flatnonzero(keep)
        for got, col in zip((x, y, t, p), (batch.x, batch.y, batch.t, batch.p)):
            assert got.dtype == col.dtype
            np.testing.assert_array_equal(got, col[idx])
        np.testing.assert_array_equal(offsets, [int(keep[:o].sum()) for o in batch.offsets])
