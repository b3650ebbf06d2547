"""The events/1 store: writer, reader, time index, atomicity, schema checks."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

import neurodata
from neurodata.errors import NeurodataError, SchemaError
from neurodata.events import EVENT_DTYPE
from neurodata.format.events import EventStoreReader, EventStoreWriter
from neurodata.format.store import atomic_store, provenance


def _samples(n, rng, max_events=5000, sensor=(40, 30)):
    out = []
    for _ in range(n):
        k = int(rng.integers(0, max_events))
        ev = np.empty(k, EVENT_DTYPE)
        ev["x"] = rng.integers(0, sensor[0], k)
        ev["y"] = rng.integers(0, sensor[1], k)
        ev["t"] = 10_000_000 + rng.integers(0, 1_000_000, k)  # unsorted on purpose
        ev["p"] = rng.integers(0, 2, k)
        out.append(ev)
    return out


def _write(path, samples, labels, chunk=1 << 10, shard=1 << 12, **kw):
    with atomic_store(path) as tmp:
        w = EventStoreWriter(tmp, sensor_size=(40, 30, 2), class_names=["a", "b", "c"],
                             chunk=chunk, shard=shard, **kw)
        for i, (ev, lab) in enumerate(zip(samples, labels)):
            w.add(ev, label=lab, source=f"s{i}.bin", split="train" if i % 2 else "test")
        w.close(provenance([], loader="test/1"))
    return path


def test_round_trip_exact_across_shards(tmp_path):
    rng = np.random.default_rng(1)
    samples = _samples(25, rng)
    samples[3] = samples[3][:0]  # an empty sample
    labels = rng.integers(0, 3, len(samples))
    path = _write(tmp_path / "s.zarr", samples, labels)
    ds = neurodata.open(path)
    assert len(ds) == 25
    assert ds.n_events == sum(len(s) for s in samples)
    assert ds.sensor_size == (40, 30, 2)
    assert ds.class_names == ["a", "b", "c"]
    for i, ev in enumerate(samples):
        got, lab = ds[i]
        want = np.sort(ev, order="t", kind="stable")
        want = ev[np.argsort(ev["t"], kind="stable")]
        assert got.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(got, want)
        assert lab == labels[i]
    assert ds[-1][1] == labels[-1]
    with pytest.raises(IndexError):
        ds[25]
    r = ds.reader
    assert list(r.sources()[:2]) == ["s0.bin", "s1.bin"]
    assert list(r.splits()[:2]) == ["test", "train"]
    # many shards were written, not one file per sample
    assert r.cols["t"].shards == (1 << 12,)


def test_time_index_and_window_reads_only_overlapping_chunks(tmp_path):
    # one long recording: 200k events over 200 s, chunks of 4096 events
    n = 200_000
    rng = np.random.default_rng(2)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(5_000_000, 205_000_000, n))
    ev["x"] = rng.integers(0, 40, n)
    ev["y"] = rng.integers(0, 30, n)
    ev["p"] = rng.integers(0, 2, n)
    path = _write(tmp_path / "long.zarr", [ev], [0], chunk=4096, shard=4096 * 8)
    r = EventStoreReader(path)
    assert len(r.chunk_t_min) == -(-n // 4096)
    np.testing.assert_array_equal(r.chunk_t_min, ev["t"][::4096])
    t0, t1 = 100_000_000, 101_000_000
    want = ev[(ev["t"] >= t0) & (ev["t"] < t1)]
    # count the reads of `t` through a store that records every key it serves
    from zarr.storage import LocalStore

    records = []

    class RecordingStore(LocalStore):
        async def get(self, key, prototype=None, byte_range=None):
            records.append(key)
            return await super().get(key, prototype, byte_range)

    g = zarr.open_group(RecordingStore(str(path), read_only=True), mode="r")
    r2 = EventStoreReader.__new__(EventStoreReader)
    r2.__dict__.update(r.__dict__)
    r2.cols = {k: g[k] for k in ("x", "y", "t", "p")}
    records.clear()
    got = r2.window(0, t0, t1)
    np.testing.assert_array_equal(got["t"], want["t"])
    np.testing.assert_array_equal(got["x"], want["x"])
    ds = neurodata.open(path)
    np.testing.assert_array_equal(ds.window(0, t0, t1), want)
    gets = [k for k in records if k.startswith("t/c")]
    # ~1 s of 200 s: the shard index plus one or two chunks, not all 49 chunks
    assert 0 < len(gets) <= 6, gets
    # windows outside the recording are empty
    assert len(ds.window(0, 0, 1000)) == 0
    assert len(ds.window(0, 10**12, 10**12 + 5)) == 0


def test_opens_with_plain_xarray_without_neurodata(tmp_path):
    rng = np.random.default_rng(3)
    path = _write(tmp_path / "x.zarr", _samples(3, rng, 100), [0, 1, 2])
    code = (
        "import sys, xarray as xr\n"
        f"t = xr.open_datatree({str(path)!r}, engine='zarr')\n"
        "assert 'neurodata' not in sys.modules\n"
        "ds = t.to_dataset()\n"
        "print(ds.attrs['neurodata_schema'], ds.sizes['sample'], int(ds['count'].sum()), "
        "ds['t'].attrs['units'], list(ds.attrs['sensor_size']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout.split()
    total = int(EventStoreReader(path).count.sum())
    assert out == ["events/1", "3", str(total), "us", "[40,", "30,", "2]"]


def test_to_xarray_is_lazy_and_matches(tmp_path):
    rng = np.random.default_rng(4)
    samples = _samples(4, rng, 300)
    path = _write(tmp_path / "x.zarr", samples, [0, 1, 2, 0])
    tree = neurodata.open(path).to_xarray()
    ds = tree.to_dataset()
    assert ds["x"].chunks is not None  # dask-backed
    assert int(ds["count"].sum()) == sum(len(s) for s in samples)


def test_provenance_and_attrs(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"12345")
    p = provenance([src], loader="atis_bin/1")
    assert p["n_sources"] == 1
    assert p["sources"][0] == {"name": "a.bin", "size": 5,
                               "sha256": "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5"}
    assert p["converter"].startswith("neurodata ")


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "bad.zarr"
    with pytest.raises(RuntimeError):
        with atomic_store(out) as tmp:
            w = EventStoreWriter(tmp, sensor_size=(4, 4, 2))
            w.add(np.zeros(3, EVENT_DTYPE))
            raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_atomic_and_refused_without_flag(tmp_path):
    rng = np.random.default_rng(5)
    out = _write(tmp_path / "s.zarr", _samples(2, rng, 50), [0, 1])
    with pytest.raises(NeurodataError, match="output exists"):
        _write(out, _samples(2, rng, 50), [0, 1])
    with atomic_store(out, overwrite=True) as tmp:
        w = EventStoreWriter(tmp, sensor_size=(4, 4, 2))
        w.add(np.zeros(7, EVENT_DTYPE), label=2)
        w.close()
    ds = neurodata.open(out)
    assert len(ds) == 1 and ds.n_events == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_schema_errors(tmp_path):
    rng = np.random.default_rng(6)
    path = _write(tmp_path / "s.zarr", _samples(1, rng, 10), [0])
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["neurodata_schema"] = "events/99"
    meta.get("consolidated_metadata", None)
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="newer than this neurodata"):
        neurodata.open(path)
    with pytest.raises(SchemaError):
        neurodata.open(tmp_path / "missing.zarr")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    plain.attrs["x"] = 1
    with pytest.raises(SchemaError, match="not a neurodata store"):
        neurodata.open(tmp_path / "plain.zarr")
