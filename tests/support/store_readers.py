"""Writer and reader processes for the per-modality concurrency tests.

Run as a script by tests/test_concurrency.py::test_readers_of_each_modality_see_one_version:

    python store_readers.py writer MODALITY STORE SECONDS SOURCES_JSON
    python store_readers.py reader MODALITY STORE SECONDS MANIFESTS_JSON

The writer re-converts STORE, alternating the sources, with ``overwrite=True``.
A reader opens STORE, identifies the version by its :func:`fingerprint`, reads
it piece by piece (one read call per piece) and compares every piece's digest
with that version's manifest (:func:`manifest`, computed by the test from
reference stores). Both print one JSON line.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time


def fingerprint(modality: str, ds) -> str:
    """What tells the two versions apart, from the metadata read at open."""
    if modality == "timeseries":
        return f"{ds[0].n_times}"
    if modality == "imaging":
        return f"{ds.n_frames}"
    return f"{len(ds)}"


def pieces(modality: str, ds):
    """``(name, bytes)`` of the dataset, each from a separate read call."""
    if modality == "timeseries":
        rec = ds[0]
        yield "channels", "|".join(rec.ch_names).encode()
        for s in range(0, rec.n_times, 256):  # one chunk per read
            yield f"samples {s}", rec.read(s, s + 256).tobytes()
        yield "annotations", rec.annotations()["onset"].tobytes()
    elif modality == "imaging":
        for i in range(len(ds)):
            yield f"roi {i}", ds[i].tobytes()
        yield "iscell", ds.iscell.tobytes()
    else:
        yield "neurons", "|".join(ds.neurons["name"]).encode()
        for s in range(0, len(ds), 500):
            e = ds.edges(s, s + 500, columns=["pre", "post", "weight"])
            yield f"edges {s}", b"".join(e[k].tobytes() for k in ("pre", "post", "weight"))


def manifest(modality: str, ds) -> dict:
    """``{fingerprint: [[name, sha256], ...]}`` of one complete version."""
    return {fingerprint(modality, ds): [[name, hashlib.sha256(b).hexdigest()]
                                        for name, b in pieces(modality, ds)]}


def _writer(modality, store, stop, sources):
    import random

    import neurodata

    rng = random.Random(5)
    swaps = 0
    while time.monotonic() < stop:
        for src, kw in sources:
            neurodata.convert(src, store, overwrite=True, **kw)
            swaps += 1
            time.sleep(rng.uniform(0.05, 0.3))  # readers get windows to finish passes
    return {"swaps": swaps}


def _reader(modality, store, stop, manifests):
    import neurodata
    from neurodata.errors import NeurodataError, StoreReplacedError

    out = {"complete": 0, "replaced": 0, "other_error": [], "mixed": [], "opens": 0}
    while time.monotonic() < stop:
        try:
            ds = neurodata.open(store)
            out["opens"] += 1
            key = fingerprint(modality, ds)
            want = manifests.get(key)
            if want is None:
                out["mixed"].append(f"opened a version not written: {key}")
                continue
            for (name, digest), (got_name, data) in zip(want, pieces(modality, ds)):
                if got_name != name or hashlib.sha256(data).hexdigest() != digest:
                    out["mixed"].append(f"version {key}: {got_name} differs")
                    break
            else:
                out["complete"] += 1
        except StoreReplacedError:
            out["replaced"] += 1
        except NeurodataError as e:
            out["other_error"].append(f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - a crash is what the test looks for
            out["mixed"].append(f"crash {type(e).__name__}: {e}")
    return out


def main(argv) -> int:
    role, modality, store, seconds, arg = argv
    stop = time.monotonic() + float(seconds)
    with open(arg) as fh:
        data = json.load(fh)
    if role == "writer":
        res = _writer(modality, store, stop, data)
    else:
        res = _reader(modality, store, stop, data)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
