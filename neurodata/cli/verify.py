"""``neurodata verify STORE|NAME``: check a store (schema, recomputed indexes) or a
downloaded dataset (file checksums, extracted-content manifests)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def add_parser(sub):
    p = sub.add_parser("verify", help="check a store or a downloaded dataset",
                       description="STORE: check the schema and recompute what can be checked "
                                   "(sample table, time index, coordinate ranges, counts). "
                                   "NAME: check the downloaded files' checksums and the "
                                   "extracted files against their manifest.")
    p.add_argument("target", help="store path, or dataset name (see `neurodata list`)")
    p.add_argument("--quick", action="store_true",
                   help="store: skip reading event columns; dataset: compare sizes, not hashes")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    return p


def run(args) -> int:
    target = Path(args.target)
    is_card_file = target.suffix.lower() in (".yaml", ".yml") and target.is_file()
    if "://" in args.target or (target.exists() and not is_card_file):
        checks = verify_store(args.target, deep=not args.quick)
    elif not is_card_file and (os.sep in args.target or args.target.endswith(".zarr")):
        from neurodata.errors import NeurodataError

        raise NeurodataError("no such store (nor a dataset name)", args.target)
    else:
        from neurodata.cards import verify_dataset

        checks = verify_dataset(args.target, deep=not args.quick)
    bad = [c for c in checks if c["status"] in ("bad", "missing")]
    if args.json:
        print(json.dumps({"target": args.target, "ok": not bad, "checks": checks}, indent=1))
    else:
        for c in checks:
            print(f"{c['status']:>9}  {c['item']}: {c['detail']}")
        print(f"{args.target}: {'OK' if not bad else f'{len(bad)} problem(s)'}")
    return 0 if not bad else 1


def verify_store(path, deep: bool = True) -> list[dict]:
    """Checks of a store: each a dict with ``item``, ``status`` (ok/bad) and ``detail``."""
    import neurodata
    from neurodata.dataset import store_modality

    modality = store_modality(os.fspath(path))  # schema tag and version
    checks = [{"item": "schema", "status": "ok", "detail": f"{modality} store"}]
    ds = neurodata.open(os.fspath(path))
    if modality == "events":
        checks += _verify_events(ds, deep)
    else:
        import importlib

        mod = importlib.import_module(f"neurodata.format.{modality}")
        if hasattr(mod, "verify"):
            checks += list(mod.verify(ds))
        else:
            ds.summary()  # every array the summary needs opens and decodes
            checks.append({"item": "summary", "status": "ok",
                           "detail": f"opened and summarised ({len(ds)} items)"})
    return checks


def _check(name, ok, detail_ok, detail_bad):
    return {"item": name, "status": "ok" if ok else "bad", "detail": detail_ok if ok else detail_bad}


def _verify_events(ds, deep: bool) -> list[dict]:
    r = ds.reader
    a = r.attrs
    out = []
    start, count = r.start, r.count
    expect_start = np.concatenate([[0], np.cumsum(count)[:-1]]) if len(count) else count
    bad = np.nonzero(start != expect_start)[0]
    out.append(_check("sample table", len(bad) == 0 and int(count.sum()) == r.n_events,
                      f"{len(r)} samples cover {r.n_events} events contiguously",
                      f"sample {int(bad[0]) if len(bad) else '?'}: start/count do not tile "
                      f"the {r.n_events} events"))
    out.append(_check("counts in attributes",
                      a.get("n_samples") == len(r) and a.get("n_events") == r.n_events,
                      "n_samples and n_events match the arrays",
                      f"attributes say {a.get('n_samples')} samples / {a.get('n_events')} events, "
                      f"arrays hold {len(r)} / {r.n_events}"))
    names = r.class_names
    lab = r.label
    lab_ok = bool(np.all(lab >= -1)) and (not names or bool(np.all(lab < len(names))))
    out.append(_check("labels", lab_ok, f"all in -1..{len(names) - 1}" if names else "no class names",
                      f"labels range {int(lab.min())}..{int(lab.max())} for {len(names)} classes"))
    n_chunks = -(-r.n_events // r.chunk) if r.n_events else 0
    out.append(_check("time index length", len(r.chunk_t_min) == n_chunks == len(r.chunk_t_max),
                      f"{n_chunks} chunks indexed",
                      f"{len(r.chunk_t_min)} index entries for {n_chunks} chunks"))
    if not deep or not r.n_events:
        return out
    w, h, npol = r.sensor_size
    boundaries = set(np.asarray(start[count > 0], np.int64).tolist())
    tmin_bad = coord_bad = order_bad = None
    for c in range(n_chunks):
        e0, e1 = c * r.chunk, min((c + 1) * r.chunk, r.n_events)
        cols = r.read_range(e0, e1)
        t = cols["t"]
        if c < len(r.chunk_t_min) and (t.min() != r.chunk_t_min[c] or t.max() != r.chunk_t_max[c]):
            tmin_bad = tmin_bad if tmin_bad is not None else c
        if (cols["x"].max() >= w or cols["y"].max() >= h or cols["p"].max() >= max(npol, 2)):
            coord_bad = coord_bad if coord_bad is not None else c
        drops = np.nonzero(np.diff(t) < 0)[0] + 1 + e0
        if len(drops) and not set(drops.tolist()) <= boundaries:
            order_bad = order_bad if order_bad is not None else int(
                next(d for d in drops.tolist() if d not in boundaries))
    out.append(_check("time index values", tmin_bad is None,
                      "every chunk's recomputed t range matches the index",
                      f"chunk {tmin_bad}: t range differs from the stored index"))
    out.append(_check("coordinates", coord_bad is None, f"all x<{w}, y<{h}, p<{max(npol, 2)}",
                      f"chunk {coord_bad}: coordinates outside sensor {w}x{h}x{npol}"))
    out.append(_check("time order", order_bad is None, "timestamps sorted within every sample",
                      f"event {order_bad}: time goes backwards inside a sample"))
    return out
