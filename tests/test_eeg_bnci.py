"""BNCI Horizon 2020 MAT files (BCI Competition IV 2a/2b): the eeg_bnci loader.

The files are written here in the exact BNCI layout with ``scipy.io.savemat``
(one variable ``data``: a cell array of run structs with X, trial, y, fs,
classes, artifacts, gender, age). Expected values come from the arrays the
test wrote (the layout read by hand: sample = trial - 1, volts = X * 1e-6) and,
for the download test, from MOABB's own independent reader of the same files.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np
import pytest
import scipy.io
from http_fixture import MisbehavingServer

import neurodata
from neurodata import loaders
from neurodata.errors import CorruptFileError, FormatError, NeurodataError
from neurodata.loaders import eeg_bnci, mat_events

FS = 250
EEG_2A = ("Fz FC3 FC1 FCz FC2 FC4 C5 C3 C1 Cz C2 C4 C6 CP3 CP1 CPz CP2 CP4 P1 Pz P2 POz "
          "EOG1 EOG2 EOG3").split()
CLASSES_2A = ["left hand", "right hand", "feet", "tongue"]
CLASSES_2B = ["left hand", "right hand"]
N_RUN = 60 * FS  # 60 s runs
#: trial starts (1-based, as in the files): every 7.5 s from 1 s on; run 3 adds one trial
#: 2.4 s before the end, too late for a 2..6 s window
STARTS = [251 + 1875 * i for i in range(7)]
STARTS_LATE = STARTS + [N_RUN - 600 + 1]


def _run(rng, n_ch, n, trials, codes, classes, artifacts, *, trial_dtype=np.int32,
         gender="f", age=23.0):
    """One run struct as BNCI stores it (column vectors, cell of class names)."""
    empty = np.zeros((0, 0))
    return {
        "X": np.round(rng.normal(0.0, 20.0, size=(n, n_ch)), 4),  # microvolts
        "trial": np.asarray(trials, trial_dtype).reshape(-1, 1) if len(trials) else empty,
        "y": np.asarray(codes, np.uint8).reshape(-1, 1) if len(codes) else empty,
        "fs": np.array([[FS]], np.uint16),
        "classes": np.array(classes, dtype=object),
        "artifacts": np.asarray(artifacts, np.uint8).reshape(-1, 1) if len(artifacts) else empty,
        "gender": gender,
        "age": age,
    }


def _cell(runs):
    cell = np.empty((1, len(runs)), dtype=object)
    for k, r in enumerate(runs):
        cell[0, k] = r
    return cell


def write_2a(path, seed, n_task_runs=2):
    """A 001-2014 file: an EOG run without trials, then task runs; returns the run dicts."""
    rng = np.random.default_rng(seed)
    runs = [_run(rng, 25, N_RUN, [], [], CLASSES_2A, [])]
    for k in range(n_task_runs):
        starts = STARTS if k == 0 else STARTS_LATE
        codes = rng.integers(1, 5, len(starts))
        flags = np.zeros(len(starts), np.uint8)
        flags[[2] if k == 0 else [0, len(starts) - 1]] = 1
        runs.append(_run(rng, 25, N_RUN, starts, codes, CLASSES_2A, flags))
    scipy.io.savemat(path, {"data": _cell(runs)}, do_compression=True)  # as BNCI ships them
    return runs


def write_2b(path, seed):
    rng = np.random.default_rng(seed)
    runs = [_run(rng, 6, 30 * FS, [501, 3001, 5501], [1, 2, 2], CLASSES_2B, [0, 0, 1],
                 gender="m", age=24.0),
            _run(rng, 6, 20 * FS, [251, 2751], [2, 1], CLASSES_2B, [0, 0],
                 gender="m", age=24.0)]
    scipy.io.savemat(path, {"data": _cell(runs)})
    return runs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bnci")
    return {"A01T": (d / "A01T.mat", write_2a(d / "A01T.mat", 1)),
            "A01E": (d / "A01E.mat", write_2a(d / "A01E.mat", 2, n_task_runs=1)),
            "B01T": (d / "B01T.mat", write_2b(d / "B01T.mat", 3)),
            "B01E": (d / "B01E.mat", write_2b(d / "B01E.mat", 4))}


@pytest.fixture(scope="module")
def store_2a(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("st") / "a01t.zarr"
    neurodata.convert(files["A01T"][0], out)
    return neurodata.open(out)


# ------------------------------------------------------------------ detection
def test_detected_as_bnci_and_not_confused_with_other_mat_files(files, real, tmp_path):
    assert loaders.detect(files["A01T"][0]).name == "eeg_bnci"
    assert loaders.detect(files["B01T"][0]).name == "eeg_bnci"
    head = files["A01T"][0].read_bytes()[:4096]
    assert not mat_events.sniff(files["A01T"][0], head)
    # the real ST-MNIST sample and an ASL-DVS-like file stay mat_events
    st = real("events/sample_stmnist.mat")
    assert not eeg_bnci.sniff(st, st.read_bytes()[:4096])
    assert loaders.detect(st).name == "mat_events"
    asl = tmp_path / "asl.mat"
    scipy.io.savemat(asl, {"x": np.array([[1]]), "y": np.array([[2]]), "ts": np.array([[3]]),
                           "pol": np.array([[1]])})
    assert not eeg_bnci.sniff(asl, asl.read_bytes()[:4096])
    # a MAT file whose one variable is a plain matrix named data is not claimed
    plain = tmp_path / "plain.mat"
    scipy.io.savemat(plain, {"data": np.ones((3, 3))})
    assert not eeg_bnci.sniff(plain, plain.read_bytes()[:4096])


# ------------------------------------------------------------------ 2a
def test_2a_runs_channels_and_values(files, store_2a):
    ds = store_2a
    runs = files["A01T"][1]
    assert ds.names == ["A01T_run-1", "A01T_run-2", "A01T_run-3"]
    assert ds.attrs["dataset"] == "BNCI 001-2014"
    for k, r in enumerate(ds):
        assert r.ch_names == EEG_2A
        assert r.ch_types == ["eeg"] * 22 + ["eog"] * 3
        assert r.units == ["V"] * 25
        assert r.sfreq == 250.0 and r.n_times == 15000
        data = r.read()
        assert data.dtype == np.float32 and data.shape == (25, 15000)
        np.testing.assert_array_equal(data, (runs[k]["X"] * 1e-6).T.astype(np.float32))
        assert r.attrs["run"] == k + 1
        assert r.subject == "01" and r.session == "T"
        assert r.attrs["dataset"] == "BNCI 001-2014"
        assert r.attrs["subject_info"] == {"sex": "female", "age": 23.0}
    # the EOG run without trials is kept, with no events
    eog = ds["A01T_run-1"]
    assert len(eog.events()["sample"]) == 0 and len(eog.annotations()["onset"]) == 0
    assert eog.attrs["n_trials"] == 0


def test_2a_events_labels_and_artifact_annotations(files, store_2a):
    runs = files["A01T"][1]
    r2, r3 = store_2a["A01T_run-2"], store_2a["A01T_run-3"]
    ev = r2.events()
    np.testing.assert_array_equal(ev["sample"], [250 + 1875 * i for i in range(7)])
    np.testing.assert_array_equal(ev["code"], runs[1]["y"].ravel())
    assert list(ev["label"]) == [CLASSES_2A[c - 1] for c in runs[1]["y"].ravel()]
    ev3 = r3.events()
    assert ev3["sample"][-1] == 14400 and len(ev3["sample"]) == 8
    # flagged trial 3 of run 2 (sample 4000): from its start to the 4th trial's start
    a = r2.annotations()
    assert list(a["description"]) == ["BAD_artifact"]
    np.testing.assert_allclose(a["onset"], [4000 / 250])
    np.testing.assert_allclose(a["duration"], [7.5])
    # run 3: the first trial (to the second's start) and the late last one (to the run end)
    a3 = r3.annotations()
    assert list(a3["description"]) == ["BAD_artifact", "BAD_artifact"]
    np.testing.assert_allclose(a3["onset"], [1.0, 57.6])
    np.testing.assert_allclose(a3["duration"], [7.5, 2.4])
    assert r3.attrs["n_artifact_trials"] == 2
    assert r3.attrs["event_id"] == {"left hand": 1, "right hand": 2, "feet": 3, "tongue": 4}


def test_2a_event_locked_windows(files, store_2a):
    ds = store_2a
    events = {c: i for i, c in enumerate(CLASSES_2A)}
    win = ds.windows(tmin=2.0, tmax=6.0 - 1 / 250, events=events)
    # 7 + 7 trials fit (the late trial of run 3 ends past the run); 1000 samples each
    assert len(win.starts) == 14 and win.length == 1000
    codes = np.concatenate([files["A01T"][1][1]["y"].ravel(), files["A01T"][1][2]["y"].ravel()[:7]])
    np.testing.assert_array_equal(np.bincount(win.labels, minlength=4),
                                  np.bincount(codes - 1, minlength=4))
    # the first window: run 2's first trial (sample 250), its 2..6 s after the trial start
    x, y = win.read([0, 13])
    X2, X3 = files["A01T"][1][1]["X"], files["A01T"][1][2]["X"]
    np.testing.assert_array_equal(x[0], (X2[750:1750] * 1e-6).T.astype(np.float32))
    last = 250 + 1875 * 6 + 500  # run 3's seventh trial, the last window
    np.testing.assert_array_equal(x[1], (X3[last:last + 1000] * 1e-6).T.astype(np.float32))
    np.testing.assert_array_equal(y, [codes[0] - 1, codes[13] - 1])


# ------------------------------------------------------------------ 2b
def test_2b_file(files, tmp_path):
    out = neurodata.convert(files["B01T"][0], tmp_path / "b.zarr")
    ds = neurodata.open(out)
    runs = files["B01T"][1]
    assert ds.names == ["B01T_run-1", "B01T_run-2"]
    assert ds.attrs["dataset"] == "BNCI 004-2014"
    r1, r2 = ds
    assert r1.ch_names == ["C3", "Cz", "C4", "EOG1", "EOG2", "EOG3"]
    assert r1.ch_types == ["eeg"] * 3 + ["eog"] * 3
    assert (r1.n_times, r2.n_times) == (7500, 5000)
    np.testing.assert_array_equal(r2.read(), (runs[1]["X"] * 1e-6).T.astype(np.float32))
    np.testing.assert_array_equal(r1.events()["sample"], [500, 3000, 5500])
    assert list(r1.events()["label"]) == ["left hand", "right hand", "right hand"]
    a = r1.annotations()
    np.testing.assert_allclose(a["onset"], [22.0])
    np.testing.assert_allclose(a["duration"], [8.0])  # last trial: to the end of the run
    assert r2.attrs["subject_info"] == {"sex": "male", "age": 24.0}
    assert (r2.subject, r2.session, r2.attrs["run"]) == ("01", "T", 2)
    prov = ds.provenance()
    assert prov["loader"].startswith("eeg_bnci/")
    assert prov["sources"][0]["sha256"] == hashlib.sha256(
        files["B01T"][0].read_bytes()).hexdigest()


def test_deidentify_and_other_files_and_ch_names(files, tmp_path):
    out = neurodata.convert(files["B01T"][0], tmp_path / "d.zarr", deidentify=True,
                            pseudonym_salt="s")
    r = neurodata.open(out)[0]
    assert "subject_info" not in r.attrs and r.attrs["deidentified"] is True
    assert r.subject.startswith("anon-") and r.name.startswith("anon-")
    assert "B01T" not in str(neurodata.open(out).provenance())
    # a file the name does not identify: EEG1..n, or the names given; one struct, not a cell
    rng = np.random.default_rng(5)
    one = tmp_path / "session.mat"
    # trial starts stored as double here (MATLAB's default class) are read as well
    run = _run(rng, 4, 1000, [11, 511], [1, 2], CLASSES_2B, [0, 0], trial_dtype=np.float64)
    scipy.io.savemat(one, {"data": run})
    ds = neurodata.open(neurodata.convert(one, tmp_path / "o.zarr"))
    assert ds.names == ["session_run-1"]
    assert ds[0].ch_names == ["EEG1", "EEG2", "EEG3", "EEG4"] and "dataset" not in ds[0].attrs
    assert ds[0].subject is None
    ds = neurodata.open(neurodata.convert(one, tmp_path / "n.zarr",
                                          ch_names=["C3", "C4", "EOG1", "EOG2"]))
    assert ds[0].ch_types == ["eeg", "eeg", "eog", "eog"]
    np.testing.assert_array_equal(ds[0].events()["sample"], [10, 510])


# ------------------------------------------------------------------ bad input
def _bad(tmp_path, name, runs):
    p = tmp_path / name
    scipy.io.savemat(p, {"data": _cell(runs)})
    return p


@pytest.mark.parametrize("case,err,match", [
    ("trial_beyond", CorruptFileError, "trial 2 starts at sample 1001, outside"),
    ("length_mismatch", CorruptFileError, "2 trial starts but 1 labels"),
    ("channels", CorruptFileError, "run 1 has 5 channels; BNCI 004-2014"),
    ("no_X", FormatError, "lacks field"),
    ("code", CorruptFileError, "class codes y 1..3 outside 1..2"),
    ("artifacts", CorruptFileError, "1 artifact flags for 2 trials"),
])
def test_bad_files_raise_naming_the_file(tmp_path, case, err, match):
    rng = np.random.default_rng(0)
    n_ch = 5 if case == "channels" else 6
    run = _run(rng, n_ch, 1000, [1, 1001 if case == "trial_beyond" else 500],
               [1, 3 if case == "code" else 2], CLASSES_2B, [0, 0])
    if case == "length_mismatch":
        run["y"] = np.array([[1]], np.uint8)
    if case == "no_X":
        del run["X"]
    if case == "artifacts":
        run["artifacts"] = np.array([[1]], np.uint8)
    p = _bad(tmp_path, "B02E.mat", [run])
    out = tmp_path / "out.zarr"
    with pytest.raises(err, match=match) as e:
        neurodata.convert(p, out, format="eeg_bnci")
    assert str(p) in str(e.value)
    assert not out.exists() and not [q for q in tmp_path.iterdir() if "out" in q.name]


def test_corrupt_and_foreign_mat_files(tmp_path, files):
    raw = files["A01T"][0].read_bytes()
    cut = tmp_path / "A01T.mat"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(NeurodataError) as e:
        neurodata.convert(cut, tmp_path / "c.zarr", format="eeg_bnci")
    assert str(cut) in str(e.value)
    two = tmp_path / "two.mat"
    scipy.io.savemat(two, {"data": np.ones(3), "other": np.ones(2)})
    with pytest.raises(FormatError, match="one variable 'data'"):
        neurodata.convert(two, tmp_path / "t.zarr", format="eeg_bnci")
    plain = tmp_path / "plain.mat"
    scipy.io.savemat(plain, {"data": np.ones((3, 3))})
    with pytest.raises(FormatError, match="not a BNCI cell array"):
        neurodata.convert(plain, tmp_path / "p.zarr", format="eeg_bnci")
    assert not any((tmp_path / n).exists() for n in ("c.zarr", "t.zarr", "p.zarr"))


# ------------------------------------------------------------------ MOABB, downloading
def _moabb_download(files, stems, folder, tmp_path, monkeypatch, make_ds, loader_name):
    """Serve ``stems`` at ``/<folder>/<stem>.mat`` on 127.0.0.1 and convert subject 1 through
    MOABB (its downloader, pooch, then its reader) into a store; returns it opened."""
    from moabb.datasets.bnci import base as bnci_base
    from moabb.datasets.bnci import bnci_2014

    from neurodata.loaders.eeg_moabb import convert_moabb

    (tmp_path / "mne").mkdir()  # MNE wants the data folder to exist
    monkeypatch.setenv("MNE_DATASETS_BNCI_PATH", str(tmp_path / "mne"))
    monkeypatch.setenv("MOABB_DOWNLOAD_PROVIDER", "upstream")  # no NEMAR mirror lookup
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with MisbehavingServer() as srv:
        for stem in stems:
            srv.add(f"/{folder}/{stem}.mat", files[stem][0].read_bytes())
        base = srv.url("/")
        ds = make_ds()
        # MOABB 1.7.2's BNCI2014_001 and _004 ignore a _base_url attribute: 001's loader function takes
        # the URL as an argument defaulting to BNCI's server; 004 goes through
        # bnci.base.load_data, which passes the module's BNCI_URL
        if loader_name:
            monkeypatch.setattr(bnci_2014, loader_name,
                                functools.partial(getattr(bnci_2014, loader_name), base_url=base))
        else:
            monkeypatch.setattr(bnci_base, "BNCI_URL", base)
        out = convert_moabb(ds, tmp_path / "moabb.zarr", subjects=[1])
        assert sorted(p for p, _, status in srv.log if status == 200) == \
            sorted(f"/{folder}/{stem}.mat" for stem in stems)
    return neurodata.open(out)


def test_moabb_download_matches_eeg_bnci(files, tmp_path, monkeypatch):
    """MOABB downloads A01T/A01E from a local server and reads them its own way: the same
    signals, trials and flagged trials as eeg_bnci."""
    moabb_datasets = pytest.importorskip("moabb.datasets")
    m = _moabb_download(files, ("A01T", "A01E"), "001-2014", tmp_path, monkeypatch,
                        lambda: moabb_datasets.BNCI2014_001(artifact_handling="annotate_bad"),
                        "_load_data_001_2014")
    # MOABB drops the runs without trials and numbers the rest from 0 per session
    pairs = {"sub-1_ses-0train_run-0": ("A01T", "A01T_run-2"),
             "sub-1_ses-0train_run-1": ("A01T", "A01T_run-3"),
             "sub-1_ses-1test_run-0": ("A01E", "A01E_run-2")}
    assert sorted(m.names) == sorted(pairs)
    ours = {}
    for stem in ("A01T", "A01E"):
        ours[stem] = neurodata.open(neurodata.convert(files[stem][0], tmp_path / f"{stem}.zarr"))
    n_compared = n_flagged = 0
    for mname, (stem, oname) in pairs.items():
        mr, orec = m[mname], ours[stem][oname]
        assert mr.ch_names == EEG_2A + ["STI"] and mr.ch_types[-1] == "stim"
        assert mr.ch_types[:25] == orec.ch_types and mr.sfreq == orec.sfreq
        np.testing.assert_array_equal(mr.read()[:25], orec.read())
        me, oe = mr.events(), orec.events()
        np.testing.assert_array_equal(me["sample"], oe["sample"])
        np.testing.assert_array_equal(me["code"], oe["code"])
        assert [s.replace("_", " ") for s in me["label"].astype(str)] == list(oe["label"])
        # MOABB annotates a flagged trial over its 2..6 s interval; eeg_bnci from its start
        ma, oa = mr.annotations(), orec.annotations()
        bad = ma["description"].astype(str) == "BAD_artifact"
        np.testing.assert_allclose(ma["onset"][bad] - 2.0, oa["onset"])
        n_compared += len(oe["sample"])
        n_flagged += int(bad.sum())
    assert n_compared == 7 + 8 + 7 and n_flagged == 1 + 2 + 1


def test_moabb_download_matches_eeg_bnci_2b(files, tmp_path, monkeypatch):
    """The same for 004-2014: MOABB makes every run of B01T/B01E a session of its own."""
    moabb_datasets = pytest.importorskip("moabb.datasets")
    m = _moabb_download(files, ("B01T", "B01E"), "004-2014", tmp_path, monkeypatch,
                        moabb_datasets.BNCI2014_004, None)
    pairs = {"sub-1_ses-0train_run-0": ("B01T", "B01T_run-1"),
             "sub-1_ses-1train_run-0": ("B01T", "B01T_run-2"),
             "sub-1_ses-2test_run-0": ("B01E", "B01E_run-1"),
             "sub-1_ses-3test_run-0": ("B01E", "B01E_run-2")}
    assert sorted(m.names) == sorted(pairs)
    ours = {stem: neurodata.open(neurodata.convert(files[stem][0], tmp_path / f"{stem}.zarr"))
            for stem in ("B01T", "B01E")}
    for mname, (stem, oname) in pairs.items():
        mr, orec = m[mname], ours[stem][oname]
        assert mr.ch_names == orec.ch_names + ["STI"]
        assert mr.ch_types[:6] == orec.ch_types == ["eeg"] * 3 + ["eog"] * 3
        np.testing.assert_array_equal(mr.read()[:6], orec.read())
        np.testing.assert_array_equal(mr.events()["sample"], orec.events()["sample"])
        np.testing.assert_array_equal(mr.events()["code"], orec.events()["code"])
    assert [len(ours[s][k].events()["sample"]) for s, k in pairs.values()] == [3, 2, 3, 2]


def test_dataset_card_downloads_and_converts(files, tmp_path, monkeypatch):
    """The bnci2014_001 card, its first subject served on 127.0.0.1: download (sha256
    checked), then one store with a group per run of both files, split from the card."""
    from neurodata import cards

    monkeypatch.setenv("NEURODATA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEURODATA_OFFLINE", raising=False)
    card = dict(cards.get_card("bnci2014_001"))
    with MisbehavingServer() as server:
        entries = []
        for stem in ("A01T", "A01E"):
            payload = files[stem][0].read_bytes()
            entry = next(e for e in card["files"] if e["name"] == f"{stem}.mat")
            entries.append(dict(entry, url=server.add(f"/001-2014/{stem}.mat", payload),
                                mirrors=[], sha256=hashlib.sha256(payload).hexdigest()))
        card["files"] = entries
        ds = neurodata.open(cards.convert_dataset(card, tmp_path / "bnci.zarr"))
    assert ds.names == ["A01T_run-1", "A01T_run-2", "A01T_run-3", "A01E_run-1", "A01E_run-2"]
    assert [ds[i].attrs["split"] for i in range(5)] == ["train"] * 3 + ["test"] * 2
    assert ds[1].attrs["source"] == "A01T.mat" and ds.attrs["dataset"] == "bnci2014_001"
    want = files["A01T"][1][1]
    np.testing.assert_array_equal(ds[1].read(), (want["X"].T * 1e-6).astype(np.float32))
    np.testing.assert_array_equal(ds[1].events()["sample"], np.asarray(STARTS) - 1)
