"""EEG datasets as wholes: BIDS folders (mne-bids) and MOABB datasets."""
from __future__ import annotations

import numpy as np
import pytest

mne = pytest.importorskip("mne")
mne.set_log_level("ERROR")

from neurodata import loaders  # noqa: E402
from neurodata.conversion import convert  # noqa: E402
from neurodata.dataset import open as nd_open  # noqa: E402
from neurodata.errors import FormatError  # noqa: E402


def _convert(src, tmp_path, name="s.zarr", **kw):
    return nd_open(convert(src, tmp_path / name, **kw))


# ---------------------------------------------------------------- BIDS
def test_bids_ieeg_folder(real, tmp_path):
    mne_bids = pytest.importorskip("mne_bids")
    raw = mne.io.read_raw_edf(real("eeg/test.edf"), preload=True)
    raw.pick(raw.ch_names[:12] + ["Status"])
    raw.set_channel_types({c: "seeg" for c in raw.ch_names[:12]})
    pos = {c: np.array([0.01 * i, 0.02, 0.03]) for i, c in enumerate(raw.ch_names[:12])}
    raw.set_montage(mne.channels.make_dig_montage(pos, coord_frame="mri"), on_missing="ignore")
    raw.info["line_freq"] = 50
    root = tmp_path / "bids"
    bp = mne_bids.BIDSPath(subject="01", session="1", task="rest", run=1, datatype="ieeg",
                           root=root, space="ACPC")
    mne_bids.write_raw_bids(raw, bp, format="EDF", allow_preload=True, verbose=False)
    tsv = next(root.rglob("*_electrodes.tsv"))
    lines = tsv.read_text().splitlines()
    lines = [lines[0] + "\tregion"] + [ln + ("\thippocampus" if i < 6 else "\tamygdala")
                                       for i, ln in enumerate(lines[1:])]
    tsv.write_text("\n".join(lines) + "\n")
    assert loaders.detect(root).name == "bids_eeg"
    ds = _convert(root, tmp_path)
    rec = ds[0]
    assert rec.subject == "01" and rec.session == "1" and rec.attrs["task"] == "rest"
    assert rec.ch_types == ["seeg"] * 12 + ["stim"]
    np.testing.assert_allclose(rec.positions[:12, 0], np.arange(12) * 0.01)
    assert np.isnan(rec.positions[12]).all()
    assert rec.regions[:7] == ["hippocampus"] * 6 + ["amygdala"]
    assert rec.attrs["coordinate_system"] == "ACPC"
    ref = mne.io.read_raw_edf(real("eeg/test.edf"), preload=False)
    np.testing.assert_allclose(rec.read()[:12], ref.get_data(picks=range(12)), rtol=1e-4,
                               atol=2e-9)  # BIDS writing re-quantises to EDF's 16 bits
    assert list(rec.annotations()["description"]) == ["start", "type A", "type A", "type B",
                                                       "type A"]
    hp = rec.picks(types="seeg", regions="hippo")
    assert hp.tolist() == list(range(6))


# ---------------------------------------------------------------- MOABB
def test_moabb_conversion_with_fake_dataset(tmp_path):
    """The MOABB path on MOABB's own synthetic dataset (no download needed)."""
    fake_mod = pytest.importorskip("moabb.datasets.fake")
    from neurodata.loaders.eeg_moabb import MOABB_DATASETS, convert_moabb, moabb_dataset

    fake = fake_mod.FakeDataset(event_list=("left_hand", "right_hand"), n_sessions=1, n_runs=2,
                                n_subjects=2, paradigm="imagery", duration=20, seed=0)
    out = convert_moabb(fake, tmp_path / "m.zarr", subjects=[1, 2])
    ds = nd_open(out)
    assert ds.names == ["sub-1_ses-0_run-0", "sub-1_ses-0_run-1", "sub-2_ses-0_run-0",
                        "sub-2_ses-0_run-1"]
    assert ds.attrs["event_id"] == {"left_hand": 1, "right_hand": 2}
    raws = fake.get_data([1])[1]["0"]
    raw = raws["0"]
    rec = ds[0]
    np.testing.assert_array_equal(rec.read(), raw.get_data().astype(np.float32))
    ref = mne.find_events(raw, consecutive=True, shortest_event=1, initial_event=True)
    np.testing.assert_array_equal(rec.events()["sample"], ref[:, 0])
    names = {1: "left_hand", 2: "right_hand"}
    assert list(rec.events()["label"]) == [names[c] for c in ref[:, 2]]
    assert rec.subject == "1" and rec.attrs["run"] == "0"
    lo, hi = ds.attrs["interval"]
    ws = ds.windows(tmin=lo, tmax=hi - 1 / rec.sfreq, events={"left_hand": 0, "right_hand": 1})
    n_trials = sum(len(mne.find_events(r, consecutive=True, shortest_event=1))
                   for s in (1, 2) for r in fake.get_data([s])[s]["0"].values())
    assert len(ws) == n_trials and ws.length == int(round((hi - lo) * rec.sfreq))
    assert set(MOABB_DATASETS) == {"bnci2014_001", "bnci2014_004", "physionet_mi"}
    assert type(moabb_dataset("bnci2014_001")).__name__ == "BNCI2014_001"
    with pytest.raises(FormatError, match="unknown MOABB dataset"):
        moabb_dataset("nope")
