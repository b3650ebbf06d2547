"""GDF 1.25 / 2.x through MNE into the timeseries/1 store, with files from tests/gdf_writer.py.

No GDF sample exists in ../shared/data, so the files are written here from the
specification (Schlögl, "GDF - A general dataformat for biosignals") by an
independent writer, and every figure is checked twice: against the values the
writer quantised (its own arithmetic) and against MNE's reading of the file.

Where MNE 1.x reads GDF differently from the specification, the tests below
say so (``MNE:`` comments) and pin the behaviour the store then carries:

* event positions are taken as 1-based (first sample = 1) and shifted to 0-based;
* an event duration of 0 (and every mode-1 event) becomes one sample long;
* event onsets use the signal rate, never the event table's own sampling rate,
  and are rounded to the microsecond;
* descriptions are the event type as a decimal string ("769", not 0x0301);
* GDF 1.x text units other than "uV..." are not scaled ("mV" is read as V);
  2.x codes 4275 (uV), 4274 (mV), 512 (dimensionless) are, 4256 (V) warns;
* a 2.x header 3 (tag section) trips an assertion: the loader gives MNE a copy
  without it;
* a 1.x file without an event table fails (IndexError): the loader gives MNE a copy
  with an empty table;
* a GDF file is only read when its name ends in ".gdf" (detection is by content): the
  loader gives MNE a ``.gdf`` link;
* channels of different data types are refused (bytes sizes differ) or, for
  same-size types (int32 with float32), all read as the first type: refused.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

mne = pytest.importorskip("mne")
mne.set_log_level("ERROR")

import neurodata  # noqa: E402
from neurodata import loaders  # noqa: E402
from neurodata.errors import (CorruptFileError, FormatError, NeurodataError,  # noqa: E402
                              TruncatedFileError)
from neurodata.loaders.eeg_mne import gdf_header, source_kind  # noqa: E402

from gdf_writer import DIM_CODE, write_gdf  # noqa: E402

SFREQ = 256
N = SFREQ * 4  # 4 records of 1 s
LABELS = ["Fz", "Cz", "Pz", "EOG", "Status"]
UNITS = ["uV", "uV", "uV", "mV", "1"]
SCALE = np.array([1e-6, 1e-6, 1e-6, 1e-3, 1.0])  # unit -> SI, per the 2.x codes
EVENTS = {"pos": [0, 100, 511, 700, 1023], "typ": [0x0300, 769, 770, 1, 32766],
          "chn": [0, 1, 0, 2, 0], "dur": [0, 256, 10, 1, 0]}


def _signals() -> np.ndarray:
    """Known signals: sines (uV), a slow EOG ramp (mV), a trigger code channel."""
    t = np.arange(N) / SFREQ
    status = np.zeros(N)
    status[[40, 41, 42, 300, 301, 900]] = [3, 3, 0, 7, 7, 12]  # steps 3@40, 7@300, 12@900
    return np.stack([80 * np.sin(2 * np.pi * 10 * t), 40 * np.cos(2 * np.pi * 3 * t) + 5,
                     120 * np.sin(2 * np.pi * 1.5 * t) * np.cos(2 * np.pi * 20 * t),
                     np.linspace(-2.0, 3.0, N), status])


def _int16_file(path, version="2.20", **kw):
    """Five int16 channels; the trigger channel with gain 1 (digital = physical)."""
    units = kw.pop("units", UNITS if float(version) >= 1.9 else
                   ["uV", "uV", "uV", "mV", ""])
    return write_gdf(path, _signals(), SFREQ, LABELS, version=version, types=3, units=units,
                     pmin=[-500, -500, -500, -5, -32768], pmax=[500, 500, 500, 5, 32767],
                     dmin=[-32768] * 5, dmax=[32767] * 5, events=EVENTS, **kw)


def _convert(src, tmp_path, name="s.zarr", **kw):
    return neurodata.open(neurodata.convert(src, tmp_path / name, **kw))


def _mne(path):
    return mne.io.read_raw_gdf(path, preload=True)


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("version", ["1.25", "2.10", "2.20"])
def test_int16_gdf_equals_mne_and_written_values(tmp_path, version):
    f = _int16_file(tmp_path / f"rec{version}.gdf", version)
    raw = _mne(f.path)
    rec = _convert(f.path, tmp_path)[0]
    assert rec.ch_names == LABELS == raw.ch_names
    assert rec.ch_types == ["eeg"] * 4 + ["stim"]  # MNE: a channel named Status is a stim channel
    assert (rec.sfreq, rec.n_times, rec.n_channels) == (256.0, 1024, 5)
    got = rec.read()
    np.testing.assert_array_equal(got, raw.get_data().astype(np.float32))
    # the writer's quantised physical values, in SI units
    scale = SCALE.copy()
    if version == "1.25":
        scale[3] = 1.0  # MNE: 1.x text unit "mV" is not scaled (only "uV..." is)
    np.testing.assert_allclose(raw.get_data(), f.physical * scale[:, None], rtol=1e-12,
                               atol=1e-18)
    # int16 quantisation: 1000 uV over 65535 steps -> at most half a step from the sine
    step = 1000 / 65535
    assert np.abs(f.physical[:3] - _signals()[:3]).max() <= step / 2 + 1e-12
    # sin(0) = 0 uV -> digital round(-0.5) = 0 -> physical (0 + 32768) * step - 500 uV
    assert f.digital[0][0] == 0
    assert got[0, 0] == pytest.approx((32768 * step - 500) * 1e-6, rel=1e-6)
    # the trigger channel: steps to a new non-zero code become events
    ev = rec.events()
    assert ev["sample"].tolist() == [40, 300, 900] and ev["code"].tolist() == [3, 7, 12]


def test_float32_gdf_with_gain(tmp_path):
    """float32 samples with a gain of 1000 (pmax 1000 uV for dmax 1.0), 2.20 and 1.25."""
    x = _signals()[:3]
    for version in ("2.20", "1.25"):
        f = write_gdf(tmp_path / f"f{version}.gdf", x, SFREQ, LABELS[:3], version=version,
                      types=16, units="uV", pmin=[-1000] * 3, pmax=[1000] * 3,
                      dmin=[-1] * 3, dmax=[1] * 3, events={"pos": [3], "typ": [1]})
        assert f.digital[0].dtype == np.float32
        np.testing.assert_allclose(f.digital[0], x[0] / 1000, rtol=1e-6, atol=1e-12)
        raw = _mne(f.path)
        rec = _convert(f.path, tmp_path, name=f"f{version}.zarr")[0]
        np.testing.assert_array_equal(rec.read(), raw.get_data().astype(np.float32))
        np.testing.assert_allclose(raw.get_data(), f.physical * 1e-6, rtol=1e-12, atol=1e-15)
        # float32 keeps the signal to float32 precision, no integer step
        np.testing.assert_allclose(f.physical, x, rtol=1e-6, atol=1e-9)
        assert (rec.sfreq, rec.n_times, rec.ch_names) == (256.0, 1024, LABELS[:3])


def test_physical_dimension_codes(tmp_path):
    """2.x unit codes: uV and mV scale, V (4256) and dimensionless (512) do not."""
    assert (DIM_CODE["uV"], DIM_CODE["mV"], DIM_CODE["V"], DIM_CODE["1"]) == \
        (4275, 4274, 4256, 512)
    x = np.full((4, SFREQ), 0.5)
    f = write_gdf(tmp_path / "u.gdf", x, SFREQ, ["a", "b", "c", "d"], types=16,
                  units=["uV", "mV", "V", "1"], pmin=[-1] * 4, pmax=[1] * 4,
                  dmin=[-1] * 4, dmax=[1] * 4)
    rec = _convert(f.path, tmp_path)[0]
    np.testing.assert_allclose(rec.read()[:, 0], [0.5e-6, 0.5e-3, 0.5, 0.5], rtol=1e-7)


def test_record_layout_in_header(tmp_path):
    f = _int16_file(tmp_path / "h.gdf", "2.20")
    h = gdf_header(f.path)
    assert (h["version"], h["n_channels"], h["header_bytes"], h["n_records"]) == \
        (2.2, 5, 256 * 6, 4)
    assert h["record_bytes"] == f.record_bytes == 5 * 256 * 2
    assert h["record_s"] == 1.0 and h["types"].tolist() == [3] * 5
    raw = f.path.read_bytes()
    # the first record's first Fz sample, read straight from the bytes
    assert np.frombuffer(raw, "<i2", 1, 256 * 6)[0] == f.digital[0][0]


def test_meas_date_survives(tmp_path):
    start = dt.datetime(2023, 11, 2, 8, 15, 42, tzinfo=dt.timezone.utc)
    for version in ("1.25", "2.20"):
        f = _int16_file(tmp_path / f"d{version}.gdf", version, start=start)
        rec = _convert(f.path, tmp_path, name=f"d{version}.zarr")[0]
        got = dt.datetime.fromisoformat(rec.attrs["meas_date"])
        # 2.x stores days as 32.32 fixed point; MNE's float arithmetic loses a few us
        assert abs((got - start).total_seconds()) < 1e-3


# ---------------------------------------------------------------- events -> annotations
@pytest.mark.parametrize("version", ["1.25", "2.20"])
def test_event_table_mode3_becomes_annotations(tmp_path, version):
    f = _int16_file(tmp_path / f"e{version}.gdf", version)
    raw = _mne(f.path)
    ann = _convert(f.path, tmp_path)[0].annotations()
    pos, dur = np.array(EVENTS["pos"]), np.array(EVENTS["dur"])
    # MNE: positions are 1-based in the file (the writer wrote pos + 1); onsets are
    # rounded to the microsecond (511 / 256 = 1.99609375 s is kept as 1.996094)
    np.testing.assert_allclose(ann["onset"], np.round(pos / SFREQ, 6), rtol=0, atol=1e-12)
    assert ann["onset"][2] == 1.996094
    # MNE: a zero duration becomes one sample
    np.testing.assert_allclose(ann["duration"], np.maximum(dur, 1) / SFREQ, rtol=0, atol=1e-12)
    assert list(ann["description"]) == ["768", "769", "770", "1", "32766"]
    np.testing.assert_array_equal(ann["onset"], raw.annotations.onset - raw.first_time)
    np.testing.assert_array_equal(ann["duration"], raw.annotations.duration)
    assert list(ann["description"]) == list(raw.annotations.description)
    assert ann["onset"][-1] == round(1023 / 256, 6)  # the last sample


def test_event_table_mode1(tmp_path):
    """Mode 1 (positions and types only): MNE gives every event one sample."""
    f = write_gdf(tmp_path / "m1.gdf", _signals()[:3], SFREQ, LABELS[:3], types=3,
                  events={"pos": [5, 6, 800], "typ": [1, 2, 3]}, event_mode=1)
    assert len(f.path.read_bytes()) == f.header_bytes + 4 * f.record_bytes + 8 + 3 * 6
    ann = _convert(f.path, tmp_path)[0].annotations()
    np.testing.assert_allclose(ann["onset"], [0.019531, 0.023438, 3.125], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ann["duration"], [1 / SFREQ] * 3, rtol=0, atol=1e-12)
    assert list(ann["description"]) == ["1", "2", "3"]


def test_event_sampling_rate_is_ignored_by_mne(tmp_path):
    """MNE: onsets use the signal rate even when the event table states another rate."""
    f = write_gdf(tmp_path / "esr.gdf", _signals()[:3], SFREQ, LABELS[:3], types=3,
                  events={"pos": [512], "typ": [1]}, event_sfreq=2 * SFREQ)
    assert f.events["sfreq"] == 512.0
    ann = _convert(f.path, tmp_path)[0].annotations()
    assert ann["onset"].tolist() == [2.0]  # the spec gives 512 / 512 Hz = 1.0 s


def test_no_event_table(tmp_path):
    f = write_gdf(tmp_path / "ne.gdf", _signals()[:3], SFREQ, LABELS[:3], types=3)
    rec = _convert(f.path, tmp_path)[0]
    assert len(rec.annotations()["onset"]) == 0 and rec.n_times == N
    # MNE: a 1.x file ending after its last record fails (IndexError reading the table mode)
    g = write_gdf(tmp_path / "ne1.gdf", _signals()[:3], SFREQ, LABELS[:3], version="1.25",
                  types=3)
    with pytest.raises(IndexError):
        mne.io.read_raw_gdf(g.path)
    # the loader hands MNE a copy with an empty event table appended
    rec1 = _convert(g.path, tmp_path, name="ne1.zarr")[0]
    np.testing.assert_array_equal(rec1.read(), rec.read())
    assert len(rec1.annotations()["onset"]) == 0


# ---------------------------------------------------------------- detection
def test_detected_by_magic_not_extension(tmp_path):
    f = _int16_file(tmp_path / "recording.dat", "2.20")
    assert source_kind(f.path) == "gdf"
    assert loaders.detect(f.path).name == "eeg_mne"
    g = _int16_file(tmp_path / "old.bin", "1.25")
    assert source_kind(g.path) == "gdf"
    fake = tmp_path / "fake.gdf"
    fake.write_bytes(b"GD" + b"\x00" * 600)
    assert source_kind(fake) is None
    # MNE: read_raw_gdf refuses any name not ending in .gdf, whatever the content;
    # the loader gives it a .gdf link to the file
    with pytest.raises(Exception, match="Only GDF files are supported"):
        mne.io.read_raw_gdf(f.path)
    rec = _convert(f.path, tmp_path)[0]
    assert rec.attrs["source_format"] == "gdf" and rec.attrs["source"] == "recording.dat"
    np.testing.assert_array_equal(rec.read()[:, :5], (f.physical * SCALE[:, None])[:, :5]
                                  .astype(np.float32))
    assert not list(tmp_path.glob("neurodata-gdf-*"))


# ---------------------------------------------------------------- bad input
def _fails(src, tmp_path, exc, pattern):
    out = tmp_path / (src.stem + ".zarr")
    with pytest.raises(exc, match=pattern) as info:
        neurodata.convert(src, out)
    assert isinstance(info.value, NeurodataError)
    assert src.name in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(out.name)]
    return info.value


def test_truncated_data(tmp_path):
    f = _int16_file(tmp_path / "full.gdf", "2.20")
    data = f.path.read_bytes()
    cut = tmp_path / "cut.gdf"
    cut.write_bytes(data[:f.header_bytes + 2 * f.record_bytes + 100])
    _fails(cut, tmp_path, TruncatedFileError, "cut.gdf.*header announces 4 data records")
    # MNE alone opens it and fails only when the samples are read
    raw = mne.io.read_raw_gdf(cut, preload=False)
    with pytest.raises(ValueError):
        raw.get_data()
    # the header lies about the record count of a complete file
    lie = _int16_file(tmp_path / "lie.gdf", "1.25", n_records_field=9)
    _fails(lie.path, tmp_path, TruncatedFileError, "lie.gdf.*announces 9 data records")


def test_truncated_event_table(tmp_path):
    f = _int16_file(tmp_path / "ev.gdf", "2.20")
    cut = tmp_path / "evcut.gdf"
    cut.write_bytes(f.path.read_bytes()[:-7])
    _fails(cut, tmp_path, TruncatedFileError, "evcut.gdf.*event table announces 5 events")


def test_header_claims_more_channels_than_bytes(tmp_path):
    f = _int16_file(tmp_path / "many.gdf", "2.20", ns_field=4000)
    _fails(f.path, tmp_path, TruncatedFileError, "many.gdf.*claims 4000 channels")
    g = _int16_file(tmp_path / "many1.gdf", "1.25", ns_field=70000)
    _fails(g.path, tmp_path, TruncatedFileError, "many1.gdf.*claims 70000 channels")
    # a channel count inside the file contradicting the header length
    h = _int16_file(tmp_path / "more.gdf", "2.20", ns_field=7)
    _fails(h.path, tmp_path, CorruptFileError,
           "more.gdf.*header length 1536 does not match 7 channel")


@pytest.mark.parametrize("magic", [b"GDF 9.99", b"GDF x.yz", b"GDF2.20 "])
def test_wrong_version_string(tmp_path, magic):
    f = _int16_file(tmp_path / "v.gdf", "2.20")
    bad = tmp_path / "badversion.gdf"
    bad.write_bytes(magic + f.path.read_bytes()[8:])
    err = _fails(bad, tmp_path, NeurodataError, "badversion.gdf")
    if source_kind(bad) == "gdf":  # recognised by its magic, refused by the version check
        assert isinstance(err, FormatError) and "unsupported GDF version" in str(err)


def test_unknown_record_count(tmp_path):
    f = _int16_file(tmp_path / "open.gdf", "2.20", n_records_field=-1)
    _fails(f.path, tmp_path, FormatError, "open.gdf.*unknown")


def test_mixed_data_types_refused(tmp_path):
    """MNE raises on int16+float32 and silently misreads int32+float32: both refused."""
    x = _signals()[:2]
    mix = write_gdf(tmp_path / "mix.gdf", x, SFREQ, ["a", "b"], types=[3, 16])
    _fails(mix.path, tmp_path, FormatError, r"mix.gdf.*different data types \[3, 16\]")
    same = write_gdf(tmp_path / "same.gdf", x, SFREQ, ["a", "b"], types=[5, 16])
    raw = mne.io.read_raw_gdf(same.path, preload=True)  # MNE: float32 bits read as int32
    assert not np.allclose(raw.get_data()[1], same.physical[1] * 1e-6)
    _fails(same.path, tmp_path, FormatError, r"same.gdf.*different data types \[5, 16\]")


def test_header3_is_cut_for_mne(tmp_path):
    """MNE asserts the data start right after header 2, so a 2.x tag section breaks it;
    the loader hands MNE a copy without header 3: same values as the file without tags."""
    import gc
    import tempfile
    from pathlib import Path

    tags = [(3, b"ACME\x00Amp-8\x001.0\x00SN42\x00")]  # manufacturer: 4 NUL-ended strings
    f = _int16_file(tmp_path / "tags.gdf", "2.20", tags=tags)
    plain = _int16_file(tmp_path / "plain.gdf", "2.20")
    assert f.header_bytes == 256 * 7 and gdf_header(f.path)["header3_bytes"] == 256
    with pytest.raises(AssertionError):
        mne.io.read_raw_gdf(f.path)
    before = set(Path(tempfile.gettempdir()).glob("neurodata-gdf-*"))
    rec = _convert(f.path, tmp_path)[0]
    ref = _convert(plain.path, tmp_path, name="plain.zarr")[0]
    np.testing.assert_array_equal(rec.read(), ref.read())
    np.testing.assert_array_equal(rec.events()["sample"], [40, 300, 900])
    assert list(rec.annotations()["description"]) == list(ref.annotations()["description"])
    assert rec.attrs["source"] == "tags.gdf"
    gc.collect()
    assert set(Path(tempfile.gettempdir()).glob("neurodata-gdf-*")) <= before  # copy removed


def test_unknown_data_type_code(tmp_path):
    f = _int16_file(tmp_path / "typ.gdf", "2.20")
    data = bytearray(f.path.read_bytes())
    data[256 + 220 * 5:256 + 220 * 5 + 4] = (12).to_bytes(4, "little")  # channel 0: type 12
    bad = tmp_path / "badtype.gdf"
    bad.write_bytes(bytes(data))
    _fails(bad, tmp_path, CorruptFileError, r"badtype.gdf.*type code\(s\) \[12\]")


# ---------------------------------------------------------------- records and rates
def test_half_second_records(tmp_path):
    """Record duration is a rational number of seconds: 128 samples per 128/256 s."""
    f = write_gdf(tmp_path / "half.gdf", _signals()[:3], SFREQ, LABELS[:3], types=3, spr=128,
                  events={"pos": [300], "typ": [5]})
    assert f.n_records == 8 and f.record_bytes == 3 * 128 * 2
    assert gdf_header(f.path)["record_s"] == 0.5
    rec = _convert(f.path, tmp_path)[0]
    assert (rec.sfreq, rec.n_times) == (256.0, 1024)
    np.testing.assert_allclose(rec.read(), np.float32(f.physical * 1e-6), rtol=1e-6, atol=1e-12)


def test_channels_at_different_rates(tmp_path):
    """A 64 Hz channel beside 256 Hz ones: MNE upsamples it; the store says so."""
    t_slow = np.arange(N // 4) / (SFREQ / 4)
    slow = 30 * np.sin(2 * np.pi * 2 * t_slow)  # 2 Hz, whole cycles in 4 s
    x = list(_signals()[:2]) + [slow]
    f = write_gdf(tmp_path / "rates.gdf", x, SFREQ, ["Fz", "Cz", "Resp"], types=3,
                  pmin=[-500] * 3, pmax=[500] * 3, dmin=[-32768] * 3, dmax=[32767] * 3,
                  events={"pos": [10], "typ": [1]})
    assert gdf_header(f.path)["spr"].tolist() == [256, 256, 64]
    raw = _mne(f.path)
    rec = _convert(f.path, tmp_path)[0]
    assert rec.attrs["resampled_by"].startswith("mne")
    assert (rec.sfreq, rec.n_times) == (256.0, 1024)
    got = rec.read()
    np.testing.assert_array_equal(got, raw.get_data().astype(np.float32))
    np.testing.assert_allclose(got[:2], np.float32(np.stack(f.physical[:2]) * 1e-6), rtol=1e-6,
                               atol=1e-12)
    # FFT upsampling by 4 keeps the recorded samples of a band-limited periodic signal
    np.testing.assert_allclose(raw.get_data()[2, ::4], f.physical[2] * 1e-6, rtol=0,
                               atol=1e-12)
    with pytest.raises(FormatError, match="rates.gdf.*different rates"):
        neurodata.convert(f.path, tmp_path / "err.zarr", mixed_rate="error")
    assert not (tmp_path / "err.zarr").exists()


def test_mutated_headers_fail_cleanly(tmp_path):
    """Random byte changes in the headers/event table and random cuts (seeded):
    the conversion either succeeds or raises a one-line NeurodataError naming the
    file, never another exception, and leaves no store behind when it fails."""
    rng = np.random.default_rng(20240305)
    bases = [_int16_file(tmp_path / f"base{v}.gdf", v).path.read_bytes()
             for v in ("1.25", "2.20")]
    outcomes = {"ok": 0, "refused": 0}
    for i in range(60):
        b = bytearray(bases[i % 2])
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.2:
                b = b[:int(rng.integers(8, len(b)))]
            else:  # the fixed and variable headers hold every size the reader trusts
                j = int(rng.integers(0, min(len(b), 256 * 6)))
                b[j] = int(rng.integers(0, 256))
        src = tmp_path / f"m{i}.gdf"
        src.write_bytes(bytes(b))
        out = tmp_path / f"m{i}.zarr"
        try:
            neurodata.convert(src, out)
            outcomes["ok"] += 1
        except NeurodataError as e:
            assert src.name in str(e) and "\n" not in str(e)
            assert not out.exists()
            outcomes["refused"] += 1
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0
