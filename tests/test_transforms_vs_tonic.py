"""neurodata.transforms against tonic (the reference) on real recordings and random batches.

Every transform tonic also has is run through both libraries on the same
events and compared exactly (integer outputs) or to float32 precision. Both
kernel backends (numba and the pure-numpy fallback) are checked.

Deliberate differences (tested in the ``test_documented_*`` functions):

- empty input: tonic's ``ToFrame`` returns float64 zeros shaped ``(T, P, W, H)``
  (width and height swapped); neurodata returns ``(T, P, H, W)`` int16 zeros.
- ``tonic.functional.to_voxel_grid_numpy`` rewrites the caller's polarities
  (0 -> -1) in place; neurodata never modifies input.
- tonic's voxel grid cannot take unsigned polarities (writes -1 into them);
  it is fed int64 columns.
- tonic's ``Denoise`` starts its pixel memory at ``filter_time``, so every
  event before the absolute time ``filter_time`` passes; tonic's
  ``RefractoryPeriod`` starts at ``-delta``, so a pixel's first event at
  ``t <= 0`` is dropped. neurodata's memories start empty. The comparisons
  shift timestamps by a constant so that these start-up artefacts vanish.
- tonic's ``ToAveragedTimesurface`` subtracts coordinates in the input's dtype
  (unsigned wrap-around for uint16) and works in float32 time; tonic is fed
  int64 columns here and the comparison uses float32 tolerance.
- tonic's ``ToFrame`` with ``n_time_bins`` uses an integer bin width, so the
  last events of a sample can fall outside every bin; neurodata keeps that
  definition (same output).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

tonic = pytest.importorskip("tonic")
import tonic.functional as TF  # noqa: E402
import tonic.transforms as TT  # noqa: E402

import neurodata.transforms as T  # noqa: E402
from neurodata.events import EVENT_DTYPE  # noqa: E402
from neurodata.transforms import _kernels  # noqa: E402

TONIC_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])

REAL = {
    "nmnist": "events/sample_nmnist.bin",
    "ncars": "events/sample_ncars.dat",
    "evt2": "events/evt2_sample.raw",
    "aedat4": "events/sample.aedat4",
}


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    if request.param == "numba":
        pytest.importorskip("numba")
    old = _kernels.get_backend()
    _kernels.set_backend(request.param)
    yield request.param
    _kernels.set_backend(old)


@functools.lru_cache(maxsize=None)
def _load(path: str):
    from neurodata.loaders import read_events

    rec = read_events(path)
    ev = rec.events
    w, h, _ = rec.infer_sensor_size()
    w = max(w, int(ev["x"].max()) + 1)
    h = max(h, int(ev["y"].max()) + 1)
    return ev, (w, h, 2)


def load_real(real, name):
    path = real(REAL[name])
    try:
        return _load(str(path))
    except Exception as e:  # that loader is not (yet) able to read the file
        pytest.skip(f"neurodata.loaders.read_events cannot read {path.name}: {e}")


def random_samples(seed=0, sizes=(1, 17, 900, 2500, 4000, 333), sensor=(34, 34, 2)):
    """Time-sorted random samples of different lengths (random batches)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        ev = np.empty(n, EVENT_DTYPE)
        ev["x"] = rng.integers(0, sensor[0], n)
        ev["y"] = rng.integers(0, sensor[1], n)
        ev["t"] = np.sort(rng.integers(1, 300_000, n)) + rng.integers(0, 10**6)
        ev["p"] = rng.integers(0, 2, n)
        out.append(ev)
    return out


def tonic_events(ev):
    out = np.empty(len(ev), TONIC_DTYPE)
    for k in "xytp":
        out[k] = ev[k]
    return out


def assert_same_events(ours, theirs):
    assert len(ours) == len(theirs)
    if len(theirs) == 0:  # tonic's Decimation returns a plain empty array
        return
    for k in "xytp":
        np.testing.assert_array_equal(ours[k].astype(np.int64), np.asarray(theirs[k]).astype(np.int64), err_msg=k)


def exact(ours, theirs):
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_array_equal(ours, theirs)


def close(ours, theirs):
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-4)


SHIFT = 10**7  # moves samples past tonic's start-up artefacts (see module docstring)


def shifted(ev):
    out = ev.copy()
    out["t"] += SHIFT
    return out


# (id, ours(sensor), tonic(sensor), kind, event cap (tonic's per-event Python loops, or
#  dense outputs of one frame per few hundred events on 640x480), prepare)
CASES = [
    ("ToFrame-time_window", lambda s: T.ToFrame(s, time_window=10_000),
     lambda s: TT.ToFrame(s, time_window=10_000), exact, None, None),
    ("ToFrame-time_window-overlap-incomplete",
     lambda s: T.ToFrame(s, time_window=10_000, overlap=2_500, include_incomplete=True),
     lambda s: TT.ToFrame(s, time_window=10_000, overlap=2_500, include_incomplete=True), exact, None, None),
    ("ToFrame-event_count-overlap", lambda s: T.ToFrame(s, event_count=500, overlap=100),
     lambda s: TT.ToFrame(s, event_count=500, overlap=100), exact, 20_000, None),
    ("ToFrame-event_count-incomplete", lambda s: T.ToFrame(s, event_count=700, include_incomplete=True),
     lambda s: TT.ToFrame(s, event_count=700, include_incomplete=True), exact, 20_000, None),
    ("ToFrame-n_time_bins", lambda s: T.ToFrame(s, n_time_bins=7),
     lambda s: TT.ToFrame(s, n_time_bins=7), exact, None, None),
    ("ToFrame-n_time_bins-overlap", lambda s: T.ToFrame(s, n_time_bins=5, overlap=0.25),
     lambda s: TT.ToFrame(s, n_time_bins=5, overlap=0.25), exact, None, None),
    ("ToFrame-n_event_bins-overlap", lambda s: T.ToFrame(s, n_event_bins=6, overlap=0.1),
     lambda s: TT.ToFrame(s, n_event_bins=6, overlap=0.1), exact, None, None),
    ("ToImage", lambda s: T.ToImage(s), lambda s: TT.ToImage(s), exact, None, None),
    ("ToVoxelGrid", lambda s: T.ToVoxelGrid(s, n_time_bins=6),
     lambda s: TT.ToVoxelGrid(s, n_time_bins=6), close, None, "tonic_int"),
    ("ToTimeSurface", lambda s: T.ToTimeSurface(s, dt=20_000, tau=30_000),
     lambda s: TT.ToTimesurface(s, dt=20_000, tau=30_000), close, None, None),
    ("ToAveragedTimeSurface", lambda s: T.ToAveragedTimeSurface(s, surface_size=5, cell_size=10,
                                                                 time_window=5e3, tau=2e3),
     lambda s: TT.ToAveragedTimesurface(s, surface_size=5, cell_size=10, time_window=5e3, tau=2e3),
     close, 3000, "tonic_int"),
    ("ToAveragedTimeSurface-lin", lambda s: T.ToAveragedTimeSurface(s, surface_size=3, cell_size=8,
                                                                     time_window=2e4, tau=1e4, decay="lin"),
     lambda s: TT.ToAveragedTimesurface(s, surface_size=3, cell_size=8, time_window=2e4, tau=1e4,
                                        decay="lin"),
     close, 3000, "tonic_int"),
    ("Denoise", lambda s: T.Denoise(filter_time=5_000), lambda s: TT.Denoise(filter_time=5_000),
     assert_same_events, 30_000, "shift"),
    ("RefractoryPeriod", lambda s: T.RefractoryPeriod(delta=2_000),
     lambda s: TT.RefractoryPeriod(delta=2_000), assert_same_events, 30_000, "shift"),
    ("Decimation", lambda s: T.Decimation(n=3), lambda s: TT.Decimation(n=3),
     assert_same_events, 30_000, None),
    ("Downsample", lambda s: T.Downsample(time_factor=0.001, spatial_factor=0.5),
     lambda s: TT.Downsample(time_factor=0.001, spatial_factor=0.5), assert_same_events, None, None),
    ("CenterCrop", lambda s: T.CenterCrop(s, size=(s[0] // 2 + 1, s[1] // 3)),
     lambda s: TT.CenterCrop(s, size=(s[0] // 2 + 1, s[1] // 3)), assert_same_events, None, None),
    ("CropTime", lambda s: T.CropTime(min=0, max=None), lambda s: TT.CropTime(min=0, max=None),
     assert_same_events, None, None),
    ("MergePolarities", lambda s: T.MergePolarities(), lambda s: TT.MergePolarities(),
     assert_same_events, None, None),
    ("RandomFlipLR-p1", lambda s: T.RandomFlipLR(s, p=1.0, seed=0), lambda s: TT.RandomFlipLR(s, p=1.0),
     assert_same_events, None, None),
    ("RandomFlipUD-p1", lambda s: T.RandomFlipUD(s, p=1.0, seed=0), lambda s: TT.RandomFlipUD(s, p=1.0),
     assert_same_events, None, None),
    ("RandomFlipPolarity-p1", lambda s: T.RandomFlipPolarity(p=1.0, seed=0),
     lambda s: TT.RandomFlipPolarity(p=1.0), assert_same_events, None, None),
    ("RandomTimeReversal-p1", lambda s: T.RandomTimeReversal(p=1.0, seed=0),
     lambda s: TT.RandomTimeReversal(p=1.0), assert_same_events, None, None),
    ("TimeSkew", lambda s: T.TimeSkew(coefficient=1.5, offset=123, seed=0),
     lambda s: TT.TimeSkew(coefficient=1.5, offset=123), assert_same_events, None, None),
    ("DropPixel-coordinates", lambda s: T.DropPixel(coordinates=[(1, 2), (5, 5), (10, 20), (17, 9)]),
     lambda s: TT.DropPixel(coordinates=[(1, 2), (5, 5), (10, 20), (17, 9)]), assert_same_events, None, None),
    ("DropPixel-hot", lambda s: T.DropPixel(hot_pixel_frequency=30),
     lambda s: TT.DropPixel(hot_pixel_frequency=30), assert_same_events, 20_000, None),
]


def _prepare(ev, how, cap):
    if cap is not None:
        ev = ev[:cap]
    if how == "shift":
        ev = shifted(ev)
    return ev


@functools.lru_cache(maxsize=None)
def _tonic_result(case_id, dataset_key):
    """tonic's output for one case on one dataset (computed once for both backends)."""
    case = next(c for c in CASES if c[0] == case_id)
    ev, sensor = DATASETS[dataset_key]
    ev = _prepare(ev, case[5], case[4])
    theirs_in = tonic_events(ev) if case[5] == "tonic_int" else ev.copy()
    return case[2](sensor)(theirs_in)


DATASETS: dict = {}


def _compare(case, key):
    cid, ours_f, _, kind, cap, how = case
    ev, sensor = DATASETS[key]
    ev = _prepare(ev, how, cap)
    before = ev.copy()
    ours = ours_f(sensor)(ev)
    assert_same_events(ev, before)  # input untouched
    theirs = _tonic_result(cid, key)
    kind(ours, theirs)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("name", list(REAL))
def test_real_recording(real, name, case, backend):
    ev, sensor = load_real(real, name)
    DATASETS[name] = (ev, sensor)
    _compare(case, name)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_random_batch(case, backend):
    """One vectorised pass over a packed batch equals tonic sample by sample."""
    cid, ours_f, tonic_f, kind, cap, how = case
    sensor = (34, 34, 2)
    samples = [_prepare(s, how, cap) for s in random_samples(seed=7)]
    batch = T.EventBatch.from_samples(samples)
    ours = ours_f(sensor)(batch)
    for i, s in enumerate(samples):
        if cid == "ToVoxelGrid" and len(s) < 2:
            continue  # tonic divides by a zero duration (NaN); neurodata puts the event in bin 0
        theirs = tonic_f(sensor)(tonic_events(s) if how == "tonic_int" else s.copy())
        if isinstance(ours, T.EventBatch):
            mine = ours.sample(i)
        else:
            mine = ours[i]
        kind(mine, theirs)


def test_to_sparse_matches_tonic_sparse_tensor(real):
    pytest.importorskip("torch")
    ev, sensor = load_real(real, "nmnist")
    theirs = TT.ToSparseTensor(sensor, time_window=20_000)(ev.copy()).to_dense().numpy()
    ours = T.ToSparse(sensor, time_window=20_000)(ev)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.to_dense(), theirs)
    # 15 complete 20 ms windows from the first event hold 4304 of the 4325 events
    assert ours.values.sum() == theirs.sum() == 4304


def test_drop_event_count_matches_tonic(real):
    """Random choice differs, but both drop round(p * n) events of each sample."""
    ev, _ = load_real(real, "nmnist")
    ours = T.DropEvent(p=0.3, seed=3)(ev)
    theirs = TT.DropEvent(p=0.3)(ev.copy())
    assert len(ours) == len(theirs) == 4325 - int(0.3 * 4325 + 0.5)
    # kept events are a subsequence of the input
    assert np.isin(ours["t"], ev["t"]).all()


def test_uniform_noise_count_matches_tonic(real):
    ev, sensor = load_real(real, "nmnist")
    ours = T.UniformNoise(sensor, n=500, seed=1)(ev)
    theirs = TT.UniformNoise(sensor, n=500)(ev.copy())
    assert len(ours) == len(theirs) == 4825
    assert np.all(np.diff(ours["t"]) >= 0)
    assert ours["t"].min() >= ev["t"].min() and ours["t"].max() <= ev["t"].max()


def test_random_crop_full_size_is_identity_like_tonic(real):
    ev, sensor = load_real(real, "nmnist")
    ours = T.RandomCrop(sensor, target_size=sensor[:2], seed=0)(ev)
    theirs = TT.RandomCrop(sensor, target_size=sensor[:2])(ev.copy())
    assert_same_events(ours, theirs)


# ---------------------------------------------------------------------------
# documented differences
# ---------------------------------------------------------------------------
def test_documented_empty_frame_shape():
    empty = np.empty(0, EVENT_DTYPE)
    sensor = (40, 30, 2)
    theirs = TT.ToFrame(sensor, n_time_bins=4)(empty)
    assert theirs.shape == (4, 2, 40, 30)  # tonic: (T, P, W, H), float64
    ours = T.ToFrame(sensor, n_time_bins=4)(empty)
    assert ours.shape == (4, 2, 30, 40) and ours.dtype == np.int16 and not ours.any()
    assert T.ToFrame(sensor, time_window=1000)(empty).shape == (1, 2, 30, 40)


def test_documented_voxel_grid_input_mutation(real):
    ev, sensor = load_real(real, "nmnist")
    theirs_in = tonic_events(ev)
    TF.to_voxel_grid_numpy(theirs_in, sensor, 5)
    assert (theirs_in["p"] == -1).sum() == (ev["p"] == 0).sum() == 2180  # tonic rewrote OFF as -1
    before = ev.copy()
    T.ToVoxelGrid(sensor, 5)(ev)
    assert_same_events(ev, before)


def test_documented_denoise_startup(real):
    """Unshifted N-MNIST: tonic passes every event before t = filter_time; neurodata filters them."""
    ev, sensor = load_real(real, "nmnist")
    theirs = TT.Denoise(filter_time=5_000)(ev.copy())
    ours = T.Denoise(filter_time=5_000)(ev)
    early_theirs = int((theirs["t"] < 5_000).sum())
    early_ours = int((ours["t"] < 5_000).sum())
    assert early_theirs == int((ev["t"] < 5_000).sum())  # all of them
    assert early_ours < early_theirs
    late = 5_000  # from t = filter_time on, both decide identically
    np.testing.assert_array_equal(ours["t"][ours["t"] >= late], theirs["t"][theirs["t"] >= late])


def test_batch_of_variable_length_samples_returns_list():
    samples = random_samples(seed=2)
    batch = T.EventBatch.from_samples(samples)
    frames = T.ToFrame((34, 34, 2), time_window=50_000)(batch)
    assert isinstance(frames, list) and len(frames) == len(samples)
    for f, s in zip(frames, samples):
        exact(f, TT.ToFrame((34, 34, 2), time_window=50_000)(s.copy()))
    stacked = T.ToFrame((34, 34, 2), n_event_bins=3)(batch)
    assert stacked.shape == (len(samples), 3, 2, 34, 34)
