"""NWB ElectricalSeries -> timeseries/1: values, channels, timing, intervals, sniffing, errors.

The NWB files are written here by pynwb itself; expected values come from
pynwb's own reading (``get_data_in_units``) or from the arrays given to it.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.ecephys import LFP, ElectricalSeries  # noqa: E402
from pynwb.file import Subject  # noqa: E402

from neurodata import loaders  # noqa: E402
from neurodata.conversion import convert  # noqa: E402
from neurodata.dataset import open as nd_open  # noqa: E402
from neurodata.errors import FormatError, NeurodataError  # noqa: E402
from neurodata.loaders import nwb_ecephys, nwb_ophys  # noqa: E402

START = dt.datetime(2024, 3, 5, 10, 0, tzinfo=dt.timezone.utc)


def _nwbfile(subject=True) -> NWBFile:
    f = NWBFile(session_description="test session", identifier="nd-test-1",
                session_start_time=START, session_id="ses-01", experimenter=["Doe, J."])
    if subject:
        f.subject = Subject(subject_id="P07", age="P30Y", sex="F", species="Homo sapiens")
    return f


def _electrodes(f: NWBFile, n_seeg=4, n_ecog=2, labels=True):
    """Two electrode groups (sEEG shaft, ECoG strip); x/y/z in microns as the schema says."""
    dev = f.create_device(name="amp", description="clinical amplifier")
    shaft = f.create_electrode_group("LA", description="sEEG depth electrode",
                                     location="left amygdala", device=dev)
    strip = f.create_electrode_group("G", description="subdural strip", location="temporal",
                                     device=dev)
    if labels:
        f.add_electrode_column("label", "contact label")
    for k in range(n_seeg + n_ecog):
        group = shaft if k < n_seeg else strip
        kw = {"label": f"{group.name}{k + 1}"} if labels else {}
        f.add_electrode(group=group, location=f"region{k}", x=1000.0 * k, y=-500.0, z=250.0 * k,
                        **kw)
    return n_seeg + n_ecog


def _raw(n_times, n_ch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-3000, 3000, size=(n_times, n_ch), dtype=np.int16)


def _write(path, f):
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


@pytest.fixture(scope="module")
def scaled_nwb(tmp_path_factory):
    """int16 at 512 Hz with conversion, offset and channel_conversion; trials and epochs."""
    path = tmp_path_factory.mktemp("nwb") / "rec.nwb"
    f = _nwbfile()
    n_ch = _electrodes(f)
    region = f.create_electrode_table_region(list(range(n_ch)), "all")
    cc = np.linspace(0.5, 1.5, n_ch).astype(np.float32)
    es = ElectricalSeries(name="ieeg", data=_raw(3000, n_ch), electrodes=region, rate=512.0,
                          starting_time=2.0, conversion=1e-6, offset=-2e-4,
                          channel_conversion=cc, description="iEEG")
    f.add_acquisition(es)
    f.add_trial_column("trial_type", "condition")
    for on, ty in [(2.5, "left"), (3.0, "right"), (4.25, "left")]:
        f.add_trial(start_time=on, stop_time=on + 0.5, trial_type=ty)
    f.add_epoch(start_time=2.0, stop_time=5.0, tags=["rest"])
    return _write(path, f)


def _pynwb_volts(path, name):
    with NWBHDF5IO(str(path), "r") as io:
        es = io.read().acquisition[name]
        return np.asarray(es.get_data_in_units(), np.float64).T


def test_scaled_values_channels_annotations(scaled_nwb, tmp_path):
    assert loaders.detect(scaled_nwb).name == "nwb_ecephys"
    assert not nwb_ophys.sniff(scaled_nwb, scaled_nwb.read_bytes()[:4096])
    ds = nd_open(convert(scaled_nwb, tmp_path / "s.zarr"))
    assert len(ds) == 1
    rec = ds[0]
    assert rec.name == "ieeg"
    assert (rec.n_channels, rec.n_times, rec.sfreq) == (6, 3000, 512.0)
    np.testing.assert_allclose(rec.read(), _pynwb_volts(scaled_nwb, "ieeg").astype(np.float32),
                               rtol=1e-6, atol=1e-12)
    # one value by hand: raw * conversion * channel_conversion + offset
    with NWBHDF5IO(str(scaled_nwb), "r") as io:
        raw = io.read().acquisition["ieeg"].data[10, 5]
    assert rec.read(10, 11)[5, 0] == pytest.approx(raw * 1e-6 * 1.5 - 2e-4, rel=1e-6)
    assert rec.ch_names == ["LA1", "LA2", "LA3", "LA4", "G5", "G6"]
    assert rec.ch_types == ["seeg"] * 4 + ["ecog"] * 2
    assert rec.units == ["V"] * 6
    assert rec.regions == [f"region{k}" for k in range(6)]
    np.testing.assert_allclose(rec.positions[:, 0], np.arange(6) * 1e-3)
    np.testing.assert_allclose(rec.positions[:, 1], -5e-4)
    np.testing.assert_allclose(rec.positions[:, 2], np.arange(6) * 2.5e-4)
    ann = rec.annotations()
    # onsets in s from the first sample (starting_time 2.0 s)
    np.testing.assert_allclose(ann["onset"], [0.0, 0.5, 1.0, 2.25])
    np.testing.assert_allclose(ann["duration"], [3.0, 0.5, 0.5, 0.5])
    assert list(ann["description"]) == ["epochs/rest", "trials/left", "trials/right",
                                        "trials/left"]
    assert rec.attrs["subject"] == "P07" and rec.attrs["session"] == "ses-01"
    assert rec.attrs["subject_info"]["sex"] == "F"
    assert rec.attrs["meas_date"].startswith("2024-03-05T10:00:00")
    assert rec.attrs["starting_time"] == 2.0
    assert ds.attrs["provenance"]["sources"][0]["name"] == "rec.nwb"


def test_deidentified_keeps_no_subject_info(scaled_nwb, tmp_path):
    rec = nd_open(convert(scaled_nwb, tmp_path / "d.zarr", deidentify=True))[0]
    assert rec.attrs["subject"].startswith("anon-") and rec.attrs["deidentified"] is True
    for key in ("subject_info", "meas_date", "experimenter", "identifier"):
        assert key not in rec.attrs
    assert "rec.nwb" not in rec.attrs["source"]


def test_user_type_mapping_and_ids_without_labels(tmp_path):
    f = _nwbfile(subject=False)
    n_ch = _electrodes(f, labels=False)
    region = f.create_electrode_table_region([1, 3, 4], "three")
    data = np.arange(30, dtype=np.float32).reshape(10, 3)
    f.add_acquisition(ElectricalSeries(name="es", data=data, electrodes=region, rate=100.0))
    path = _write(tmp_path / "ids.nwb", f)
    assert n_ch == 6
    rec = nd_open(convert(path, tmp_path / "a.zarr", ch_types={"G": "eeg", "1": "dbs"}))[0]
    assert rec.ch_names == ["1", "3", "4"]  # electrode ids of the referenced rows
    assert rec.ch_types == ["dbs", "seeg", "eeg"]
    assert rec.regions == ["region1", "region3", "region4"]
    np.testing.assert_array_equal(rec.read(), data.T)


def test_single_channel_series_and_probe_groups(tmp_path):
    """1-D data is one channel (the schema allows it); probe groups are not called EEG."""
    f = _nwbfile(subject=False)
    dev = f.create_device("Neuropixels 1.0", description="silicon probe")
    grp = f.create_electrode_group("imec0", description="no description", location="CA1",
                                   device=dev)
    f.add_electrode(group=grp, location="CA1", x=np.nan, y=np.nan, z=np.nan)
    region = f.create_electrode_table_region([0], "one")
    data = np.linspace(-1.0, 1.0, 64)
    f.add_acquisition(ElectricalSeries(name="one", data=data, electrodes=region, rate=30000.0,
                                       conversion=2e-3))
    path = _write(tmp_path / "one.nwb", f)
    rec = nd_open(convert(path, tmp_path / "o.zarr"))[0]
    assert (rec.n_channels, rec.n_times, rec.sfreq) == (1, 64, 30000.0)
    assert rec.ch_types == ["misc"] and rec.regions == ["CA1"]
    assert np.isnan(rec.positions).all()
    np.testing.assert_allclose(rec.read()[0], (data * 2e-3).astype(np.float32))
    assert nwb_ecephys.group_ch_type("LA", "sEEG depth electrode") == "seeg"
    assert nwb_ecephys.group_ch_type("grid A", "8x8 ECoG grid") == "ecog"
    assert nwb_ecephys.group_ch_type("cap", "64-channel EEG cap") == "eeg"
    assert nwb_ecephys.group_ch_type("shank0", "hybrid") == "misc"
    assert nwb_ecephys.group_ch_type("0", "no description") is None


def test_timestamps_regular_and_irregular(tmp_path):
    f = _nwbfile()
    n_ch = _electrodes(f)
    region = f.create_electrode_table_region(list(range(n_ch)), "all")
    data = _raw(1000, n_ch, seed=1).astype(np.float64) * 1e-6
    ts = 10.0 + np.arange(1000) / 250.0
    f.add_acquisition(ElectricalSeries(name="regular", data=data, electrodes=region,
                                       timestamps=ts))
    jitter = ts.copy()
    jitter[500:] += 0.5 / 250.0  # a gap of half a sample period
    f.add_acquisition(ElectricalSeries(name="gappy", data=data, electrodes=region,
                                       timestamps=jitter))
    f.add_trial(start_time=10.5, stop_time=11.0)
    path = _write(tmp_path / "ts.nwb", f)
    rec = nd_open(convert(path, tmp_path / "r.zarr", series="regular"))[0]
    assert rec.sfreq == 250.0 and rec.n_times == 1000
    np.testing.assert_array_equal(rec.read(), data.T.astype(np.float32))
    np.testing.assert_allclose(rec.annotations()["onset"], [0.5])
    with pytest.raises(FormatError, match=r"ts\.nwb.*irregular timestamps"):
        convert(path, tmp_path / "g.zarr", series="gappy")
    rec = nd_open(convert(path, tmp_path / "g2.zarr", series="gappy", resample=True))[0]
    fs = 999 / (jitter[-1] - jitter[0])
    assert rec.sfreq == pytest.approx(fs)
    assert rec.n_times == 1000
    t = jitter[0] + np.arange(1000) / fs
    expect = np.stack([np.interp(t, jitter, data[:, c]) for c in range(n_ch)])
    np.testing.assert_allclose(rec.read(), expect.astype(np.float32), rtol=1e-6, atol=1e-12)
    assert "resampled_by" in rec.attrs


def _plane(f, dev):
    from pynwb.ophys import OpticalChannel

    och = OpticalChannel(name="ch", description="green", emission_lambda=510.0)
    return f.create_imaging_plane(name="plane", optical_channel=och, description="imaging",
                                  device=dev, excitation_lambda=600.0, imaging_rate=30.0,
                                  indicator="GCaMP6f", location="V1")


def test_mixed_ophys_file_claimed_by_ecephys_only(tmp_path):
    from pynwb.ophys import ImageSegmentation

    f = _nwbfile()
    n_ch = _electrodes(f)
    region = f.create_electrode_table_region(list(range(n_ch)), "all")
    f.add_acquisition(ElectricalSeries(name="eeg", data=_raw(200, n_ch), electrodes=region,
                                       rate=200.0, conversion=1e-6))
    dev = f.create_device("scope")
    plane = _plane(f, dev)
    mod = f.create_processing_module("ophys", "ophys")
    seg = ImageSegmentation()
    ps = seg.create_plane_segmentation("rois", plane, name="PlaneSegmentation")
    ps.add_roi(image_mask=np.ones((4, 4)))
    mod.add(seg)
    # an LFP container in processing holds a second series
    ecephys = f.create_processing_module("ecephys", "lfp")
    ecephys.add(LFP(ElectricalSeries(name="lfp", data=np.ones((50, n_ch)), electrodes=region,
                                     rate=50.0)))
    path = _write(tmp_path / "both.nwb", f)
    head = path.read_bytes()[:4096]
    assert nwb_ecephys.sniff(path, head) and not nwb_ophys.sniff(path, head)
    assert loaders.detect(path).name == "nwb_ecephys"
    ds = nd_open(convert(path, tmp_path / "b.zarr"))
    assert [r.name for r in ds] == ["eeg", "lfp"]
    assert [r.sfreq for r in ds] == [200.0, 50.0]
    # a pure ophys file stays with nwb_ophys
    g = _nwbfile()
    dev = g.create_device("scope")
    plane = _plane(g, dev)
    mod = g.create_processing_module("ophys", "ophys")
    seg = ImageSegmentation()
    seg.create_plane_segmentation("rois", plane, name="PlaneSegmentation").add_roi(
        image_mask=np.ones((4, 4)))
    mod.add(seg)
    only = _write(tmp_path / "ophys.nwb", g)
    assert not nwb_ecephys.sniff(only, only.read_bytes()[:4096])
    assert loaders.detect(only).name == "nwb_ophys"


def test_bounded_memory_on_long_file(tmp_path):
    """24 MB of int16 written chunkwise; the copy holds a small multiple of a 1 MB block."""
    from hdmf.data_utils import GenericDataChunkIterator
    from pynwb import H5DataIO

    n_ch, n_times, step = 32, 400_000, 16_384
    f = _nwbfile()
    dev = f.create_device("amp")
    grp = f.create_electrode_group("scalp", "EEG cap", "scalp", dev)
    for k in range(n_ch):
        f.add_electrode(group=grp, location="scalp")
    region = f.create_electrode_table_region(list(range(n_ch)), "all")

    class Blocks(GenericDataChunkIterator):
        """Generates the recording block by block, as a writer of a long file would."""

        def _get_data(self, selection):
            t = np.arange(n_times)[selection[0]][:, None]
            return ((t * 7 + np.arange(n_ch)[selection[1]]) % 4001 - 2000).astype(np.int16)

        def _get_maxshape(self):
            return (n_times, n_ch)

        def _get_dtype(self):
            return np.dtype(np.int16)

    data = H5DataIO(Blocks(buffer_shape=(step, n_ch), chunk_shape=(4096, n_ch)))
    f.add_acquisition(ElectricalSeries(name="long", data=data, electrodes=region, rate=1000.0,
                                       conversion=0.5e-6))
    path = _write(tmp_path / "long.nwb", f)
    assert path.stat().st_size > n_ch * n_times * 2
    tracemalloc.start()
    out = convert(path, tmp_path / "l.zarr", block_bytes=1 << 20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 << 20, peak  # the whole recording as float64 would be 102 MB
    rec = nd_open(out)[0]
    assert rec.ch_types == ["eeg"] * n_ch and rec.n_times == n_times
    s = 123_456
    expect = ((np.arange(s, s + 3)[None, :] * 7 + np.arange(n_ch)[:, None]) % 4001 - 2000) * 0.5e-6
    np.testing.assert_allclose(rec.read(s, s + 3), expect.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(rec.read(n_times - 1)[:, 0],
                               (((n_times - 1) * 7 + np.arange(n_ch)) % 4001 - 2000) * 0.5e-6,
                               rtol=1e-6)


def test_bad_files_name_the_file(scaled_nwb, tmp_path):
    blob = scaled_nwb.read_bytes()
    trunc = tmp_path / "trunc.nwb"
    trunc.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(NeurodataError, match="trunc.nwb"):
        convert(trunc, tmp_path / "t.zarr", format="nwb_ecephys")
    bad = tmp_path / "garbage.nwb"
    bad.write_bytes(blob[:8] + bytes(range(256)) * 40)
    with pytest.raises(NeurodataError, match="garbage.nwb"):
        convert(bad, tmp_path / "g.zarr", format="nwb_ecephys")
    with pytest.raises(NeurodataError, match="garbage.nwb"):
        loaders.detect(bad)  # HDF5 magic, unreadable: no sniffer claims it
    assert not (tmp_path / "t.zarr").exists() and not (tmp_path / "g.zarr").exists()
    # an NWB file without an ElectricalSeries
    empty = _write(tmp_path / "noephys.nwb", _nwbfile())
    assert not nwb_ecephys.sniff(empty, empty.read_bytes()[:4096])
    with pytest.raises(FormatError, match="noephys.nwb.*no ElectricalSeries"):
        convert(empty, tmp_path / "e.zarr", format="nwb_ecephys")


def test_cli_convert(scaled_nwb, tmp_path):
    out = tmp_path / "cli.zarr"
    r = subprocess.run([sys.executable, "-m", "neurodata.cli.main", "convert", str(scaled_nwb),
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rec = nd_open(out)[0]
    assert rec.ch_names[0] == "LA1" and rec.sfreq == 512.0 and rec.n_times == 3000
