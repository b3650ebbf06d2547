"""Publishing to and pulling from a hub-compatible server on 127.0.0.1 through the real client."""
from __future__ import annotations

import numpy as np
import pytest

import neurodata
from neurodata.errors import NeurodataError

pytest.importorskip("huggingface_hub")
datasets = pytest.importorskip("datasets")

from support.hub_server import HubServer  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory, real):
    """A labelled event store with train and test splits, from simulated recordings and a real
    N-MNIST sample."""
    import shutil

    from neurodata.simulate import write_shapes_dataset

    root = tmp_path_factory.mktemp("hubsrc")
    write_shapes_dataset(root / "raw", n_per_class=3, test_fraction=0.34, sensor=(34, 34))
    shutil.copy(real("events/sample_nmnist.bin"), root / "raw" / "train" / "bar" / "nmnist.bin")
    out = root / "s.zarr"
    neurodata.convert(root / "raw", out, labels_from_folders=True,
                      attrs={"licence": "CC-BY-4.0", "dataset": "hub test"})
    return out


@pytest.fixture
def hub():
    with HubServer({"tok-alice": "alice", "tok-bob": "bob"}) as server:
        yield server


def _rows_by_source(ds_dict):
    rows = {}
    for split, d in ds_dict.items():
        for r in d:
            rows[r["source"]] = (split, r)
    return rows


def test_dry_run_loads_with_datasets_and_equals_store(store, tmp_path):
    from neurodata.hub import publish

    out = tmp_path / "stage"
    publish(store, "alice/shapes", dry_run_dir=out)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "README.md" in names and "store.zarr/zarr.json" in names
    assert any(n.startswith("data/train-") for n in names)
    assert any(n.startswith("data/test-") for n in names)
    loaded = datasets.load_dataset(str(out))
    ds = neurodata.open(store)
    rows = _rows_by_source(loaded)
    assert sum(len(d) for d in loaded.values()) == len(ds) == 13
    sources = ds.reader.sources()
    splits = ds.reader.splits()
    for i in range(len(ds)):
        ev, label = ds[i]
        split, row = rows[sources[i]]
        assert split == (splits[i] or "train")
        assert row["label"] == label
        for c in "xytp":
            np.testing.assert_array_equal(np.asarray(row[c]), ev[c])
    # the card parses with huggingface_hub's card tools
    from huggingface_hub import DatasetCard

    card = DatasetCard((out / "README.md").read_text())
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert data["size_categories"] == ["n<1K"]
    assert data["configs"][0]["config_name"] == "default"
    assert "neuromorphic" in data["tags"]
    assert "load_dataset(\"alice/shapes\")" in card.text


def test_publish_and_pull_round_trip(store, hub, tmp_path, monkeypatch):
    from neurodata.hub import publish, pull

    res = publish(store, "alice/shapes", token="tok-alice", endpoint=hub.url)
    assert res["commits"] and not res["skipped"]
    assert any(f.startswith("store.zarr/") for f in res["uploaded"])
    # a re-run sends nothing new: everything is already there with the same content
    again = publish(store, "alice/shapes", token="tok-alice", endpoint=hub.url)
    assert again["uploaded"] == [] and len(again["skipped"]) == len(res["uploaded"])
    local = pull("hf://datasets/alice/shapes", tmp_path / "pulled", endpoint=hub.url,
                 token="tok-alice")
    a, b = neurodata.open(store), neurodata.open(local)
    assert len(a) == len(b)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        assert a[i][1] == b[i][1]
    # lazy reads straight from the hub through fsspec
    remote = neurodata.open("hf://datasets/alice/shapes",
                            storage_options={"endpoint": hub.url, "token": "tok-alice"})
    np.testing.assert_array_equal(remote[4][0], a[4][0])
    assert remote.class_names == a.class_names


def test_resume_after_interruption(store, hub, tmp_path, monkeypatch):
    """A publish that dies after its first commit completes when run again."""
    import neurodata.hub.upload as pub_mod
    from neurodata.hub.upload import publish

    monkeypatch.setattr(pub_mod, "BATCH_FILES", 3)
    import huggingface_hub

    real_commit = huggingface_hub.HfApi.create_commit
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("connection dropped")
        return real_commit(self, *a, **k)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", flaky)
    with pytest.raises(ConnectionError):
        publish(store, "alice/resume", token="tok-alice", endpoint=hub.url)
    first = set(hub.state.repos["alice/resume"]["files"])
    assert len(first) == 3
    res = publish(store, "alice/resume", token="tok-alice", endpoint=hub.url)
    assert set(res["skipped"]) == first
    total = set(hub.state.repos["alice/resume"]["files"])
    assert first < total and len(total) == len(res["skipped"]) + len(res["uploaded"])


def test_clear_errors(store, hub, tmp_path, monkeypatch):
    from neurodata.hub import publish, pull

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))  # no saved login
    with pytest.raises(NeurodataError, match="no HuggingFace token"):
        publish(store, "alice/x", endpoint=hub.url, token=None)
    publish(store, "alice/mine", token="tok-alice", endpoint=hub.url, parquet=False)
    # bob may read alice's public repository but not write to it
    with pytest.raises(NeurodataError, match="no permission to write"):
        publish(store, "alice/mine", token="tok-bob", endpoint=hub.url, parquet=True)
    with pytest.raises(NeurodataError, match="no permission to write"):
        publish(store, "alice/new", token="tok-bob", endpoint=hub.url)
    with pytest.raises(NeurodataError, match="refused the token"):
        publish(store, "alice/mine", token="tok-forged", endpoint=hub.url, parquet=True)
    with pytest.raises(NeurodataError, match="not found"):
        pull("hf://datasets/alice/nothing-here", tmp_path / "p", endpoint=hub.url, token="tok-alice")
    with pytest.raises(NeurodataError, match="not a hub dataset URL"):
        pull("https://example.org/x", tmp_path / "q")


def test_cli_publish_dry_run(store, tmp_path):
    from neurodata.cli.main import main

    assert main(["publish", "--dry-run", str(store), str(tmp_path / "o"), "--no-parquet"]) == 0
    assert (tmp_path / "o" / "README.md").exists()
    assert not (tmp_path / "o" / "data").exists()
    assert main(["publish", str(store)]) == 2  # no --repo: one-line error, non-zero


def _stage_and_load(src, tmp_path, name, **kw):
    import yaml

    from neurodata.hub import publish

    store = tmp_path / f"{name}.zarr"
    neurodata.convert(src, store, **kw)
    stage = tmp_path / f"{name}-stage"
    publish(store, f"alice/{name}", dry_run_dir=stage)
    meta = yaml.safe_load((stage / "README.md").read_text().split("---")[1])
    loaded = {c["config_name"]: datasets.load_dataset(str(stage), c["config_name"])["train"]
              for c in meta["configs"]}
    assert meta["configs"][0].get("default") is True
    return neurodata.open(store), loaded


def test_parquet_view_of_a_connectome(real, tmp_path):
    ds, loaded = _stage_and_load(real("connectome/herm_full_edgelist.csv"), tmp_path, "conn")
    assert set(loaded) == {"neurons", "edges"}
    edges = loaded["edges"].to_pandas()
    neurons = loaded["neurons"].to_pandas()
    assert len(neurons) == 448 and len(edges) == 6040
    totals = edges.groupby("kind")["weight"].sum().to_dict()
    assert totals == {"chemical": 27019, "electrical": 6377}  # as the connectome tests count them
    assert neurons["name"].iloc[int(edges["pre"].iloc[0])] == ds.to_xarray().to_dataset()["name"].values[
        int(edges["pre"].iloc[0])]


def test_parquet_view_of_eeg_windows(real, tmp_path):
    ds, loaded = _stage_and_load(real("eeg/test.edf"), tmp_path, "eeg")
    assert {"windows", "channels", "annotations"} <= set(loaded)
    rec = ds[0]
    w = loaded["windows"]
    total = 0
    for row in w:
        block = np.asarray(row["data"], np.float32)
        a = row["start_sample"]
        np.testing.assert_array_equal(block, rec.read(a, a + block.shape[1]))
        total += block.shape[1]
    assert total == rec.n_times
    assert loaded["channels"]["channel"] == list(rec.ch_names)
    assert len(loaded["annotations"]) == len(np.asarray(rec.annotations()["onset"]))


def test_parquet_view_of_suite2p_traces(real, tmp_path):
    folder = real("calcium/suite2p")
    ds, loaded = _stage_and_load(folder, tmp_path, "ca", fs=30.0)
    rois = loaded["rois"]
    F = np.load(folder / "plane0" / "F.npy")
    assert len(rois) == F.shape[0] == 20
    np.testing.assert_array_equal(np.asarray(rois[3]["F"], np.float32), F[3].astype(np.float32))
    assert sum(rois["iscell"]) == int(np.load(folder / "plane0" / "iscell.npy")[:, 0].sum())
    assert len(loaded["masks"]) == int(np.sum(rois["mask_count"]))
