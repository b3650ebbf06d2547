"""Stores written by an earlier neurodata keep opening, with the same values, forever.

tests/fixtures/*_v1.zarr were written once by the schema-v1 code
(tests/fixtures/make_fixtures.py, neurodata 0.1.0) and are committed; they are
never regenerated. Each is opened with ``neurodata.open`` (the dataset
protocol every modality shares: ``len``, indexing, ``summary``) and with plain
xarray (the on-disk contract), and every value is compared with what the
fixture script wrote.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import neurodata
from neurodata.format.schema import SCHEMA_ATTR

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _tree(name):
    path = FIXTURES / name
    if not path.is_dir():
        pytest.fail(f"compat fixture {path} is missing (it must be committed, never regenerated)")
    return path, xr.open_datatree(path, engine="zarr", chunks={})


def _values(node, name):
    return node[name].values.tolist()


def test_events_v1_store(tmp_path):
    path, tree = _tree("events_v1.zarr")
    assert tree.attrs[SCHEMA_ATTR] == "events/1"
    assert tree.attrs["class_names"] == ["left", "right"]
    assert tree.attrs["sensor_size"] == [8, 6, 2]
    assert tree.attrs["provenance"]["converter"] == "neurodata 0.1.0"
    assert _values(tree, "x") == [1, 2, 3, 7, 0]
    assert _values(tree, "y") == [0, 5, 4, 2, 2]
    assert _values(tree, "t") == [10, 20, 35, 5, 6]
    assert _values(tree, "p") == [1, 0, 1, 0, 0]
    assert _values(tree, "start") == [0, 3, 5]
    assert _values(tree, "count") == [3, 2, 0]
    assert _values(tree, "label") == [0, 1, 1]
    assert _values(tree, "source") == ["a/0.bin", "b/0.bin", "b/1.bin"]
    assert _values(tree, "split") == ["train", "test", "test"]
    assert _values(tree, "chunk_t_min") == [5] and _values(tree, "chunk_t_max") == [35]
    assert tree["t"].dims == ("event",) and tree["label"].dims == ("sample",)

    ds = neurodata.open(str(path))
    assert len(ds) == 3 and ds.class_names == ["left", "right"]
    assert tuple(ds.sensor_size) == (8, 6, 2)
    ev, label = ds[0]
    assert label == 0 and ev.dtype.names == ("x", "y", "t", "p")
    assert ev["t"].tolist() == [10, 20, 35] and ev["x"].tolist() == [1, 2, 3]
    ev, label = ds[1]
    assert label == 1 and ev["t"].tolist() == [5, 6] and ev["x"].tolist() == [7, 0]
    ev, label = ds[2]
    assert label == 1 and len(ev) == 0
    assert ds.window(0, 15, 36)["t"].tolist() == [20, 35]
    s = ds.summary()
    assert s["samples"] == 3 and s["events"] == 5
    # the CLI's verifier accepts it
    from neurodata.cli.verify import verify_store

    assert all(c["status"] == "ok" for c in verify_store(path))


def test_timeseries_v1_store():
    path, tree = _tree("timeseries_v1.zarr")
    assert tree.attrs[SCHEMA_ATTR] == "timeseries/1"
    assert tree.attrs["recordings"] == ["sub-01_run-1"]
    rec = tree["sub-01_run-1"]
    assert rec.attrs["sfreq"] == 100.0 and rec.attrs["n_times"] == 8
    assert rec.attrs["subject"] == "sub-01"
    data = rec["data"].values
    assert data.dtype == np.float32 and rec["data"].dims == ("channel", "time")
    np.testing.assert_array_equal(data, (np.arange(16, dtype=np.float32).reshape(2, 8)
                                         * np.float32(1e-6)))
    assert _values(rec, "channel") == ["Cz", "Pz"]
    assert _values(rec, "ch_type") == ["eeg", "eeg"] and _values(rec, "unit") == ["V", "V"]
    assert _values(rec, "annotation_onset") == [0.01, 0.05]
    assert _values(rec, "annotation_duration") == [0.0, 0.02]
    assert _values(rec, "annotation_description") == ["start", "blink"]
    assert _values(rec, "event_sample") == [1, 6] and _values(rec, "event_code") == [3, 7]
    assert _values(rec, "event_label") == ["go", "stop"]

    ds = neurodata.open(str(path))
    assert len(ds) == 1
    r = ds[0]
    assert r.sfreq == 100.0 and r.ch_names == ["Cz", "Pz"]
    np.testing.assert_array_equal(r.read(), data)
    np.testing.assert_array_equal(r.read(2, 5, channels=[1]), data[1:2, 2:5])
    s = ds.summary()
    assert s["recordings"] == 1 and s["annotations"] == 2 and s["events"] == 2


def test_imaging_v1_store():
    path, tree = _tree("imaging_v1.zarr")
    assert tree.attrs[SCHEMA_ATTR] == "imaging/1"
    movie = tree["movie"].values
    assert tree["movie"].dims == ("frame", "y", "x") and movie.dtype == np.uint16
    np.testing.assert_array_equal(movie, np.arange(60, dtype=np.uint16).reshape(4, 3, 5))
    np.testing.assert_array_equal(tree["mean_image"].values,
                                  np.arange(22.5, 37.5, dtype=np.float32).reshape(3, 5))
    assert _values(tree, "F") == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert _values(tree, "time") == [0.0, 0.1, 0.2, 0.3]
    assert _values(tree, "iscell") == [True, False]
    assert _values(tree, "roi_name") == ["roi0", "roi1"]
    assert _values(tree, "mask_start") == [0, 2] and _values(tree, "mask_count") == [2, 1]
    assert _values(tree, "mask_y") == [0, 1, 2] and _values(tree, "mask_x") == [1, 1, 4]
    assert _values(tree, "roi_y") == [0.5, 2.0] and _values(tree, "roi_x") == [1.0, 4.0]

    ds = neurodata.open(str(path))
    assert len(ds) == 2
    assert ds[0].tolist() == [1, 2, 3, 4] and ds[1].tolist() == [5, 6, 7, 8]
    np.testing.assert_array_equal(ds.frames(1, 3), movie[1:3])
    s = ds.summary()
    assert s["rois"] == 2 and s["frames"] == 4 and s["fs_hz"] == 10.0
    assert s["movie_shape"] == [4, 3, 5]


def test_connectome_v1_store():
    path, tree = _tree("connectome_v1.zarr")
    assert tree.attrs[SCHEMA_ATTR] == "connectome/1"
    assert tree.attrs["species"] == "C. elegans" and tree.attrs["n_neurons"] == 3
    assert _values(tree, "id") == ["AVAL", "AVAR", "PVCL"]
    assert _values(tree, "side") == ["L", "R", "L"]
    assert _values(tree, "pre") == [0, 2, 0] and _values(tree, "post") == [1, 0, 1]
    assert _values(tree, "weight") == [5, 2, 1] and _values(tree, "kind") == [0, 0, 1]
    assert tree["kind"].attrs["categories"][:2] == ["chemical", "electrical"]

    ds = neurodata.open(str(path))
    assert len(ds) == 3
    first = ds[0]
    assert (first["pre"], first["post"], first["weight"], first["kind"]) == (0, 1, 5, "chemical")
    s = ds.summary()
    assert s["neurons"] == 3 and s["edges"] == 3
    assert s["synapses_by_kind"] == {"chemical": 7, "electrical": 1}
