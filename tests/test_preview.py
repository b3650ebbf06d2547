"""Pictures of stores: event montage and raster, and the other modalities' previews."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from neurodata.conversion import convert
from neurodata.errors import NeurodataError
from neurodata.preview import event_frames, pick_samples, preview


def read_png(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size, np.asarray(im.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def event_store(tmp_path_factory, shared_data):
    """Real N-MNIST sample plus simulated samples of 4 classes, 64x64 sensor."""
    from neurodata.simulate import write_shapes_dataset

    root = tmp_path_factory.mktemp("ev")
    write_shapes_dataset(root / "raw", n_per_class=2, seed=3)
    return convert(root / "raw", root / "shapes.zarr", labels_from_folders=True)


def test_event_frames_match_an_independent_histogram(rng=np.random.default_rng(0)):
    n = 5000
    cols = {"x": rng.integers(0, 40, n).astype(np.uint16), "y": rng.integers(0, 30, n).astype(np.uint16),
            "t": np.sort(rng.integers(0, 1_000_000, n)).astype(np.int64),
            "p": rng.integers(0, 2, n).astype(np.uint8)}
    frames = event_frames(cols, 40, 30, 8)
    assert frames.shape == (8, 2, 30, 40) and frames.sum() == n
    t = cols["t"]
    edges = np.linspace(t[0], t[-1] + 1, 9)
    for k in range(8):
        sel = (t >= edges[k]) & (t < edges[k + 1])
        on = np.zeros((30, 40), int)
        np.add.at(on, (cols["y"][sel & (cols["p"] == 1)], cols["x"][sel & (cols["p"] == 1)]), 1)
        off = np.zeros((30, 40), int)
        np.add.at(off, (cols["y"][sel & (cols["p"] == 0)], cols["x"][sel & (cols["p"] == 0)]), 1)
        # integer binning puts an event exactly on a float edge in either neighbour; compare totals
        assert abs(int(frames[k, 0].sum()) - int(on.sum())) <= 1
        assert abs(int(frames[k, 1].sum()) - int(off.sum())) <= 1
    assert np.array_equal(frames.sum(axis=0)[0], np.histogram2d(
        cols["y"][cols["p"] == 1], cols["x"][cols["p"] == 1], bins=[30, 40],
        range=[[0, 30], [0, 40]])[0].astype(int))


def test_event_frames_drop_out_of_sensor_and_empty():
    cols = {"x": np.array([0, 50], np.uint16), "y": np.array([0, 0], np.uint16),
            "t": np.array([0, 10], np.int64), "p": np.array([1, 1], np.uint8)}
    assert event_frames(cols, 10, 10, 2).sum() == 1
    empty = {k: v[:0] for k, v in cols.items()}
    assert event_frames(empty, 10, 10, 4).sum() == 0


def test_pick_samples_shows_every_class_first():
    labels = np.array([0, 0, 0, 1, 1, 2, 0, 3])
    assert pick_samples(labels, 4).tolist() == [0, 3, 5, 7]
    assert pick_samples(labels, 6).tolist() == [0, 1, 2, 3, 5, 7]
    assert pick_samples(np.array([5, 5]), 6).tolist() == [0, 1]


def test_events_preview_png(event_store, tmp_path):
    out = preview(event_store, tmp_path / "ev.png", n_samples=4, n_bins=6, dpi=80)
    (w, h), img = read_png(out)
    # figure size (inches) x dpi, as event_montage computes it
    assert w == int(round((1.4 * 6 + 1.6) * 80))
    assert h == int(round((1.4 * 1.0 * 4 + 0.8) * 80))
    red = (img[..., 0] > 150) & (img[..., 1] < 120) & (img[..., 2] < 160)
    blue = (img[..., 2] > 150) & (img[..., 0] < 160) & (img[..., 1] < 120)
    assert red.sum() > 200 and blue.sum() > 200, "ON and OFF events are drawn"
    assert img.std() > 20


def test_raster_preview_for_audio_spikes(tmp_path):
    from neurodata.format.events import EventStoreWriter

    rng = np.random.default_rng(1)
    w = EventStoreWriter(tmp_path / "shd_like.zarr", sensor_size=(700, 1, 1), class_names=["a", "b"])
    for lab in (0, 1, 0):
        n = 3000
        w.add((rng.integers(0, 700, n), np.zeros(n, int), np.sort(rng.integers(0, 1_000_000, n)),
               np.zeros(n, int)), label=lab)
    w.close()
    (wpx, hpx), img = read_png(preview(tmp_path / "shd_like.zarr", tmp_path / "r.png", dpi=50))
    assert (wpx, hpx) == (400, int(round((1.6 * 3 + 0.6) * 50)))  # 3 samples, 3 rows
    dark = img.sum(axis=2) < 450
    # inside the first panel (no ticks or labels there): 3000 dots over 700 x 1000 ms
    assert dark[45:90, 70:350].mean() > 0.05


def _modality_store(kind, shared_data, tmp_path):
    if kind == "timeseries":
        return convert(shared_data / "eeg" / "test.edf", tmp_path / "ts.zarr")
    if kind == "imaging":
        return convert(shared_data / "calcium" / "suite2p", tmp_path / "im.zarr", fs=30.0)
    return convert(shared_data / "connectome" / "cook2019_SI5_connectome_adjacency_matrices.xlsx",
                   tmp_path / "cn.zarr")


@pytest.mark.parametrize("kind", ["timeseries", "imaging", "connectome"])
def test_other_modalities_preview_png(kind, shared_data, tmp_path):
    try:
        mod = importlib.import_module(f"neurodata.format.{kind}")
    except ModuleNotFoundError:
        pytest.skip(f"neurodata.format.{kind} is not built yet")
    if not hasattr(mod, "preview"):
        pytest.skip(f"neurodata.format.{kind}.preview is not built yet")
    store = _modality_store(kind, shared_data, tmp_path)
    out = preview(store, tmp_path / f"{kind}.png")
    (w, h), img = read_png(out)
    assert w >= 300 and h >= 200
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 16


def test_missing_modality_preview_is_a_clear_error(shared_data, tmp_path, monkeypatch):
    mod = importlib.import_module("neurodata.format.timeseries")
    store = _modality_store("timeseries", shared_data, tmp_path)
    monkeypatch.delattr(mod, "preview")
    with pytest.raises(NeurodataError, match=r"neurodata.format.timeseries.preview is missing"):
        preview(store, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_empty_events_store_is_refused(tmp_path):
    from neurodata.format.events import EventStoreWriter

    EventStoreWriter(tmp_path / "e.zarr", sensor_size=(8, 8, 2)).close()
    with pytest.raises(NeurodataError, match="no samples to preview"):
        preview(tmp_path / "e.zarr", tmp_path / "e.png")
