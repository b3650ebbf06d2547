"""Direct shard-file reads of event columns give exactly what zarr gives, or fall back to zarr."""
from __future__ import annotations

import functools
import http.server
import json
import multiprocessing
import os
import pickle
import threading

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from neurodata.events import COLUMNS, EVENT_DTYPE
from neurodata.format import shards
from neurodata.format.events import EventStoreReader, EventStoreWriter
from neurodata.format.shards import ColumnLayout, DirectReader, UnreadableChunk, direct_reader
from neurodata.format.store import atomic_store, finalize_store

CHUNK, SHARD = 1000, 4000


def _samples(rng):
    """Samples of varied sizes; one long stretch of x = p = 0 spans a whole shard of each,
    so zarr stores empty inner chunks (index all-ones) and leaves whole shard files out."""
    out = []
    for k in [0, 1, 2999, 1, 7000, 13_000, 0, 2500, 999, 1001]:
        ev = np.empty(k, EVENT_DTYPE)
        ev["x"] = rng.integers(0, 40, k)
        ev["y"] = rng.integers(0, 30, k)
        ev["t"] = np.sort(rng.integers(0, 10**7, k))
        ev["p"] = rng.integers(0, 2, k)
        out.append(ev)
    zeros = np.zeros(13_999, EVENT_DTYPE)  # events 23001..37000: chunks 24..36, shards 6..8 + a chunk of 9
    zeros["y"] = rng.integers(0, 30, len(zeros))
    zeros["t"] = np.arange(len(zeros)) * 3
    out.insert(6, zeros)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("shards") / "ev.zarr"
    samples = _samples(rng)
    with atomic_store(path) as tmp:
        w = EventStoreWriter(tmp, sensor_size=(40, 30, 2), chunk=CHUNK, shard=SHARD)
        for i, ev in enumerate(samples):
            w.add(ev, label=i % 3)
        w.close()
    return path


def _zarr_range(r, a, b, names=COLUMNS):
    return {n: np.asarray(r.cols[n][a:b]) for n in names}


def _same(got, want):
    assert set(got) == set(want)
    for n in want:
        assert got[n].dtype == want[n].dtype, n
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)


def test_layout_has_empty_chunks_missing_shards_and_a_partial_final_chunk(store):
    r = EventStoreReader(store)
    n = r.n_events
    assert n == 41_500 and n % CHUNK == 500  # final chunk holds 500 of 1000
    assert r._direct_reader() is not None
    # x and p are all zero over events 23001..37000: shards 6, 7, 8 were never written
    for c in ("x", "p"):
        assert sorted(int(f) for f in os.listdir(store / c / "c")) == [0, 1, 2, 3, 4, 5, 9, 10]
    assert sorted(int(f) for f in os.listdir(store / "y" / "c")) == list(range(11))
    # shard 9 (36000..40000): chunk 36 never written, flagged all-ones in the index
    raw = (store / "x" / "c" / "9").read_bytes()
    idx = np.frombuffer(raw[-(16 * 4 + 4):-4], "<u8").reshape(4, 2)
    empty = (idx == np.iinfo(np.uint64).max).all(axis=1)
    assert empty.tolist() == [True, False, False, False]


def test_random_ranges_equal_zarr(store, monkeypatch):
    r = EventStoreReader(store)
    n = r.n_events
    want_all = _zarr_range(r, 0, n)
    rng = np.random.default_rng(5)
    edges = [0, CHUNK, SHARD, 23_001, 24_000, 32_000, 36_000, 37_000, 41_000, n]
    ranges = [(0, n), (0, 0), (n, n), (n - 500, n), (n - 501, n), (35_999, 36_001),
              (SHARD - 1, SHARD + 1), (CHUNK - 3, 3 * SHARD + 7), (22_990, 37_010),
              (24_000, 32_000), (25_000, 25_001), (36_000, 37_000), (2 * SHARD, 3 * SHARD), (5, 5)]
    ranges += [(e - int(d), e + int(u)) for e in edges
               for d, u in rng.integers(0, 2 * CHUNK, (3, 2))]
    a = rng.integers(0, n, 40)
    ranges += list(zip(a.tolist(), (a + rng.integers(0, 3 * SHARD, 40)).tolist()))
    # the direct path answers alone: any zarr read of the columns now fails
    monkeypatch.setattr(zarr.Array, "__getitem__", lambda *a, **k: pytest.fail("zarr was used"))
    for a, b in ranges:
        a, b = max(0, a), max(0, b)
        want = {c: want_all[c][a:b] for c in COLUMNS}
        _same(r.read_range(a, b), want)
    _same(r.read_range(n - 10, n + 1000), {c: want_all[c][n - 10:] for c in COLUMNS})
    _same(r.read_range(0, 1500, ["t", "p"]), {c: want_all[c][:1500] for c in ("t", "p")})
    assert r.read_range(0, n)["x"][23_001:37_000].max() == 0


def test_samples_and_windows_equal_zarr(store, monkeypatch):
    r = EventStoreReader(store)
    want_all = _zarr_range(r, 0, r.n_events)

    def concat(idx):
        return {c: np.concatenate([want_all[c][r.start[i]:r.start[i] + r.count[i]] for i in idx])
                for c in COLUMNS}

    monkeypatch.setattr(zarr.Array, "__getitem__", lambda *a, **k: pytest.fail("zarr was used"))
    rng = np.random.default_rng(8)
    for idx in ([3, 1, 5], [6, 7, 8], [10, 0, 0, 4], [5], [2, 4, 6, 8, 10], rng.permutation(len(r))):
        cols, offsets = r.read_samples(idx)
        _same(cols, concat(idx))
        np.testing.assert_array_equal(np.diff(offsets), r.count[np.asarray(idx)])
    cols, offsets = r.read_samples([0, 6])  # an empty sample first
    assert offsets.tolist() == [0, 0, 13_999] and cols["x"].max() == 0
    # windows: brute-force selection on the full columns
    for i, t0, t1 in [(5, 2_000_000, 6_000_000), (6, 3000, 20_000), (4, 0, 10**7), (3, 0, 1)]:
        s, c = r.start[i], r.count[i]
        t = want_all["t"][s:s + c]
        sel = slice(s + np.searchsorted(t, t0), s + np.searchsorted(t, t1))
        _same(r.window(i, t0, t1), {k: want_all[k][sel] for k in COLUMNS})


def test_direct_reader_on_other_zarr_layouts(tmp_path):
    # index at the start of the shard, lz4, a fill value; and plain unsharded, uncompressed chunks
    root = zarr.open_group(tmp_path / "g.zarr", mode="w")
    a = root.create_array("a", shape=(10_050,), chunks=(1000,), dtype="i8", fill_value=7,
                          shards={"shape": (4000,), "index_location": "start"},
                          compressors=BloscCodec(cname="lz4", shuffle="shuffle"))
    vals = np.arange(10_050, dtype=np.int64) * 3
    vals[4000:6000] = 7  # two empty inner chunks
    a[:] = vals
    b = root.create_array("b", shape=(5_500,), chunks=(1000,), dtype="u2", compressors=None)
    b[:] = np.arange(5_500) % 999
    metas = {"a": a.metadata.to_dict(), "b": b.metadata.to_dict()}
    d = direct_reader(str(tmp_path / "g.zarr"), metas)
    assert d is not None and d.layouts["a"].index_location == "start" and d.layouts["b"].per_shard is None
    got = d.read([0, 3999, 9990], [10, 6001, 10_050], ["a"])["a"]
    np.testing.assert_array_equal(got, np.concatenate([vals[:10], vals[3999:6001], vals[9990:]]))
    np.testing.assert_array_equal(d.read([1500], [5_500], ["b"])["b"], np.asarray(b[1500:]))
    # codecs, grids and byte orders it does not know: no direct reader
    c = root.create_array("c", shape=(100,), chunks=(10,), dtype="i4", compressors=ZstdCodec())
    assert direct_reader(str(tmp_path / "g.zarr"), {"c": c.metadata.to_dict()}) is None
    big = dict(metas["b"], codecs=[{"name": "bytes", "configuration": {"endian": "big"}}])
    with pytest.raises(ValueError):
        ColumnLayout(big, "b")
    with pytest.raises(ValueError):
        ColumnLayout(dict(metas["b"], shape=[10, 10]), "b")


def test_unrecognised_layout_falls_back_to_zarr(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "zstd.zarr"
    samples = _samples(rng)[:4]
    with atomic_store(path) as tmp:
        w = EventStoreWriter(tmp, sensor_size=(40, 30, 2), chunk=CHUNK, shard=SHARD)
        for ev in samples:
            w.add(ev)
        w.close()
        # rewrite t with a codec the direct reader does not decode
        g = zarr.open_group(tmp, mode="a")
        t = np.asarray(g["t"][:])
        attrs = dict(g["t"].attrs)
        del g["t"]
        g.create_array("t", data=t, chunks=(CHUNK,), compressors=ZstdCodec(), dimension_names=["event"],
                       attributes=attrs)
        finalize_store(tmp)
    r = EventStoreReader(path)
    assert r._direct_reader() is None
    want = np.concatenate([ev["t"] for ev in samples])
    np.testing.assert_array_equal(r.read_range(0, r.n_events)["t"], want)
    cols, _ = r.read_samples([3, 0])
    np.testing.assert_array_equal(cols["t"], np.concatenate([samples[3]["t"], samples[0]["t"]]))


def test_corrupt_shard_index_is_left_to_zarr(store, tmp_path):
    import shutil

    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    f = bad / "t" / "c" / "0"
    raw = bytearray(f.read_bytes())
    raw[-12] ^= 0xFF  # inside the index: the crc32c no longer matches
    f.write_bytes(bytes(raw))
    r = EventStoreReader(bad)
    d = r._direct_reader()
    with pytest.raises(UnreadableChunk, match="checksum"):
        d.read([0], [10], ["t"])
    with pytest.raises(Exception) as via_zarr:
        np.asarray(r.cols["t"][0:10])
    with pytest.raises(type(via_zarr.value)):
        r.read_range(0, 10)
    # other shards still read directly, and correctly
    np.testing.assert_array_equal(r.read_range(SHARD, SHARD + 10)["t"],
                                  np.asarray(EventStoreReader(store).read_range(SHARD, SHARD + 10)["t"]))


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=a-b`` and suffix ranges (what zarr asks for)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        a, _, b = rng.removeprefix("bytes=").partition("-")
        start, end = (max(0, size - int(b)), size - 1) if a == "" else \
            (int(a), min(size - 1, int(b)) if b else size - 1)
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)


def test_remote_store_reads_through_zarr(store):
    pytest.importorskip("aiohttp")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(store.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = EventStoreReader(f"http://127.0.0.1:{server.server_address[1]}/{store.name}")
        local = EventStoreReader(store)
        assert remote._direct_reader() is None and local._direct_reader() is not None
        _same(remote.read_range(3990, 17_010), local.read_range(3990, 17_010))
        _same(remote.read_samples([7, 2])[0], local.read_samples([7, 2])[0])
    finally:
        server.shutdown()
        server.server_close()


def test_pickled_reader_rebuilds_its_direct_reader(store):
    r = EventStoreReader(store)
    want = r.read_range(100, 30_000)
    clone = pickle.loads(pickle.dumps(r))
    assert clone._direct_reader() is not None and clone._direct_reader() is not r._direct_reader()
    _same(clone.read_range(100, 30_000), want)


def _child_read(path, q):
    r = EventStoreReader(path)
    q.put(int(r.read_range(0, r.n_events)["t"].sum()))


def test_reads_after_fork_do_not_hang(store):
    """DataLoader workers fork: the decoding threads and locks are made again in the child."""
    r = EventStoreReader(store)
    total = int(r.read_range(0, r.n_events)["t"].sum())  # parent's pool exists now
    assert shards._pool is not None
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child_read, args=(str(store), q)) for _ in range(2)]

    def inherited(q2):  # a reader opened before the fork, used in the child
        q2.put(int(r.read_range(0, r.n_events)["t"].sum()))

    procs.append(ctx.Process(target=inherited, args=(q,)))
    for p in procs:
        p.start()
    got = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert got == [total] * 3


def test_concurrent_readers_share_files_correctly(store):
    r = EventStoreReader(store)
    want = r.read_range(0, r.n_events)
    rng = np.random.default_rng(4)
    jobs = [tuple(sorted(v)) for v in rng.integers(0, r.n_events, (60, 2)).tolist()]
    errors = []

    def work(part):
        for a, b in part:
            got = r.read_range(a, b)
            if not all(np.array_equal(got[c], want[c][a:b]) for c in COLUMNS):
                errors.append((a, b))

    shards.MAX_OPEN_FILES, old = 3, shards.MAX_OPEN_FILES  # force evictions under contention
    try:
        threads = [threading.Thread(target=work, args=(jobs[i::4],)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        shards.MAX_OPEN_FILES = old
    assert errors == []


def test_metadata_parsed_from_the_written_store(store):
    meta = json.loads((store / "t" / "zarr.json").read_text())
    lay = ColumnLayout(meta, "t")
    assert (lay.chunk, lay.per_shard, lay.index_location, lay.index_crc, lay.compressed) == \
        (CHUNK, SHARD // CHUNK, "end", True, True)
    assert lay.dtype == np.dtype("int64") and lay.n == 41_500 and lay.file_key(3) == "t/c/3"
    assert isinstance(DirectReader(str(store), {"t": lay}).read([0], [5], ["t"])["t"], np.ndarray)
