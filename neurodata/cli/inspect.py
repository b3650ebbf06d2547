"""``neurodata inspect STORE``: what a store holds, in figures."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("inspect", help="summarise a store (samples, events, rates, classes, size)")
    p.add_argument("store", help="store path or URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def summary_of(ds) -> dict:
    """The dataset's own summary (every dataset type defines ``summary()``)."""
    return ds.summary()


def run(args) -> int:
    import neurodata

    ds = neurodata.open(args.store)
    s = summary_of(ds)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    for key, value in s.items():
        if key == "provenance":
            continue
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
            print(f"{key:>22}: {inner}")
        else:
            print(f"{key:>22}: {_fmt(value)}")
    prov = s.get("provenance") or {}
    if prov:
        print(f"{'provenance':>22}: {prov.get('converter')} from {prov.get('n_sources')} "
              f"source file(s) via {prov.get('loader')}, {prov.get('created')}")
    return 0


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
