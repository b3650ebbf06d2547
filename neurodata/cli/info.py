"""``neurodata info NAME``: a dataset's card, and whether it is downloaded."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("info", help="show a dataset's card (files, licence, citation, classes)",
                       description="Show everything neurodata knows about dataset NAME.")
    p.add_argument("name", help="dataset name (see `neurodata list`)")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.add_argument("--bibtex", action="store_true", help="print only the citation (BibTeX)")
    return p


def run(args) -> int:
    from neurodata.cards import dataset_folder, get_card

    card = get_card(args.name)
    folder = dataset_folder(card)
    if args.bibtex:
        print((card.get("citation") or "").strip() or f"{card['name']}: no citation on the card")
        return 0
    if args.json:
        print(json.dumps({**card, "local_folder": str(folder),
                          "downloaded": _downloaded(card, folder)}, indent=1, default=str))
        return 0
    rows = [("name", card["name"]), ("title", card["title"]), ("modality", card["modality"]),
            ("homepage", card["homepage"]), ("license", card.get("license") or "unknown")]
    if card.get("classes"):
        cl = card["classes"]
        rows.append(("classes", f"{len(cl)}: " + ", ".join(cl[:12]) + (" ..." if len(cl) > 12 else "")))
    for key, label in (("sensor_size", "sensor size"), ("sampling_rate_hz", "sampling rate (Hz)"),
                       ("channels", "channels")):
        if card.get(key) is not None:
            rows.append((label, card[key]))
    if card.get("expected"):
        rows.append(("expected", ", ".join(f"{k}={v}" for k, v in card["expected"].items())))
    conv = card["convert"]
    rows.append(("converts with", conv.get("loader") or "no loader yet"))
    rows.append(("gated", card["gated"]["reason"] if card.get("gated") else "no"))
    rows.append(("local folder", f"{folder} ({'downloaded' if _downloaded(card, folder) else 'not downloaded'})"))
    for k, v in rows:
        print(f"{k:>18}: {v}")
    print(f"{'description':>18}: {' '.join(card['description'].split())}")
    for f in card.get("files") or []:
        digest = f"sha256 {f['sha256']}" if f.get("sha256") else (
            f"md5 {f['md5']}" if f.get("md5") else "no published checksum")
        print(f"{'file':>18}: {f['name']} ({digest})")
        for u in [f.get("url")] + list(f.get("mirrors") or []):
            if u:
                print(f"{'':>18}  {u}")
    if card.get("gated"):
        print(f"{'how to get it':>18}: {' '.join(card['gated']['instructions'].split())}")
    print(f"{'facts from':>18}: " + "; ".join(card["source"]))
    return 0


def _downloaded(card, folder) -> bool:
    files = card.get("files") or []
    return bool(files) and all((folder / f["name"]).exists() for f in files)
