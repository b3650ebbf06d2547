""".npy / .npz event files: the layouts users save, refusal to unpickle, clear errors.

The events written here come from the real N-MNIST sample (read with tonic's
reader, the independent check), saved the ways tonic users save them.
"""
from __future__ import annotations

import numpy as np
import pytest

import neurodata
from neurodata import loaders
from neurodata.conversion import convert
from neurodata.errors import FormatError, NeurodataError, SchemaError
from neurodata.loaders import numpy_events

TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i2")])


@pytest.fixture
def nmnist(real):
    tonic = pytest.importorskip("tonic")
    ev = tonic.io.read_mnist_file(str(real("events/sample_nmnist.bin")), dtype=TONIC_DTYPE)
    assert len(ev) == 4325
    return ev


def _check(rec, ev):
    assert len(rec) == 4325
    np.testing.assert_array_equal(rec.x, ev["x"])
    np.testing.assert_array_equal(rec.y, ev["y"])
    np.testing.assert_array_equal(rec.t, ev["t"])
    np.testing.assert_array_equal(rec.p, ev["p"])
    assert (rec.x[0], rec.y[0], rec.t[0], rec.p[0]) == (7, 15, 654, 1)
    assert (rec.x[-1], rec.y[-1], rec.t[-1], rec.p[-1]) == (21, 14, 311175, 1)
    assert int(rec.p.sum()) == 2145
    assert rec.x.dtype == np.uint16 and rec.t.dtype == np.int64 and rec.p.dtype == np.uint8


def test_npy_structured(tmp_path, nmnist):
    path = tmp_path / "sample.npy"
    np.save(path, nmnist)
    assert loaders.detect(path).name == "numpy_events"
    rec = loaders.read_events(path)
    _check(rec, nmnist)
    assert rec.sensor_size is None and rec.starts is None


def test_npy_plain_n_by_4(tmp_path, nmnist):
    path = tmp_path / "plain.npy"
    np.save(path, np.stack([nmnist[k].astype(np.int64) for k in "xytp"], axis=1))
    _check(numpy_events.read(path), nmnist)


def test_npy_float_t_and_bool_and_signed_polarity(tmp_path, nmnist):
    dt = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<f8"), ("p", "?")])
    ev = np.zeros(len(nmnist), dt)
    for k in "xyt":
        ev[k] = nmnist[k]
    ev["p"] = nmnist["p"] > 0
    path = tmp_path / "f.npy"
    np.save(path, ev)
    _check(numpy_events.read(path), nmnist)
    signed = nmnist.copy()
    signed["p"] = np.where(nmnist["p"] > 0, 1, -1)  # -1/1 polarities
    np.save(path, signed)
    _check(numpy_events.read(path), nmnist)


def test_npz_columns_with_sensor_and_label(tmp_path, nmnist):
    path = tmp_path / "cols.npz"
    np.savez_compressed(path, x=nmnist["x"], y=nmnist["y"], t=nmnist["t"], p=nmnist["p"],
                        sensor_size=np.array([34, 34, 2]), label=np.int64(7))
    assert loaders.detect(path).name == "numpy_events"
    rec = numpy_events.read(path)
    _check(rec, nmnist)
    assert rec.sensor_size == (34, 34, 2)
    assert rec.labels.tolist() == [7] and rec.counts.tolist() == [4325]


def test_npz_one_structured_array(tmp_path, nmnist):
    path = tmp_path / "one.npz"
    np.savez(path, events=nmnist, sensor_size=np.array([34, 34]))
    rec = numpy_events.read(path)
    _check(rec, nmnist)
    assert rec.sensor_size == (34, 34, 2)


def test_store_round_trip(tmp_path, nmnist):
    path = tmp_path / "cols.npz"
    np.savez(path, x=nmnist["x"], y=nmnist["y"], t=nmnist["t"], p=nmnist["p"],
             sensor_size=np.array([34, 34, 2]), label=np.int64(3))
    ds = neurodata.open(convert(path, tmp_path / "n.zarr"))
    events, label = ds[0]
    assert label == 3 and len(ds) == 1
    assert tuple(ds.sensor_size) == (34, 34, 2)
    for k in "xytp":
        np.testing.assert_array_equal(events[k].astype(np.int64), nmnist[k].astype(np.int64))


def test_refuses_pickles(tmp_path):
    obj = np.array([{"x": 1}, None], dtype=object)
    path = tmp_path / "obj.npy"
    np.save(path, obj, allow_pickle=True)
    with pytest.raises(FormatError, match="obj.npy: holds a pickled object array"):
        numpy_events.read(path)
    zpath = tmp_path / "obj.npz"
    np.savez(zpath, x=np.arange(3), y=np.arange(3), t=obj[:1].repeat(3), p=np.arange(3))
    with pytest.raises(FormatError, match="obj.npz: holds a pickled object array"):
        numpy_events.read(zpath)


@pytest.mark.parametrize("make, message", [
    (lambda: np.zeros(3, [("x", "f4"), ("y", "u2"), ("t", "i8"), ("p", "u1")]),
     "x must be integer pixel indices, got dtype float32"),
    (lambda: np.array([(-1, 0, 0, 1)], [("x", "i2"), ("y", "i2"), ("t", "i8"), ("p", "i1")]),
     r"x has negative values \(min -1\)"),
    (lambda: np.zeros(3, [("y", "u2"), ("t", "i8"), ("p", "u1")]),
     r"lacks field\(s\) \['x'\]"),
    (lambda: np.array([(1, 2, 0.5, 1)], [("x", "u2"), ("y", "u2"), ("t", "f8"), ("p", "u1")]),
     "t has fractional values"),
    (lambda: np.zeros((5, 3), np.int64), r"shape \(N, 4\)"),
    (lambda: np.zeros((5, 4), np.float32), "must be integer"),
    (lambda: np.array([(70000, 0, 0, 1)], [("x", "i4"), ("y", "i2"), ("t", "i8"), ("p", "i1")]),
     "x exceeds 65535"),
])
def test_bad_arrays(tmp_path, make, message):
    path = tmp_path / "bad.npy"
    np.save(path, make())
    with pytest.raises(SchemaError, match=message):
        numpy_events.read(path)


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty.npy: empty file"):
        numpy_events.read(empty)
    cut = tmp_path / "cut.npy"
    np.save(cut, np.arange(1000, dtype=np.int64).reshape(250, 4))
    cut.write_bytes(cut.read_bytes()[:-10])
    with pytest.raises(NeurodataError, match="cut.npy"):
        numpy_events.read(cut)
    wrong = tmp_path / "wrong.npz"
    wrong.write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(NeurodataError, match="wrong.npz"):
        numpy_events.read(wrong)
    lengths = tmp_path / "len.npz"
    np.savez(lengths, x=np.arange(3), y=np.arange(3), t=np.arange(4), p=np.arange(3))
    with pytest.raises(SchemaError, match="differ in length"):
        numpy_events.read(lengths)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3), b=np.arange(3))
    with pytest.raises(SchemaError, match="other.npz: expected one structured events array"):
        numpy_events.read(other)
    not_npy = tmp_path / "text.npy"
    not_npy.write_text("hello")
    assert not numpy_events.sniff(not_npy, not_npy.read_bytes())
