"""HDF5 spike sets (SHD/SSC layout) and MATLAB .mat event samples (ST-MNIST, ASL-DVS).

The ST-MNIST figures were computed once from the real sample with
``scipy.io.loadmat`` and a plain per-column loop (the reading tonic's STMNIST
reader does, with rounding instead of truncation) and are written literally.
No real SHD file is small enough to ship: the HDF5 files are written here with
h5py in the layout the SHD paper and web page document (vlen datasets), and
checked against a plain per-sample h5py reading.
"""
from __future__ import annotations

import numpy as np
import pytest

from neurodata import loaders
from neurodata.conversion import convert
from neurodata.dataset import open as open_store
from neurodata.errors import CorruptFileError, FormatError, NeurodataError
from neurodata.loaders import hdf5_spikes, mat_events

h5py = pytest.importorskip("h5py")
scipy_io = pytest.importorskip("scipy.io")

KEYS = [f"{lang}-{d}".encode() for lang in ("english", "german")
        for d in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")]


def write_shd(path, n=12, seed=0, channels=700, empty_sample=3):
    """An SHD-layout file: vlen float32 times (s), vlen uint16 units, labels, extra/*."""
    rng = np.random.default_rng(seed)
    times, units = [], []
    for i in range(n):
        k = 0 if i == empty_sample else int(rng.integers(20, 300))
        times.append(np.sort(rng.uniform(0, 1.2, k)).astype(np.float32))
        units.append(rng.integers(0, channels, k).astype(np.uint16))
    if n > 1:  # make the largest unit present so max + 1 == channels
        units[1][0] = channels - 1
    labels = rng.integers(0, 20, n).astype(np.uint16)
    speaker = rng.integers(0, 12, n).astype(np.uint16)
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        dt = g.create_dataset("times", (n,), dtype=h5py.vlen_dtype(np.float32))
        du = g.create_dataset("units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            dt[i] = times[i]
            du[i] = units[i]
        f.create_dataset("labels", data=labels)
        e = f.create_group("extra")
        e.create_dataset("keys", data=np.array(KEYS))
        e.create_dataset("speaker", data=speaker)
        m = e.create_group("meta_info")
        m.create_dataset("gender", data=np.array([b"female", b"male"] * 6))
        m.create_dataset("age", data=np.arange(20, 32, dtype=np.uint8))
    return path


def plain_read_shd(path):
    """Per-sample reading with h5py, as a user would write it."""
    out = []
    with h5py.File(path, "r") as f:
        for i in range(len(f["labels"])):
            t = np.asarray(f["spikes/times"][i], dtype=np.float64)
            out.append((np.rint(t * 1e6).astype(np.int64),
                        np.asarray(f["spikes/units"][i]).astype(np.int64),
                        int(f["labels"][i])))
    return out


# --------------------------------------------------------------------------------------
# HDF5 spike sets
# --------------------------------------------------------------------------------------

def test_shd_layout_reads_every_sample(tmp_path):
    path = write_shd(tmp_path / "shd_test.h5")
    assert loaders.detect(path).name == "hdf5_spikes"
    rec = loaders.read_events(path)
    ref = plain_read_shd(path)
    assert len(rec.starts) == len(rec.counts) == len(rec.labels) == 12
    assert rec.counts.tolist() == [len(r[0]) for r in ref] and rec.counts[3] == 0
    assert rec.starts.tolist() == np.concatenate([[0], np.cumsum(rec.counts)[:-1]]).tolist()
    for i, (t, u, label) in enumerate(ref):
        sl = slice(rec.starts[i], rec.starts[i] + rec.counts[i])
        np.testing.assert_array_equal(rec.t[sl], t)
        np.testing.assert_array_equal(rec.x[sl], u)
        assert rec.labels[i] == label
    assert not rec.y.any() and not rec.p.any()
    assert rec.sensor_size == (700, 1, 1)
    assert list(rec.class_names) == [k.decode() for k in KEYS]
    assert rec.split == "test"
    with h5py.File(path, "r") as f:
        assert rec.meta["speaker"] == f["extra/speaker"][()].tolist()
    assert rec.meta["meta_info"]["age"] == list(range(20, 32))


def test_shd_float_times_round_not_truncate(tmp_path):
    """0.0123 s as float32 is 0.012299999..., which truncation would make 12299 us."""
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        g.create_dataset("times", (1,), dtype=h5py.vlen_dtype(np.float32))[0] = \
            np.array([0.0123, 1.5], np.float32)
        g.create_dataset("units", (1,), dtype=h5py.vlen_dtype(np.uint16))[0] = \
            np.array([3, 9], np.uint16)
        f.create_dataset("labels", data=np.array([4], np.uint16))
    rec = hdf5_spikes.read(path)
    assert rec.t.tolist() == [12300, 1500000]
    assert int(np.float64(np.float32(0.0123)) * 1e6) == 12299
    assert rec.sensor_size == (10, 1, 1) and rec.class_names is None
    assert hdf5_spikes.read(path, n_channels=700).sensor_size == (700, 1, 1)
    with pytest.raises(CorruptFileError, match="outside n_channels=5"):
        hdf5_spikes.read(path, n_channels=5)


def test_shd_round_trip_through_store(tmp_path):
    path = write_shd(tmp_path / "shd_train.h5", n=9, seed=4)
    ref = plain_read_shd(path)
    ds = open_store(convert(path, tmp_path / "shd.zarr"))
    assert len(ds) == 9
    assert ds.class_names == [k.decode() for k in KEYS]
    assert tuple(ds.sensor_size) == (700, 1, 1)
    for i, (t, u, label) in enumerate(ref):
        ev, lab = ds[i]
        assert lab == label
        np.testing.assert_array_equal(ev["t"], t)
        np.testing.assert_array_equal(ev["x"], u)


def test_hdf5_bad_input(tmp_path):
    good = write_shd(tmp_path / "good.h5")
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NeurodataError) as e:
        hdf5_spikes.read(cut)
    assert str(cut) in str(e.value)
    assert not hdf5_spikes.sniff(cut, data[:4096])

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.arange(5))
    assert not hdf5_spikes.sniff(other, other.read_bytes()[:4096])
    with pytest.raises(FormatError, match="spikes/times"):
        hdf5_spikes.read(other)

    mismatch = tmp_path / "mismatch.h5"
    with h5py.File(mismatch, "w") as f:
        g = f.create_group("spikes")
        g.create_dataset("times", (2,), dtype=h5py.vlen_dtype(np.float32))[:] = \
            [np.array([0.1, 0.2], np.float32), np.array([0.3], np.float32)]
        g.create_dataset("units", (2,), dtype=h5py.vlen_dtype(np.uint16))[:] = \
            [np.array([1, 2], np.uint16), np.array([4, 5], np.uint16)]
        f.create_dataset("labels", data=np.array([0, 1]))
    with pytest.raises(CorruptFileError, match="sample 1 has 1 spike times but 2 units"):
        hdf5_spikes.read(mismatch)

    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(NeurodataError) as e:
        hdf5_spikes.read(empty)
    assert str(empty) in str(e.value)


# --------------------------------------------------------------------------------------
# MATLAB: ST-MNIST (real sample)
# --------------------------------------------------------------------------------------

# computed once with scipy.io.loadmat and a per-column loop over sample_stmnist.mat
STMNIST_N = 2346
STMNIST_FIRST = (5, 4, 196626, 0)  # x, y, t, p
STMNIST_LAST = (6, 4, 895745, 1)
STMNIST_ON = 1601


def test_stmnist_real_sample(real):
    path = real("events/sample_stmnist.mat")
    assert loaders.detect(path).name == "mat_events"
    rec = loaders.read_events(path)
    assert len(rec) == STMNIST_N
    assert (int(rec.x[0]), int(rec.y[0]), int(rec.t[0]), int(rec.p[0])) == STMNIST_FIRST
    assert (int(rec.x[-1]), int(rec.y[-1]), int(rec.t[-1]), int(rec.p[-1])) == STMNIST_LAST
    assert (int(rec.t.min()), int(rec.t.max())) == (196626, 895745)
    assert int(rec.p.sum()) == STMNIST_ON and int((rec.p == 0).sum()) == STMNIST_N - STMNIST_ON
    assert rec.sensor_size == (10, 10, 2) and rec.meta["layout"] == "stmnist"
    # the same, event by event, from a plain loop over the matrix
    s = scipy_io.loadmat(path)["spiketrain"]
    ref = [(a % 10, a // 10, int(round(s[100, j] * 1e6)), int(s[a, j] > 0))
           for j in range(s.shape[1]) for a in np.flatnonzero(s[:100, j])]
    assert list(zip(rec.x.tolist(), rec.y.tolist(), rec.t.tolist(), rec.p.tolist())) == ref


def test_stmnist_round_trip(real, tmp_path):
    path = real("events/sample_stmnist.mat")
    rec = mat_events.read(path)
    ds = open_store(convert(path, tmp_path / "st.zarr"))
    ev, _ = ds[0]
    assert tuple(ds.sensor_size) == (10, 10, 2)
    for name, col in zip("xytp", (rec.x, rec.y, rec.t, rec.p)):
        np.testing.assert_array_equal(ev[name], col)


# --------------------------------------------------------------------------------------
# MATLAB: ASL-DVS layout (v5 and v7.3)
# --------------------------------------------------------------------------------------

def _asl_columns(seed=1, n=500):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 240, n), rng.integers(0, 180, n),
            np.cumsum(rng.integers(0, 40, n)) + 10_000, rng.integers(0, 2, n))


def test_asl_dvs_v5(tmp_path):
    x, y, ts, pol = _asl_columns()
    path = tmp_path / "a_0001.mat"
    # column vectors, as in the ASL-DVS release
    scipy_io.savemat(path, {"x": x[:, None].astype(np.int32), "y": y[:, None].astype(np.int32),
                            "ts": ts[:, None].astype(np.float64),
                            "pol": pol[:, None].astype(np.uint8)})
    assert loaders.detect(path).name == "mat_events"
    rec = loaders.read_events(path)
    assert rec.sensor_size == (240, 180, 2) and rec.meta["layout"] == "asl_dvs"
    np.testing.assert_array_equal(rec.x, x)
    np.testing.assert_array_equal(rec.y, 179 - y)  # as tonic's ASLDVS: rows from the top
    np.testing.assert_array_equal(rec.t, ts)
    np.testing.assert_array_equal(rec.p, pol)
    np.testing.assert_array_equal(mat_events.read(path, flip_y=False).y, y)
    ds = open_store(convert(path, tmp_path / "asl.zarr"))
    ev, _ = ds[0]
    np.testing.assert_array_equal(ev["y"], 179 - y)
    np.testing.assert_array_equal(ev["t"], ts)


def write_mat73(path, variables):
    """A MATLAB 7.3 file: 512-byte user block with the text header, then HDF5 with each
    variable stored transposed (MATLAB is column-major)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in variables.items():
            f.create_dataset(k, data=np.asarray(v).T)
    text = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, "
            b"Created on: Sat Nov 21 10:00:00 2026 HDF5 schema 1.00 .")
    with open(path, "r+b") as fh:
        fh.write(text.ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    return path


def test_asl_dvs_v73(tmp_path):
    x, y, ts, pol = _asl_columns(seed=7, n=200)
    path = write_mat73(tmp_path / "v73.mat", {"x": x[:, None].astype(np.float64),
                                             "y": y[:, None].astype(np.float64),
                                             "ts": ts[:, None].astype(np.float64),
                                             "pol": pol[:, None].astype(np.float64)})
    with h5py.File(path, "r") as f:
        assert f["x"].shape == (1, 200)
    assert loaders.detect(path).name == "mat_events"
    rec = mat_events.read(path)
    np.testing.assert_array_equal(rec.x, x)
    np.testing.assert_array_equal(rec.y, 179 - y)
    np.testing.assert_array_equal(rec.t, ts)
    np.testing.assert_array_equal(rec.p, pol)


def test_mat_bad_input(tmp_path, real):
    data = real("events/sample_stmnist.mat").read_bytes()
    cut = tmp_path / "cut.mat"
    cut.write_bytes(data[:3000])
    with pytest.raises(NeurodataError) as e:
        mat_events.read(cut)
    assert str(cut) in str(e.value)

    other = tmp_path / "other.mat"
    scipy_io.savemat(other, {"frames": np.zeros((3, 3))})
    assert not mat_events.sniff(other, other.read_bytes()[:4096])
    with pytest.raises(FormatError, match="neither ASL-DVS"):
        mat_events.read(other)

    x, y, ts, pol = _asl_columns(n=10)
    uneven = tmp_path / "uneven.mat"
    scipy_io.savemat(uneven, {"x": x[:, None], "y": y[:9, None], "ts": ts[:, None],
                              "pol": pol[:, None]})
    with pytest.raises(CorruptFileError, match="lengths"):
        mat_events.read(uneven)

    outside = tmp_path / "outside.mat"
    scipy_io.savemat(outside, {"x": np.array([[300]]), "y": np.array([[5]]),
                               "ts": np.array([[1]]), "pol": np.array([[1]])})
    with pytest.raises(CorruptFileError, match="240x180"):
        mat_events.read(outside)

    not_mat = tmp_path / "text.mat"
    not_mat.write_bytes(b"hello, this is not a MAT-file\n")
    with pytest.raises(FormatError):
        mat_events.read(not_mat)

    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")
    with pytest.raises(NeurodataError) as e:
        mat_events.read(empty)
    assert str(empty) in str(e.value)
