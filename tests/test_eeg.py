"""EEG/sEEG/iEEG: MNE loaders, the timeseries/1 store, lazy windows, BIDS."""
from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")
mne.set_log_level("ERROR")

from neurodata import loaders  # noqa: E402
from neurodata.conversion import convert  # noqa: E402
from neurodata.dataset import open as nd_open  # noqa: E402
from neurodata.errors import CorruptFileError, FormatError, NeurodataError, TruncatedFileError  # noqa: E402
from neurodata.format.edf_export import write_edf  # noqa: E402
from neurodata.format.timeseries import TimeseriesStoreWriter, preview  # noqa: E402

EEG_FILES = ["eeg/test.edf", "eeg/test.bdf", "eeg/brainvision/test.vhdr"]


def _convert(src, tmp_path, name="s.zarr", **kw):
    return nd_open(convert(src, tmp_path / name, **kw))


# ---------------------------------------------------------------- real files vs MNE
@pytest.mark.parametrize("rel", EEG_FILES)
def test_real_file_equals_mne(real, tmp_path, rel):
    src = real(rel)
    assert loaders.detect(src).name == "eeg_mne"
    ds = _convert(src, tmp_path)
    raw = mne.io.read_raw(src, preload=False)
    assert len(ds) == 1
    rec = ds[0]
    assert rec.ch_names == raw.ch_names
    assert rec.ch_types == raw.get_channel_types()
    assert rec.sfreq == raw.info["sfreq"]
    assert rec.n_times == raw.n_times
    np.testing.assert_array_equal(rec.read(), raw.get_data().astype(np.float32))
    ann = rec.annotations()
    np.testing.assert_allclose(ann["onset"], raw.annotations.onset - raw.first_time, atol=1e-9)
    np.testing.assert_allclose(ann["duration"], raw.annotations.duration)
    assert list(ann["description"]) == list(raw.annotations.description)


def test_edf_figures(real, tmp_path):
    """Figures of test.edf written once from MNE's reading."""
    rec = _convert(real("eeg/test.edf"), tmp_path)[0]
    assert (rec.n_channels, rec.n_times, rec.sfreq) == (139, 3072, 512.0)
    assert rec.ch_names[:3] == ["A1", "A2", "A3"] and rec.ch_names[-1] == "Status"
    assert rec.ch_types.count("stim") == 1
    ann = rec.annotations()
    assert list(ann["description"]) == ["start", "type A", "type A", "type B", "type A"]
    np.testing.assert_allclose(ann["onset"], [0.0, 0.1344, 0.3904, 2.0, 2.5])
    np.testing.assert_allclose(ann["duration"], [0.0, 0.256, 1.0, 0.0, 2.5])


@pytest.mark.parametrize("rel", ["eeg/test.edf", "eeg/test.bdf"])
def test_stim_channel_becomes_events(real, tmp_path, rel):
    src = real(rel)
    rec = _convert(src, tmp_path)[0]
    raw = mne.io.read_raw(src, preload=False)
    ref = mne.find_events(raw, consecutive=True, shortest_event=1, initial_event=True)
    ev = rec.events()
    np.testing.assert_array_equal(ev["sample"], ref[:, 0])
    np.testing.assert_array_equal(ev["code"], ref[:, 2])
    assert list(ev["label"]) == [str(c) for c in ref[:, 2]]


def test_bdf_event_figures(real, tmp_path):
    ev = _convert(real("eeg/test.bdf"), tmp_path)[0].events()
    assert ev["sample"].tolist() == [589] and ev["code"].tolist() == [128]


def test_brainvision_figures(real, tmp_path):
    ds = _convert(real("eeg/brainvision/test.vhdr"), tmp_path)
    rec = ds[0]
    assert (rec.n_channels, rec.n_times, rec.sfreq) == (32, 7900, 1000.0)
    assert rec.ch_types.count("eeg") == 26 and rec.ch_types.count("misc") == 6
    ann = rec.annotations()
    assert len(ann["onset"]) == 13
    assert ann["description"][0] == "Stimulus/S253" and ann["description"][-1] == "Optic/O  1"
    prov = ds.provenance()
    assert sorted(s["name"] for s in prov["sources"]) == ["test.eeg", "test.vhdr", "test.vmrk"]


# ---------------------------------------------------------------- mixed rates
def _edf_signal_native(path, signal):
    """Independent reading of one EDF signal at its own rate (struct + numpy)."""
    data = Path(path).read_bytes()
    ns = int(data[252:256])
    hb = int(data[184:192])
    n_rec = int(data[236:244])
    sig = data[256:hb]

    def col(off, w, i):
        return sig[off * ns + i * w: off * ns + (i + 1) * w].decode().strip()

    n = [int(col(216, 8, i)) for i in range(ns)]
    pmin, pmax = float(col(104, 8, signal)), float(col(112, 8, signal))
    dmin, dmax = float(col(120, 8, signal)), float(col(128, 8, signal))
    unit = col(96, 8, signal)
    rec_len = 2 * sum(n)
    out = []
    for r in range(n_rec):
        base = hb + r * rec_len + 2 * sum(n[:signal])
        out.extend(struct.unpack(f"<{n[signal]}h", data[base: base + 2 * n[signal]]))
    d = np.array(out, float)
    phys = (d - dmin) * (pmax - pmin) / (dmax - dmin) + pmin
    return phys * (1e-6 if unit == "uV" else 1.0)


def test_mixed_rate_grouped(real, tmp_path):
    src = real("eeg/test_uneven_samp.edf")
    ds = _convert(src, tmp_path)
    assert ds.names == ["test_uneven_samp@100Hz", "test_uneven_samp@12.8Hz"]
    fast, slow = ds[0], ds[1]
    assert (fast.sfreq, fast.n_times, fast.ch_names) == (100.0, 11000, ["3Hz +5/-5 V"])
    assert (slow.sfreq, slow.n_times, slow.ch_names) == (12.8, 1408, ["0.2Hz Blk 1/0uV"])
    raw = mne.io.read_raw_edf(src, preload=False)
    np.testing.assert_array_equal(fast.read()[0], raw.get_data(picks=[0])[0].astype(np.float32))
    np.testing.assert_allclose(fast.read()[0], _edf_signal_native(src, 0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(slow.read()[0], _edf_signal_native(src, 1), rtol=1e-6, atol=1e-12)
    assert slow.attrs["rate_group"] == "12.8Hz"


def test_mixed_rate_resample_and_error(real, tmp_path):
    src = real("eeg/test_uneven_samp.edf")
    ds = _convert(src, tmp_path, mixed_rate="resample")
    assert ds.names == ["test_uneven_samp"] and ds[0].sfreq == 100.0
    raw = mne.io.read_raw_edf(src, preload=False)
    np.testing.assert_array_equal(ds[0].read(), raw.get_data().astype(np.float32))
    assert "resampled_by" in ds[0].attrs
    with pytest.raises(FormatError, match="different rates"):
        convert(src, tmp_path / "e.zarr", mixed_rate="error")


# ---------------------------------------------------------------- other MNE formats
def test_fif_round_trip(real, tmp_path):
    raw = mne.io.read_raw_edf(real("eeg/test.edf"), preload=True).crop(tmin=0.3)
    fif = tmp_path / "x_raw.fif"
    raw.save(fif)  # cropped: the first stored sample is 154, not 0
    assert loaders.detect(fif).name == "eeg_mne"
    ds = _convert(fif, tmp_path)
    ref = mne.io.read_raw_fif(fif, preload=False)
    assert ref.first_samp == 154
    np.testing.assert_array_equal(ds[0].read(), ref.get_data().astype(np.float32))
    assert ds[0].attrs["source_format"] == "fif"
    # onsets from the first stored sample: what mne.events_from_annotations computes
    ann_samples = mne.events_from_annotations(ref)[0][:, 0] - ref.first_samp
    np.testing.assert_array_equal(np.round(ds[0].annotations()["onset"] * 512), ann_samples)
    assert ann_samples.tolist() == [0, 46, 870, 1126]
    ev = mne.find_events(ref, consecutive=True, shortest_event=1, initial_event=True)
    np.testing.assert_array_equal(ds[0].events()["sample"], ev[:, 0] - ref.first_samp)


def test_eeglab_set(real, tmp_path):
    pytest.importorskip("eeglabio")
    raw = mne.io.read_raw_edf(real("eeg/test.edf"), preload=True).pick(range(8))
    path = tmp_path / "x.set"
    mne.export.export_raw(path, raw, fmt="eeglab")
    assert loaders.detect(path).name == "eeg_mne"
    ds = _convert(path, tmp_path)
    ref = mne.io.read_raw_eeglab(path, preload=False)
    np.testing.assert_array_equal(ds[0].read(), ref.get_data().astype(np.float32))

def _real_epochs(real, baseline=(None, 0)):
    """Epochs of the real BrainVision recording at two alternating event codes."""
    raw = mne.io.read_raw_brainvision(real("eeg/brainvision/test.vhdr"), preload=True)
    ev = mne.make_fixed_length_events(raw, id=1, start=0.2, duration=0.5)
    ev[1::2, 2] = 2
    return mne.Epochs(raw, ev, {"left": 1, "right": 2}, tmin=-0.1, tmax=0.3,
                      baseline=baseline, preload=True)


@pytest.mark.parametrize("fmt", ["fif", "eeglab"])
def test_epoched_file_windows_give_the_epochs_back(real, tmp_path, fmt):
    from neurodata.signal_windows import WindowSource

    epochs = _real_epochs(real)
    if fmt == "fif":
        path = tmp_path / "x-epo.fif"
        epochs.save(path)
        ref = mne.read_epochs(path, preload=True)
    else:
        pytest.importorskip("eeglabio")
        path = tmp_path / "x_epochs.set"
        mne.export.export_epochs(path, epochs, fmt="eeglab")
        ref = mne.read_epochs_eeglab(path)
    n, L = len(ref), len(ref.times)
    assert n == len(epochs) > 10 and L == 401  # 1000 Hz, -0.1 .. 0.3 s
    rec = _convert(path, tmp_path)[0]
    assert rec.n_times == n * L and rec.ch_names == ref.ch_names and rec.sfreq == 1000.0
    data = ref.get_data().astype(np.float32)  # (epoch, channel, time)
    np.testing.assert_array_equal(rec.read(L, 2 * L), data[1])
    ev = rec.events()
    np.testing.assert_array_equal(ev["sample"], np.arange(n) * L + 100)  # time 0 of each epoch
    np.testing.assert_array_equal(ev["code"], ref.events[:, 2])
    name = {c: k for k, c in ref.event_id.items()}  # what MNE names each code
    assert list(ev["label"]) == [name[c] for c in ref.events[:, 2]]
    if fmt == "fif":
        assert list(ev["label"][:3]) == ["left", "right", "left"]
    ann = rec.annotations()
    assert set(ann["description"]) == {"EDGE boundary"} and len(ann["onset"]) == n - 1
    meta = rec.attrs["epochs"]
    assert (meta["n_epochs"], meta["samples_per_epoch"], meta["tmin"]) == (n, L, -0.1)
    if fmt == "fif":
        assert meta["baseline"] == pytest.approx([-0.1, 0.0])
        assert meta["source_event_samples"] == ref.events[:, 0].tolist()
    # event-locked windows at the epochs' own span: the epochs, in order, with their labels
    ws = WindowSource(tmp_path / "s.zarr", tmin=meta["tmin"], tmax=meta["tmax"])
    x, y = ws.read(np.arange(len(ws.starts)))
    np.testing.assert_array_equal(x, data)
    assert [ws.class_names[k] for k in y] == list(ev["label"])


def test_evoked_fif_is_refused_by_name(real, tmp_path):
    path = tmp_path / "x-ave.fif"
    _real_epochs(real).average().save(path)
    with pytest.raises(FormatError, match="evoked") as e:
        convert(path, tmp_path / "e.zarr")
    assert "x-ave.fif" in str(e.value)
    assert not (tmp_path / "e.zarr").exists()



def test_sniffers_use_content(tmp_path, real):
    from neurodata.loaders.eeg_mne import source_kind

    edf = real("eeg/test.edf")
    renamed = tmp_path / "recording.dat"  # wrong extension, right content
    renamed.write_bytes(edf.read_bytes())
    assert source_kind(renamed) == "edf"
    bdf = tmp_path / "r.bin"
    bdf.write_bytes(real("eeg/test.bdf").read_bytes()[:4096])
    assert source_kind(bdf) == "bdf"
    assert source_kind(real("eeg/brainvision/test.vhdr")) == "brainvision"
    gdf = tmp_path / "g.x"
    gdf.write_bytes(b"GDF 2.20" + b"\0" * 300)
    assert source_kind(gdf) == "gdf"
    fake = tmp_path / "fake.edf"
    fake.write_bytes(b"not an edf at all" * 30)
    assert source_kind(fake) is None


# ---------------------------------------------------------------- bad input
def test_truncated_edf_names_file(real, tmp_path):
    data = real("eeg/test.edf").read_bytes()
    bad = tmp_path / "cut.edf"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedFileError, match="cut.edf.*header announces"):
        convert(bad, tmp_path / "o.zarr")
    short = tmp_path / "short.edf"
    short.write_bytes(data[:1000])  # inside the signal headers
    with pytest.raises(TruncatedFileError, match="short.edf"):
        convert(short, tmp_path / "o2.zarr", format="eeg_mne")
    assert not (tmp_path / "o.zarr").exists() and not (tmp_path / "o2.zarr").exists()


def test_corrupt_edf_header(real, tmp_path):
    data = bytearray(real("eeg/test.edf").read_bytes())
    data[252:256] = b"abcd"  # number of signals
    bad = tmp_path / "corrupt.edf"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="corrupt.edf.*number of signals"):
        convert(bad, tmp_path / "o.zarr", format="eeg_mne")
    data = bytearray(real("eeg/test.edf").read_bytes())
    data[184:192] = b"512     "  # header size contradicting 139 signals
    bad2 = tmp_path / "corrupt2.edf"
    bad2.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="corrupt2.edf.*header size"):
        convert(bad2, tmp_path / "o2.zarr")


def test_not_eeg_is_format_error(tmp_path):
    f = tmp_path / "x.edf"
    f.write_bytes(b"hello world" * 100)
    with pytest.raises(NeurodataError, match="x.edf"):
        convert(f, tmp_path / "o.zarr", format="eeg_mne")


# ---------------------------------------------------------------- deidentification
def test_deidentify(real, tmp_path):
    src = real("eeg/test.edf")
    ds = _convert(src, tmp_path, deidentify=True, pseudonym_salt="study-7")
    rec = ds[0]
    assert rec.attrs["deidentified"] is True
    assert "meas_date" not in rec.attrs and "subject_info" not in rec.attrs
    assert rec.subject.startswith("anon-") and len(rec.subject) == 17
    assert ds.names[0].startswith("anon-") and ds.names[0] != rec.subject
    text = "".join(p.read_text() for p in Path(ds.path).rglob("zarr.json"))
    assert "2014-04-29" not in text and "test.edf" not in text
    # same salt and identity -> same pseudonym, another salt -> another
    again = _convert(src, tmp_path, "b.zarr", deidentify=True, pseudonym_salt="study-7")[0]
    other = _convert(src, tmp_path, "c.zarr", deidentify=True, pseudonym_salt="x")[0]
    assert again.subject == rec.subject != other.subject
    plain = _convert(src, tmp_path, "d.zarr")[0]
    assert plain.attrs["meas_date"] == "2014-04-29T22:19:44+00:00"
    np.testing.assert_array_equal(plain.read(), rec.read())


# ---------------------------------------------------------------- store format
def test_store_round_trip_exact_float32(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 70001)).astype(np.float32) * 1e-5
    w = TimeseriesStoreWriter(tmp_path / "s.zarr", attrs={"dataset": "synthetic"})
    r = w.add_recording("rec 1", [f"LA{i}" for i in range(1, 5)] + ["STI"],
                        ["seeg"] * 4 + ["stim"], 1000.0, x.shape[1], time_chunk=1024,
                        positions=np.arange(15).reshape(5, 3) * 1e-3,
                        regions=["hippocampus", "hippocampus", "amygdala", "", ""])
    for s in range(0, x.shape[1], 12345):  # blocks not aligned to chunks or shards
        r.write(x[:, s:s + 12345])
    r.set_annotations([0.5, 1.5], [0.0, 2.0], ["a", "b"])
    r.set_events([10, 20], [1, 2], ["one", "two"])
    w.close()
    ds = nd_open(tmp_path / "s.zarr")
    rec = ds["rec_1"]
    np.testing.assert_array_equal(rec.read(), x)
    np.testing.assert_array_equal(rec.read(1000, 3000, channels=[0, 4]), x[[0, 4], 1000:3000])
    assert rec.regions[:3] == ["hippocampus", "hippocampus", "amygdala"]
    np.testing.assert_array_equal(rec.positions, np.arange(15).reshape(5, 3) * 1e-3)
    assert rec.data.chunks == (5, 1024)
    tree = ds.to_xarray()
    da = tree["rec_1"].to_dataset()["data"]
    assert da.dims == ("channel", "time") and list(da["channel"].values)[:2] == ["LA1", "LA2"]
    np.testing.assert_array_equal(da.values, x)
    assert list(tree["rec_1"].to_dataset()["ch_type"].values) == ["seeg"] * 4 + ["stim"]
    xr_rec = rec.to_xarray()
    assert float(xr_rec["time"][1000]) == 1.0
    import pickle  # datasets and recordings travel to dask workers

    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ds))[0].read(5, 9000), x[:, 5:9000])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(rec)).read(69000), x[:, 69000:])


def test_writer_refuses_short_recording(tmp_path):
    w = TimeseriesStoreWriter(tmp_path / "s.zarr")
    r = w.add_recording("a", ["C3"], ["eeg"], 100.0, 1000)
    r.write(np.zeros((1, 999)))
    with pytest.raises(NeurodataError, match="999 samples written of 1000"):
        w.close()


def test_summary_and_preview(real, tmp_path):
    ds = _convert(real("eeg/brainvision/test.vhdr"), tmp_path)
    s = ds.summary()
    json.dumps(s)
    assert s["recordings"] == 1 and s["channel_types"] == {"eeg": 26, "misc": 6}
    assert s["sfreq"] == [1000.0] and s["annotations"] == 13
    assert s["per_recording"][0]["annotations"]["Stimulus/S255"] == 5
    assert s["bytes_on_disk"] > 0
    png = preview(ds, tmp_path / "p.png")
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] == 1200


# ---------------------------------------------------------------- windows
def test_event_locked_windows_equal_mne_epochs(real, tmp_path):
    src = real("eeg/test.edf")
    ds = _convert(src, tmp_path)
    ws = ds.windows(tmin=-0.1, tmax=0.3, events={4096: 0, 4100: 1}, baseline=(None, 0))
    raw = mne.io.read_raw_edf(src, preload=True)
    ev = mne.find_events(raw, consecutive=True, shortest_event=1, initial_event=True)
    ep = mne.Epochs(raw, ev, {"a": 4096, "b": 4100}, tmin=-0.1, tmax=0.3, baseline=(None, 0),
                    picks="all", preload=True)
    x, y = ws.read(np.arange(len(ws)))
    assert len(ws) == len(ep) == 13
    np.testing.assert_array_equal(y, (ep.events[:, 2] == 4100).astype(int))
    np.testing.assert_allclose(x, ep.get_data(), rtol=1e-6, atol=1e-9)
    # shuffled request order returns the same windows in that order
    order = np.array([7, 0, 12, 3])
    x2, y2 = ws.read(order)
    np.testing.assert_array_equal(x2, x[order])
    np.testing.assert_array_equal(y2, y[order])


def test_annotation_locked_windows(real, tmp_path):
    ds = _convert(real("eeg/brainvision/test.vhdr"), tmp_path)
    ws = ds.windows(tmin=0.0, tmax=0.099, events=["Stimulus/S255"], source="annotations")
    assert len(ws) == 5 and ws.length == 100
    x, y = ws.read(range(5))
    onset = ds[0].annotations()["onset"][ds[0].annotations()["description"] == "Stimulus/S255"]
    first = int(round(onset[0] * 1000))
    np.testing.assert_array_equal(x[0], ds[0].read(first, first + 100))
    assert set(y.tolist()) == {0}


def test_fixed_windows_and_partitions(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 10000)).astype(np.float32)
    w = TimeseriesStoreWriter(tmp_path / "s.zarr")
    for name in ("a", "b"):
        r = w.add_recording(name, ["C3", "C4", "Cz"], ["eeg"] * 3, 100.0, 10000, time_chunk=256)
        r.write(x if name == "a" else -x)
    w.close()
    ws = nd_open(tmp_path / "s.zarr").windows(length=4.0, stride=2.0, picks=["Cz", "C3"])
    assert len(ws) == 2 * 49 and ws.shape == (2, 400)
    xb, yb = ws.read([0, 1, 50])
    np.testing.assert_array_equal(xb[0], x[[2, 0], 0:400])
    np.testing.assert_array_equal(xb[1], x[[2, 0], 200:600])
    np.testing.assert_array_equal(xb[2], -x[[2, 0], 200:600])
    assert (yb == -1).all()
    parts = ws.partition_ranges(max_windows=10)
    covered = np.concatenate([np.arange(a, b) for a, b in parts])
    np.testing.assert_array_equal(covered, np.arange(len(ws)))
    assert all(len(set(ws.rec_index[a:b])) == 1 for a, b in parts)
    bounds = ws.partitions()  # stream-source protocol: bounds, never across recordings
    assert bounds[0] == 0 and bounds[-1] == len(ws) and 49 in bounds.tolist()
    xp, yp, ids = ws.read_partition(1)
    np.testing.assert_array_equal(ids, np.arange(bounds[1], bounds[2]))
    np.testing.assert_array_equal(xp, ws.read(ids)[0])
    import pickle

    clone = pickle.loads(pickle.dumps(ws))
    np.testing.assert_array_equal(clone.read([5, 60])[0], ws.read([5, 60])[0])
    assert clone.content_hash() == ws.content_hash()
    assert ws.describe([50])[0] == "window 50 (b @ 2.000 s)"
    tm = nd_open(tmp_path / "s.zarr").windows(length=4.0, time_major=True)
    xt, _ = tm.read([1])
    np.testing.assert_array_equal(xt[0], x[:, 400:800].T)


@pytest.mark.parametrize("data_codec", ["none", "lz4", "zstd"])
def test_batch_read_decodes_into_batch_equal_to_slices(tmp_path, data_codec):
    """Overlapping, repeated and unordered windows, with and without picks, windows that
    are exactly one chunk (read straight into the batch when raw) and windows that straddle
    chunks, through the direct chunk reader and through zarr, equal plain slices of the
    data, for every data codec; a batch costs little beyond itself."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 20000)).astype(np.float32)
    w = TimeseriesStoreWriter(tmp_path / "s.zarr", data_codec=data_codec)
    w.add_recording("a", list("ABCDE"), ["eeg"] * 5, 100.0, 20000, time_chunk=256).write(x)
    w.close()
    codecs = json.loads((tmp_path / "s.zarr" / "a" / "data" / "zarr.json").read_text())
    inner = [c["name"] for c in codecs["codecs"][0]["configuration"]["codecs"]]
    assert inner == (["bytes"] if data_codec == "none" else ["bytes", "blosc"])
    cases = [(3.0, 0.7, None, [0, 1, 2, 3, 4]), (3.0, 0.7, ["E", "B"], [4, 1]),
             (2.56, 2.56, None, [0, 1, 2, 3, 4]), (2.56, 1.28, ["C"], [2])]
    for length, stride, picks, rows in cases:
        ws = nd_open(tmp_path / "s.zarr").windows(length=length, stride=stride, picks=picks)
        assert ws.recordings[0]._direct is not None
        L = ws.length
        idx = np.concatenate([rng.integers(0, len(ws), 40), [3, 3, 4, len(ws) - 1, 0]])
        got, _ = ws.read(idx)
        want = np.stack([x[rows, s:s + L] for s in ws.starts[idx]])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(ws.recordings[0].read(123, 5000), x[:, 123:5000])
        ws.recordings[0]._direct = None  # the zarr path gives the same
        np.testing.assert_array_equal(ws.read(idx)[0], want)
    ws = nd_open(tmp_path / "s.zarr").windows(length=3.0, stride=0.7)
    ws.read([0])
    tracemalloc.start()
    out, _ = ws.read(np.arange(0, len(ws), 3))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < out.nbytes + 200_000, f"{peak} bytes traced for a {out.nbytes}-byte batch"


def test_window_filter_with_margin_equals_whole_recording_filter(tmp_path):
    from neurodata.transforms.signal import BandPass

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 60000)).astype(np.float32)
    w = TimeseriesStoreWriter(tmp_path / "s.zarr")
    w.add_recording("a", list("ABCD"), ["eeg"] * 4, 250.0, 60000).write(x)
    w.close()
    bp = BandPass(250.0, 1.0, 40.0)
    ws = nd_open(tmp_path / "s.zarr").windows(length=4.0, transform=bp)
    whole = mne.filter.filter_data(x.astype(np.float64), 250.0, 1.0, 40.0)
    got, _ = ws.read([10, 30])
    np.testing.assert_allclose(got[0], whole[:, 10000:11000], atol=2e-6)
    np.testing.assert_allclose(got[1], whole[:, 30000:31000], atol=2e-6)


@pytest.mark.parametrize("damage", ["truncated", "index", "chunk"])
def test_damaged_shard_names_the_file(tmp_path, damage):
    """A shard cut short, a changed index byte (crc32c) or a garbled compressed chunk: the
    window read fails with a CorruptFileError naming the shard file."""
    x = np.random.default_rng(1).standard_normal((4, 8192)).astype(np.float32)
    w = TimeseriesStoreWriter(tmp_path / "s.zarr", data_codec="none" if damage != "chunk"
                              else "lz4")
    w.add_recording("a", list("ABCD"), ["eeg"] * 4, 100.0, 8192, time_chunk=256).write(x)
    w.close()
    shard = tmp_path / "s.zarr" / "a" / "data" / "c" / "0" / "1"
    raw = bytearray(shard.read_bytes())
    if damage == "truncated":
        raw = raw[:len(raw) // 2]
    elif damage == "index":
        raw[-20] ^= 0xFF
    else:
        raw[0:16] = bytes(16)  # the blosc header of the shard's first chunk
    shard.write_bytes(bytes(raw))
    ws = nd_open(tmp_path / "s.zarr").windows(length=2.56)
    np.testing.assert_array_equal(ws.read([0])[0][0], x[:, :256])  # shard 0 is intact
    with pytest.raises(CorruptFileError) as e:
        ws.read([16])  # the first chunk of shard 1
    assert str(shard) in str(e.value) and "\n" not in str(e.value)


def test_window_reads_only_needed_chunks(tmp_path):
    """A 4 s window of a 1 h, 64-channel recording (236 MB as float32) stays within a few MB."""
    sf, C, hours = 256.0, 64, 1.0
    n = int(hours * 3600 * sf)
    t = np.arange(16384) / sf
    base = (np.sin(2 * np.pi * 10 * t)[None, :] * np.arange(1, C + 1)[:, None] * 1e-6)
    base = base.astype(np.float32)
    w = TimeseriesStoreWriter(tmp_path / "long.zarr")
    r = w.add_recording("long", [f"E{i}" for i in range(C)], ["eeg"] * C, sf, n)
    for s in range(0, n, 16384):
        r.write(base[:, : min(16384, n - s)])
    w.close()
    ws = nd_open(tmp_path / "long.zarr").windows(length=4.0)
    ws.read([0])  # metadata and codecs warmed up
    tracemalloc.start()
    x, _ = ws.read([len(ws) // 2])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_bytes = C * n * 4
    assert full_bytes > 200e6
    assert peak < 4e6, f"peak {peak / 1e6:.1f} MB for one window"
    start = ws.starts[len(ws) // 2]
    np.testing.assert_array_equal(x[0], base[:, start % 16384: start % 16384 + 1024])


def test_long_edf_converts_with_bounded_memory(tmp_path):
    """A 20-minute 32-channel EDF converts with far less memory than loading it."""
    sf, C, seconds = 512, 32, 1200
    n = sf * seconds
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((C, sf * 10)) * 20e-6

    def blocks():
        for s in range(0, n, sf * 10):
            yield noise
    path = tmp_path / "long.edf"
    write_edf(path, [f"E{i}" for i in range(C)], sf, blocks(), n, -300.0, 300.0)
    tracemalloc.start()
    ds = _convert(path, tmp_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    loaded = C * n * 8  # what mne preload / get_data() holds: 157 MB
    # copy blocks are at most 8 MB of float64; MNE's reader and zarr's encoder add a few copies
    assert peak < 64e6 < loaded / 2, f"peak {peak / 1e6:.0f} MB vs {loaded / 1e6:.0f} MB loaded"
    rec = ds[0]
    assert rec.n_times == n
    raw = mne.io.read_raw_edf(path, preload=False)
    np.testing.assert_array_equal(rec.read(n - 5000, n), raw.get_data(start=n - 5000).astype(
        np.float32))


def test_windows_stream_through_pipeline(tmp_path):
    """A WindowSource is a stream source: every window arrives once, in (B, channel, time)."""
    import neurodata

    x = np.random.default_rng(2).standard_normal((3, 30000)).astype(np.float32)
    w = TimeseriesStoreWriter(tmp_path / "s.zarr")
    w.add_recording("a", ["C3", "C4", "Cz"], ["eeg"] * 3, 100.0, 30000, time_chunk=256).write(x)
    w.close()
    ws = nd_open(tmp_path / "s.zarr").windows(length=2.0)
    got = [b for b, _ in neurodata.stream(ws, batch_size=16, shuffle=True, seed=3,
                                          time_major=False)]
    assert sum(len(b) for b in got) == len(ws) == 150
    assert got[0].shape[1:] == (3, 200)
    # time-major by default: (time, B, channel)
    tm = next(iter(neurodata.stream(ws, batch_size=16, shuffle=True, seed=3)))[0]
    np.testing.assert_array_equal(tm, np.moveaxis(got[0], -1, 0))
    firsts = np.sort(np.concatenate([b[:, 0, 0] for b in got]))
    np.testing.assert_array_equal(firsts, np.sort(x[0, ::200]))
