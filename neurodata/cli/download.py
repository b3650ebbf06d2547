"""``neurodata download NAME``: fetch, verify and unpack a dataset into the cache."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("download", help="download, verify and unpack a dataset",
                       description="Download dataset NAME into $NEURODATA_HOME (mirrors in order, "
                                   "resumed transfers, checksums, safe extraction). Set "
                                   "NEURODATA_OFFLINE=1 to use only the cache.")
    p.add_argument("name", help="dataset name (see `neurodata list`)")
    p.add_argument("--no-extract", action="store_true", help="keep archives packed")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def run(args) -> int:
    from neurodata.cards import download_dataset

    folder = download_dataset(args.name, progress=not args.no_progress,
                              extract=not args.no_extract)
    if args.json:
        print(json.dumps({"name": args.name, "folder": str(folder)}))
    else:
        print(f"{args.name}: ready in {folder}")
    return 0
