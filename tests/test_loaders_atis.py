"""N-MNIST ATIS .bin loader on the real sample, and `neurodata convert` on folders of files.

Expected figures were computed once with tonic's N-MNIST reader and a
``struct`` loop (both below, also run as full checks) and written literally.
"""
from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

import neurodata
from neurodata import loaders
from neurodata.cli.main import main as cli
from neurodata.conversion import convert
from neurodata.errors import FormatError, TruncatedFileError
from neurodata.loaders import atis_bin


def struct_read_atis(path) -> np.ndarray:
    """Five bytes at a time: x, y, polarity bit + 23-bit timestamp (big-endian)."""
    data = path.read_bytes()
    rows = []
    for off in range(0, len(data), 5):
        x, y, b2, b3, b4 = struct.unpack_from("5B", data, off)
        if y == 240:  # overflow marker (none in N-MNIST samples)
            continue
        rows.append((x, y, ((b2 & 0x7F) << 16) | (b3 << 8) | b4, b2 >> 7))
    return np.array(rows, np.int64)


def test_atis_real_nmnist(real):
    path = real("events/sample_nmnist.bin")
    assert loaders.detect(path).name == "atis_bin"
    rec = loaders.read_events(path)
    assert len(rec) == 4325
    assert (rec.x[0], rec.y[0], rec.t[0], rec.p[0]) == (7, 15, 654, 1)
    assert (rec.x[-1], rec.y[-1], rec.t[-1], rec.p[-1]) == (21, 14, 311175, 1)
    assert (int(rec.t.min()), int(rec.t.max())) == (654, 311175)
    assert int(rec.p.sum()) == 2145 and int((rec.p == 0).sum()) == 2180
    assert (int(rec.x.max()), int(rec.y.max())) == (33, 33)
    assert [int(rec.x.sum()), int(rec.y.sum()), int(rec.t.sum())] == [74457, 71931, 690487405]
    assert rec.sensor_size is None and rec.infer_sensor_size() == (34, 34, 2)
    rows = np.stack([rec.x, rec.y, rec.t, rec.p], 1).astype(np.int64)
    np.testing.assert_array_equal(rows, struct_read_atis(path))


def test_atis_matches_tonic(real):
    tonic = pytest.importorskip("tonic")
    path = real("events/sample_nmnist.bin")
    dt = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    ref = tonic.io.read_mnist_file(str(path), dtype=dt)
    rec = atis_bin.read(path)
    for k in "xytp":
        np.testing.assert_array_equal(getattr(rec, k).astype(np.int64), ref[k])


def test_atis_overflow_marker(tmp_path):
    # records: event at t=5, overflow marker (y=240), event at t=3 -> 2**23 + 3
    raw = bytes([1, 2, 0x80, 0, 5, 0, 240, 0, 0, 0, 3, 4, 0x00, 0, 3])
    path = tmp_path / "ovf.bin"
    path.write_bytes(raw)
    rec = atis_bin.read(path)
    assert rec.t.tolist() == [5, (1 << 23) + 3]
    assert rec.x.tolist() == [1, 3] and rec.y.tolist() == [2, 4] and rec.p.tolist() == [1, 0]


def test_atis_bad_inputs(tmp_path, real):
    data = real("events/sample_nmnist.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:-2])
    with pytest.raises(TruncatedFileError, match="cut.bin"):
        atis_bin.read(cut)
    assert not atis_bin.sniff(cut, data[:4096])
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty.bin: empty file"):
        atis_bin.read(empty)
    with pytest.raises(FormatError, match="empty.bin"):
        loaders.read_events(empty)


def test_atis_store_round_trip(real, tmp_path):
    path = real("events/sample_nmnist.bin")
    rec = atis_bin.read(path)
    ds = neurodata.open(convert(path, tmp_path / "a.zarr"))
    events, label = ds[0]
    order = np.argsort(rec.t, kind="stable")
    for k in "xytp":
        np.testing.assert_array_equal(events[k], getattr(rec, k)[order])
    assert label == -1


# --------------------------------------------------------------------------- CLI on folders

def _nmnist_folder(root, sample):
    """train/{0,3}/ and test/0/ with copies of the real sample (one cut shorter)."""
    data = sample.read_bytes()
    files = {"train/0/a.bin": data, "train/3/b.bin": data[:5 * 1000],
             "test/0/c.bin": data[:5 * 2000], "train/3/d.bin": data}
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    return root


def test_cli_convert_folder_labels_from_folders(real, tmp_path, capsys):
    src = _nmnist_folder(tmp_path / "nmnist", real("events/sample_nmnist.bin"))
    out = tmp_path / "nmnist.zarr"
    code = cli(["convert", str(src), str(out), "--labels-from-folders", "--no-progress"])
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    ds = neurodata.open(str(out))
    assert len(ds) == 4
    assert ds.class_names == ["0", "3"]
    # files in sorted order: test/0/c, train/0/a, train/3/b, train/3/d
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert [str(s) for s in ds.reader.splits()] == ["test", "train", "train", "train"]
    assert [len(ds[i][0]) for i in range(4)] == [2000, 4325, 1000, 4325]
    assert ds.n_events == 11650
    first, _ = ds[1]
    assert (first["x"][0], first["y"][0], first["t"][0], first["p"][0]) == (7, 15, 654, 1)


def test_cli_convert_mixed_formats_fails_in_one_line(real, tmp_path, capsys):
    src = tmp_path / "mixed"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(real("events/sample_nmnist.bin"), src / "a" / "x.bin")
    shutil.copy(real("events/sample_ncars.dat"), src / "b" / "y.dat")
    out = tmp_path / "mixed.zarr"
    code = cli(["convert", str(src), str(out), "--labels-from-folders", "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "mixes formats" in err and "atis_bin" in err and "prophesee_dat" in err
    assert not out.exists()
