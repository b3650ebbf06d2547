"""Readers in several processes while another process re-converts the store.

Guarantee (docs/reliability.md): a replacement swaps the whole store in one
atomic step, so an open always sees one complete version; an opened
EventDataset is pinned to that version and every read either returns data of
it or raises StoreReplacedError (a NeurodataError) once the store has been
replaced -- never a mix of versions and never silent fill values. Appending to
an existing store is not supported (stores are written once, then replaced).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import neurodata
from neurodata.errors import NeurodataError, StoreReplacedError
from neurodata.format import store as store_mod

READERS = 3
SECONDS = 6.0

_SCRIPT = textwrap.dedent('''
    import hashlib, json, sys, time
    import numpy as np
    import neurodata
    from neurodata.errors import NeurodataError, StoreReplacedError

    role, store, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stop = time.monotonic() + seconds

    def digest(cols, label):
        h = hashlib.sha256()
        for c in ("x", "y", "t", "p"):
            h.update(np.ascontiguousarray(cols[c]).tobytes())
        h.update(str(label).encode())
        return h.hexdigest()

    if role == "writer":
        src_a, src_b = sys.argv[4], sys.argv[5]
        rng = np.random.default_rng(5)
        swaps = 0
        while time.monotonic() < stop:
            for src in (src_a, src_b):
                neurodata.convert(src, store, labels_from_folders=True, overwrite=True)
                swaps += 1
                time.sleep(rng.uniform(0.2, 0.8))  # readers get windows to finish passes
        print(json.dumps({"swaps": swaps}))
        sys.exit(0)

    manifests = json.loads(open(sys.argv[4]).read())  # n_samples -> [digest per sample]
    out = {"complete": {}, "replaced": 0, "other_error": [], "mixed": [], "opens": 0}
    while time.monotonic() < stop:
        try:
            ds = neurodata.open(store)
            out["opens"] += 1
            want = manifests.get(str(len(ds)))
            if want is None:
                out["mixed"].append(f"opened a store of {len(ds)} samples")
                continue
            got = []
            for i0 in range(0, len(ds), 6):  # a few samples per read, several reads per pass
                ids = list(range(i0, min(i0 + 6, len(ds))))
                cols, off = ds.reader.read_samples(ids)
                for k, i in enumerate(ids):
                    part = {c: v[off[k]:off[k + 1]] for c, v in cols.items()}
                    got.append(digest(part, int(ds.labels[i])))
            if got != want:
                bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
                out["mixed"].append(f"{len(ds)}-sample version, samples {bad[:5]} differ")
            else:
                out["complete"][str(len(ds))] = out["complete"].get(str(len(ds)), 0) + 1
        except StoreReplacedError:
            out["replaced"] += 1
        except NeurodataError as e:
            out["other_error"].append(f"NeurodataError {e}")
        except Exception as e:
            out["mixed"].append(f"crash {type(e).__name__}: {e}")
    print(json.dumps(out))
''')


def _write_version(root: Path, records: np.ndarray, starts, length, classes) -> Path:
    """Folder of ATIS files, each a different slice of the real N-MNIST records."""
    for i, s in enumerate(starts):
        d = root / classes[i % len(classes)]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:03d}.bin").write_bytes(records[s:s + length].tobytes())
    return root


def _manifest(store) -> list[str]:
    ds = neurodata.open(str(store))
    out = []
    for i in range(len(ds)):
        cols = ds.columns(i)
        h = hashlib.sha256()
        for c in ("x", "y", "t", "p"):
            h.update(np.ascontiguousarray(cols[c]).tobytes())
        h.update(str(int(ds.labels[i])).encode())
        out.append(h.hexdigest())
    return out


@pytest.fixture(scope="module")
def versions(real, tmp_path_factory):
    raw = real("events/sample_nmnist.bin").read_bytes()
    records = np.frombuffer(raw, np.dtype((np.uint8, 5)))
    root = tmp_path_factory.mktemp("conc")
    a = _write_version(root / "a", records, range(0, 24 * 37, 37), 2000, ("one", "two"))
    b = _write_version(root / "b", records, range(5, 17 * 53, 53), 1500, ("x", "y", "z"))
    man = {}
    for name, src in (("a", a), ("b", b)):
        ref = root / f"ref_{name}.zarr"
        neurodata.convert(src, ref, labels_from_folders=True)
        m = _manifest(ref)
        man[str(len(m))] = m
    assert len(man) == 2  # the versions differ in sample count, and every sample differs
    path = root / "manifests.json"
    path.write_text(json.dumps(man))
    return {"a": a, "b": b, "manifests": path, "sizes": sorted(int(k) for k in man)}


def test_readers_see_one_complete_version_while_a_writer_replaces_it(versions, tmp_path):
    store = tmp_path / "live.zarr"
    neurodata.convert(versions["a"], store, labels_from_folders=True)
    script = tmp_path / "role.py"
    script.write_text(_SCRIPT)
    writer = subprocess.Popen([sys.executable, str(script), "writer", str(store), str(SECONDS),
                               str(versions["a"]), str(versions["b"])],
                              stdout=subprocess.PIPE, text=True)
    readers = [subprocess.Popen([sys.executable, str(script), "reader", str(store),
                                 str(SECONDS), str(versions["manifests"])],
                                stdout=subprocess.PIPE, text=True) for _ in range(READERS)]
    w_out, _ = writer.communicate(timeout=120)
    results = [json.loads(r.communicate(timeout=120)[0]) for r in readers]
    assert writer.returncode == 0
    swaps = json.loads(w_out)["swaps"]
    assert swaps >= 2
    for res in results:
        assert res["mixed"] == [], res["mixed"][:5]
        # with the atomic exchange the store never vanishes, so no other error either
        assert res["other_error"] == [], res["other_error"][:5]
    complete = sum(sum(r["complete"].values()) for r in results)
    # readers completed full, verified passes while the writer alternated the versions
    assert complete >= 2, results
    # the final store is one complete version
    final = _manifest(store)
    assert final in [json.loads(versions["manifests"].read_text())[str(n)]
                     for n in versions["sizes"]]


def test_open_dataset_refuses_to_mix_after_replacement(versions, tmp_path):
    store = tmp_path / "s.zarr"
    neurodata.convert(versions["a"], store, labels_from_folders=True)
    ds = neurodata.open(str(store))
    first = ds.columns(0)
    n_a = len(ds)
    neurodata.convert(versions["b"], store, labels_from_folders=True, overwrite=True)
    # the sample table in memory is version a's; its chunks on disk are gone
    with pytest.raises(StoreReplacedError, match="reopen"):
        ds.columns(1)
    with pytest.raises(StoreReplacedError):
        ds.window(0, 0, 10**9)
    with pytest.raises(NeurodataError):
        ds[2]
    again = neurodata.open(str(store))
    assert len(again) != n_a and len(again) in versions["sizes"]
    assert not np.array_equal(again.columns(0)["t"], first["t"])
    # plain xarray opens the replaced store as a normal folder
    import xarray as xr

    tree = xr.open_datatree(store, engine="zarr", chunks={})
    assert tree["t"].shape[0] == again.n_events


def test_replacement_without_rename_exchange_still_gives_a_complete_store(versions, tmp_path,
                                                                          monkeypatch):
    # kernels/filesystems without renameat2(RENAME_EXCHANGE) fall back to two renames
    monkeypatch.setattr(store_mod, "_exchange", lambda a, b: False)
    store = tmp_path / "f.zarr"
    neurodata.convert(versions["a"], store, labels_from_folders=True)
    ds = neurodata.open(str(store))
    neurodata.convert(versions["b"], store, labels_from_folders=True, overwrite=True)
    with pytest.raises(StoreReplacedError):
        ds.columns(0)
    man = json.loads(versions["manifests"].read_text())
    assert _manifest(store) == man[str(min(versions["sizes"]))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.zarr"]


def test_pickled_dataset_keeps_its_version(versions, tmp_path):
    import pickle

    store = tmp_path / "p.zarr"
    neurodata.convert(versions["a"], store, labels_from_folders=True)
    ds = neurodata.open(str(store))
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone.columns(3)["t"], ds.columns(3)["t"])
    blob = pickle.dumps(ds)
    neurodata.convert(versions["b"], store, labels_from_folders=True, overwrite=True)
    stale = pickle.loads(blob)  # unpickled after the replacement: pinned to the old version
    with pytest.raises(StoreReplacedError):
        stale.columns(0)


# ------------------------------------------------ timeseries, imaging and connectome stores
# Each modality: two versions converted from different sources (real files in
# ../shared/data, or files derived from them in a temporary folder), told apart
# by their fingerprint (samples, frames, edges). Readers in other processes
# check every piece they read against the manifest of the version they opened
# (tests/support/store_readers.py) while a writer process alternates the two.

MODALITY_SECONDS = 4.0
MODALITY_READERS = 2


def _suite2p_second_half(real, out: Path) -> Path:
    """A suite2p plane with the last 9000 of the real 18000 frames (every value differs)."""
    plane = out / "plane0"
    plane.mkdir(parents=True)
    for name in ("F", "Fneu", "spks"):
        a = np.load(real(f"calcium/suite2p/plane0/{name}.npy"))
        np.save(plane / f"{name}.npy", np.ascontiguousarray(a[:, 9000:]))
    for name in ("iscell", "stat"):  # copied byte for byte (stat.npy is never unpickled here)
        (plane / f"{name}.npy").write_bytes(real(f"calcium/suite2p/plane0/{name}.npy").read_bytes())
    return out


def _edgelist_reversed_head(real, out: Path) -> Path:
    """The first 3000 rows of the real edge list, in reverse order."""
    lines = real("connectome/herm_full_edgelist.csv").read_text().splitlines()
    out.write_text("\n".join([lines[0]] + lines[1:3001][::-1]) + "\n")
    return out


@pytest.fixture(scope="module")
def modality_versions(real, tmp_path_factory):
    from support import store_readers

    root = tmp_path_factory.mktemp("modalities")
    sources = {
        "timeseries": [(str(real("eeg/test.edf")), {}), (str(real("eeg/test.bdf")), {})],
        "imaging": [(str(real("calcium/suite2p")), {"fs": 30.0}),
                    (str(_suite2p_second_half(real, root / "s2p_b")), {"fs": 30.0})],
        "connectome": [(str(real("connectome/herm_full_edgelist.csv")), {}),
                       (str(_edgelist_reversed_head(real, root / "edges_b.csv")), {})],
    }
    out = {}
    for modality, srcs in sources.items():
        man = {}
        for k, (src, kw) in enumerate(srcs):
            ref = neurodata.convert(src, root / f"{modality}_ref{k}.zarr", **kw)
            man.update(store_readers.manifest(modality, neurodata.open(str(ref))))
        assert len(man) == 2  # the versions have different fingerprints
        (root / f"{modality}_sources.json").write_text(json.dumps(srcs))
        (root / f"{modality}_manifests.json").write_text(json.dumps(man))
        out[modality] = {"sources": srcs, "manifests": man,
                         "sources_json": root / f"{modality}_sources.json",
                         "manifests_json": root / f"{modality}_manifests.json"}
    return out


@pytest.mark.parametrize("modality", ["timeseries", "imaging", "connectome"])
def test_readers_of_each_modality_see_one_version(modality, modality_versions, tmp_path):
    from support import store_readers

    v = modality_versions[modality]
    store = tmp_path / "live.zarr"
    src, kw = v["sources"][0]
    neurodata.convert(src, store, **kw)
    script = Path(store_readers.__file__)
    common = [sys.executable, str(script)]
    writer = subprocess.Popen(common + ["writer", modality, str(store), str(MODALITY_SECONDS),
                                        str(v["sources_json"])], stdout=subprocess.PIPE, text=True)
    readers = [subprocess.Popen(common + ["reader", modality, str(store), str(MODALITY_SECONDS),
                                          str(v["manifests_json"])], stdout=subprocess.PIPE,
                                text=True) for _ in range(MODALITY_READERS)]
    w_out, _ = writer.communicate(timeout=120)
    results = [json.loads(r.communicate(timeout=120)[0]) for r in readers]
    assert writer.returncode == 0
    assert json.loads(w_out)["swaps"] >= 2
    for res in results:
        assert res["mixed"] == [], res["mixed"][:5]
        assert res["other_error"] == [], res["other_error"][:5]
    assert sum(r["complete"] for r in results) >= 2, results
    final = store_readers.manifest(modality, neurodata.open(str(store)))
    assert final.items() <= v["manifests"].items()


@pytest.mark.parametrize("modality", ["timeseries", "imaging", "connectome"])
def test_open_dataset_of_each_modality_refuses_after_replacement(modality, modality_versions,
                                                                 tmp_path):
    import pickle

    from support import store_readers

    (src_a, kw_a), (src_b, kw_b) = modality_versions[modality]["sources"]
    store = tmp_path / "s.zarr"
    neurodata.convert(src_a, store, **kw_a)
    ds = neurodata.open(str(store))
    blob = pickle.dumps(ds)
    fresh = pickle.loads(blob)  # unpickled before a replacement: reads the same version
    assert store_readers.manifest(modality, fresh) == store_readers.manifest(modality, ds)
    neurodata.convert(src_b, store, overwrite=True, **kw_b)
    with pytest.raises(StoreReplacedError, match="reopen"):
        dict(store_readers.pieces(modality, ds))
    with pytest.raises(StoreReplacedError):
        dict(store_readers.pieces(modality, pickle.loads(blob)))
    again = neurodata.open(str(store))
    assert store_readers.fingerprint(modality, again) != store_readers.fingerprint(modality, ds)
    assert store_readers.manifest(modality, again).items() <= \
        modality_versions[modality]["manifests"].items()
