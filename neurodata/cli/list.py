"""``neurodata list``: the registered datasets (or, with ``--formats``, readable formats)."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("list", help="list registered datasets (or readable formats)",
                       description="List the datasets neurodata can download and convert "
                                   "(one card each), or with --formats the file formats it reads.")
    p.add_argument("--modality", choices=["events", "timeseries", "imaging", "connectome"],
                   help="only datasets/formats of this modality")
    p.add_argument("--formats", action="store_true", help="list readable file formats instead")
    p.add_argument("--json", action="store_true", help="print JSON (a list of cards or formats)")
    return p


def run(args) -> int:
    if args.formats:
        return _formats(args)
    from neurodata.cards import list_cards

    cards = list_cards(args.modality)
    if args.json:
        print(json.dumps(cards, indent=1, default=str))
        return 0
    print(f"{'name':<16} {'modality':<11} {'size':>9}  title")
    for c in cards:
        flag = "  [gated]" if c.get("gated") else ""
        print(f"{c['name']:<16} {c['modality']:<11} {_size(c.get('size_bytes')):>9}  "
              f"{c['title']}{flag}")
    print(f"{len(cards)} datasets; `neurodata info NAME` for details")
    return 0


def _formats(args) -> int:
    from neurodata.loaders import FORMATS

    specs = [f for f in FORMATS if not args.modality or f.modality == args.modality]
    if args.json:
        print(json.dumps([{"name": f.name, "modality": f.modality, "extensions": list(f.extensions),
                           "description": f.description, "folder": f.folder} for f in specs],
                         indent=1))
        return 0
    print(f"{'format':<16} {'modality':<11} {'extensions':<16} description")
    for f in specs:
        ext = "(folder)" if f.folder else " ".join(f.extensions)
        print(f"{f.name:<16} {f.modality:<11} {ext:<16} {f.description}")
    return 0


def _size(n) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
