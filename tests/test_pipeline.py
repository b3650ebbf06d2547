"""neurodata.stream: partitions, exact epochs, determinism, resume, errors, memory, cache, http."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import tracemalloc

import numpy as np
import pytest
import zarr

import neurodata
import neurodata.events
from neurodata.errors import TransformError
from neurodata.pipeline.partitions import plan_partitions
from neurodata.pipeline.shuffle import make_epoch_plan, positions_after
from neurodata.transforms._kernels import get_backend

from _pipeline_stores import SENSOR, make_store, to_frame

N = 300


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("pipe") / "syn.zarr", n_samples=N)


def _columns_by_zarr(path):
    """Independent read of the store: every column and the sample table straight from zarr."""
    g = zarr.open_group(str(path), mode="r")
    cols = {c: g[c][:] for c in ("x", "y", "t", "p")}
    return cols, g["start"][:], g["count"][:]


def _collect(s):
    return list(s)


# -- partition plan -------------------------------------------------------------
def test_plan_partitions_matches_a_loop():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 700, 500)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    unit = 2048
    # straightforward loop: a new partition when the block of the first event changes
    bounds = [0]
    for i in range(1, len(start)):
        if start[i] // unit != start[i - 1] // unit:
            bounds.append(i)
    bounds.append(len(start))
    assert plan_partitions(start, counts, unit).tolist() == bounds
    capped = plan_partitions(start, counts, unit, max_samples=3)
    sizes = np.diff(capped)
    assert sizes.max() <= 3 and sizes.min() >= 1 and capped[-1] == 500
    assert set(bounds) <= set(capped.tolist())  # only splits, never merges


def test_partitions_follow_store_chunks(store):
    s = neurodata.stream(store, batch_size=32)
    _, start, _ = _columns_by_zarr(store)
    b = s.bounds
    assert b[0] == 0 and b[-1] == N
    # every partition's samples start inside one 4096-event shard of the store
    for k in range(len(b) - 1):
        blocks = np.unique(start[b[k]:b[k + 1]] // 4096)
        assert len(blocks) == 1
    assert len(b) - 1 == len(np.unique(start // 4096))


# -- exact epochs -----------------------------------------------------------------
def test_each_sample_once_and_events_exact(store):
    cols, start, count = _columns_by_zarr(store)
    s = neurodata.stream(store, batch_size=32, seed=1, return_ids=True, num_threads=2)
    batches = _collect(s)
    ids = np.concatenate([b[2] for b in batches])
    assert sorted(ids.tolist()) == list(range(N))
    assert [len(b[2]) for b in batches] == [32] * 9 + [12]
    for data, labels, bids in batches[:3]:
        assert labels.dtype == np.int64 and np.array_equal(labels, bids)  # label i = sample i
        for k, i in enumerate(bids):
            a, c = int(start[i]), int(count[i])
            o0, o1 = int(data.offsets[k]), int(data.offsets[k + 1])
            for col in ("x", "y", "t", "p"):
                assert np.array_equal(getattr(data, col)[o0:o1], cols[col][a:a + c])
            assert data.t[o0] == i * 1000


def test_drop_last_and_no_shuffle(store):
    s = neurodata.stream(store, batch_size=64, shuffle=False, drop_last=True, return_ids=True)
    assert len(s) == 4
    ids = np.concatenate([b[2] for b in s])
    assert ids.tolist() == list(range(256))


def test_same_seed_same_batches_other_epoch_other_order(store):
    def seq(seed, epoch):
        return [b[2].tolist() for b in neurodata.stream(store, batch_size=50, seed=seed,
                                                         epoch=epoch, return_ids=True)]

    a, b = seq(7, 0), seq(7, 0)
    assert a == b
    c, d = seq(7, 1), seq(8, 0)
    assert c != a and d != a
    assert sorted(sum(c, [])) == list(range(N))


def test_iterating_again_advances_the_epoch(store):
    s = neurodata.stream(store, batch_size=50, seed=2, return_ids=True)
    first = [b[2].tolist() for b in s]
    second = [b[2].tolist() for b in s]
    assert s.epoch == 2
    again = [b[2].tolist() for b in neurodata.stream(store, batch_size=50, seed=2, epoch=1,
                                                      return_ids=True)]
    assert second == again and second != first


def test_resume_mid_epoch_gives_exactly_the_rest(store):
    full = [b[2].tolist() for b in neurodata.stream(store, batch_size=20, seed=5, epoch=3,
                                                     return_ids=True)]
    s = neurodata.stream(store, batch_size=20, seed=5, epoch=3, return_ids=True)
    it = iter(s)
    head = [next(it)[2].tolist() for _ in range(6)]
    state = s.state_dict()
    it.close()
    assert state["position"] == 120 and head == full[:6]
    r = neurodata.stream(store, batch_size=20, seed=0, return_ids=True)
    r.load_state_dict(state)
    rest = [b[2].tolist() for b in r]
    assert rest == full[6:]
    bad = neurodata.stream(store, batch_size=21, return_ids=True)
    with pytest.raises(ValueError, match="batch_size"):
        bad.load_state_dict(state)


def test_simulated_ranks_split_the_epoch(store):
    parts = []
    for rank in range(2):
        s = neurodata.stream(store, batch_size=16, seed=4, rank=rank, world_size=2,
                             return_ids=True)
        parts.append(np.concatenate([b[2] for b in s]))
    assert not set(parts[0].tolist()) & set(parts[1].tolist())
    assert sorted(np.concatenate(parts).tolist()) == list(range(N))


@pytest.mark.parametrize("window", [1, 2, 3])
def test_even_ranks_get_equal_batches(tmp_path, window):
    """Uneven partitions over 3 ranks: "pad" and "drop" give every rank the same batch
    count (DDP would hang otherwise); pad covers the epoch and repeats only the rank's
    own first samples, drop keeps every sample at most once; same seed, same batches."""
    path = make_store(tmp_path / "u.zarr", n_samples=500, seed=3, max_events=50)
    kw = dict(batch_size=16, seed=9, world_size=3, return_ids=True, shuffle_window=window,
              max_partition_samples=64)
    none = [[b[2] for b in neurodata.stream(path, rank=r, even="none", **kw)] for r in range(3)]
    lens = [sum(len(b) for b in bs) for bs in none]
    assert sum(lens) == 500 and len(set(lens)) > 1  # the shares really differ
    for mode in ("pad", "drop"):
        got = [[b[2] for b in neurodata.stream(path, rank=r, even=mode, **kw)] for r in range(3)]
        assert len({len(bs) for bs in got}) == 1, mode  # equal batch counts
        target = max(lens) if mode == "pad" else min(lens)
        for r, bs in enumerate(got):
            ids = np.concatenate(bs)
            mine = np.concatenate(none[r])
            assert len(ids) == target
            n = (min(len(mine), target) // 16) * 16  # whole batches before any cut or pad
            np.testing.assert_array_equal(ids[:n], mine[:n])  # same order as without even
            # (a batch is ordered by partition for contiguous reads: compare contents with
            # the plan's order, cut or wrapped)
            order = neurodata.stream(path, rank=r, even="none", **kw).plan().ids
            want = np.concatenate([order, order[:max(0, target - len(order))]])[:target]
            assert sorted(ids.tolist()) == sorted(want.tolist())
            s = neurodata.stream(path, rank=r, even=mode, **kw)
            assert len(s) == len(bs)
            np.testing.assert_array_equal(np.concatenate([b[2] for b in s]), ids)
        if mode == "pad":
            assert set(np.concatenate([np.concatenate(bs) for bs in got]).tolist()) == \
                set(range(500))


def test_even_pad_with_more_consumers_than_partitions(tmp_path):
    path = make_store(tmp_path / "few.zarr", n_samples=20, seed=1, max_events=30)
    kw = dict(batch_size=4, seed=0, world_size=4, return_ids=True, even="pad")
    got = [np.concatenate([b[2] for b in neurodata.stream(path, rank=r, **kw)])
           for r in range(4)]
    assert len({len(g) for g in got}) == 1 and len(got[0]) == 20
    with pytest.raises(ValueError, match="even"):
        neurodata.stream(path, even="sometimes")


def test_epoch_plan_windows_bound_the_shuffle():
    bounds = np.array([0, 10, 25, 40, 41, 60])
    plan = make_epoch_plan(bounds, seed=1, epoch=0, window=2)
    # samples of a window come only from that window's partitions
    span = plan.window_span()
    for w in range(plan.n_windows):
        parts = set(plan.parts[plan.window_parts(w)].tolist())
        ids = plan.ids[span[w]:span[w + 1]]
        owner = np.searchsorted(bounds, ids, "right") - 1
        assert set(owner.tolist()) <= parts
    assert sorted(plan.ids.tolist()) == list(range(60))


def test_positions_after_replays_round_robin():
    # workers with 3 and 1 batches: order w0, w1, w0, w0
    done, nxt = positions_after(np.array([3, 1]), 3)
    assert done.tolist() == [2, 1] and nxt == 0
    done, nxt = positions_after(np.array([3, 1]), 1)
    assert done.tolist() == [1, 0] and nxt == 1
    # 3 workers: w0 w1 w2 w0 w1 w2 w2 w2 w2 -> after 7: [2, 2, 3], w2 next
    done, nxt = positions_after(np.array([2, 2, 5]), 7)
    assert done.tolist() == [2, 2, 3] and nxt == 2
    done, nxt = positions_after(np.array([4, 4, 4]), 5)
    assert done.tolist() == [2, 2, 1] and nxt == 2


# -- transforms ---------------------------------------------------------------------
def test_frames_batches_match_per_sample_transform(store):
    ToFrame = to_frame()
    cols, start, count = _columns_by_zarr(store)
    tf = ToFrame(sensor_size=SENSOR, n_time_bins=4)
    s = neurodata.stream(store, transform=tf, batch_size=40, return_ids=True, time_major=False)
    n = 0
    for frames, labels, ids in s:
        assert frames.shape == (len(ids), 4, 2, 34, 34)
        assert np.array_equal(labels, ids)
        for k in (0, len(ids) - 1):  # the same transform on one sample read straight from zarr
            i = int(ids[k])
            sl = slice(int(start[i]), int(start[i] + count[i]))
            one = np.zeros(int(count[i]), neurodata.events.EVENT_DTYPE)
            for c in ("x", "y", "t", "p"):
                one[c] = cols[c][sl]
            assert np.array_equal(frames[k], tf(one))
        sums = frames.reshape(len(ids), -1).sum(1)
        assert np.all(sums <= count[ids]) and np.all(sums >= count[ids] - 1)
        n += len(ids)
    assert n == N


def test_time_major_numpy(store):
    ToFrame = to_frame()
    a = next(iter(neurodata.stream(store, transform=ToFrame(sensor_size=SENSOR, n_time_bins=3),
                                   batch_size=8, seed=1, time_major=False)))[0]
    b = next(iter(neurodata.stream(store, transform=ToFrame(sensor_size=SENSOR, n_time_bins=3),
                                   batch_size=8, seed=1)))[0]  # time-major is the default
    assert b.shape == (3, 8, 2, 34, 34) and a.flags.c_contiguous
    assert np.array_equal(b, a.swapaxes(0, 1))
    assert np.shares_memory(b, b.base) or b.base is not None  # a view, not a transposing copy


def test_compose_pipeline_runs_batched_and_caches(store, tmp_path):
    from neurodata.transforms import Compose, MergePolarities, ToFrame

    cols, start, count = _columns_by_zarr(store)
    tf = Compose([MergePolarities(), ToFrame(sensor_size=(34, 34, 1), n_time_bins=2)])
    s = neurodata.stream(store, transform=tf, batch_size=64, return_ids=True, cache=True,
                         cache_dir=tmp_path / "cache", time_major=False)
    assert s.cache is not None and s.cache.dir.startswith(str(tmp_path / "cache"))
    frames, _, ids = next(iter(s))
    assert frames.shape == (64, 2, 1, 34, 34)
    i = int(ids[5])
    one = np.zeros(int(count[i]), neurodata.events.EVENT_DTYPE)
    for c in ("x", "y", "t", "p"):
        one[c] = cols[c][int(start[i]):int(start[i] + count[i])]
    assert np.array_equal(frames[5], tf(one))


def test_mixing_transform_soft_labels_follow_the_batch(store):
    from neurodata.transforms import EventMix

    s = neurodata.stream(store, transform=EventMix(n_classes=N, seed=1), batch_size=50,
                         shuffle=False, return_ids=True)
    _, labels, ids = next(iter(s))
    assert labels.shape == (50, N) and labels.dtype.kind == "f"  # the transform's labels
    assert np.allclose(labels.sum(1), 1.0)
    # a sample mixes its own class (label i = sample i) with one partner of its partition
    rows, classes = np.nonzero(labels)
    assert np.bincount(rows, minlength=50).max() <= 2
    assert ids.tolist() == list(range(50))
    part = lambda i: np.searchsorted(s.bounds, i, "right") - 1  # noqa: E731
    assert np.array_equal(part(classes), part(ids[rows]))
    assert np.all((labels[np.arange(50), ids] > 0) | (labels.max(1) == 1.0))


def test_per_sample_callable_error_names_sample_and_transform(store):
    def explode_on_42(events):
        if events["t"][0] == 42 * 1000:
            raise ValueError("cannot handle this one")
        return np.array([len(events)])

    s = neurodata.stream(store, transform=explode_on_42, batch_size=32, shuffle=False)
    with pytest.raises(TransformError) as err:
        _collect(s)
    msg = str(err.value)
    assert "sample 42 (synthetic#42)" in msg and "explode_on_42" in msg
    assert "ValueError: cannot handle this one" in msg and str(store) in msg
    assert err.value.sample_ids == [42]


class _BatchedFailure:
    """A batch transform that fails when any sample has an event at pixel column 33 with t odd."""

    accepts_batch = True

    def __init__(self, bad_ids):
        self.bad_t0 = {i * 1000 for i in bad_ids}

    def __call__(self, batch):
        first = batch.t[batch.offsets[:-1]]
        if any(int(t) in self.bad_t0 for t in first):
            raise RuntimeError("boom")
        return np.diff(batch.offsets)

    def __repr__(self):
        return "BatchedFailure()"


def test_batch_transform_error_finds_the_samples(store):
    s = neurodata.stream(store, transform=_BatchedFailure([7, 9]), batch_size=32, shuffle=False,
                         scheduler="sync")
    with pytest.raises(TransformError, match=r"BatchedFailure\(\) failed on sample 7 "
                                             r"\(synthetic#7\), sample 9 \(synthetic#9\)"):
        _collect(s)


def test_per_sample_callable_results_are_stacked(store):
    _, _, count = _columns_by_zarr(store)
    s = neurodata.stream(store, transform=lambda ev: np.array([len(ev), ev["t"][0]]),
                         batch_size=64, return_ids=True, time_major=False)
    for out, _, ids in s:
        assert out.shape == (len(ids), 2)
        assert out[:, 0].tolist() == count[ids].tolist()
        assert out[:, 1].tolist() == (ids * 1000).tolist()


# -- memory bound ----------------------------------------------------------------------
def test_memory_stays_bounded_by_prefetch(tmp_path):
    ToFrame = to_frame()
    path = make_store(tmp_path / "big.zarr", n_samples=1200, max_events=60, chunk=1024,
                      shard=2048)
    tf = ToFrame(sensor_size=SENSOR, n_time_bins=8, dtype="int16")
    frame_bytes = 8 * 2 * 34 * 34 * 2
    s = neurodata.stream(path, transform=tf, batch_size=32, prefetch=2, shuffle_window=1,
                         num_threads=2)
    sizes = np.diff(s.bounds)
    total = 1200 * frame_bytes
    part = int(sizes.max()) * frame_bytes
    assert len(sizes) >= 15
    for _ in s:
        pass  # warm up: numba compiles ToFrame's kernel and the threaded path imports its
        # modules once (their memory is not the stream's)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    n = 0
    for frames, _ in s:
        n += frames.shape[1]  # time-major [T, B, ...]
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert n == 1200
    # queue (prefetch) + group in flight (threads) + window + batch copies
    # the transform's own scratch: per thread, the numpy ToFrame's int64 histogram of one
    # group of frames (2**18 cells, see _accumulate_disjoint_np); numba writes in place
    scratch = 2 * (1 << 18) * 8 if get_backend() == "numpy" else 0
    bound = (2 + 2 + 1 + 1) * part + 4 * 32 * frame_bytes + scratch
    assert peak < bound, (peak, bound, total)
    assert peak - scratch < total / 3


# -- cache ---------------------------------------------------------------------------------
def test_cache_reuses_and_invalidates_on_parameter_change(tmp_path):
    ToFrame = to_frame()
    path = make_store(tmp_path / "c.zarr", n_samples=120)
    calls = []

    class CountingToFrame(ToFrame):
        def _apply(self, batch, rng):
            calls.append(len(batch))
            return super()._apply(batch, rng)

    def run(n_bins):
        s = neurodata.stream(path, transform=CountingToFrame(sensor_size=SENSOR, n_time_bins=n_bins),
                             batch_size=30, cache=True, return_ids=True, seed=1,
                             time_major=False)
        return s, [(f.copy(), i) for f, _, i in s]

    s1, first = run(4)
    assert sum(calls) == 120
    cache_dir = str(path) + ".cache"
    assert os.path.isdir(os.path.join(cache_dir, s1.cache.key))
    n_files = len([f for f in os.listdir(os.path.join(cache_dir, s1.cache.key))
                   if f.endswith(".labels.npy")])
    assert n_files == len(s1.bounds) - 1
    s2, second = run(4)
    assert sum(calls) == 120  # all partitions served from the cache
    assert s2.cache.key == s1.cache.key
    for (a, ia), (b, ib) in zip(first, second):
        assert np.array_equal(ia, ib) and np.array_equal(a, b)
    s3, third = run(2)  # parameter changed: new key, recomputed, new shape
    assert s3.cache.key != s1.cache.key and sum(calls) == 240
    assert third[0][0].shape[1] == 2
    for (a, ia), (c, ic) in zip(first, third):
        assert np.array_equal(a.sum(1), c.sum(1))


def test_cache_key_changes_when_store_is_rewritten(tmp_path):
    ToFrame = to_frame()
    path = make_store(tmp_path / "r.zarr", n_samples=50, seed=1)
    tf = ToFrame(sensor_size=SENSOR, n_time_bins=2)
    k1 = neurodata.stream(path, transform=tf, cache=True).cache.key
    shutil.rmtree(path)
    make_store(path, n_samples=50, seed=2)
    k2 = neurodata.stream(path, transform=tf, cache=True).cache.key
    assert k1 != k2


def test_random_transform_is_not_cached(store):
    class Noisy:
        deterministic = False

        def params(self):
            return {}

        def __call__(self, ev):
            return np.array([len(ev)])

    with pytest.warns(UserWarning, match="not cacheable"):
        s = neurodata.stream(store, transform=Noisy(), cache=True)
    assert s.cache is None


# -- remote stores ------------------------------------------------------------------------
class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP range requests (zarr reads shard indexes and chunks by range)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        a, _, b = rng.removeprefix("bytes=").partition("-")
        if a == "":  # suffix: the last b bytes
            start, end = max(0, size - int(b)), size - 1
        else:
            start, end = int(a), min(size - 1, int(b)) if b else size - 1
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)


@pytest.fixture
def http_root(store):
    handler = functools.partial(_RangeHandler, directory=str(store.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_stream_over_http_matches_local(store, http_root):
    pytest.importorskip("aiohttp")  # fsspec's HTTP filesystem (in the test extra)
    url = f"{http_root}/{store.name}"
    remote = neurodata.stream(url, batch_size=64, seed=3, return_ids=True)
    local = neurodata.stream(store, batch_size=64, seed=3, return_ids=True)
    assert np.array_equal(remote.bounds, local.bounds)
    n = 0
    for (rd, rl, ri), (ld, ll, li) in zip(remote, local):
        assert np.array_equal(ri, li) and np.array_equal(rl, ll)
        assert np.array_equal(rd.t, ld.t) and np.array_equal(rd.x, ld.x)
        n += len(ri)
    assert n == N
    with pytest.warns(UserWarning, match="cache_dir"):
        s = neurodata.stream(url, transform=to_frame()(sensor_size=SENSOR, n_time_bins=2),
                             cache=True)
    assert s.cache is None


def test_opened_dataset_and_bad_paths(store, tmp_path):
    ds = neurodata.open(store)
    ids = np.concatenate([b[2] for b in neurodata.stream(ds, batch_size=100, return_ids=True)])
    assert sorted(ids.tolist()) == list(range(N))
    with pytest.raises(neurodata.NeurodataError, match="nowhere.zarr"):
        neurodata.stream(tmp_path / "nowhere.zarr")
    with pytest.raises(ValueError, match="as_"):
        neurodata.stream(store, as_="jax")


# -- real data ----------------------------------------------------------------------------
def test_real_nmnist_sample_streams_to_frames(real, tmp_path):
    tonic = pytest.importorskip("tonic")
    src = real("events/sample_nmnist.bin")
    raw = np.frombuffer(src.read_bytes(), np.uint8).reshape(-1, 5).astype(np.int64)
    # independent decoding of the 40-bit ATIS records: x, y, p|t[22:16], t[15:8], t[7:0]
    ev = np.zeros(len(raw), [("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    ev["x"], ev["y"], ev["p"] = raw[:, 0], raw[:, 1], raw[:, 2] >> 7
    ev["t"] = ((raw[:, 2] & 127) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    expected = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=16)(ev)
    assert len(raw) == 4325 and expected.sum() == 4324  # the reference drops the last event too
    out = neurodata.convert(src, tmp_path / "nmnist.zarr")
    ToFrame = to_frame()
    batches = list(neurodata.stream(out, transform=ToFrame(sensor_size=(34, 34, 2), n_time_bins=16),
                                    batch_size=4, as_="torch"))
    assert len(batches) == 1
    frames, labels = batches[0]
    assert tuple(frames.shape) == (16, 1, 2, 34, 34)  # time-major
    assert np.array_equal(frames[:, 0].numpy(), expected)
    assert labels.dtype.is_floating_point is False and labels.tolist() == [-1]


def test_random_transforms_same_seed_same_batches_whatever_the_threads(store):
    """Random transforms are seeded per (stream seed, epoch, partition): thread scheduling
    and the number of threads do not change the batches."""
    from neurodata.transforms import Compose, DropEvent, TimeJitter, ToFrame

    def run(threads, seed=5, epoch=0):
        tf = Compose([DropEvent(p=0.3, seed=1), TimeJitter(std=100.0, seed=2),
                      ToFrame(sensor_size=SENSOR, n_time_bins=2)])
        s = neurodata.stream(store, transform=tf, batch_size=50, seed=seed, epoch=epoch,
                             num_threads=threads, return_ids=True)
        return [(np.asarray(f).copy(), i) for f, _, i in s]

    a, b, c = run(1), run(2), run(2)
    assert len(a) == len(b) == len(c)
    for (fa, ia), (fb, ib), (fc, ic) in zip(a, b, c):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(fb, fc)
    other = run(2, epoch=1)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, other))
