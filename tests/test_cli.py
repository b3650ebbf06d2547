"""The user-facing verbs: list, info, download, verify, preview, stats (and their errors)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from http_fixture import MisbehavingServer
from neurodata import cards
from neurodata.cli.main import main
from neurodata.conversion import convert
from neurodata.loaders import FORMATS

NEURODATA = Path(sys.executable).with_name("neurodata")
MY_VERBS = ["list", "info", "download", "verify", "preview", "stats"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODATA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEURODATA_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def event_store(tmp_path_factory):
    from neurodata.simulate import write_shapes_dataset

    root = tmp_path_factory.mktemp("cli")
    write_shapes_dataset(root / "raw", n_per_class=2, seed=5)
    return convert(root / "raw", root / "shapes.zarr", labels_from_folders=True)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("verb", MY_VERBS)
def test_help_everywhere(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: neurodata {verb}")


def test_list_shows_every_card(capsys):
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    names = [c["name"] for c in cards.list_cards()]
    rows = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert rows == names
    assert out.splitlines()[-1].startswith(f"{len(names)} datasets")
    assert "[gated]" in next(line for line in out.splitlines() if line.startswith("tuab "))


def test_list_json_and_modality(capsys):
    rc, out, _ = run(capsys, "list", "--json")
    doc = json.loads(out)
    assert rc == 0 and isinstance(doc, list)
    assert {c["name"] for c in doc} == {c["name"] for c in cards.list_cards()}
    assert all({"name", "modality"} <= set(c) for c in doc)
    rc, out, _ = run(capsys, "list", "--json", "--modality", "connectome")
    assert {c["modality"] for c in json.loads(out)} == {"connectome"}
    assert len(json.loads(out)) == 6


def test_list_formats(capsys):
    rc, out, _ = run(capsys, "list", "--formats", "--json")
    assert [f["name"] for f in json.loads(out)] == [f.name for f in FORMATS]
    rc, out, _ = run(capsys, "list", "--formats", "--modality", "events")
    assert "atis_bin" in out and "eeg_mne" not in out


def test_info_text_json_bibtex(capsys):
    rc, out, _ = run(capsys, "info", "nmnist")
    assert rc == 0
    assert "md5 20959b8e626244a1b502305a9e6e2031" in out and "atis_bin" in out
    assert "not downloaded" in out and "facts from" in out
    rc, out, _ = run(capsys, "info", "shd", "--json")
    doc = json.loads(out)
    assert doc["name"] == "shd" and doc["downloaded"] is False and doc["sensor_size"] == [700, 1, 1]
    rc, out, _ = run(capsys, "info", "cook2019", "--bibtex")
    assert out.startswith("@article{cook2019whole,")


def test_errors_are_one_line_and_nonzero(capsys, tmp_path):
    for argv in (["info", "nosuchdataset"], ["download", "tuab"],
                 ["preview", str(tmp_path / "missing.zarr"), "-o", str(tmp_path / "x.png")],
                 ["stats", str(tmp_path)], ["verify", "nosuch"]):
        rc, out, err = run(capsys, *argv)
        assert rc == 2, argv
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(f"neurodata {argv[0]}: error: ")
    rc, _, err = run(capsys, "download", "tuab")
    assert "gated dataset" in err and "data request form" in err


def fixture_card_file(tmp_path, server) -> Path:
    members = {"Train/0/a.bin": bytes(range(5)) * 40, "Train/1/b.bin": bytes([3, 4, 0, 0, 9]) * 30}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    data = buf.getvalue()
    url = server.add("/d/train.zip", data)
    card = {"name": "clifixture", "title": "cli fixture", "modality": "events",
            "description": "two ATIS samples served on 127.0.0.1", "homepage": "http://127.0.0.1/",
            "license": None, "citation": None, "source": ["built in the test"],
            "files": [{"name": "train.zip", "url": url, "sha256": hashlib.sha256(data).hexdigest(),
                       "split": "train"}],
            "gated": None,
            "convert": {"loader": "atis_bin", "pattern": "**/*.bin", "labels": "parent_folder",
                        "splits": "from_file"},
            "classes": ["0", "1"], "sensor_size": [34, 34, 2]}
    path = tmp_path / "clifixture.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def test_download_verify_and_tamper(capsys, tmp_path, home):
    with MisbehavingServer() as server:
        card = fixture_card_file(tmp_path, server)
        rc, out, _ = run(capsys, "download", str(card), "--no-progress", "--json")
        assert rc == 0 and json.loads(out)["folder"] == str(home / "clifixture")
    rc, out, _ = run(capsys, "verify", str(card), "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] and [c["status"] for c in doc["checks"]] == ["ok", "ok"]
    victim = home / "clifixture" / "train" / "Train" / "1" / "b.bin"
    victim.write_bytes(victim.read_bytes()[::-1])
    rc, out, _ = run(capsys, "verify", str(card))
    assert rc == 1
    assert "bad" in out and "Train/1/b.bin" in out and "1 problem(s)" in out
    (home / "clifixture" / "train.zip").write_bytes(b"corrupt")
    rc, out, _ = run(capsys, "verify", str(card), "--json")
    checks = json.loads(out)["checks"]
    assert rc == 1 and checks[0]["status"] == "bad" and "sha256" in checks[0]["detail"]


def test_verify_store_and_detect_damage(capsys, event_store, tmp_path):
    import shutil

    import zarr

    rc, out, _ = run(capsys, "verify", str(event_store), "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"]
    assert {c["item"] for c in doc["checks"]} >= {"schema", "sample table", "time index values",
                                                  "coordinates", "time order"}
    bad = tmp_path / "bad.zarr"
    shutil.copytree(event_store, bad)
    g = zarr.open_group(str(bad), mode="r+")
    tmin = g["chunk_t_min"][:]
    tmin[0] += 1
    g["chunk_t_min"][:] = tmin
    cnt = g["count"][:]
    cnt[1] += 1
    g["count"][:] = cnt
    rc, out, _ = run(capsys, "verify", str(bad))
    assert rc == 1
    assert "bad  sample table" in out and "bad  time index values: chunk 0" in out


def test_preview_and_stats(capsys, event_store, tmp_path):
    from PIL import Image

    png = tmp_path / "p.png"
    rc, out, _ = run(capsys, "preview", str(event_store), "-o", str(png), "--samples", "4")
    assert rc == 0 and out.strip() == f"wrote {png}"
    with Image.open(png) as im:
        assert im.size == (int(round((1.4 * 8 + 1.6) * 100)), int(round((1.4 * 4 + 0.8) * 100)))
        assert np.asarray(im.convert("L")).std() > 10
    splot = tmp_path / "s.png"
    rc, out, _ = run(capsys, "stats", str(event_store), "--json", "-o", str(splot))
    doc = json.loads(out.split("\nwrote ")[0])
    import neurodata

    ds = neurodata.open(event_store)
    assert doc["samples"] == len(ds) == 8 and doc["events"] == ds.n_events
    total = sum(sum(v.values()) for v in doc["class_balance"].values())
    assert total == 8
    counts = ds.reader.count
    assert doc["events_per_sample"]["max"] == float(counts.max())
    # durations recomputed independently from the events of each sample
    durs = [(ds[i][0]["t"][-1] - ds[i][0]["t"][0]) / 1e6 for i in range(len(ds))]
    assert doc["duration_s"]["max"] == pytest.approx(max(durs))
    assert doc["duration_s"]["mean"] == pytest.approx(np.mean(durs))
    with Image.open(splot) as im:
        assert im.size == (1000, 700)


def test_installed_script_in_a_subprocess(tmp_path):
    assert NEURODATA.exists(), NEURODATA
    env = dict(os.environ, NEURODATA_HOME=str(tmp_path / "h"))
    r = subprocess.run([str(NEURODATA), "list", "--json"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == len(cards.list_cards())
    r = subprocess.run([str(NEURODATA), "info", "nmnst"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == ("neurodata info: error: unknown dataset 'nmnst'; "
                                "did you mean nmnist?")


def test_stats_other_modalities_match_independent_readers(capsys, shared_data, tmp_path):
    import mne

    ts = convert(shared_data / "eeg" / "test.edf", tmp_path / "ts.zarr")
    rc, out, _ = run(capsys, "stats", str(ts), "--json", "-o", str(tmp_path / "ts.png"))
    doc = json.loads(out.split("\nwrote ")[0])
    raw = mne.io.read_raw_edf(shared_data / "eeg" / "test.edf", preload=True, verbose="error")
    data = raw.get_data()
    rec = doc["per_recording"][0]
    assert rc == 0 and doc["recordings"] == 1 and rec["sfreq"] == raw.info["sfreq"]
    assert rec["duration_s"] == pytest.approx(raw.n_times / raw.info["sfreq"])
    got = {c["name"]: c for c in rec["channels"]}
    for i, name in enumerate(raw.ch_names[:8]):
        scale = float(np.abs(data[i]).max()) or 1.0
        assert got[name]["mean"] == pytest.approx(data[i].mean(), abs=1e-5 * scale)
        assert got[name]["std"] == pytest.approx(data[i].std(), rel=1e-4, abs=1e-6 * scale)
        assert got[name]["max"] == pytest.approx(data[i].max(), rel=1e-5, abs=1e-6 * scale)
    assert (tmp_path / "ts.png").stat().st_size > 10_000

    im = convert(shared_data / "calcium" / "suite2p", tmp_path / "im.zarr", fs=30.0)
    rc, out, _ = run(capsys, "stats", str(im), "--json")
    doc = json.loads(out)
    F = np.load(shared_data / "calcium" / "suite2p" / "plane0" / f"{doc['trace']}.npy")
    assert doc["rois"] == F.shape[0] == 20 and doc["frames"] == F.shape[1] == 18000
    assert doc["trace_mean"]["max"] == pytest.approx(F.mean(axis=1).max(), rel=1e-5)
    assert doc["trace_std"]["median"] == pytest.approx(np.median(F.std(axis=1)), rel=1e-4)
